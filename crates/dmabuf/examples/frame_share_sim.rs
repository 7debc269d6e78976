//! frame_share on the simulated framework: the program of crate `frame-share`, which
//! `cargo run -p dmabuf-linux --example frame_share` runs on a real kernel, here on
//! simulated platforms, with and without the sync ioctl.
//!
//! Run:
//! - `cargo run -p dmabuf --example frame_share_sim` runs the program guarded and
//!   unguarded on `arm64-noncoherent` and `x86-pcie`, and exits 0 when the outcome is the
//!   expected one: the unguarded run shows stale data on the non-coherent platform only;
//! - `cargo run -p dmabuf --example frame_share_sim -- PLATFORM [--unguarded] [--device NAME]`
//!   runs it once and exits 1 if the program failed.
//!
//! `cargo test -p dmabuf` runs its tests: the same program on five platform and device
//! pairs, each guarded and unguarded.

use std::error::Error;

use dmabuf::user::{self, SyncIoctls};
use dmabuf_sim::{Adversarial, Platform, Sim};
use frame_share::{Importer, Report, share_frames};

const FRAMES: usize = 3;

/// A simulated device as the program's importer: its read jobs return the bytes the
/// simulated DMA master read.
struct SimDevice(user::Device);

impl Importer<user::DmaBuf> for SimDevice {
    type Error = user::Error;

    fn name(&self) -> String {
        self.0.name().to_owned()
    }

    fn fence_driver(&self) -> String {
        self.0.name().to_owned()
    }

    fn start_read(&mut self, buf: &user::DmaBuf) -> Result<Option<Vec<u8>>, user::Error> {
        let len = buf.size();
        self.0.read(buf, 0..len).map(Some)
    }

    fn complete(&mut self) -> Result<(), user::Error> {
        self.0.complete()
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
    let mut dev = SimDevice(heaps.device(&device)?);
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

fn run(platform: &str, device: Option<&str>, mode: SyncIoctls) -> SimRun {
    match run_sim(platform, device, mode, FRAMES) {
        Ok(run) => {
            println!("{}", run.summary());
            run
        }
        Err(e) => {
            eprintln!("frame_share: cannot run on {platform}: {e}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let mut platform = None;
    let mut device = None;
    let mut mode = SyncIoctls::Issue;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--unguarded" => mode = SyncIoctls::Omit,
            "--device" => device = args.next(),
            _ if !a.starts_with('-') && platform.is_none() => platform = Some(a),
            _ => {
                eprintln!("usage: frame_share_sim [PLATFORM [--unguarded] [--device NAME]]");
                std::process::exit(2);
            }
        }
    }

    if let Some(p) = platform {
        let r = run(&p, device.as_deref(), mode);
        std::process::exit(i32::from(r.result.is_err()));
    }

    // The matrix: the bracket matters on the non-coherent platform only.
    let mut as_expected = true;
    for (platform, stale_without_bracket) in [("arm64-noncoherent", true), ("x86-pcie", false)] {
        for mode in [SyncIoctls::Issue, SyncIoctls::Omit] {
            let r = run(platform, device.as_deref(), mode);
            let want_failure = stale_without_bracket && mode == SyncIoctls::Omit;
            as_expected &= r.result.is_err() == want_failure;
        }
    }
    if as_expected {
        println!("frame_share: as expected: without the sync ioctl the frames go stale on arm64-noncoherent only");
    } else {
        println!("frame_share: UNEXPECTED outcome (see above)");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only difference between a correct and a stale run is the bracket, and only on
    /// a non-coherent platform.
    #[test]
    fn frame_share_goes_stale_without_the_bracket_on_non_coherent_platforms_only() {
        const FRAMES: usize = 2;
        for (preset, device, coherent) in [
            ("arm64-noncoherent", None, false),
            ("arm64-noncoherent", Some("gpu"), false),
            ("riscv-noncoherent", None, false),
            ("x86-pcie", None, true),
            ("x86-pcie", Some("dgpu"), true),
        ] {
            for mode in [SyncIoctls::Issue, SyncIoctls::Omit] {
                let run = run_sim(preset, device, mode, FRAMES).expect("run");
                let what = format!("{preset} {device:?} {mode:?}: {}", run.summary());
                match (&run.result, mode == SyncIoctls::Omit && !coherent) {
                    (Ok(r), false) => {
                        assert_eq!(r.frames, FRAMES, "{what}");
                        assert_eq!(r.device_bytes_checked, FRAMES * frame_share::FRAME_BYTES, "{what}");
                        assert_eq!(r.cpu_bytes_checked, FRAMES * frame_share::FRAME_BYTES, "{what}");
                    }
                    (Err(e), true) => {
                        assert!(e.starts_with("frame 0: the ") && e.contains("read stale data"), "{what}")
                    }
                    _ => panic!("unexpected outcome: {what}"),
                }
                match mode {
                    // Per frame: the painting write guard and the read-back read guard.
                    SyncIoctls::Issue => {
                        assert_eq!(run.sync_calls, 4 * FRAMES, "{what}");
                        assert_eq!(run.unbracketed, 0, "{what}");
                    }
                    SyncIoctls::Omit => {
                        assert_eq!(run.sync_calls, 0, "{what}");
                        assert!(run.unbracketed > 0, "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn an_unknown_platform_or_device_is_an_error_not_a_run() {
        assert!(run_sim("no-such-platform", None, SyncIoctls::Issue, 1).is_err());
        assert!(run_sim("arm64-noncoherent", Some("npu"), SyncIoctls::Issue, 1).is_err());
    }
}
