//! The maintenance benchmark: a fixed suite of pipelines, each run under the `Linux` and
//! `Minimal` maintenance policies with the sanitizer and the simulator's
//! [`Oracle`] watching, so that a policy's cost is compared with the minimum the run
//! truly needed (`docs/maintenance-cost.md`).
//!
//! ```
//! use dmabuf_check::bench::{Suite, run_suite};
//!
//! let results = run_suite(&Suite::short()).unwrap();
//! for r in &results {
//!     assert_eq!(r.findings.linux + r.findings.minimal, 0, "{}: both policies are correct", r.name);
//!     assert!(r.minimal.bytes <= r.linux.bytes);
//! }
//! ```
//!
//! The workloads are scenario text generated here (see [`Suite::workloads`]), run with
//! the adversarial chooser on the platform each names. Bytes, operations and cycles of a
//! policy are its maintenance (clean, invalidate, clean+invalidate, device-cache flush and
//! invalidate) plus bounce copies, from the simulator's [`Stats`]; the oracle's are the
//! needs of [`Oracle::needed`] over the same run.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::Path;
use std::rc::Rc;

use dmabuf::MaintenancePolicy;
use dmabuf_sim::{Oracle, Platform, Stats};
use serde::Serialize;

use crate::runner::{RunConfig, run_observed};
use crate::scenario::parse;

/// What the suite runs: how many frames each pipeline processes and how large they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    /// Frames (iterations of each pipeline's loop).
    pub frames: u32,
    /// Frame width in pixels (NV12: a luma plane of `width * height` bytes, then chroma).
    pub width: u64,
    /// Frame height in pixels.
    pub height: u64,
}

impl Default for Suite {
    /// Eight frames of 1080p.
    fn default() -> Self {
        Suite { frames: 8, width: 1920, height: 1080 }
    }
}

impl Suite {
    /// Two frames of 320x240: the same pipelines in a fraction of a second, for tests.
    pub fn short() -> Self {
        Suite { frames: 2, width: 320, height: 240 }
    }

    /// Bytes of one NV12 frame.
    pub fn frame_size(&self) -> u64 {
        self.width * self.height * 3 / 2
    }

    /// The overlay's rectangle: `(x, y, width, height)` in luma pixels (bytes), line
    /// aligned, a sixteenth of the frame on each side or less.
    fn overlay(&self) -> (u64, u64, u64, u64) {
        let w = (self.width / 8 / 64 * 64).max(64);
        let h = (self.height / 16).max(8);
        ((self.width / 3 / 64) * 64, self.height / 2, w, h)
    }

    /// The workloads, with their scenario text.
    pub fn workloads(&self) -> Vec<Workload> {
        let mut v = Vec::new();
        for platform in ["arm64-noncoherent", "x86-pcie"] {
            let x86 = platform == "x86-pcie";
            v.push(self.camera_encoder(platform, Peek::Kernel));
            if !x86 {
                v.push(self.camera_encoder(platform, Peek::SyncPartial));
                v.push(self.camera_encoder(platform, Peek::Sync));
            }
            v.push(self.decoder_overlay(platform, true));
            if !x86 {
                v.push(self.decoder_overlay(platform, false));
            }
            v.push(self.gpu_render(platform));
            if !x86 {
                v.push(self.iio_usb(platform));
                v.push(self.iio_usb("arm64-mixed"));
            }
            v.push(self.cpu_fill(platform, true));
            v.push(self.cpu_fill(platform, false));
            if !x86 {
                v.push(self.dma32_header());
            }
        }
        v
    }

