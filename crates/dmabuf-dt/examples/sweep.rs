//! Imports every DTB under a directory (`ci/board-dtbs.sh` prints one) and prints the
//! count, the wall time and each failure with its reason; exits 1 if any import panicked.
//! `cargo run --release -p dmabuf-dt --example sweep -- DIR`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn dtbs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            dtbs(&p, out);
        } else if p.extension().is_some_and(|x| x == "dtb") {
            out.push(p);
        }
    }
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: sweep DIR");
        std::process::exit(2);
    };
    let mut files = Vec::new();
    dtbs(Path::new(&dir), &mut files);
    files.sort();
    let start = Instant::now();
    let (mut ok, mut panics) = (0, 0);
    let mut failed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut assumed = 0;
    for f in &files {
        match std::panic::catch_unwind(|| dmabuf_dt::import_path(f)) {
            Ok(Ok(imp)) => {
                ok += 1;
                if !imp.not_described.is_empty() {
                    assumed += 1;
                }
            }
            Ok(Err(e)) => {
                let reason = e.to_string().rsplit(": ").next().unwrap_or_default().to_string();
                failed.entry(reason).or_default().push(f.strip_prefix(&dir).unwrap_or(f).display().to_string());
            }
            Err(_) => {
                panics += 1;
                eprintln!("PANIC: {}", f.display());
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sweep: {} DTBs, {ok} imported ({assumed} with facts assumed or not described), {} refused, {panics} panics, {secs:.2} s",
        files.len(),
        failed.values().map(Vec::len).sum::<usize>()
    );
    for (reason, list) in &failed {
        println!("  {} refused: {reason}: {}", list.len(), list.join(" "));
    }
    std::process::exit(i32::from(panics > 0 || files.is_empty()));
}
