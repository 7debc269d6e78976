//! The findings the runner makes itself (misuse, refused attaches, failed expects), and
//! the framework's reports turned into findings with the scenario's names and hints.

use std::ops::Range;

use dmabuf::Report::AttachAccepted;
use dmabuf::{AttachError, Report};
use dmabuf_sim::{DeviceId, DmaDirection};

use super::program::BufId;
use super::world::World;
use crate::sanitizer::{FindingKind, Involved, fmt_range};
use crate::scenario::Value;

/// A finding being put together, reported at the current line unless told otherwise.
pub(crate) struct Finding {
    kind: FindingKind,
    buf: Option<BufId>,
    range: Range<u64>,
    agents: Vec<String>,
    message: String,
    hint: String,
}

impl Finding {
    pub(crate) fn new(kind: FindingKind, buf: impl Into<Option<BufId>>) -> Finding {
        Finding { kind, buf: buf.into(), range: 0..0, agents: Vec::new(), message: String::new(), hint: String::new() }
    }

    pub(crate) fn kind(mut self, k: FindingKind) -> Self {
        self.kind = k;
        self
    }

    pub(crate) fn range(mut self, r: Range<u64>) -> Self {
        self.range = r;
        self
    }

    pub(crate) fn agent(mut self, a: String) -> Self {
        self.agents.push(a);
        self
    }

    pub(crate) fn cpu(self) -> Self {
        self.agent("cpu".into())
    }

    pub(crate) fn agents(mut self, a: Vec<String>) -> Self {
        self.agents.extend(a);
        self
    }

    pub(crate) fn message(mut self, m: impl Into<String>) -> Self {
        self.message = m.into();
        self
    }

    pub(crate) fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = h.into();
        self
    }

    pub(crate) fn report(self, w: &World) {
        let line = w.pos.get().line;
        let buffer = self.buf.map_or("", |b| w.prog.buffer(b));
        let steps = vec![Involved { line, role: "this step".into() }];
        w.san.borrow_mut().report(self.kind, buffer, self.range, self.agents, steps, self.message, self.hint);
    }
}

/// `write`, `read` or `rw`: the scenario's word for a CPU direction.
pub(crate) fn dir_word(d: DmaDirection) -> &'static str {
    match d {
        DmaDirection::ToDevice => "write",
        DmaDirection::FromDevice => "read",
        DmaDirection::Bidirectional => "rw",
    }
}

/// The bytes a value stands for over buffer range `r` in iteration `frame`.
pub(crate) fn value_bytes(v: Value, r: &Range<u64>, frame: u64) -> Vec<u8> {
    let len = (r.end - r.start) as usize;
    match v {
        Value::Byte(b) => vec![b; len],
        Value::Frame => vec![(frame.wrapping_add(1) & 0xff) as u8; len],
        Value::Seq => (r.start..r.end).map(|x| (x.wrapping_add(frame) & 0xff) as u8).collect(),
    }
}

/// The index of the first byte of `got` (read at buffer offset `start`) that is not
/// `v`. Compares a block at a time: a frame's worth of bytes is checked per read.
pub(crate) fn first_mismatch(v: Value, start: u64, frame: u64, got: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    let uniform = match v {
        Value::Byte(b) => Some(b),
        Value::Frame => Some((frame.wrapping_add(1) & 0xff) as u8),
        Value::Seq => None,
    };
    match uniform {
        Some(b) => {
            let block = [b; BLOCK];
            let mut chunks = got.chunks_exact(BLOCK);
            let mut base = 0;
            for c in &mut chunks {
                if c != block {
                    return c.iter().position(|&x| x != b).map(|i| base + i);
                }
                base += BLOCK;
            }
            chunks.remainder().iter().position(|&x| x != b).map(|i| base + i)
        }
        None => got.iter().enumerate().position(|(i, &x)| x != ((start + i as u64).wrapping_add(frame) & 0xff) as u8),
    }
}

