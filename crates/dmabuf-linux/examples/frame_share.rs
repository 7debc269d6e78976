//! One program, any backend: a producer paints frames into a dma-buf through a write
//! guard and hands each one to an importing device; the device's fences are checked
//! while its job runs, and the CPU reads every frame back through a read guard.
//!
//! The program, `share_frames` of crate `frame-share`, is generic over the user API's
//! traits (crate `dmabuf-uapi`) and knows nothing of fds or ioctls. This `main` runs it on
//! the real kernel: the system heap under `/dev/dma_heap`, and vgem as the importing device
//! (it imports the buffer, attaches and maps it in the kernel, and adds real fences; it
//! moves no bytes of its own, so only the CPU's bytes are checked).
//!
//! The same function runs on the simulated framework, with a simulated DMA master whose
//! bytes are checked too, guarded and unguarded: `cargo run -p dmabuf --example
//! frame_share_sim`, on any machine.
//!
//! Run: `cargo run -p dmabuf-linux --example frame_share` on a machine with dma-buf heaps
//! and vgem (`modprobe vgem`), or `ci/kernel-tests.sh`, which runs it inside a booted
//! kernel.

use dmabuf_linux::vgem::{GemHandle, Vgem, VgemFence};
use dmabuf_linux::{DmaBuf, Error};
use frame_share::{Importer, share_frames};

const FRAMES: usize = 3;

/// vgem as the importing device: a real DRM driver that imports the dma-buf (attach and
/// map in the kernel) and attaches real fences to its reservation object.
struct VgemImporter<'v> {
    vgem: &'v Vgem,
    /// One GEM handle per imported buffer (by inode): importing a buffer twice gives the
    /// same handle, which must be closed once.
    imports: Vec<(u64, GemHandle<'v>)>,
    /// Fences of the jobs in flight, signaled by `complete` (or on drop).
    pending: Vec<VgemFence<'v>>,
}

impl<'v> VgemImporter<'v> {
    fn new(vgem: &'v Vgem) -> Self {
        VgemImporter { vgem, imports: Vec::new(), pending: Vec::new() }
    }
}

impl Importer<DmaBuf> for VgemImporter<'_> {
    type Error = Error;

    fn name(&self) -> String {
        "vgem".into()
    }

    fn fence_driver(&self) -> String {
        "vgem".into()
    }

    fn start_read(&mut self, buf: &DmaBuf) -> Result<Option<Vec<u8>>, Error> {
        let ino = buf.inode();
        let pos = match self.imports.iter().position(|(i, _)| *i == ino) {
            Some(pos) => pos,
            None => {
                self.imports.push((ino, self.vgem.import(buf)?));
                self.imports.len() - 1
            }
        };
        let fence = self.vgem.attach_fence(&self.imports[pos].1, false)?;
        self.pending.push(fence);
        Ok(None)
    }

    fn complete(&mut self) -> Result<(), Error> {
        for fence in self.pending.drain(..) {
            fence.signal()?;
        }
        Ok(())
    }
}

fn main() {
    if std::env::args().len() > 1 {
        eprintln!(
            "usage: frame_share (no arguments; the simulated runs: cargo run -p dmabuf --example frame_share_sim)"
        );
        std::process::exit(2);
    }
    let heaps = dmabuf_linux::Heaps::new();
    let vgem = match Vgem::open() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("frame_share: linux backend: FAILED: {e}");
            std::process::exit(1);
        }
    };
    let mut importer = VgemImporter::new(&vgem);
    match share_frames(&heaps, &mut importer, FRAMES) {
        Ok(r) => println!(
            "frame_share: linux backend, heap {:?}, device {}: {} frames, {} device bytes and {} CPU bytes checked: OK",
            r.heap, r.device, r.frames, r.device_bytes_checked, r.cpu_bytes_checked
        ),
        Err(e) => {
            eprintln!("frame_share: linux backend: FAILED: {e}");
            std::process::exit(1);
        }
    }
}
