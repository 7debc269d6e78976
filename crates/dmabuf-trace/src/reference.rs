//! The kernel as the reference: the DMA API calls a real kernel made while a program
//! ran (its `dma` trace events: map, unmap and sync of scatter-gather tables, with
//! direction and length; and its `dma_fence` events), next to the calls the simulated
//! framework's upstream maintenance makes for the program's trace, record by record.
//!
//! The kernel's side is ftrace's text (`/sys/kernel/tracing/trace`) with `trace_clock`
//! set to `mono`, the interposer's clock, so each kernel event falls inside the recorded
//! call that caused it (or after the last record of its process: the exit). The
//! simulated side is the trace run with `--maintenance linux --attach-policy linux` on
//! `arm64-noncoherent`: each step that makes DMA API calls (`map`, `unmap`, the sync
//! ioctl's brackets over every mapped attachment, as the system heap's
//! `begin_cpu_access`/`end_cpu_access` do) lists them, and an [`Observer`] of the
//! simulated hardware checks that the cache maintenance each line made is what those
//! calls do on arm64 (clean for `map` and `sync_for_device`, invalidate for `unmap` and
//! `sync_for_cpu` unless `TO_DEVICE`), so a framework that made other calls than it says
//! would show.
//!
//! On x86 a coherent device's syncs return before their trace point (`dma_dev_need_sync`
//! is false), so the guest boots with `swiotlb=force`: every mapping bounces, and
//! `swiotlb_tbl_map_single` clears the device's `dma_skip_sync`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::path::Path;
use std::rc::Rc;

use dmabuf::{AttachPolicy, MaintenancePolicy};
use dmabuf_check::runner::{Hooks, RunConfig, run_hooked};
use dmabuf_check::scenario::parse;
use dmabuf_sim::{Agent, Event, MaintOp, Observer};

use crate::convert::Converted;
use crate::log::Record;

/// A DMA API call or fence event, as compared.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    /// `dma_map_sg`, `dma_unmap_sg`, `dma_sync_sg_for_cpu`, `dma_sync_sg_for_device`,
    /// `dma_map_page`, ..., `dma_fence_init`, `dma_fence_signaled`.
    pub name: String,
    /// The device (the board's name on the simulated side, mapped to the kernel's).
    pub device: String,
    /// `BIDIRECTIONAL`, `TO_DEVICE`, `FROM_DEVICE`; empty for fences.
    pub dir: String,
    /// Bytes (the scatter-gather table's total); 0 where the event gives none (unmap).
    pub len: u64,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.device)?;
        if !self.dir.is_empty() {
            write!(f, " {}", self.dir)?;
        }
        if self.len > 0 {
            write!(f, " {}", self.len)?;
        }
        Ok(())
    }
}

/// One event of the kernel's trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelEvent {
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub t: u64,
    /// The task that was running.
    pub pid: u32,
    /// What it was.
    pub call: Call,
}

/// Reads ftrace's text: the `dma` and `dma_fence` events (others and comments skipped).
pub fn parse_kernel_trace(text: &str) -> Vec<KernelEvent> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        // TASK-PID [CPU] FLAGS SECONDS: EVENT: DETAILS
        let Some(ts) = words.iter().position(|w| w.ends_with(':') && w.trim_end_matches(':').parse::<f64>().is_ok())
        else {
            continue;
        };
        let Some(event) = words.get(ts + 1).map(|w| w.trim_end_matches(':')) else { continue };
        let secs: f64 = words[ts].trim_end_matches(':').parse().unwrap_or(0.0);
        let pid = words[..ts]
            .iter()
            .rev()
            .find_map(|w| w.rsplit_once('-').and_then(|(_, p)| p.parse::<u32>().ok()))
            .unwrap_or(0);
        let rest = &words[ts + 2..];
        let field = |k: &str| rest.iter().find_map(|w| w.strip_prefix(k)).map(str::to_string);
        let call = match event {
            "dma_fence_init" | "dma_fence_signaled" => Call {
                name: event.to_string(),
                device: field("driver=").unwrap_or_default(),
                dir: String::new(),
                len: 0,
            },
            e if e.starts_with("dma_")
                && !e.starts_with("dma_fence")
                && !e.starts_with("dma_alloc")
                && !e.starts_with("dma_free") =>
            {
                let len = field("sizes={")
                    .map(|s| {
                        s.trim_end_matches('}')
                            .split(',')
                            .filter_map(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).ok())
                            .sum()
                    })
                    .or_else(|| field("size=").and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()))
                    .unwrap_or(0);
                Call {
                    name: e.to_string(),
                    device: rest.first().map(|d| d.to_string()).unwrap_or_default(),
                    dir: field("dir=").unwrap_or_default(),
                    len,
                }
            }
            _ => continue,
        };
        out.push(KernelEvent { t: (secs * 1e9).round() as u64, pid, call });
    }
    out
}