/// Turns the framework's new reports into findings at the current line. `user`: whether
/// the CPU access that made them went through the user mapping (for the hint).
pub(crate) fn drain_reports(w: &World, user: Option<bool>) {
    let seen = w.reports_seen.get();
    let reports = w.sys.reports_since(seen);
    w.reports_seen.set(seen + reports.len());
    let line = w.pos.get().line;
    let mut released = std::collections::HashSet::new();
    for r in &reports {
        let r = r.clone();
        let (buffer, name) = {
            let objs = w.objs.borrow();
            let id = report_buffer(&r).and_then(|b| objs.ids.get(&b).copied());
            (id, id.map_or_else(|| "the buffer".to_string(), |b| w.prog.buffer(b).to_string()))
        };
        let b = &name;
        let dev = |d: &DeviceId| w.prog.device(*d).to_string();
        // After a refused attach or import, the refusal is the finding; what the device
        // does with the buffer after it is not reported again.
        if let (Some(bid), Some(d)) = (buffer, report_device(&r))
            && w.objs.borrow().buf(bid).is_some_and(|x| x.refused[d.index()])
        {
            continue;
        }
        let f = Finding::new(FindingKind::Misuse, buffer);
        let f = match &r {
            Report::AccessOutsideBracket { range, write, .. } => {
                let verb = if *write { "write" } else { "read" };
                let hint = if user == Some(true) {
                    format!("put `sync {b} start {verb}` before line {line} and `sync {b} end {verb}` after it")
                } else {
                    format!("put `cpu begin {b} {verb}` before line {line} and `cpu end {b} {verb}` after it")
                };
                f.range(range.clone())
                    .cpu()
                    .message(format!("CPU {verb} of {b}{} outside a CPU access bracket", fmt_range(range)))
                    .hint(hint)
            }
            Report::AccessOutsideRange { range, declared, write, .. } => {
                let verb = if *write { "write" } else { "read" };
                f.range(range.clone())
                    .cpu()
                    .message(format!(
                        "CPU {verb} of {b}{} outside the range its ranged bracket declared ({b}{}): those bytes were not maintained",
                        fmt_range(range),
                        fmt_range(declared)
                    ))
                    .hint(format!("widen the bracket's range to cover line {line}'s access"))
            }
            Report::EndMissesWrites { missed, end, .. } => f
                .range(missed.clone())
                .cpu()
                .message(format!(
                    "the end of the bracket on {b} covers {b}{}, not {b}{} that the bracket wrote: those bytes are not handed over",
                    fmt_range(end),
                    fmt_range(missed)
                ))
                .hint("end over the range the bracket began with"),
            Report::OverwriteNotWhole { declared, missed, .. } => f
                .range(missed.clone())
                .cpu()
                .message(format!(
                    "the bracket on {b}{} declared it overwrites its range whole, but ended with {b}{} unwritten: the kernel skipped their invalidate, so they hold whatever the cache had",
                    fmt_range(declared),
                    fmt_range(missed)
                ))
                .hint("write every byte of the range, or begin without `overwrite` (or over the bytes written alone)"),
            Report::ReadInOverwrite { range, declared, .. } => f
                .range(range.clone())
                .cpu()
                .message(format!(
                    "CPU read of {b}{} before writing it, inside a bracket that declared it overwrites {b}{}: the old bytes were given up",
                    fmt_range(range),
                    fmt_range(declared)
                ))
                .hint("begin with `write` or `rw` and no `overwrite` to read the old bytes"),
            Report::BadSyncFlags { flags, .. } => f
                .cpu()
                .message(format!("DMA_BUF_IOCTL_SYNC on {b} with flags {flags:#x}: EINVAL"))
                .hint("use START or END with READ, WRITE or RW (`sync BUF start read`)"),
            Report::DoubleEnd { .. } => f
                .cpu()
                .message(format!("end of a CPU access to {b} with no access begun (double end)"))
                .hint("end each bracket once, after its begin"),
            Report::DirectionMismatch { started, ended, .. } => f
                .cpu()
                .message(format!(
                    "CPU access to {b} began for {} and ended for {}",
                    dir_word(*started),
                    dir_word(*ended)
                ))
                .hint(format!("end with the direction it began with ({})", dir_word(*started))),
            // What a release left behind is one finding: the attachments, the mappings
            // among them, a kernel vmap, as the framework reported them one by one.
            Report::LeakedAttachments { buffer: id, .. }
            | Report::LeakedMappings { buffer: id, .. }
            | Report::VmapAtRelease { buffer: id } => {
                if !released.insert(*id) {
                    continue;
                }
                let of = |pick: fn(&Report) -> Option<&Vec<DeviceId>>| -> Vec<String> {
                    reports
                        .iter()
                        .filter(|x| report_buffer(x) == Some(*id))
                        .filter_map(pick)
                        .flatten()
                        .map(dev)
                        .collect()
                };
                let attached = of(|x| match x {
                    Report::LeakedAttachments { devices, .. } => Some(devices),
                    _ => None,
                });
                let mapped = of(|x| match x {
                    Report::LeakedMappings { devices, .. } => Some(devices),
                    _ => None,
                });
                let vmapped = reports.iter().any(|x| matches!(x, Report::VmapAtRelease { buffer } if buffer == id));
                let mut left = Vec::new();
                let mut fix = Vec::new();
                if !attached.is_empty() {
                    left.push(format!("attached to {}", attached.join(", ")));
                    fix.push(format!("`detach DEV {b}`"));
                }
                if !mapped.is_empty() {
                    left.push(format!("mapped by {}", mapped.join(", ")));
                    fix.insert(0, format!("`unmap DEV {b}`"));
                }
                if vmapped {
                    left.push("vmapped by the kernel (a vmap holds no reference)".into());
                    fix.insert(0, format!("`vunmap {b}`"));
                }
                f.agents(attached)
                    .message(format!("{b} released while still {}", left.join(" and ")))
                    .hint(format!("{} before releasing {b}", fix.join(", then ")))
            }
            Report::UnmapNotMapped { device, .. } => {
                let d = dev(device);
                f.agent(d.clone())
                    .message(format!("unmap of {b} by {d}, which has not mapped it"))
                    .hint("unmap only what is mapped, once")
            }
            Report::DeviceAccessUnmapped { device, .. } => {
                let d = dev(device);
                f.agent(d.clone())
                    .message(format!("{d} accesses {b} without a mapping"))
                    .hint(format!("`map {d} {b} DIR` before the job"))
            }
            Report::DeviceDirection { device, mapped, access, .. } => {
                let d = dev(device);
                f.agent(d.clone())
                    .message(format!("{d} {access}s {b} through a mapping made {mapped:?}"))
                    .hint("map with the direction the device uses (bidirectional if both)")
            }
            Report::UnpinNotPinned { device, .. } => {
                let d = dev(device);
                f.agent(d.clone())
                    .message(format!("{d} unpins {b}, which it has not pinned"))
                    .hint(format!("unpin once per `pin {d} {b}`"))
            }
            Report::MappingAfterMove { device, .. } => {
                let d = dev(device);
                f.agent(d.clone())
                    .message(format!("{d} uses the mapping it had of {b} before the buffer moved: it reaches the old pages"))
                    .hint(format!("a dynamic importer maps again after move_notify: `unmap {d} {b}` and `map {d} {b} DIR` before its next job"))
            }
            Report::MigratedForImporter { device, .. } => {
                let d = dev(device);
                f.kind(FindingKind::Migrated)
                    .agent(d.clone())
                    .message(format!("{b} moved out of its exporter's local memory into system memory, because {d} has no peer-to-peer path to it"))
                    .hint(format!("allocate {b} in system memory if {d} must use it, or give {d} a peer-to-peer path (`p2p` in the platform)"))
            }
            Report::VunmapNotMapped { .. } => {
                f.message(format!("vunmap of {b}, which is not vmapped")).hint("vunmap once per vmap")
            }
            Report::AttachAccepted { error, .. } => {
                // A scattered buffer is refused by the importer at map: reported there. A
                // scenario that expects the rule to refuse the attach is satisfied.
                if error.rule() == "contiguity" || w.expected_rule.take().as_deref() == Some(error.rule()) {
                    continue;
                }
                // A device that cannot reach the pages at all does nothing useful with
                // them: the attach is the finding, and its later uses are not reported.
                if !matches!(error.rule(), "bounce" | "coherency")
                    && let (Some(bid), AttachAccepted { device, .. }) = (buffer, &r)
                    && let Some(x) = w.objs.borrow_mut().buf_mut(bid)
                {
                    x.refused[device.index()] = true;
                }
                f.kind(FindingKind::AttachUnsafe)
                    .message(format!(
                        "upstream accepts this attach, but {} (rule: {})",
                        consequence(error),
                        error.rule()
                    ))
                    .hint(attach_hint(error))
            }
            _ => continue,
        };
        f.report(w);
    }
}

