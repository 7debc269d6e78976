//! What the integration tests share.

use std::path::{Path, PathBuf};

/// Every litmus test under `scenarios/litmus/`, sorted.
pub fn litmus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/litmus");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dmabuf"))
        .collect();
    v.sort();
    v
}