/// Counts the CPU cache maintenance of each scenario line.
#[derive(Default)]
struct Maintenance {
    line: Rc<Cell<u32>>,
    /// Line: (bytes cleaned, bytes invalidated).
    per_line: Rc<RefCell<BTreeMap<u32, (u64, u64)>>>,
}

impl Observer for Maintenance {
    fn event(&mut self, ev: &Event<'_>) {
        if let Event::Maintenance { op, agent: Agent::Cpu, range } = ev {
            let mut m = self.per_line.borrow_mut();
            let e = m.entry(self.line.get()).or_default();
            match op {
                MaintOp::Clean => e.0 += range.len,
                MaintOp::Invalidate => e.1 += range.len,
                MaintOp::CleanInvalidate => {
                    e.0 += range.len;
                    e.1 += range.len;
                }
                _ => {}
            }
        }
    }

    fn wants_provenance(&self) -> bool {
        false
    }
}

fn dir_of(word: &str) -> &'static str {
    match word {
        "to_device" | "write" => "TO_DEVICE",
        "from_device" | "read" => "FROM_DEVICE",
        _ => "BIDIRECTIONAL",
    }
}

/// The calls the upstream framework makes for each line of a converted trace, with the
/// maintenance the simulator saw on each line.
pub struct Simulated {
    /// Line (1-based): its calls.
    pub calls: BTreeMap<u32, Vec<Call>>,
    /// Lines whose observed maintenance is not what their calls do on arm64:
    /// (line, what was expected, what was seen).
    pub disagreements: Vec<(u32, String, String)>,
}

