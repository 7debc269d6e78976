//! A recording turned into a scenario: what the program did, step by step, in the
//! language `dmabuf check` runs.
//!
//! | recorded | scenario |
//! |---|---|
//! | a dma-buf first seen (heap, udmabuf, V4L2 `EXPBUF`, PRIME export, received) | `buffer bufN size=... heap=...` (a V4L2 export is the device's CMA memory, another export system memory) |
//! | `mmap`, `munmap` (the last one) | `mmap bufN`, `munmap bufN` |
//! | `DMA_BUF_IOCTL_SYNC` | `sync bufN start|end read|write|rw` (other flags raw: `flags=N`) |
//! | pages touched in a bracket | `cpu read|write bufN[a..b]`, the thread in a comment |
//! | an access outside a bracket | the access, with the misuse and its backtrace in comments |
//! | `EXPORT_SYNC_FILE`, `IMPORT_SYNC_FILE`, merge, a poll that returned ready | `export`, `import`, `wait` |
//! | sw_sync fence and increment | `fence fN`, `signal fN` |
//! | PRIME import into a device | `attach DEV bufN`, `map DEV bufN bidirectional` (as `drm_gem_prime_import` maps at import) |
//! | a vgem fence attached, signalled | `DEV write|read bufN ... signal gN`, `wait gN` |
//! | V4L2 `QBUF`, `DQBUF` | `map DEV bufN from_device|to_device`, a device write (capture) or read (output) signalling `vN`; `wait vN`, `unmap DEV bufN` |
//! | anything else | a comment |
//!
//! Devices are named by [`Agents`]: which of the platform's devices stands for vgem, a
//! V4L2 capture queue, an output queue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use crate::log::{LogError, MisuseRun, Record};
use crate::symbolize::Symbolizer;

/// Which platform device stands for each kind of device the program used.
#[derive(Clone, Debug)]
pub struct Agents {
    /// A DRM device (vgem, or any other PRIME importer).
    pub drm: String,
    /// A V4L2 capture queue (the device writes the buffers).
    pub capture: String,
    /// A V4L2 output queue (the device reads the buffers).
    pub output: String,
}

impl Default for Agents {
    fn default() -> Self {
        Agents { drm: "gpu".into(), capture: "isp".into(), output: "venc".into() }
    }
}

/// How to write the scenario.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `platform` line's preset.
    pub platform: String,
    /// The devices.
    pub agents: Agents,
    /// The command that was recorded, for the header.
    pub command: String,
}

/// What the conversion found, beside the scenario.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Processes recorded.
    pub processes: usize,
    /// Buffers declared.
    pub buffers: usize,
    /// Misuse the interposer saw (accesses outside a bracket, writes in a READ bracket,
    /// END without START), page runs counted once.
    pub misuse: usize,
    /// Programs executed without the interposer (not recorded).
    pub unrecorded_execs: usize,
    /// Dma-buf mappings the interposer found at exit without having seen them made.
    pub unseen_maps: u64,
}

/// A V4L2 buffer's plane: (device, queue type, index, plane).
type V4l2Plane = (u64, u64, u64, u64);

struct Buf {
    name: String,
    size: u64,
    mmaps: u32,
    /// Devices attached, with their current mapping direction (None: attached only).
    attached: BTreeMap<String, Option<&'static str>>,
}

#[derive(Default)]
struct State {
    out: String,
    bufs: HashMap<u64, Buf>,
    next_buf: usize,
    next_fence: usize,
    /// Device id: (kind, path, the process that opened it).
    devices: HashMap<u64, (String, String, u32)>,
    /// Sync file id: the scenario fences it stands for.
    syncs: HashMap<u64, Vec<String>>,
    /// sw_sync timeline: (value reached, pending (point, fence)).
    timelines: HashMap<u64, (u64, Vec<(u64, String)>)>,
    /// (DRM device, GEM handle): buffer.
    handles: HashMap<(u64, u64), u64>,
    /// (DRM device, vgem fence): scenario fence.
    vgem_fences: HashMap<(u64, u64), String>,
    /// A V4L2 buffer's plane: buffer.
    v4l2_bufs: HashMap<V4l2Plane, u64>,
    /// Queued V4L2 buffers' planes: (fence, buffer, agent).
    queued: BTreeMap<V4l2Plane, (String, u64, String)>,
    pids: HashSet<u32>,
    summary: Summary,
    /// The last misuse run written.
    last_misuse: Option<MisuseRun>,
    /// A misuse run's access step, still growing.
    pending_access: Option<(String, u64, u64, bool)>,
    opaque: Option<(String, usize)>,
    /// The record being converted (an index into the records).
    current: Option<usize>,
    /// For each line written, the record it came from.
    origins: Vec<Option<usize>>,
}

