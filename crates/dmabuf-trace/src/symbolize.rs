//! Backtraces of raw return addresses turned into functions and source lines, after the
//! fact (the signal handler only records addresses).
//!
//! The interposer logs each process's loaded objects with their load bias (`module`
//! records, at start and after every `dlopen`); an address belongs to the object with
//! the highest bias at or below it, and `address - bias` is the address in that ELF file,
//! looked up in its DWARF line tables (with inlined frames) or, for a stripped object,
//! its symbol table.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Symbolizes addresses of the processes of one recording.
#[derive(Default)]
pub struct Symbolizer {
    /// Per process: load bias to object path.
    modules: HashMap<u32, BTreeMap<u64, PathBuf>>,
    loaders: HashMap<PathBuf, Option<addr2line::Loader>>,
}

impl Symbolizer {
    /// A symbolizer that knows no object yet.
    pub fn new() -> Symbolizer {
        Symbolizer::default()
    }

    /// Notes that process `pid` has `path` loaded with bias `base`.
    pub fn module(&mut self, pid: u32, base: u64, path: &str) {
        if path.is_empty() || path.starts_with("linux-vdso") || path.starts_with("linux-gate") {
            return;
        }
        self.modules.entry(pid).or_default().insert(base, PathBuf::from(path));
    }

    /// Notes that `child` starts with `parent`'s objects (a fork).
    pub fn inherit(&mut self, child: u32, parent: u32) {
        if let Some(m) = self.modules.get(&parent).cloned() {
            self.modules.entry(child).or_insert(m);
        }
    }

    /// One frame: `function (file:line)`, `function (object)`, or `0xADDR (object)`.
    /// `return_address` frames are looked up one byte earlier (inside the call).
    pub fn frame(&mut self, pid: u32, addr: u64, return_address: bool) -> String {
        self.frames(pid, addr, return_address).swap_remove(0)
    }

    /// The frames at one address, innermost first: the function the code belongs to
    /// and, when it was inlined, the functions it was inlined into.
    pub fn frames(&mut self, pid: u32, addr: u64, return_address: bool) -> Vec<String> {
        let Some((base, path)) =
            self.modules.get(&pid).and_then(|m| m.range(..=addr).next_back()).map(|(b, p)| (*b, p.clone()))
        else {
            return vec![format!("{addr:#x}")];
        };
        let probe = addr - base - u64::from(return_address && addr > base);
        let object = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let loader = self.loaders.entry(path.clone()).or_insert_with(|| addr2line::Loader::new(&path).ok());
        let Some(loader) = loader else {
            return vec![format!("{addr:#x} ({object})")];
        };
        let mut out = Vec::new();
        if let Ok(mut frames) = loader.find_frames(probe) {
            while let Ok(Some(f)) = frames.next() {
                let function = f.function.as_ref().and_then(|n| n.demangle().ok()).map(|n| n.into_owned());
                let place = f.location.as_ref().and_then(|l| Some(format!("{}:{}", short(l.file?), l.line?)));
                match (function, place) {
                    (Some(fun), Some(p)) => out.push(format!("{fun} ({p})")),
                    (Some(fun), None) => out.push(format!("{fun} ({object})")),
                    (None, Some(p)) => out.push(format!("{addr:#x} ({p})")),
                    (None, None) => {}
                }
            }
        }
        if out.is_empty() {
            out.push(match loader.find_symbol(probe) {
                Some(name) => format!("{} ({object})", demangle(name)),
                None => format!("{addr:#x} ({object})"),
            });
        }
        out
    }

    /// A whole backtrace, innermost first; frames of the interposer itself and of the
    /// signal trampoline are left out.
    pub fn backtrace(&mut self, pid: u32, addrs: &[u64]) -> Vec<String> {
        let mut out = Vec::new();
        for (i, &a) in addrs.iter().enumerate() {
            let in_interposer = self
                .modules
                .get(&pid)
                .and_then(|m| m.range(..=a).next_back())
                .is_some_and(|(_, p)| p.to_string_lossy().contains("libdmabuf_record"));
            if in_interposer {
                continue;
            }
            for f in self.frames(pid, a, i > 0) {
                if !f.starts_with("__restore_rt") {
                    out.push(f);
                }
            }
        }
        out
    }
}

fn short(file: &str) -> String {
    let p = Path::new(file);
    let parts: Vec<_> = p.components().rev().take(2).collect();
    parts.iter().rev().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

fn demangle(name: &str) -> String {
    addr2line::demangle_auto(name.into(), None).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_in_this_test_binary_names_its_function() {
        // The test binary itself, loaded at its own bias: find it from a function address.
        let exe = std::env::current_exe().unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let f = an_address_in_this_test_binary_names_its_function as *const () as u64;
        // The lowest mapping of the executable is its load bias for a PIE.
        let base = maps
            .lines()
            .filter(|l| l.ends_with(exe.to_str().unwrap()))
            .filter_map(|l| u64::from_str_radix(l.split('-').next()?, 16).ok())
            .min()
            .unwrap();
        let mut s = Symbolizer::new();
        s.module(1, base, exe.to_str().unwrap());
        let name = s.frame(1, f, false);
        assert!(name.contains("an_address_in_this_test_binary_names_its_function"), "{name}");
        assert!(name.contains("symbolize.rs:"), "{name}");
    }

    #[test]
    fn an_unknown_address_stays_an_address() {
        let mut s = Symbolizer::new();
        assert_eq!(s.frame(1, 0x1234, false), "0x1234");
        s.module(1, 0x1000, "/nonexistent/libx.so");
        assert_eq!(s.frame(1, 0x1234, false), "0x1234 (libx.so)");
    }
}