    /// Camera to encoder, the CPU peeking at each frame's 4 KiB header: through the
    /// kernel's ranged bracket (`dma_buf_begin_cpu_access_partial`), or through the mmap
    /// and `DMA_BUF_IOCTL_SYNC_PARTIAL` (falling back to `DMA_BUF_IOCTL_SYNC` where the
    /// kernel answers `ENOTTY`, as upstream does), or through the mmap and
    /// `DMA_BUF_IOCTL_SYNC` alone (the API before the ranged ioctl, for comparison).
    fn camera_encoder(&self, platform: &str, peek: Peek) -> Workload {
        let (camera, encoder, heap) =
            if platform == "x86-pcie" { ("capture", "dgpu", "system") } else { ("isp", "venc", "cma") };
        let size = self.frame_size();
        let (open, begin, end, close) = match peek {
            Peek::Kernel => ("vmap frame", "cpu begin frame[0..4KiB] read", "cpu end frame read", "vunmap frame"),
            Peek::SyncPartial => {
                ("mmap frame", "sync frame[0..4KiB] start read", "sync frame[0..4KiB] end read", "munmap frame")
            }
            Peek::Sync => ("mmap frame", "sync frame start read", "sync frame end read", "munmap frame"),
        };
        let src = format!(
            "platform {platform}
buffer frame size={size} heap={heap}
attach {camera} frame
attach {encoder} frame
{open}
repeat {frames} {{
  map {camera} frame from_device
  {camera} write frame = frame
  unmap {camera} frame
  {begin}
  cpu read frame[0..4KiB] expect frame
  {end}
  map {encoder} frame to_device
  {encoder} read frame expect frame
  unmap {encoder} frame
}}
{close}
",
            frames = self.frames
        );
        let (name, what, note) = match peek {
            Peek::SyncPartial => (
                "camera-encoder-peek-mmap",
                "camera to encoder; user space peeks at each frame's 4 KiB header through the mmap and DMA_BUF_IOCTL_SYNC_PARTIAL (DMA_BUF_IOCTL_SYNC where the kernel has no ranged ioctl)",
                "",
            ),
            Peek::Sync => (
                "camera-encoder-peek-mmap-full-sync",
                "camera-encoder-peek-mmap with DMA_BUF_IOCTL_SYNC alone, the API without a range",
                "DMA_BUF_IOCTL_SYNC has no range: Minimal must invalidate everything the camera wrote, \
                 the oracle only the 64 lines read; the ranged DMA_BUF_IOCTL_SYNC_PARTIAL \
                 (camera-encoder-peek-mmap) would close the gap, and does",
            ),
            Peek::Kernel => (
                "camera-encoder-peek",
                "camera to encoder; the kernel peeks at each frame's 4 KiB header in a ranged CPU bracket",
                "",
            ),
        };
        Workload {
            name,
            platform: platform.into(),
            partial: true,
            what,
            note,
            baseline: peek == Peek::Sync,
            source: src,
        }
    }

    /// Decoder to display, the CPU drawing an overlay into a small rectangle, one ranged
    /// write bracket per row.
    /// With `overwrite`, each bracket declares that it overwrites its row whole
    /// (`DMA_BUF_SYNC_OVERWRITE`, proposed); without, it is a plain ranged write bracket
    /// (the API before the flag, for comparison).
    fn decoder_overlay(&self, platform: &str, overwrite: bool) -> Workload {
        let size = self.frame_size();
        let (x, y, w, h) = self.overlay();
        let mut rows = String::new();
        let flag = if overwrite { " overwrite" } else { "" };
        for r in 0..h {
            let a = (y + r) * self.width + x;
            let b = a + w;
            let _ = write!(
                rows,
                "  cpu begin frame[{a}..{b}] write{flag}\n  cpu write frame[{a}..{b}] = 0xcc\n  cpu end frame write\n"
            );
        }
        let first = y * self.width + x;
        let src = format!(
            "platform {platform}
buffer frame size={size} heap=system
attach vdec frame
attach display frame
vmap frame
repeat {frames} {{
  map vdec frame from_device
  vdec write frame = frame
  unmap vdec frame
{rows}  map display frame to_device
  display read frame[0..4KiB] expect frame
  display read frame[{first}..{end}] expect 0xcc
  display read frame
  unmap display frame
}}
vunmap frame
",
            frames = self.frames,
            end = first + w
        );
        if overwrite {
            Workload {
                name: "decoder-display-overlay",
                platform: platform.into(),
                partial: true,
                what: "decoder to display; the CPU draws an overlay into a small rectangle, a ranged write bracket per row declared to overwrite it (DMA_BUF_SYNC_OVERWRITE)",
                note: "",
                baseline: false,
                source: src,
            }
        } else {
            Workload {
                name: "decoder-display-overlay-no-overwrite",
                platform: platform.into(),
                partial: true,
                what: "decoder-display-overlay with plain ranged write brackets, the API without the overwrite flag",
                note: "a write bracket that cannot say it overwrites its whole range makes Minimal invalidate \
                       the rows the decoder wrote before the CPU draws over them; the oracle sees that whole \
                       lines are overwritten and needs only the clean after. The overwrite flag \
                       (decoder-display-overlay) would close the gap, and does",
                baseline: true,
                source: src,
            }
        }
    }

