//! The frame_share program, written once against the `dmabuf::uapi` traits and run on
//! two backends: the simulated framework (`dmabuf::user`, any machine, any simulated
//! platform) and the real kernel (`dmabuf-linux`).
//!
//! A producer paints frames into a dma-buf through a write guard and hands each one to an
//! importing device; while the device's job runs, the buffer's readiness and its exported
//! sync files must show the device's read fence; once the job completes the CPU reads the
//! frame back through a read guard. Every byte the device read is checked, where the
//! backend can observe it.
//!
//! This file is included (`#[path]`) by `crates/dmabuf/examples/frame_share_sim.rs`,
//! `crates/dmabuf-linux/examples/frame_share.rs` and `crates/dmabuf/tests/uapi_sim.rs`;
//! it depends only on crate `dmabuf`, which both crates can reach.
#![allow(dead_code)]

use std::error::Error;
use std::fmt;
use std::time::Duration;

use dmabuf::uapi::{CpuAccess, DmaBuf, FenceStatus, Heap, Heaps, Mapping, Readiness, SyncFile, SyncFlags, WaitStatus};
use dmabuf::user::{self, SyncIoctls};
use dmabuf_sim::{Adversarial, Platform, Sim};

/// 320x240 pixels, 4 bytes each.
pub const WIDTH: usize = 320;
/// Frame height in pixels.
pub const HEIGHT: usize = 240;
/// Bytes per frame.
pub const FRAME_BYTES: usize = WIDTH * HEIGHT * 4;

const NOW: Option<Duration> = Some(Duration::ZERO);
const SECOND: Option<Duration> = Some(Duration::from_secs(1));

/// The pixel the producer paints at `i` of frame `n`.
pub fn pixel(n: usize, i: usize) -> u8 {
    (i.wrapping_mul(31) ^ n.wrapping_mul(97) ^ 0x5a) as u8
}

/// The device the frames are handed to, as its driver drives it: it imports the buffer
/// and reads it in jobs fenced through the buffer's reservation object.
pub trait Importer<B: DmaBuf> {
    /// The backend's error type.
    type Error: Error + Send + Sync + 'static;

    /// The device's name.
    fn name(&self) -> String;

    /// The driver name the device's fences carry (`SYNC_IOC_FILE_INFO`'s `driver_name`).
    fn fence_driver(&self) -> String;

    /// Starts a job in which the device reads the whole buffer: it imports the buffer if
    /// needed, waits for the buffer's writers, and adds its read fence, which stays
    /// unsignaled until [`Importer::complete`]. Returns the bytes the device read, or
    /// `None` where the backend's device moves no bytes the program can see (vgem).
    fn start_read(&mut self, buf: &B) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Completes the jobs in flight: their fences signal.
    fn complete(&mut self) -> Result<(), Self::Error>;
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The heap the buffer came from.
    pub heap: String,
    /// The importing device.
    pub device: String,
    /// Frames handed over.
    pub frames: usize,
    /// Bytes the device read and the program checked.
    pub device_bytes_checked: usize,
    /// Bytes the CPU read back and checked.
    pub cpu_bytes_checked: usize,
}

/// The device read something other than the frame the CPU painted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleFrame {
    /// Which frame.
    pub frame: usize,
    /// The device.
    pub device: String,
    /// How many bytes differ.
    pub stale: usize,
    /// Bytes in the frame.
    pub total: usize,
    /// The first byte that differs.
    pub first: usize,
    /// What the device read there.
    pub seen: u8,
    /// What the CPU painted there.
    pub painted: u8,
}

impl fmt::Display for StaleFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frame {}: the {} read stale data: {} of {} bytes differ from what the CPU painted \
             (byte {} is {:#04x}, painted {:#04x})",
            self.frame, self.device, self.stale, self.total, self.first, self.seen, self.painted
        )
    }
}

impl Error for StaleFrame {}