/// Writes the scenario of a recording. `sym` symbolizes the backtraces.
pub fn to_scenario(records: &[Record], opts: &Options, sym: &mut Symbolizer) -> Result<(String, Summary), LogError> {
    let c = convert(records, opts, sym)?;
    Ok((c.text, c.summary))
}

/// A recording converted.
pub struct Converted {
    /// The scenario.
    pub text: String,
    /// What the conversion found.
    pub summary: Summary,
    /// For each line of the scenario (index 0 is line 1), the index of the record it
    /// came from, if any.
    pub origins: Vec<Option<usize>>,
}

/// [`to_scenario`], also saying which record each line of the scenario came from.
pub fn convert(records: &[Record], opts: &Options, sym: &mut Symbolizer) -> Result<Converted, LogError> {
    let mut s = State::default();
    for r in records {
        if r.verb == "module" {
            sym.module(r.pid, r.num("base")?, r.get("path").unwrap_or(""));
        }
    }
    for (i, r) in records.iter().enumerate() {
        s.current = Some(i);
        s.record(r, opts, sym)?;
    }
    s.flush_access();
    s.flush_opaque();
    s.current = None;
    // What was still queued when the program ended: the kernel stops streaming on close.
    for (_, (fence, ino, agent)) in std::mem::take(&mut s.queued) {
        let name = s.bufs[&ino].name.clone();
        s.line(&format!("wait {fence}"), "still queued at exit: the kernel's streamoff");
        s.line(&format!("unmap {agent} {name}"), "");
        if let Some(b) = s.bufs.get_mut(&ino) {
            b.attached.insert(agent, None);
        }
    }
    s.summary.processes = s.pids.len();
    s.summary.buffers = s.bufs.len();
    let mut head = String::new();
    let _ = writeln!(head, "# Recorded by `dmabuf record` from: {}", opts.command);
    let _ = writeln!(
        head,
        "# {} process(es), {} buffer(s), {} misuse seen by the interposer. Check it on a board with",
        s.summary.processes, s.summary.buffers, s.summary.misuse
    );
    let _ = writeln!(
        head,
        "# `dmabuf check --platform BOARD FILE`; devices: vgem/DRM = {}, V4L2 capture = {}, output = {}.",
        opts.agents.drm, opts.agents.capture, opts.agents.output
    );
    if s.summary.unrecorded_execs > 0 {
        let _ = writeln!(
            head,
            "# WARNING: {} program(s) were executed without the interposer and are not recorded.",
            s.summary.unrecorded_execs
        );
    }
    if s.summary.unseen_maps > 0 {
        let _ = writeln!(
            head,
            "# WARNING: {} dma-buf mapping(s) were made without libc (raw system calls): their accesses are not recorded.",
            s.summary.unseen_maps
        );
    }
    let _ = writeln!(head, "platform {}", opts.platform);
    let mut origins = vec![None; head.lines().count()];
    origins.extend(s.origins);
    head.push_str(&s.out);
    if s.bufs.is_empty() {
        head.push_str("# the program used no dma-buf\n");
    }
    Ok(Converted { text: head, summary: s.summary, origins })
}

fn dir_word(flags: u64) -> Option<&'static str> {
    match flags & 3 {
        1 => Some("read"),
        2 => Some("write"),
        3 => Some("rw"),
        _ => None,
    }
}