    /// The GPU renders each frame; the display and the encoder (screen recording) keep
    /// the buffer mapped and read it inside device-side brackets; the CPU reads back the
    /// first 4 KiB.
    fn gpu_render(&self, platform: &str) -> Workload {
        let (gpu, second) = if platform == "x86-pcie" { ("dgpu", "nic") } else { ("gpu", "venc") };
        let size = self.frame_size();
        let src = format!(
            "platform {platform}
buffer frame size={size} heap=system
attach {gpu} frame
attach display frame
attach {second} frame
vmap frame
map display frame to_device
map {second} frame to_device
repeat {frames} {{
  map {gpu} frame from_device
  {gpu} write frame = frame
  unmap {gpu} frame
  cpu begin frame[0..4KiB] read
  cpu read frame[0..4KiB] expect frame
  cpu end frame read
  display begin frame
  display read frame expect frame
  display end frame
  {second} begin frame
  {second} read frame expect frame
  {second} end frame
}}
unmap display frame
unmap {second} frame
vunmap frame
",
            frames = self.frames
        );
        Workload {
            name: "gpu-render-two-importers",
            platform: platform.into(),
            partial: false,
            what: "GPU renders; the display and a second importer keep the frame mapped; the CPU reads back 4 KiB",
            note: "",
            baseline: false,
            source: src,
        }
    }

    /// An IIO ADC streams 4 KiB blocks through a ring that a USB gadget sends on; both
    /// keep their mappings and hand blocks over with device-side brackets.
    fn iio_usb(&self, platform: &str) -> Workload {
        let ring = 64;
        let mut blocks = String::new();
        for i in 0..ring / 4 {
            let (a, b) = (i * 4, i * 4 + 4);
            let r = format!("ring[{a}KiB..{b}KiB]");
            let _ = write!(
                blocks,
                "  iio begin {r}\n  iio write {r} = frame\n  iio end {r}\n  usb begin {r}\n  usb read {r} expect frame\n  usb end {r}\n"
            );
        }
        let src = format!(
            "platform {platform}
buffer ring size={ring}KiB heap=system
attach iio ring
attach usb ring
map iio ring from_device
map usb ring to_device
repeat {frames} {{
{blocks}}}
unmap iio ring
unmap usb ring
",
            frames = self.frames
        );
        let mixed = platform == "arm64-mixed";
        Workload {
            name: "iio-usb-stream",
            platform: platform.into(),
            partial: !mixed,
            what: if mixed {
                "IIO ADC (not coherent) streams 4 KiB blocks to a coherent USB gadget through a ring"
            } else {
                "IIO ADC streams 4 KiB blocks to a USB gadget through a ring; both keep their mappings"
            },
            note: if mixed {
                "the coherent gadget's snoops would hit CPU lines left stale by the ADC: every block needs \
                 an invalidate, which the oracle counts too, so Linux is only about twice the minimum here"
            } else {
                ""
            },
            baseline: false,
            source: src,
        }
    }

    /// The CPU fills whole frames that the display, keeping its mapping, scans out: a
    /// write-combined buffer (the uncached heap) against a cached one.
    fn cpu_fill(&self, platform: &str, wc: bool) -> Workload {
        let size = self.frame_size();
        let heap = if wc { "uncached" } else { "system" };
        let src = format!(
            "platform {platform}
buffer frame size={size} heap={heap}
attach display frame
vmap frame
map display frame to_device
repeat {frames} {{
  cpu begin frame write
  cpu write frame = frame
  cpu end frame write
  display begin frame
  display read frame expect frame
  display end frame
}}
unmap display frame
vunmap frame
",
            frames = self.frames
        );
        Workload {
            name: if wc { "cpu-fill-wc" } else { "cpu-fill-cached" },
            platform: platform.into(),
            partial: false,
            what: if wc {
                "the CPU fills whole frames of a write-combined buffer; the display scans them out"
            } else {
                "the CPU fills whole frames of a cached buffer; the display scans them out"
            },
            note: "",
            baseline: false,
            source: src,
        }
    }