/// The heap frames come from: `system`, or the first heap there is.
fn pick_heap<H: Heaps>(heaps: &H) -> Result<H::Heap, Box<dyn Error>> {
    let names = heaps.names()?;
    let name =
        names.iter().find(|n| n.as_str() == "system").or_else(|| names.first()).ok_or("no dma-buf heap at all")?;
    Ok(heaps.open(name)?)
}

/// Paints `frames` frames into one buffer and hands each to `device`; checks the fences
/// while the device's job runs, the bytes the device read, and the bytes the CPU reads
/// back.
pub fn share_frames<H, D>(heaps: &H, device: &mut D, frames: usize) -> Result<Report, Box<dyn Error>>
where
    H: Heaps,
    D: Importer<<H::Heap as Heap>::Buffer>,
{
    let heap = pick_heap(heaps)?;
    let buf = heap.allocate(FRAME_BYTES)?;
    buf.set_name("frame_share")?;
    let (mut device_checked, mut cpu_checked) = (0, 0);

    for n in 0..frames {
        // Producer: wait until nobody uses the buffer, then paint inside a write bracket.
        let idle = buf.poll(SyncFlags::Write, SECOND)?;
        if idle != (Readiness { readable: true, writable: true }) {
            return Err(format!("frame {n}: buffer still busy: {idle:?}").into());
        }
        {
            let mut map = buf.mmap()?;
            let mut w = map.write_range(0..FRAME_BYTES)?;
            for (i, px) in w.iter_mut().enumerate() {
                *px = pixel(n, i);
            }
            w.end()?; // SYNC_END now, so a failure is reported here
        }

        // Hand-over: the device's job reads the frame.
        let seen = device.start_read(&buf)?;

        // While the job runs its read fence holds back writers, not readers.
        let busy = buf.poll(SyncFlags::ReadWrite, NOW)?;
        if busy != (Readiness { readable: true, writable: false }) {
            return Err(format!("frame {n}: while the {} reads, poll says {busy:?}", device.name()).into());
        }
        let for_writer = buf.export_sync_file(SyncFlags::Write)?;
        let info = for_writer.info()?;
        let driver = device.fence_driver();
        if info.status != FenceStatus::Active
            || !info.fences.iter().any(|f| f.driver_name == driver && f.status == FenceStatus::Active)
        {
            return Err(
                format!("frame {n}: a writer's sync file lacks the {driver} job's active fence: {info:?}").into()
            );
        }
        let for_reader = buf.export_sync_file(SyncFlags::Read)?;
        if for_reader.wait(NOW)? != WaitStatus::Signaled {
            return Err(format!("frame {n}: a reader must not wait for another reader").into());
        }

        if let Some(seen) = seen {
            let stale: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] != pixel(n, i)).collect();
            if let Some(&first) = stale.first() {
                return Err(Box::new(StaleFrame {
                    frame: n,
                    device: device.name(),
                    stale: stale.len(),
                    total: seen.len(),
                    first,
                    seen: seen[first],
                    painted: pixel(n, first),
                }));
            }
            device_checked += seen.len();
        }

        // The job completes: its fence signals, and the merged sync file with it.
        device.complete()?;
        if for_writer.wait(SECOND)? != WaitStatus::Signaled {
            return Err(format!("frame {n}: the {} job's fence never signaled", device.name()).into());
        }
        let both = for_writer.merge("frame_share", &for_reader)?;
        let info = both.info()?;
        if info.status != FenceStatus::Signaled || info.name != "frame_share" {
            return Err(format!("frame {n}: merged sync file: {info:?}").into());
        }

        // The CPU reads the frame back inside a read bracket.
        let map = buf.mmap()?;
        let r = map.read()?;
        if let Some(i) = (0..r.len()).find(|&i| r[i] != pixel(n, i)) {
            return Err(
                format!("frame {n}: the CPU read byte {i} as {:#04x} instead of {:#04x}", r[i], pixel(n, i)).into()
            );
        }
        cpu_checked += r.len();
        r.end()?;
    }
    Ok(Report {
        heap: heap.name().to_owned(),
        device: device.name(),
        frames,
        device_bytes_checked: device_checked,
        cpu_bytes_checked: cpu_checked,
    })
}