/// The device a report is about, if one is.
fn report_device(r: &Report) -> Option<DeviceId> {
    match r {
        Report::UnmapNotMapped { device, .. }
        | Report::DeviceAccessUnmapped { device, .. }
        | Report::DeviceDirection { device, .. }
        | Report::UnpinNotPinned { device, .. }
        | Report::MappingAfterMove { device, .. } => Some(*device),
        _ => None,
    }
}

/// The buffer a report is about.
fn report_buffer(r: &Report) -> Option<dmabuf::BufferId> {
    Some(match r {
        Report::AccessOutsideBracket { buffer, .. }
        | Report::AccessOutsideRange { buffer, .. }
        | Report::EndMissesWrites { buffer, .. }
        | Report::OverwriteNotWhole { buffer, .. }
        | Report::ReadInOverwrite { buffer, .. }
        | Report::BadSyncFlags { buffer, .. }
        | Report::DoubleEnd { buffer }
        | Report::DirectionMismatch { buffer, .. }
        | Report::LeakedAttachments { buffer, .. }
        | Report::LeakedMappings { buffer, .. }
        | Report::UnmapNotMapped { buffer, .. }
        | Report::DeviceAccessUnmapped { buffer, .. }
        | Report::DeviceDirection { buffer, .. }
        | Report::UnpinNotPinned { buffer, .. }
        | Report::VmapAtRelease { buffer }
        | Report::AttachAccepted { buffer, .. }
        | Report::MappingAfterMove { buffer, .. }
        | Report::MigratedForImporter { buffer, .. }
        | Report::VunmapNotMapped { buffer } => *buffer,
        _ => return None,
    })
}