    /// A 30-bit DMA engine keeps a 64 KiB block mapped (bounced through swiotlb) while the
    /// CPU updates a 512-byte header in it every frame.
    fn dma32_header(&self) -> Workload {
        let src = format!(
            "platform arm64-dma32
buffer blk size=64KiB heap=system
attach legacy-dma blk
vmap blk
cpu begin blk write
cpu write blk = 0x11
cpu end blk write
map legacy-dma blk to_device
repeat {frames} {{
  cpu begin blk[0..512] write
  cpu write blk[0..512] = frame
  cpu end blk write
  legacy-dma read blk[0..512] expect frame
  legacy-dma read blk[512..64KiB] expect 0x11
}}
unmap legacy-dma blk
vunmap blk
",
            frames = self.frames
        );
        Workload {
            name: "dma32-bounce-header",
            platform: "arm64-dma32".into(),
            partial: true,
            what: "a 30-bit DMA engine reads a bounced 64 KiB block whose 512-byte header the CPU updates every frame",
            note: "",
            baseline: false,
            source: src,
        }
    }
}

/// One pipeline of the suite.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Its name (unique per platform).
    pub name: &'static str,
    /// The platform preset it runs on.
    pub platform: String,
    /// Whether the pipeline touches only part of its buffers in some step (the target
    /// Linux/Minimal >= 10x applies).
    pub partial: bool,
    /// One line on what it does.
    pub what: &'static str,
    /// Why a target is not met, when it is not (empty otherwise).
    pub note: &'static str,
    /// A row of the API without the ranged or overwrite brackets, kept to show what they
    /// save (the "before" beside the "after"): not held to the targets.
    pub baseline: bool,
    /// The scenario's source text, generated for this pipeline on `platform`.
    pub source: String,
}

/// The maintenance of one policy (or the oracle) on one workload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cost {
    /// Maintenance operations and bounce copies.
    pub ops: u64,
    /// Bytes they covered.
    pub bytes: u64,
    /// Their cycles, from the platform's cost table.
    pub cycles: u64,
    /// Bytes of CPU-cache maintenance (clean, invalidate, clean+invalidate).
    pub cpu_bytes: u64,
    /// Bytes of device-cache maintenance (flush, invalidate).
    pub device_bytes: u64,
    /// Bytes copied to and from bounce buffers.
    pub bounce_bytes: u64,
}

/// The one-time costs of a workload, apart from the measured frames: allocation (the
/// heap zeroes the buffer and cleans it) and the warm-up frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Setup {
    /// Under `Linux`.
    pub linux: Cost,
    /// Under `Minimal`.
    pub minimal: Cost,
    /// What the oracle needed.
    pub oracle: Cost,
}

impl Cost {
    /// `self - earlier`, field by field (a longer run minus its prefix).
    pub fn minus(&self, earlier: &Cost) -> Cost {
        Cost {
            ops: self.ops.saturating_sub(earlier.ops),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            cycles: self.cycles.saturating_sub(earlier.cycles),
            cpu_bytes: self.cpu_bytes.saturating_sub(earlier.cpu_bytes),
            device_bytes: self.device_bytes.saturating_sub(earlier.device_bytes),
            bounce_bytes: self.bounce_bytes.saturating_sub(earlier.bounce_bytes),
        }
    }

    /// The maintenance in a run's counters.
    pub fn of(s: &Stats) -> Cost {
        Cost {
            ops: s.maintenance_ops(),
            bytes: s.maintenance_bytes(),
            cycles: s.maintenance_cycles(),
            cpu_bytes: s.clean.bytes + s.invalidate.bytes + s.clean_invalidate.bytes,
            device_bytes: s.device_flush.bytes + s.device_invalidate.bytes,
            bounce_bytes: s.bounce.bytes,
        }
    }
}

/// Sanitizer findings of each policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Findings {
    /// Under `Linux`.
    pub linux: usize,
    /// Under `Minimal`.
    pub minimal: usize,
}