/// The simulated device as the program's importer: its read jobs return the bytes the
/// simulated DMA master read.
impl Importer<user::DmaBuf> for user::Device {
    type Error = user::Error;

    fn name(&self) -> String {
        user::Device::name(self).to_owned()
    }

    fn fence_driver(&self) -> String {
        user::Device::name(self).to_owned()
    }

    fn start_read(&mut self, buf: &user::DmaBuf) -> Result<Option<Vec<u8>>, user::Error> {
        let len = buf.size();
        self.read(buf, 0..len).map(Some)
    }

    fn complete(&mut self) -> Result<(), user::Error> {
        user::Device::complete(self)
    }
}

/// One run of the program on a simulated platform.
#[derive(Debug)]
pub struct SimRun {
    /// The platform.
    pub platform: String,
    /// Whether the guards issued the sync ioctl.
    pub sync_ioctls: SyncIoctls,
    /// The program's verdict: its report, or why it failed.
    pub result: Result<Report, String>,
    /// `DMA_BUF_IOCTL_SYNC` calls issued.
    pub sync_calls: usize,
    /// Accesses the framework reported outside any bracket.
    pub unbracketed: usize,
    /// Cache maintenance operations the hardware performed.
    pub maintenance_ops: u64,
}

impl SimRun {
    /// One line for people.
    pub fn summary(&self) -> String {
        let mode = match self.sync_ioctls {
            SyncIoctls::Issue => "guarded  ",
            SyncIoctls::Omit => "unguarded",
        };
        let verdict = match &self.result {
            Ok(r) => format!(
                "OK: heap {:?}, device {}, {} frames, {} device bytes and {} CPU bytes checked",
                r.heap, r.device, r.frames, r.device_bytes_checked, r.cpu_bytes_checked
            ),
            Err(e) => format!("FAILED: {e}"),
        };
        format!(
            "frame_share: simulated {:<18} {mode} | {} sync ioctls, {} unbracketed accesses, {} maintenance ops | {verdict}",
            self.platform, self.sync_calls, self.unbracketed, self.maintenance_ops
        )
    }
}

/// The device frames go to on a simulated platform: `display` when there is one.
pub fn default_sim_device(platform: &Platform) -> Option<String> {
    let names: Vec<&str> = platform.devices.iter().map(|d| d.name.as_str()).collect();
    ["display", "gpu", "dgpu"].iter().find(|n| names.contains(n)).or(names.first()).map(|n| (*n).to_owned())
}

/// Runs the program on simulated `platform` (a preset name or a TOML file) with the
/// adversarial hardware, handing frames to `device` (default: [`default_sim_device`]).
pub fn run_sim(
    platform: &str,
    device: Option<&str>,
    sync_ioctls: SyncIoctls,
    frames: usize,
) -> Result<SimRun, Box<dyn Error>> {
    let platform = Platform::load(platform)?;
    let device = match device {
        Some(d) => d.to_owned(),
        None => default_sim_device(&platform).ok_or("the platform has no device")?,
    };
    let name = platform.name.clone();
    let heaps = user::Heaps::on(Sim::builder(platform).chooser(Adversarial).build()).with_sync_ioctls(sync_ioctls);
    let mut dev = heaps.device(&device)?;
    let result = share_frames(&heaps, &mut dev, frames).map_err(|e| e.to_string());
    drop(dev);
    let sync_calls = heaps
        .ioctls()
        .iter()
        .filter(|c| matches!(c.op, user::Op::DmaBufIoctlSyncStart | user::Op::DmaBufIoctlSyncEnd))
        .count();
    let unbracketed =
        heaps.reports().iter().filter(|r| matches!(r, dmabuf::Report::AccessOutsideBracket { .. })).count();
    let maintenance_ops = heaps.system().stats().maintenance_ops();
    Ok(SimRun { platform: name, sync_ioctls, result, sync_calls, unbracketed, maintenance_ops })
}