impl State {
    fn line(&mut self, step: &str, comment: &str) {
        self.flush_opaque();
        if comment.is_empty() {
            let _ = writeln!(self.out, "{step}");
        } else if step.is_empty() {
            let _ = writeln!(self.out, "# {comment}");
        } else {
            let _ = writeln!(self.out, "{step:<40} # {comment}");
        }
        self.origins.push(self.current);
    }

    fn flush_opaque(&mut self) {
        if let Some((what, n)) = self.opaque.take() {
            let times = if n > 1 { format!(" ({n} times)") } else { String::new() };
            let _ = writeln!(self.out, "# {what}{times}");
            self.origins.push(None);
        }
    }

    fn flush_access(&mut self) {
        if let Some((name, start, end, write)) = self.pending_access.take() {
            let step = if write {
                format!("cpu write {name}[{start:#x}..{end:#x}] = 0x5a")
            } else {
                format!("cpu read {name}[{start:#x}..{end:#x}]")
            };
            self.line(&step, "");
        }
    }

    fn fence(&mut self, prefix: &str) -> String {
        self.next_fence += 1;
        format!("{prefix}{}", self.next_fence)
    }

    fn buf_name(&self, ino: u64) -> Option<String> {
        self.bufs.get(&ino).map(|b| b.name.clone())
    }

    /// Attaches `agent` to buffer `ino` if it is not, and maps it for `dir` (unmapping
    /// a mapping for another direction first).
    fn map(&mut self, agent: &str, ino: u64, dir: &'static str, why: &str) {
        let Some(b) = self.bufs.get(&ino) else { return };
        let name = b.name.clone();
        match b.attached.get(agent) {
            None => self.line(&format!("attach {agent} {name}"), why),
            Some(Some(d)) if *d == dir => return,
            Some(Some(_)) => self.line(&format!("unmap {agent} {name}"), ""),
            Some(None) => {}
        }
        self.line(&format!("map {agent} {name} {dir}"), "");
        if let Some(b) = self.bufs.get_mut(&ino) {
            b.attached.insert(agent.to_string(), Some(dir));
        }
    }