/// The result of one workload.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadResult {
    /// The name of the workload measured ([`Workload::name`]).
    pub name: String,
    /// The preset it ran on.
    pub platform: String,
    /// Whether it is a partial-access workload.
    pub partial: bool,
    /// `Linux`'s maintenance.
    pub linux: Cost,
    /// `Minimal`'s maintenance.
    pub minimal: Cost,
    /// What the run truly needed (the oracle, on the `Minimal` run).
    pub oracle: Cost,
    // The three above are the measured frames only: the same workload with the warm-up
    // frames alone, subtracted.
    /// `linux.bytes / minimal.bytes`: 1.0 when both are 0, infinite (`null` in JSON) when
    /// only `minimal` is.
    pub linux_over_minimal: f64,
    /// `minimal.bytes / oracle.bytes`, the same way.
    pub minimal_over_oracle: f64,
    /// Sanitizer findings.
    pub findings: Findings,
    /// Cycles of the CPU's and devices' own accesses under `Minimal` (what a
    /// write-combined buffer costs instead of maintenance).
    pub access_cycles: u64,
    /// Bytes the oracle needed on the `Linux` run (the oracle does not depend on the
    /// policy: equal to `oracle.bytes`).
    pub oracle_bytes_linux_run: u64,
    /// The one-time costs, not in the figures above.
    pub setup: Setup,
    /// One line on the pipeline.
    pub what: String,
    /// Why a target is missed, when it is.
    pub note: String,
    /// A row of the API without the new brackets, for comparison: the targets skip it.
    pub baseline: bool,
}

/// A workload that could not run (a bug in the suite: its scenarios are generated).
#[derive(Debug, thiserror::Error)]
#[error("workload {name} on {platform}: {message}")]
pub struct BenchError {
    /// The name of the workload that could not run.
    pub name: String,
    /// The preset it was to run on.
    pub platform: String,
    /// What went wrong.
    pub message: String,
}

/// `a / b` for byte counts: 1.0 when both are 0, infinite when only `b` is.
pub fn ratio(a: u64, b: u64) -> f64 {
    match (a, b) {
        (0, 0) => 1.0,
        (_, 0) => f64::INFINITY,
        _ => a as f64 / b as f64,
    }
}

/// How the camera-encoder pipeline's CPU peeks at a frame's header.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peek {
    /// `dma_buf_begin_cpu_access_partial` in the kernel.
    Kernel,
    /// The mmap and `DMA_BUF_IOCTL_SYNC_PARTIAL` over the header.
    SyncPartial,
    /// The mmap and `DMA_BUF_IOCTL_SYNC` on the whole buffer.
    Sync,
}

/// Frames every pipeline runs before the measured ones: the allocation (the heap's
/// zeroing and its clean) and the first frame (cold caches) are setup, reported apart.
pub const WARMUP_FRAMES: u32 = 1;

/// One run of each policy with the oracle watching: (stats, needed, findings) per policy.
struct Runs {
    linux: (Stats, Stats, usize),
    minimal: (Stats, Stats, usize),
}

fn run_both(w: &Workload) -> Result<Runs, BenchError> {
    let err = |message: String| BenchError { name: w.name.into(), platform: w.platform.clone(), message };
    let file = format!("{}@{}.dmabuf", w.name, w.platform);
    let scenario = parse(&w.source, &file).map_err(|e| err(e.to_string()))?;
    let platform = Platform::preset(&w.platform).map_err(|e| err(e.to_string()))?;
    let one = |maintenance: MaintenancePolicy| {
        let oracle = Rc::new(RefCell::new(Oracle::new(&platform)));
        let cfg = RunConfig { maintenance, ..RunConfig::default() };
        let r = run_observed(&scenario, Path::new(&file), &w.source, &cfg, Box::new(oracle.clone()))
            .map_err(|e| err(e.to_string()))?;
        let needed = oracle.borrow().needed();
        Ok::<_, BenchError>((r.stats, needed, r.findings.len()))
    };
    Ok(Runs { linux: one(MaintenancePolicy::Linux)?, minimal: one(MaintenancePolicy::Minimal)? })
}