/// Runs the trace under upstream's maintenance and lists its calls per line. `kernel_name`
/// maps a board device to the kernel's device name (`gpu` to `vgem`).
pub fn simulate(text: &str, kernel_name: &dyn Fn(&str) -> String) -> Result<Simulated, String> {
    let scenario = parse(text, "trace.dmabuf").map_err(|e| format!("{e:?}"))?;
    let obs = Maintenance::default();
    let (line, per_line) = (obs.line.clone(), obs.per_line.clone());
    let cfg = RunConfig {
        chooser: "never".into(),
        attach: AttachPolicy::Linux,
        maintenance: MaintenancePolicy::Linux,
        platform: Some("arm64-noncoherent".into()),
        max_memory: None,
    };
    let mut hooks = Hooks::new(Box::new(dmabuf_sim::Never));
    hooks.line = Some(line);
    hooks.observer = Some(Box::new(obs));
    run_hooked(&scenario, Path::new("trace.dmabuf"), text, &cfg, hooks).map_err(|e| e.to_string())?;

    let mut sizes: HashMap<String, u64> = HashMap::new();
    // Buffer: its mapped attachments in attach order, with their direction.
    let mut mapped: HashMap<String, Vec<(String, &'static str)>> = HashMap::new();
    let mut job_fences: HashMap<String, bool> = HashMap::new();
    let mut calls: BTreeMap<u32, Vec<Call>> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let n = i as u32 + 1;
        let code = l.split('#').next().unwrap_or("");
        let w: Vec<&str> = code.split_whitespace().collect();
        let mut here = Vec::new();
        let call = |name: &str, dev: &str, dir: &str, len: u64| Call {
            name: name.into(),
            device: kernel_name(dev),
            dir: dir.into(),
            len,
        };
        match w.as_slice() {
            ["buffer", b, size, ..] => {
                let v = size.trim_start_matches("size=").parse().unwrap_or(0);
                sizes.insert(b.to_string(), v);
            }
            ["map", d, b, dir] => {
                let len = sizes.get(*b).copied().unwrap_or(0);
                here.push(call("dma_map_sg", d, dir_of(dir), len));
                mapped.entry(b.to_string()).or_default().push((d.to_string(), dir_of(dir)));
            }
            ["unmap", d, b] => {
                let list = mapped.entry(b.to_string()).or_default();
                if let Some(at) = list.iter().position(|(dev, _)| dev == d) {
                    let (_, dir) = list.remove(at);
                    here.push(call("dma_unmap_sg", d, dir, 0));
                }
            }
            ["sync", b, edge @ ("start" | "end"), acc] => {
                let len = sizes.get(*b).copied().unwrap_or(0);
                let name = if *edge == "start" { "dma_sync_sg_for_cpu" } else { "dma_sync_sg_for_device" };
                for (d, _) in mapped.get(*b).cloned().unwrap_or_default() {
                    here.push(call(name, &d, dir_of(acc), len));
                }
            }
            ["fence", f] => {
                here.push(call("dma_fence_init", "sw_sync", "", 0));
                job_fences.insert(f.to_string(), false);
            }
            ["signal", f] => {
                let pending = job_fences.insert(f.to_string(), true) == Some(false);
                here.extend(pending.then(|| call("dma_fence_signaled", "sw_sync", "", 0)));
            }
            [d, "write" | "read", .., "signal", f] if f.starts_with('g') => {
                here.push(call("dma_fence_init", d, "", 0));
                job_fences.insert(format!("{d}:{f}"), false);
            }
            ["wait", fences @ ..] => {
                for f in fences.iter().map(|f| f.trim_end_matches(',')) {
                    if let Some(key) = job_fences.keys().find(|k| k.ends_with(&format!(":{f}"))).cloned()
                        && job_fences.insert(key.clone(), true) == Some(false)
                    {
                        here.push(call("dma_fence_signaled", key.split(':').next().unwrap_or(""), "", 0));
                    }
                }
            }
            _ => {}
        }
        // What these calls do on arm64 for a non-coherent device, against what was seen.
        let (mut clean, mut inval) = (0, 0);
        for c in &here {
            match (c.name.as_str(), c.dir.as_str()) {
                ("dma_map_sg" | "dma_sync_sg_for_device", _) => clean += c.len,
                ("dma_unmap_sg", "FROM_DEVICE" | "BIDIRECTIONAL") => {
                    inval += w.get(2).and_then(|b| sizes.get(*b)).copied().unwrap_or(0)
                }
                ("dma_sync_sg_for_cpu", "FROM_DEVICE" | "BIDIRECTIONAL") => inval += c.len,
                _ => {}
            }
        }
        let seen = per_line.borrow().get(&n).copied().unwrap_or((0, 0));
        // A new buffer: the simulated heap cleans its zeroed pages, with no DMA API call
        // (Linux's system heap zeroes them through the page allocator and calls nothing).
        let allocation = w.first() == Some(&"buffer");
        if seen != (clean, inval) && !allocation {
            disagreements.push((
                n,
                format!("clean {clean} B, invalidate {inval} B"),
                format!("clean {} B, invalidate {} B", seen.0, seen.1),
            ));
        }
        if !here.is_empty() {
            calls.insert(n, here);
        }
    }
    Ok(Simulated { calls, disagreements })
}

/// One record's calls on both sides.
#[derive(Debug)]
pub struct Row {
    /// The record (index into the records), or None for kernel events no record explains.
    pub record: Option<usize>,
    /// The record's verb.
    pub verb: String,
    /// What the record was (`sync ino=3 flags=0x1`, ...).
    pub what: String,
    /// The kernel's calls, in order.
    pub kernel: Vec<Call>,
    /// The simulated framework's calls, in order.
    pub simulated: Vec<Call>,
}