    fn record(&mut self, r: &Record, opts: &Options, sym: &mut Symbolizer) -> Result<(), LogError> {
        if r.verb != "misuse" {
            self.flush_access();
            if r.verb != "touch" {
                self.last_misuse = None;
            }
        }
        self.pids.insert(r.pid);
        match r.verb.as_str() {
            "module" => {}
            "hello" => {
                let ppid = r.num("ppid")? as u32;
                let exe = r.get("exe").unwrap_or("?");
                if self.pids.contains(&ppid) {
                    sym.inherit(r.pid, ppid);
                    self.line("", &format!("process {} ({exe}), started by process {ppid}", r.pid));
                } else {
                    self.line("", &format!("process {} ({exe})", r.pid));
                }
            }
            "open" => {
                let dev = r.num("dev")?;
                let kind = r.get("kind").unwrap_or("").to_string();
                let path = r.get("path").unwrap_or("").to_string();
                let driver = r.get("driver").unwrap_or("");
                let what = if driver.is_empty() { path.clone() } else { format!("{path} ({driver})") };
                self.line("", &format!("process {} opened {what}", r.pid));
                self.devices.insert(dev, (kind, path, r.pid));
            }
            "dmabuf" => {
                let ino = r.num("ino")?;
                if self.bufs.contains_key(&ino) {
                    return Ok(());
                }
                let size = r.num("size")?;
                let from = r.get("from").unwrap_or("");
                let exp = r.get("exp").unwrap_or("");
                let dev = r.num("dev").unwrap_or(0);
                let source = match from {
                    "heap" => {
                        let heap = self.devices.get(&dev).map(|d| d.1.trim_start_matches("/dev/dma_heap/").to_string());
                        match heap.as_deref() {
                            Some("system") | None => "heap=system".to_string(),
                            Some("system-uncached") => "heap=uncached".to_string(),
                            Some(h) => {
                                format!("heap={}", if h.contains("cma") || h == "reserved" { "cma" } else { "system" })
                            }
                        }
                    }
                    "udmabuf" => "udmabuf".to_string(),
                    // A V4L2 driver's own buffers are memory its device reaches: on a
                    // board without an IOMMU, vb2-dma-contig's contiguous CMA memory.
                    "expbuf" => "heap=cma".to_string(),
                    _ => "heap=system".to_string(),
                };
                self.next_buf += 1;
                let name = format!("buf{}", self.next_buf);
                if size == 0 {
                    self.line("", &format!("{name}: a dma-buf of size 0 (inode {ino}) is left out"));
                    return Ok(());
                }
                let why = match from {
                    "heap" | "udmabuf" => format!("inode {ino}, exporter {exp}"),
                    "expbuf" => {
                        format!("inode {ino}, V4L2 EXPBUF, exporter {exp}: modelled as the device's CMA memory")
                    }
                    _ => format!("inode {ino}, from {from}, exporter {exp}: modelled as system memory"),
                };
                self.line(&format!("buffer {name} size={size} {source}"), &why);
                self.bufs.insert(ino, Buf { name, size, mmaps: 0, attached: BTreeMap::new() });
            }
            "mmap" => {
                let ino = r.num("ino")?;
                if let Some(b) = self.bufs.get_mut(&ino) {
                    b.mmaps += 1;
                    if b.mmaps == 1 {
                        let name = b.name.clone();
                        let tracked = r.num("tracked").unwrap_or(1) == 1;
                        let c = if tracked { String::new() } else { "too many mappings: accesses not tracked".into() };
                        self.line(&format!("mmap {name}"), &c);
                    }
                }
            }
            "munmap" => {
                let ino = r.num("ino")?;
                if let Some(b) = self.bufs.get_mut(&ino) {
                    b.mmaps = b.mmaps.saturating_sub(1);
                    if b.mmaps == 0 {
                        let name = b.name.clone();
                        self.line(&format!("munmap {name}"), "");
                    }
                }
            }
            "sync" => {
                let ino = r.num("ino")?;
                let flags = r.num("flags")?;
                let ret = r.int("ret")?;
                let Some(name) = self.buf_name(ino) else { return Ok(()) };
                let step = match (flags & !7, flags & 4 != 0, dir_word(flags)) {
                    (0, end, Some(d)) => format!("sync {name} {} {d}", if end { "end" } else { "start" }),
                    _ => format!("sync {name} flags={flags:#x}"),
                };
                let c = if ret < 0 {
                    format!("thread {}: the kernel refused it ({ret})", r.tid)
                } else {
                    format!("thread {}", r.tid)
                };
                self.line(&step, &c);
            }
            "set_name" => {
                let ino = r.num("ino")?;
                if let Some(name) = self.buf_name(ino) {
                    let label = r.get("name").unwrap_or("").replace('\\', "\\\\").replace('"', "\\\"");
                    self.line(&format!("set_name {name} \"{label}\""), "");
                }
            }
            "touch" => {
                let ino = r.num("ino")?;
                let (off, len) = (r.num("off")?, r.num("len")?);
                let Some(b) = self.bufs.get(&ino) else { return Ok(()) };
                let name = b.name.clone();
                let end = (off + len).min(b.size);
                if off >= end {
                    return Ok(());
                }
                let c = format!("thread {}", r.num("thread")?);
                if r.num("r")? == 1 {
                    self.line(&format!("cpu read {name}[{off:#x}..{end:#x}]"), &c);
                }
                if r.num("w")? == 1 {
                    self.line(&format!("cpu write {name}[{off:#x}..{end:#x}] = 0x5a"), &c);
                }
            }
            "misuse" => self.misuse(r, sym)?,
            "export" => {
                let ino = r.num("ino")?;
                let Some(name) = self.buf_name(ino) else { return Ok(()) };
                if r.int("ret")? < 0 {
                    return Ok(());
                }
                let access = if r.num("flags")? & 2 != 0 { "write" } else { "read" };
                let f = self.fence("x");
                self.line(&format!("export {name} {access} as {f}"), &format!("thread {}", r.tid));
                self.syncs.insert(r.num("sync")?, vec![f]);
            }
            "import" => {
                let ino = r.num("ino")?;
                let Some(name) = self.buf_name(ino) else { return Ok(()) };
                let access = if r.num("flags")? & 2 != 0 { "write" } else { "read" };
                let fences = self.syncs.get(&r.num("sync")?).cloned().unwrap_or_default();
                if fences.is_empty() {
                    self.line("", &format!("import of a sync file the recording does not know into {name}"));
                }
                for f in fences {
                    self.line(&format!("import {f} into {name} {access}"), "");
                }
            }
            "merge" => {
                let mut all = self.syncs.get(&r.num("a")?).cloned().unwrap_or_default();
                all.extend(self.syncs.get(&r.num("b")?).cloned().unwrap_or_default());
                self.syncs.insert(r.num("sync")?, all);
            }
            "sw_fence" => {
                if r.int("ret")? < 0 {
                    return Ok(());
                }
                let f = self.fence("f");
                let (tl, value) = (r.num("tl")?, r.num("value")?);
                let reached = self.timelines.get(&tl).map_or(0, |t| t.0);
                self.line(&format!("fence {f}"), &format!("sw_sync point {value}"));
                if value <= reached {
                    self.line(&format!("signal {f}"), "already reached");
                } else {
                    self.timelines.entry(tl).or_default().1.push((value, f.clone()));
                }
                self.syncs.insert(r.num("sync")?, vec![f]);
            }
            "sw_inc" => {
                let (tl, by) = (r.num("tl")?, r.num("by")?);
                let t = self.timelines.entry(tl).or_default();
                t.0 = t.0.saturating_add(by);
                let reached = t.0;
                let (done, pending): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut t.1).into_iter().partition(|(v, _)| *v <= reached);
                t.1 = pending;
                for (_, f) in done {
                    self.line(&format!("signal {f}"), &format!("sw_sync timeline at {reached}"));
                }
            }
            "poll" => {
                let revents = r.num("revents")?;
                let id = r.num("id")?;
                if revents & 0x5 == 0 {
                    return Ok(());
                }
                match r.get("kind") {
                    Some("sync_file") => {
                        let fences = self.syncs.get(&id).cloned().unwrap_or_default();
                        if !fences.is_empty() {
                            self.line(
                                &format!("wait {}", fences.join(", ")),
                                &format!("thread {} polled the sync file", r.tid),
                            );
                        }
                    }
                    Some("dmabuf") => {
                        let Some(name) = self.buf_name(id) else { return Ok(()) };
                        let access = if r.num("events")? & 4 != 0 { "write" } else { "read" };
                        let f = self.fence("p");
                        self.line(
                            &format!("export {name} {access} as {f}"),
                            &format!("thread {} polled the dma-buf", r.tid),
                        );
                        self.line(&format!("wait {f}"), "");
                    }
                    _ => {}
                }
            }
            "prime_import" => {
                if r.int("ret")? < 0 {
                    return Ok(());
                }
                let (dev, ino, handle) = (r.num("dev")?, r.num("ino")?, r.num("handle")?);
                self.handles.insert((dev, handle), ino);
                let agent = opts.agents.drm.clone();
                self.map(&agent, ino, "bidirectional", "PRIME import: drm_gem_prime_import attaches and maps");
            }
            "prime_export" => {
                let (dev, ino, handle) = (r.num("dev")?, r.num("ino")?, r.num("handle")?);
                self.handles.insert((dev, handle), ino);
            }
            "gem_close" => self.gem_close(r.num("dev")?, r.num("handle")?, opts, "GEM handle closed"),
            "vgem_attach" => {
                if r.int("ret")? < 0 {
                    return Ok(());
                }
                let (dev, handle, fence) = (r.num("dev")?, r.num("handle")?, r.num("fence")?);
                let agent = opts.agents.drm.clone();
                let Some(&ino) = self.handles.get(&(dev, handle)) else { return Ok(()) };
                let Some(name) = self.buf_name(ino) else { return Ok(()) };
                self.map(&agent, ino, "bidirectional", "");
                let f = self.fence("g");
                let step = if r.num("write")? == 1 {
                    format!("{agent} write {name} = 0xa5 signal {f}")
                } else {
                    format!("{agent} read {name} signal {f}")
                };
                self.line(&step, "a vgem fence: the device works on the buffer until it is signalled");
                self.vgem_fences.insert((dev, fence), f);
            }
            "vgem_signal" => {
                let (dev, fence) = (r.num("dev")?, r.num("fence")?);
                if let Some(f) = self.vgem_fences.remove(&(dev, fence)) {
                    self.line(
                        &format!("wait {f}"),
                        &format!("thread {} signalled the vgem fence: the device is done", r.tid),
                    );
                }
            }
            "v4l2_expbuf" => {
                let key = (r.num("dev")?, r.num("type")?, r.num("index")?, r.num("plane")?);
                self.v4l2_bufs.insert(key, r.num("ino")?);
            }
            "v4l2_qbuf" => self.qbuf(r, opts)?,
            "v4l2_dqbuf" => {
                let key = (r.num("dev")?, r.num("type")?, r.num("index")?, r.num("plane")?);
                if let Some((fence, ino, agent)) = self.queued.remove(&key) {
                    let name = self.bufs[&ino].name.clone();
                    self.line(
                        &format!("wait {fence}"),
                        &format!("thread {} dequeued buffer {} ({} bytes)", r.tid, key.2, r.num("bytesused")?),
                    );
                    self.line(&format!("unmap {agent} {name}"), "");
                    if let Some(b) = self.bufs.get_mut(&ino) {
                        b.attached.insert(agent, None);
                    }
                }
            }
            "v4l2_streamoff" => {
                let (dev, ty) = (r.num("dev")?, r.num("type")?);
                let keys: Vec<_> = self.queued.keys().filter(|k| k.0 == dev && k.1 == ty).copied().collect();
                for k in keys {
                    if let Some((fence, ino, agent)) = self.queued.remove(&k) {
                        let name = self.bufs[&ino].name.clone();
                        self.line(&format!("wait {fence}"), "STREAMOFF returns the queued buffers");
                        self.line(&format!("unmap {agent} {name}"), "");
                        if let Some(b) = self.bufs.get_mut(&ino) {
                            b.attached.insert(agent, None);
                        }
                    }
                }
            }
            "v4l2_reqbufs" | "v4l2_streamon" | "dup" | "close" | "ioctl" => {
                let what = match r.verb.as_str() {
                    "ioctl" => {
                        format!("ioctl {} on {} (opaque)", r.get("nr").unwrap_or("?"), r.get("kind").unwrap_or("?"))
                    }
                    v => format!(
                        "{v} {}",
                        r.fields
                            .iter()
                            .filter(|(k, _)| k != "end")
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                };
                match &mut self.opaque {
                    Some((w, n)) if *w == what => *n += 1,
                    _ => {
                        self.flush_opaque();
                        self.opaque = Some((what, 1));
                    }
                }
            }
            "scm_rights" => {
                let c = format!(
                    "process {} {} a {} over a Unix socket",
                    r.pid,
                    if r.get("dir") == Some("send") { "sent" } else { "received" },
                    r.get("kind").unwrap_or("fd")
                );
                self.line("", &c);
            }
            "exec" => {
                let path = r.get("path").unwrap_or("?");
                if r.num("recorded")? == 0 {
                    self.summary.unrecorded_execs += 1;
                    self.line(
                        "",
                        &format!(
                            "process {} executed {path} WITHOUT the interposer (LD_PRELOAD dropped): not recorded",
                            r.pid
                        ),
                    );
                } else {
                    self.line("", &format!("process {} executes {path}", r.pid));
                }
            }
            "exit" => {
                let unseen = r.num("unseen_maps").unwrap_or(0);
                self.summary.unseen_maps += unseen;
                self.line("", &format!("process {} exits", r.pid));
                // Its DRM devices close: their GEM objects, and the imports' mappings, go.
                let handles: Vec<_> = self
                    .handles
                    .keys()
                    .filter(|(dev, _)| self.devices.get(dev).is_some_and(|d| d.2 == r.pid))
                    .copied()
                    .collect();
                for (dev, handle) in handles {
                    self.gem_close(dev, handle, opts, "the process exits: its DRM fd closes");
                }
            }
            "untracked" => {
                self.line("", &format!("process {} used fds past the interposer's table: some are not followed", r.pid))
            }
            other => self.line("", &format!("unknown record `{other}` (line {})", r.line)),
        }
        Ok(())
    }

