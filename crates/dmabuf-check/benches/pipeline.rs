//! The checker's speed on a long pipeline: 600 frames of 1080p NV12 from the video decoder,
//! a CPU peek at each frame's header through the mmap and the sync ioctl, and the display
//! scanning the frame out, on `arm64-noncoherent`, with the sanitizer watching every byte.
//!
//! ```text
//! cargo bench -p dmabuf-check --bench pipeline            # 600 frames
//! FRAMES=60 cargo bench -p dmabuf-check --bench pipeline  # a quick look
//! ```
//!
//! Prints frames per second and simulated bytes per second (bytes the simulated agents
//! read and wrote) for both maintenance policies, measured in the same run.

use std::path::Path;
use std::time::Instant;

use dmabuf::MaintenancePolicy;
use dmabuf_check::runner::{RunConfig, run};
use dmabuf_check::scenario::parse;

/// 1920 x 1080 luma plus 2x2-subsampled chroma.
const NV12_1080P: u64 = 1920 * 1080 * 3 / 2;
const HEADER: u64 = 4096;

fn scenario(frames: u64) -> String {
    format!(
        "platform arm64-noncoherent
buffer frame size={NV12_1080P} heap=system
attach vdec frame
attach display frame
mmap frame
repeat {frames} {{
  map vdec frame from_device
  vdec write frame = frame signal decoded
  wait decoded
  unmap vdec frame
  sync frame start read
  cpu read frame[0..{HEADER}] expect frame
  sync frame end read
  map display frame to_device
  display read frame expect frame
  unmap display frame
}}
munmap frame
"
    )
}

fn main() {
    let frames: u64 = std::env::var("FRAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let src = scenario(frames);
    let parsed = match parse(&src, "pipeline-1080p.dmabuf") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e:?}");
            std::process::exit(2);
        }
    };
    println!("{frames} frames of 1080p NV12 ({NV12_1080P} bytes), decoder -> CPU header peek -> display");
    println!(
        "{:<10} {:>10} {:>12} {:>14} {:>10} {:>14}",
        "policy", "wall ms", "frames/s", "sim MB/s", "findings", "maint. bytes"
    );
    for (name, policy) in [("minimal", MaintenancePolicy::Minimal), ("linux", MaintenancePolicy::Linux)] {
        let cfg = RunConfig { maintenance: policy, ..RunConfig::default() };
        let t = Instant::now();
        let r = match run(&parsed, Path::new("pipeline-1080p.dmabuf"), &src, &cfg) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e:?}");
                std::process::exit(2);
            }
        };
        let secs = t.elapsed().as_secs_f64();
        let st = &r.stats;
        let moved = st.cpu_read_bytes + st.cpu_write_bytes + st.device_read_bytes + st.device_write_bytes;
        let maint = r.stats.clean.bytes + r.stats.invalidate.bytes + r.stats.clean_invalidate.bytes;
        println!(
            "{name:<10} {:>10.1} {:>12.1} {:>14.1} {:>10} {:>14}",
            secs * 1e3,
            frames as f64 / secs,
            moved as f64 / secs / 1e6,
            r.findings.len(),
            maint
        );
    }
}