impl Row {
    /// Same calls, directions and lengths, as multisets (the order of the syncs of two
    /// attachments is the attachment list's, which the two sides keep differently).
    pub fn same(&self) -> bool {
        let mut a = self.kernel.clone();
        let mut b = self.simulated.clone();
        a.sort();
        b.sort();
        a == b
    }

    /// Why a known difference is one, if it is.
    pub fn explained(&self) -> Option<&'static str> {
        let extra: Vec<&Call> = self.kernel.iter().filter(|c| !self.simulated.contains(c)).collect();
        let missing = self.simulated.iter().any(|c| !self.kernel.contains(c));
        // sync_file_merge -> dma_fence_unwrap_merge: with every fence signalled, the
        // result is a new signalled stub (dma_fence_allocate_private_stub).
        if self.verb == "merge" && !missing && extra.iter().all(|c| c.device == "stub") {
            return Some(
                "merging sync files whose fences have all signalled makes the kernel a new, signalled stub fence \
                 (dma_fence_unwrap_merge -> dma_fence_allocate_private_stub); the trace's merge is the union of \
                 the two files' fences and makes none",
            );
        }
        None
    }
}

/// The comparison of one program.
pub struct Comparison {
    /// Record by record, only records with calls on either side.
    pub rows: Vec<Row>,
    /// Lines whose simulated maintenance is not what their calls do.
    pub disagreements: Vec<(u32, String, String)>,
}

impl Comparison {
    /// Calls on both sides that match, rows that differ, and of those the explained.
    pub fn counts(&self) -> (usize, usize, usize) {
        let same = self.rows.iter().filter(|r| r.same()).map(|r| r.kernel.len()).sum();
        let differ = self.rows.iter().filter(|r| !r.same()).count();
        let explained = self.rows.iter().filter(|r| !r.same() && r.explained().is_some()).count();
        (same, differ, explained)
    }

    /// Differences without a known cause (rows and lines of maintenance).
    pub fn unexplained(&self) -> usize {
        let (_, differ, explained) = self.counts();
        differ - explained + self.disagreements.len()
    }

    /// The comparison as text, one block per record.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for r in &self.rows {
            let mark = match (r.same(), r.explained()) {
                (true, _) => "same",
                (false, Some(_)) => "explained",
                (false, None) => "DIFFERENT",
            };
            let _ = writeln!(s, "{mark:<9} {}", r.what);
            if let (false, Some(why)) = (r.same(), r.explained()) {
                let _ = writeln!(s, "          why: {why}");
            }
            let n = r.kernel.len().max(r.simulated.len());
            for i in 0..n {
                let k = r.kernel.get(i).map(|c| c.to_string()).unwrap_or_default();
                let m = r.simulated.get(i).map(|c| c.to_string()).unwrap_or_default();
                let _ = writeln!(s, "          kernel: {k:<50} simulated: {m}");
            }
        }
        for (line, want, seen) in &self.disagreements {
            let _ = writeln!(
                s,
                "DIFFERENT trace line {line}: the calls do {want} on arm64, the simulated framework did {seen}"
            );
        }
        let (same, differ, explained) = self.counts();
        let _ = writeln!(
            s,
            "kernel reference: {same} calls the same, {differ} record(s) differ ({explained} explained), {} line(s) of maintenance differ; {} unexplained",
            self.disagreements.len(),
            self.unexplained()
        );
        s
    }
}