    /// A GEM handle closed: an imported buffer's attachment goes (when no other handle
    /// of the device holds it).
    fn gem_close(&mut self, dev: u64, handle: u64, opts: &Options, why: &str) {
        let agent = opts.agents.drm.clone();
        let Some(ino) = self.handles.remove(&(dev, handle)) else { return };
        if self.handles.values().any(|i| *i == ino) {
            return;
        }
        if let Some(b) = self.bufs.get_mut(&ino)
            && let Some(mapped) = b.attached.remove(&agent)
        {
            let name = b.name.clone();
            if mapped.is_some() {
                self.line(&format!("unmap {agent} {name}"), why);
            }
            self.line(&format!("detach {agent} {name}"), "");
        }
    }

    fn qbuf(&mut self, r: &Record, opts: &Options) -> Result<(), LogError> {
        if r.int("ret")? < 0 {
            return Ok(());
        }
        let key = (r.num("dev")?, r.num("type")?, r.num("index")?, r.num("plane")?);
        let ino = match r.num("ino")? {
            0 => self.v4l2_bufs.get(&key).copied(),
            i => Some(i),
        };
        let Some(ino) = ino.filter(|i| self.bufs.contains_key(i)) else {
            self.line("", &format!("V4L2 buffer {} queued that the program never shared as a dma-buf", key.2));
            return Ok(());
        };
        self.v4l2_bufs.insert(key, ino);
        // V4L2_TYPE_IS_OUTPUT: the device reads the buffer.
        let output = matches!(key.1, 2 | 5 | 7 | 8 | 10 | 12 | 14);
        let (agent, dir) = if output {
            (opts.agents.output.clone(), "to_device")
        } else {
            (opts.agents.capture.clone(), "from_device")
        };
        let b = &self.bufs[&ino];
        let name = b.name.clone();
        let len = if output { r.num("bytesused")? } else { r.num("length")? };
        let len = if len == 0 { b.size } else { len.min(b.size) };
        self.map(&agent, ino, dir, "");
        let f = self.fence("v");
        let step = if output {
            format!("{agent} read {name}[0..{len:#x}] signal {f}")
        } else {
            format!("{agent} write {name}[0..{len:#x}] = frame signal {f}")
        };
        self.line(
            &step,
            &format!(
                "thread {} queued buffer {}: the device {} it until DQBUF",
                r.tid,
                key.2,
                if output { "reads" } else { "writes" }
            ),
        );
        self.queued.insert(key, (f, ino, agent));
        Ok(())
    }

