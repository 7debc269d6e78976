//! Shared helpers of the device tests. These tests need a kernel with the system heap,
//! udmabuf and vgem; they are `#[ignore]`d so that a machine without them does not report
//! them as passed, and `ci/kernel-tests.sh` runs them in a booted kernel with
//! `--include-ignored`.
#![allow(dead_code)]

use dmabuf_linux::vgem::Vgem;
use dmabuf_linux::{Heap, Heaps};

/// Why the device tests are ignored by default.
pub const NEEDS: &str = "needs /dev/dma_heap, /dev/udmabuf and vgem: run ci/kernel-tests.sh";

pub fn system_heap() -> Heap {
    Heaps::new().open("system").unwrap_or_else(|e| panic!("{e} ({NEEDS})"))
}

pub fn vgem() -> Vgem {
    Vgem::open().unwrap_or_else(|e| panic!("{e} ({NEEDS})"))
}

/// The number of fds open in this process (`/proc/self/fd`, less the one reading it).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count() - 1
}