/// Compares a recording's kernel trace with its converted scenario under upstream.
pub fn compare(
    records: &[Record],
    conv: &Converted,
    kernel: &[KernelEvent],
    kernel_name: &dyn Fn(&str) -> String,
) -> Result<Comparison, String> {
    let sim = simulate(&conv.text, kernel_name)?;
    // Kernel events to records: inside a call's [t, end] of the same thread (ftrace's
    // pid is the task's, a thread id), else after the last record of its thread or
    // process before it (the exit's cleanup).
    let mut by_record: BTreeMap<Option<usize>, Vec<Call>> = BTreeMap::new();
    for e in kernel {
        let inside = records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.tid == e.pid && r.t <= e.t && r.num("end").is_ok_and(|end| e.t <= end))
            .map(|(i, _)| i)
            .next_back();
        let after = || {
            records
                .iter()
                .enumerate()
                .filter(|(_, r)| (r.tid == e.pid || r.pid == e.pid) && r.t <= e.t)
                .map(|(i, _)| i)
                .next_back()
        };
        by_record.entry(inside.or_else(after)).or_default().push(e.call.clone());
    }
    let mut sim_by_record: BTreeMap<Option<usize>, Vec<Call>> = BTreeMap::new();
    for (line, calls) in sim.calls {
        let origin = conv.origins.get(line as usize - 1).copied().flatten();
        sim_by_record.entry(origin).or_default().extend(calls);
    }
    let mut keys: Vec<Option<usize>> = by_record.keys().chain(sim_by_record.keys()).copied().collect();
    keys.sort();
    keys.dedup();
    let rows = keys
        .into_iter()
        .map(|k| Row {
            record: k,
            verb: k.map(|i| records[i].verb.clone()).unwrap_or_default(),
            what: match k {
                Some(i) => {
                    let r = &records[i];
                    let fields: Vec<String> = r
                        .fields
                        .iter()
                        .filter(|(k, _)| !matches!(k.as_str(), "end" | "ret" | "bt"))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    format!("record {} (pid {} {} {})", r.line, r.pid, r.verb, fields.join(" "))
                }
                None => {
                    "no record: kernel events before the program's first record, or simulated calls of no record".into()
                }
            },
            kernel: by_record.remove(&k).unwrap_or_default(),
            simulated: sim_by_record.remove(&k).unwrap_or_default(),
        })
        .collect();
    Ok(Comparison { rows, disagreements: sim.disagreements })
}

/// The kernel's trace while a program runs: tracefs's `dma` and `dma_fence` events on
/// the `mono` clock. Needs root and tracefs (mounted at `/sys/kernel/tracing`).
pub struct KernelTrace {
    dir: std::path::PathBuf,
}

impl KernelTrace {
    /// Clears the trace buffer, sets the clock and enables the events.
    pub fn start() -> std::io::Result<KernelTrace> {
        let dir = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|d| d.join("events/dma").is_dir())
            .ok_or_else(|| {
                std::io::Error::other("no tracefs with the dma events (Linux 6.12 or later, root, tracefs mounted)")
            })?;
        std::fs::write(dir.join("trace_clock"), "mono")?;
        std::fs::write(dir.join("buffer_size_kb"), "16384")?;
        std::fs::write(dir.join("trace"), "")?;
        std::fs::write(dir.join("events/dma/enable"), "1")?;
        std::fs::write(dir.join("events/dma_fence/enable"), "1")?;
        Ok(KernelTrace { dir })
    }

    /// Disables the events and returns the trace's text.
    pub fn stop(self) -> std::io::Result<String> {
        std::fs::write(self.dir.join("events/dma/enable"), "0")?;
        std::fs::write(self.dir.join("events/dma_fence/enable"), "0")?;
        std::fs::read_to_string(self.dir.join("trace"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ftrace_lines_parse() {
        let t = "# tracer: nop\n unbracketed-rea-190     [001] .....    13.215562: dma_map_sg: vgem dir=BIDIRECTIONAL nents=1/1 ents=1/1 dma_addrs={0x7b600000} sizes={0x10000,0x1000} phys_addrs={0x33c0000} attrs=\n unbracketed-rea-190     [000] d..1.    13.283509: dma_fence_signaled: driver=vgem timeline=unbound context=1 seqno=1\n kworker/0:1-12 [000] .....  1.0: sched_switch: x\n";
        let ev = parse_kernel_trace(t);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].pid, 190);
        assert_eq!(ev[0].t, 13_215_562_000);
        assert_eq!(ev[0].call.to_string(), "dma_map_sg vgem BIDIRECTIONAL 69632");
        assert_eq!(ev[1].call.to_string(), "dma_fence_signaled vgem");
    }
}