/// A framework error: the reports it made are the finding; if it made none, the error.
pub(crate) fn fw_error(w: &World, buf: BufId, agents: Vec<String>, e: dmabuf::Error) {
    // What a device whose attach or import was refused fails at is the refusal's.
    let refused = w.objs.borrow().buf(buf).is_some_and(|b| {
        agents.iter().any(|a| w.prog.devices.iter().position(|n| n == a).is_some_and(|i| b.refused[i]))
    });
    if refused {
        w.reports_seen.set(w.sys.report_count());
        return;
    }
    let before = w.reports_seen.get();
    drain_reports(w, None);
    if w.reports_seen.get() != before {
        return;
    }
    if let dmabuf::Error::ImportNotContiguous { .. } = e {
        if let Some(b) = w.objs.borrow_mut().buf_mut(buf) {
            for d in &agents {
                if let Some(i) = w.prog.devices.iter().position(|n| n == d) {
                    b.refused[i] = true;
                }
            }
        }
        return Finding::new(FindingKind::AttachRefused, buf)
            .agents(agents)
            .message(format!("{e} (rule: contiguity)"))
            .hint("the device needs physically contiguous memory and has no IOMMU: allocate from `heap=cma`")
            .report(w);
    }
    if let dmabuf::Error::Fence(dmabuf::fence::FenceError::Deadlock { .. }) = e {
        return Finding::new(FindingKind::Misuse, buf)
            .agents(agents)
            .message("a wait here would block forever: a fence it waits for is never signalled")
            .hint("signal every fence before something waits for it, or make a job signal it")
            .report(w);
    }
    Finding::new(FindingKind::Misuse, buf)
        .agents(agents)
        .message(e.to_string())
        .hint("see the framework's error")
        .report(w);
}