    fn misuse(&mut self, r: &Record, sym: &mut Symbolizer) -> Result<(), LogError> {
        let (key, off) = MisuseRun::of(r)?;
        let Some(b) = self.bufs.get(&key.ino) else { return Ok(()) };
        let name = b.name.clone();
        let size = b.size;
        // Pages of one access loop: one finding, one access step over the run.
        if self.last_misuse.as_mut().is_some_and(|run| run.extend(&key, off)) {
            if let Some(acc) = &mut self.pending_access {
                acc.2 = (off + 4096).min(size);
            }
            return Ok(());
        }
        self.flush_access();
        self.summary.misuse += 1;
        let text = match key.what.as_str() {
            "outside" => format!(
                "MISUSE: thread {} {} {name} at offset {off:#x} outside a sync bracket",
                r.tid,
                if key.write { "wrote" } else { "read" }
            ),
            "write_in_read" => {
                format!("MISUSE: thread {} wrote {name} at offset {off:#x} inside a READ bracket", r.tid)
            }
            "end_without_start" => format!("MISUSE: thread {} ends a bracket on {name} that it never started", r.tid),
            other => format!("MISUSE: {other} on {name}"),
        };
        self.line("", &text);
        for f in sym.backtrace(r.pid, &key.bt) {
            self.line("", &format!("    at {f}"));
        }
        if key.what == "outside" {
            self.pending_access = Some((name, off, (off + 4096).min(size), key.write));
        }
        self.last_misuse = Some(MisuseRun { key, next: off + 4096, pages: 1 });
        Ok(())
    }
}
