//! One program, any backend: a producer paints frames into a dma-buf through a write
//! guard, hands them over with a sync file, and a consumer checks every byte through a
//! read guard.
//!
//! [`share_frames`] is generic over the `dmabuf::uapi` traits and knows nothing of fds or
//! ioctls. `main` runs it on the real kernel (the system heap under `/dev/dma_heap`); the
//! simulated framework implements the same traits, so running it on a simulated
//! non-coherent platform is one more call to `share_frames` with the simulated heaps.
//!
//! Run: `cargo run -p dmabuf-linux --example frame_share` on a machine with dma-buf heaps,
//! or `ci/kernel-tests.sh`, which runs it inside a booted kernel.

use std::error::Error;
use std::time::Duration;

use dmabuf::uapi::{CpuAccess, DmaBuf, FenceStatus, Heap, Heaps, Mapping, Readiness, SyncFile, SyncFlags, WaitStatus};

/// 320x240 pixels, 4 bytes each.
const WIDTH: usize = 320;
const HEIGHT: usize = 240;
const FRAME_BYTES: usize = WIDTH * HEIGHT * 4;

/// What one run did.
#[derive(Debug)]
struct Report {
    heap: String,
    frames: usize,
    bytes_checked: usize,
}

/// The pixel the producer paints at `i` of frame `n`.
fn pixel(n: usize, i: usize) -> u8 {
    (i.wrapping_mul(31) ^ n.wrapping_mul(97)) as u8
}

/// Produces and consumes `frames` frames in one buffer of the first heap named `system`
/// (or the first heap there is).
fn share_frames<H: Heaps>(heaps: &H, frames: usize) -> Result<Report, Box<dyn Error>> {
    let names = heaps.names()?;
    let name =
        names.iter().find(|n| n.as_str() == "system").or_else(|| names.first()).ok_or("no dma-buf heap at all")?;
    let heap = heaps.open(name)?;
    let buf = heap.allocate(FRAME_BYTES)?;
    buf.set_name("frame_share")?;
    let mut checked = 0;

    for n in 0..frames {
        // Producer: wait until nobody uses the buffer, then paint inside a write bracket.
        let idle = buf.poll(SyncFlags::Write, Some(Duration::from_secs(1)))?;
        if idle != (Readiness { readable: true, writable: true }) {
            return Err(format!("frame {n}: buffer still busy: {idle:?}").into());
        }
        {
            let mut map = buf.mmap()?;
            let mut w = map.write()?;
            for (i, px) in w.iter_mut().enumerate() {
                *px = pixel(n, i);
            }
            w.end()?; // SYNC_END now, so a failure is reported here
        }

        // Hand-off: the consumer waits for every writer of the buffer.
        let ready = buf.export_sync_file(SyncFlags::Read)?;
        if ready.wait(Some(Duration::from_secs(1)))? != WaitStatus::Signaled {
            return Err(format!("frame {n}: the producer's fence never signaled").into());
        }
        let info = ready.info()?;
        if info.status != FenceStatus::Signaled {
            return Err(format!("frame {n}: sync file in state {:?}", info.status).into());
        }

        // Consumer: read inside a read bracket and check every byte.
        let map = buf.mmap()?;
        let r = map.read()?;
        if let Some(i) = r.iter().enumerate().position(|(i, &b)| b != pixel(n, i)) {
            return Err(format!("frame {n}: byte {i} is {} instead of {}", r[i], pixel(n, i)).into());
        }
        checked += r.len();
    }
    Ok(Report { heap: heap.name().to_owned(), frames, bytes_checked: checked })
}

fn main() {
    let heaps = dmabuf_linux::Heaps::new();
    match share_frames(&heaps, 3) {
        Ok(r) => println!(
            "frame_share: linux backend, heap {:?}: {} frames, {} bytes checked: OK",
            r.heap, r.frames, r.bytes_checked
        ),
        Err(e) => {
            eprintln!("frame_share: linux backend: FAILED: {e}");
            std::process::exit(1);
        }
    }
}
