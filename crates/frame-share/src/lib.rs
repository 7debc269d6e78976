//! frame_share: one program, written once against the user API's traits (crate
//! `dmabuf-uapi`), that runs on every backend.
//!
//! A producer paints frames into a dma-buf through a write guard and hands each one to an
//! importing device; while the device's job runs, the buffer's readiness and its exported
//! sync files must show the device's read fence; once the job completes the CPU reads the
//! frame back through a read guard. Every byte the device read is checked, where the
//! backend can observe it.
//!
//! The program knows nothing of file descriptors or of the simulator. Its runners live
//! with their backends:
//! - `cargo run -p dmabuf --example frame_share_sim`: the simulated framework on simulated
//!   platforms, with and without the sync ioctl (a stale frame on a non-coherent platform
//!   without it);
//! - `cargo run -p dmabuf-linux --example frame_share`: a real kernel, with vgem as the
//!   importing device (`ci/kernel-tests.sh` runs it inside a booted kernel).
#![deny(missing_docs)]

use std::error::Error;
use std::fmt;
use std::time::Duration;

use dmabuf_uapi::{CpuAccess, DmaBuf, FenceStatus, Heap, Heaps, Mapping, Readiness, SyncFile, SyncFlags, WaitStatus};

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

    /// The device's name, as the [`Report`] and a [`StaleFrame`] print it.
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
    /// The importing device, by its [`Importer::name`].
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
    /// The device that read the stale bytes, by its [`Importer::name`].
    pub device: String,
    /// How many bytes differ.
    pub stale: usize,
    /// Bytes in the frame.
    pub total: usize,
    /// The offset in the frame of the first byte that differs.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_differ_from_one_another_and_from_zeroed_memory() {
        let differ = (0..FRAME_BYTES).filter(|&i| pixel(0, i) != pixel(1, i)).count();
        assert!(differ > FRAME_BYTES / 2, "consecutive frames share {} bytes", FRAME_BYTES - differ);
        assert!((0..FRAME_BYTES).any(|i| pixel(0, i) != 0), "a stale zeroed buffer would pass for frame 0");
    }

    #[test]
    fn a_stale_frame_says_which_device_and_byte() {
        let e =
            StaleFrame { frame: 2, device: "display".into(), stale: 7, total: 64, first: 3, seen: 0, painted: 0x5a };
        assert_eq!(
            e.to_string(),
            "frame 2: the display read stale data: 7 of 64 bytes differ from what the CPU painted (byte 3 is 0x00, painted 0x5a)"
        );
    }
}
