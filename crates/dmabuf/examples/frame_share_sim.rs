//! frame_share on the simulated framework: the same program that
//! `cargo run -p dmabuf-linux --example frame_share` runs on a real kernel (see
//! `shared/frame_share.rs`), here on simulated platforms, with and without the sync ioctl.
//!
//! Run:
//! - `cargo run -p dmabuf --example frame_share_sim` runs the program guarded and
//!   unguarded on `arm64-noncoherent` and `x86-pcie`, and exits 0 when the outcome is the
//!   expected one: the unguarded run shows stale data on the non-coherent platform only;
//! - `cargo run -p dmabuf --example frame_share_sim -- PLATFORM [--unguarded] [--device NAME]`
//!   runs it once and exits 1 if the program failed.

#[path = "shared/frame_share.rs"]
mod frame_share;

use dmabuf::user::SyncIoctls;
use frame_share::{SimRun, run_sim};

const FRAMES: usize = 3;

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