/// Runs one workload: its setup (the warm-up frames) and its setup plus the measured
/// frames, under both policies, with the oracle watching. `warmup` and `full` are the
/// same workload generated for [`WARMUP_FRAMES`] and for `WARMUP_FRAMES + frames`.
pub fn run_workload(warmup: &Workload, full: &Workload) -> Result<WorkloadResult, BenchError> {
    let (a, b) = (run_both(warmup)?, run_both(full)?);
    let cost = |x: &(Stats, Stats, usize), y: &(Stats, Stats, usize)| {
        (Cost::of(&y.0).minus(&Cost::of(&x.0)), Cost::of(&y.1).minus(&Cost::of(&x.1)))
    };
    let (linux, _) = cost(&a.linux, &b.linux);
    let (minimal, oracle) = cost(&a.minimal, &b.minimal);
    let (_, oracle_linux) = cost(&a.linux, &b.linux);
    let w = full;
    Ok(WorkloadResult {
        name: w.name.into(),
        platform: w.platform.clone(),
        partial: w.partial,
        linux,
        minimal,
        oracle,
        linux_over_minimal: ratio(linux.bytes, minimal.bytes),
        minimal_over_oracle: ratio(minimal.bytes, oracle.bytes),
        findings: Findings { linux: a.linux.2 + b.linux.2, minimal: a.minimal.2 + b.minimal.2 },
        access_cycles: b.minimal.0.access_cycles - a.minimal.0.access_cycles.min(b.minimal.0.access_cycles),
        oracle_bytes_linux_run: oracle_linux.bytes,
        setup: Setup { linux: Cost::of(&a.linux.0), minimal: Cost::of(&a.minimal.0), oracle: Cost::of(&a.minimal.1) },
        what: w.what.into(),
        note: w.note.into(),
        baseline: w.baseline,
    })
}

/// Runs every workload of the suite.
pub fn run_suite(suite: &Suite) -> Result<Vec<WorkloadResult>, BenchError> {
    let warm = Suite { frames: WARMUP_FRAMES, ..*suite };
    let full = Suite { frames: WARMUP_FRAMES + suite.frames, ..*suite };
    warm.workloads().iter().zip(full.workloads().iter()).map(|(a, b)| run_workload(a, b)).collect()
}

/// How far Minimal may be above the oracle.
pub const MINIMAL_OVER_ORACLE_MAX: f64 = 1.1;
/// How far Linux must be above Minimal on partial-access workloads.
pub const LINUX_OVER_MINIMAL_MIN: f64 = 10.0;

/// One of the issue's targets, checked on a set of results.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// The target in words, as the report prints it.
    pub target: String,
    /// Whether every workload it applies to meets it.
    pub met: bool,
    /// The workloads that miss it, as `name@platform`.
    pub missed: Vec<String>,
}

/// Whether every device of the platform snoops the CPU cache.
fn coherent_platform(name: &str) -> bool {
    Platform::preset(name).is_ok_and(|p| p.devices.iter().all(|d| d.coherent))
}

/// The targets: Minimal within 1.1x of the oracle everywhere, Linux at least 10x
/// Minimal on partial-access workloads (of non-coherent platforms), no CPU-cache
/// maintenance or bounce on coherent platforms (device caches are coherent with nothing
/// and are counted against the oracle like the rest), zero findings.
pub fn targets(results: &[WorkloadResult]) -> Vec<Target> {
    let id = |r: &WorkloadResult| format!("{}@{}", r.name, r.platform);
    let check = |target: &str, miss: &dyn Fn(&WorkloadResult) -> bool| {
        // A baseline row shows the API without the ranged or overwrite brackets: what it
        // misses is what they exist for.
        let missed: Vec<String> = results.iter().filter(|r| !r.baseline && miss(r)).map(id).collect();
        Target { target: target.into(), met: missed.is_empty(), missed }
    };
    vec![
        check("minimal within 1.1x of the oracle (bytes)", &|r| r.minimal_over_oracle > MINIMAL_OVER_ORACLE_MAX),
        check("setup (allocation and the warm-up frame): minimal within 1.1x of the oracle (bytes)", &|r| {
            ratio(r.setup.minimal.bytes, r.setup.oracle.bytes) > MINIMAL_OVER_ORACLE_MAX
        }),
        check("linux/minimal >= 10x on partial-access workloads (bytes)", &|r| {
            r.partial && !coherent_platform(&r.platform) && r.linux_over_minimal < LINUX_OVER_MINIMAL_MIN
        }),
        check("no CPU-cache maintenance or bounce on coherent platforms", &|r| {
            coherent_platform(&r.platform)
                && (r.minimal.cpu_bytes + r.minimal.bounce_bytes + r.oracle.cpu_bytes + r.oracle.bounce_bytes > 0
                    || r.minimal.device_bytes > r.oracle.device_bytes)
        }),
        check("zero sanitizer findings under both policies", &|r| r.findings.linux + r.findings.minimal > 0),
    ]
}