/// A use of a buffer after its release.
pub(crate) fn released(w: &World, buf: BufId) {
    let b = w.prog.buffer(buf);
    Finding::new(FindingKind::Misuse, buf)
        .message(format!("{b} is used after its release"))
        .hint("release a buffer only after its last use")
        .report(w);
}

/// A device uses a buffer it has no attachment to.
pub(crate) fn not_attached(w: &World, dev: DeviceId, buf: BufId) {
    // After a refused attach, the refusal is the finding; what follows from it is not.
    if w.objs.borrow().buf(buf).is_some_and(|b| b.refused[dev.index()]) {
        return;
    }
    let (d, b) = (w.prog.device(dev), w.prog.buffer(buf));
    Finding::new(FindingKind::Misuse, buf)
        .agent(d.to_string())
        .message(format!("{d} uses {b} without an attachment"))
        .hint(format!("`attach {d} {b}` first"))
        .report(w);
}

/// What goes wrong when upstream lets an attach through that a rule refuses.
fn consequence(e: &AttachError) -> String {
    match e {
        AttachError::BounceRefused { device, .. } => format!(
            "`{device}` keeps its mapping and would read a swiotlb bounce slot that nobody refreshes between its accesses, not the buffer"
        ),
        AttachError::BounceUncached { device, .. } => format!(
            "`{device}` reads a swiotlb bounce copy made through the kernel's cacheable linear map, where stale lines sit"
        ),
        AttachError::MismatchedCoherency { device, .. } => format!(
            "`{device}` snoops the CPU cache and meets stale lines of the kernel's cacheable linear map, not what the CPU wrote"
        ),
        AttachError::AboveDmaMask { device, .. } => {
            // dma_direct_map_page(): an address over the mask with no swiotlb slot the
            // device addresses (swiotlb_map() re-checks dma_capable() on the slot) is
            // DMA_MAPPING_ERROR with a WARN, so the importer's map fails.
            format!(
                "`{device}` cannot address the pages and has no bounce pool it addresses: upstream's map of it fails (dma-direct returns DMA_MAPPING_ERROR and warns), so the device never reaches the buffer"
            )
        }
        _ => format!("{e}"),
    }
}

/// What to do about a refused attach, by rule.
pub(crate) fn attach_hint(e: &AttachError) -> String {
    match e.rule() {
        "contiguity" => "the device needs physically contiguous memory and has no IOMMU: allocate from `heap=cma`".into(),
        "reachability" => "the device cannot reach that memory region: allocate from a region it reaches (see `dmabuf platforms show`)".into(),
        "dma-mask" => "the pages lie above the device's DMA mask and it has no IOMMU: allocate below the mask (a DMA32 zone or `heap=cma`) or bounce where bouncing is allowed".into(),
        "bounce" => "this device cannot work through a bounce buffer (a scanout reads the frame continuously): allocate memory it reaches directly".into(),
        "p2p" => "there is no peer-to-peer path from this device to the exporter's memory: migrate the buffer to system memory (a dynamic exporter does it at attach) or use a device with a path".into(),
        "p2p-not-allowed" => "the importer does not accept peer-to-peer addresses: attach it with `p2p` if its driver can, or migrate the buffer to system memory".into(),
        "coherency" => "a device that snoops the CPU cache needs a buffer the CPU maps cached: allocate from `heap=system` or `heap=cma`".into(),
        _ => "see the rule in the message".into(),
    }
}