/// The JSON report: `{"workloads": [...], "targets": [...], "suite": {...}}`.
pub fn to_json(suite: &Suite, results: &[WorkloadResult]) -> serde_json::Value {
    serde_json::json!({
        "suite": { "frames": suite.frames, "width": suite.width, "height": suite.height, "chooser": "adversarial" },
        "workloads": results,
        "targets": targets(results),
    })
}

/// Bytes for people: `0`, `4.0K`, `3.0M`, `1.2G`.
fn human(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if b == 0 {
        "0".into()
    } else if f < K {
        format!("{b}B")
    } else if f < K * K {
        format!("{:.1}K", f / K)
    } else if f < K * K * K {
        format!("{:.1}M", f / K / K)
    } else {
        format!("{:.2}G", f / K / K / K)
    }
}

fn fmt_ratio(x: f64) -> String {
    if x.is_infinite() {
        "inf".into()
    } else if x >= 100.0 {
        format!("{x:.0}x")
    } else {
        format!("{x:.2}x")
    }
}

/// The text report: a table (bytes per policy and the oracle, operations, cycles,
/// ratios, bounce bytes, findings), the targets, and the notes on misses.
pub fn to_text(suite: &Suite, results: &[WorkloadResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} frames of {}x{} NV12 ({} bytes) per pipeline after {WARMUP_FRAMES} warm-up frame (setup excluded), \
         adversarial chooser; maintenance bytes / ops / Mcycles",
        suite.frames,
        suite.width,
        suite.height,
        suite.frame_size()
    );
    let _ = writeln!(
        s,
        "{:<26} {:<18} {:>22} {:>22} {:>22} {:>8} {:>7} {:>17} {:>5}",
        "workload", "platform", "linux", "minimal", "oracle", "lin/min", "min/orc", "bounce l/m/o", "find"
    );
    let cell = |c: &Cost| format!("{} {} {:.2}", human(c.bytes), c.ops, c.cycles as f64 / 1e6);
    for r in results {
        let _ = writeln!(
            s,
            "{:<26} {:<18} {:>22} {:>22} {:>22} {:>8} {:>7} {:>17} {:>5}",
            r.name,
            r.platform,
            cell(&r.linux),
            cell(&r.minimal),
            cell(&r.oracle),
            fmt_ratio(r.linux_over_minimal),
            fmt_ratio(r.minimal_over_oracle),
            format!(
                "{}/{}/{}",
                human(r.linux.bounce_bytes),
                human(r.minimal.bounce_bytes),
                human(r.oracle.bounce_bytes)
            ),
            format!("{}/{}", r.findings.linux, r.findings.minimal),
        );
    }
    let _ = writeln!(s, "\ntargets:");
    for t in targets(results) {
        let mark = if t.met { "met   " } else { "MISSED" };
        let missed = if t.missed.is_empty() { String::new() } else { format!(": {}", t.missed.join(", ")) };
        let _ = writeln!(s, "  {mark} {}{missed}", t.target);
    }
    let notes: Vec<&WorkloadResult> = results.iter().filter(|r| !r.note.is_empty()).collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\nnotes:");
        for r in notes {
            let _ = writeln!(s, "  {}@{}: {}", r.name, r.platform, r.note);
        }
    }
    s
}

/// A bar chart: one group per workload (Linux, Minimal, oracle bytes), on a log scale
/// whose floor is the smallest value (so bytes under 1 kB are bars, not the baseline).
pub fn to_svg(suite: &Suite, results: &[WorkloadResult]) -> String {
    crate::html::bench::bytes_chart(suite, results)
}
