//! Execution: the program's steps in order on the framework, with an explorer's say
//! between steps.

use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::rc::Rc;

use dmabuf::{
    DMA_BUF_SYNC_END, DMA_BUF_SYNC_OVERWRITE, ImporterCaps, Placement, ResvUsage, SyncFile, decode_sync_flags,
    decode_sync_partial_flags, raw,
};
use dmabuf_sim::{DeviceId, DmaDirection, MemAttr};

use super::Hooks;
use super::error::{Ctx, RunError};
use super::findings::{Finding as F, attach_hint, drain_reports, fw_error, not_attached, released};
use super::jobs::{cpu_access, submit};
use super::program::{BufId, Cmd, FenceId, Source, Stmt};
use super::trace::{FenceKey, TraceEvent, Waiter};
use super::world::{BufRt, World, clock_of, resv_clock, signal_with_clock, stuck_leaf, trace_resv_wait};
use crate::sanitizer::FindingKind;

/// The program's position and what an explorer plugged in.
pub(crate) struct Exec<'a, 'h> {
    pub(crate) ctx: Ctx<'a>,
    pub(crate) w: Rc<World>,
    pub(crate) steps: u64,
    pub(crate) hooks: Hooks<'h>,
    pub(crate) stopped: bool,
}

impl Exec<'_, '_> {
    pub(crate) fn run(&mut self, steps: &[Stmt]) -> Result<(), RunError> {
        for s in steps {
            if self.stopped {
                break;
            }
            self.step(s)?;
        }
        Ok(())
    }

    fn step(&mut self, s: &Stmt) -> Result<(), RunError> {
        if let Cmd::Repeat { count, body } = &s.cmd {
            let outer = self.w.pos.get();
            for i in 0..*count {
                self.w.trace(|t| t.trace(&TraceEvent::Iteration { line: s.line, index: i, count: *count }));
                self.w.pos.set(super::world::Pos { line: self.w.pos.get().line, frame: i, in_loop: true });
                self.run(body)?;
                if self.stopped {
                    break;
                }
            }
            self.w.trace(|t| t.trace(&TraceEvent::LoopEnd { line: s.line }));
            let now = self.w.pos.get();
            self.w.pos.set(super::world::Pos { line: now.line, ..outer });
            return Ok(());
        }
        if self.hooks.deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            self.stopped = true;
            return Ok(());
        }
        if self.hooks.schedule.is_some() || self.hooks.visit.is_some() {
            self.explore_point();
            if self.stopped {
                return Ok(());
            }
        }
        // A step's bytes are allocated whole (a read's copy, a written value): make sure
        // they fit before the allocator is asked, so a run too big ends with an error.
        crate::memory::room_for(self.w.max_memory, s.cmd.bytes_moved().saturating_mul(2))
            .map_err(|o| self.ctx.over_memory(s.span, o))?;
        self.steps += 1;
        self.w.set_pos(s.line, self.w.pos.get().frame);
        let iteration = self.w.pos.get().iteration();
        let buffer = s.cmd.buffer().map_or("", |b| self.w.prog.buffer(b));
        self.w.trace(|t| t.trace(&TraceEvent::Step { line: s.line, buffer, iteration }));
        self.w.san.borrow_mut().set_step(s.line, buffer);
        self.exec(s)?;
        drain_reports(&self.w, None);
        if let Some(p) = self.hooks.progress.as_mut() {
            p(self.steps);
        }
        Ok(())
    }

    /// Between two steps: lets the explorer stop a run whose state it has seen, and run
    /// pending device jobs now rather than later.
    fn explore_point(&mut self) {
        let w = self.w.clone();
        if let Some(visit) = self.hooks.visit.as_mut() {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            {
                let jobs = w.jobs.borrow();
                (self.steps, w.pos.get().frame, &jobs.cpu, &jobs.devs).hash(&mut h);
                for p in &jobs.pending {
                    (p.id, p.dev, &p.submit).hash(&mut h);
                }
            }
            for (i, f) in w.objs.borrow().fences.iter().enumerate() {
                if let Some(f) = f {
                    (i, f.seqno(), f.is_signaled(), clock_of(f)).hash(&mut h);
                }
            }
            w.san.borrow().digest(&mut h);
            if let Some(lines) = &self.hooks.lines {
                let lines = lines.borrow();
                lines.hash(&mut h);
                w.sys.with_sim(|sim| sim.hash_lines(&lines, &mut h));
            }
            if !visit(h.finish()) {
                self.stopped = true;
                return;
            }
        }
        while let Some(schedule) = self.hooks.schedule.as_mut() {
            let mut devs: Vec<DeviceId> = Vec::new();
            for p in &w.jobs.borrow().pending {
                if !devs.contains(&p.dev) {
                    devs.push(p.dev);
                }
            }
            if devs.is_empty() {
                return;
            }
            let names: Vec<String> = devs.iter().map(|d| w.prog.device(*d).to_string()).collect();
            let pick = schedule(&names);
            let Some(&d) = pick.checked_sub(1).and_then(|i| devs.get(i)) else { return };
            let first = w.jobs.borrow().pending.iter().find(|p| p.dev == d).map(|p| p.id);
            w.run_device_until(d, first);
        }
    }

    fn handle(&self, b: BufId) -> Option<dmabuf::DmaBuf> {
        let h = self.w.objs.borrow().handle(b);
        if h.is_none() {
            released(&self.w, b);
        }
        h
    }

    fn exec(&mut self, s: &Stmt) -> Result<(), RunError> {
        let w = self.w.clone();
        let w = &*w;
        match &s.cmd {
            Cmd::Alloc { buf, size, source, source_span, label } => {
                self.allocate(*buf, *size, source, *source_span, label.as_deref())?
            }
            Cmd::Attach { dev, buf, dynamic, p2p, expect_refused } => {
                self.attach(*dev, *buf, *dynamic, *p2p, expect_refused.as_deref())
            }
            Cmd::Detach { dev, buf } => {
                let a = w.objs.borrow_mut().buf_mut(*buf).and_then(|b| b.atts[dev.index()].take());
                let d = w.prog.device(*dev);
                let b = w.prog.buffer(*buf);
                match a {
                    Some(a) => {
                        if a.mapped_direction().is_some() {
                            let _ = raw::unmap_attachment(&a);
                            F::new(FindingKind::Misuse, *buf)
                                .agent(d.to_string())
                                .message(format!("{d} detaches from {b} while still mapped"))
                                .hint(format!("`unmap {d} {b}` before detaching"))
                                .report(w);
                        }
                    }
                    None => F::new(FindingKind::Misuse, *buf)
                        .agent(d.to_string())
                        .message(format!("detach of {d} from {b}, which is not attached"))
                        .hint("detach only what is attached")
                        .report(w),
                }
            }
            Cmd::Pin { dev, buf } | Cmd::Unpin { dev, buf } => {
                let pin = matches!(s.cmd, Cmd::Pin { .. });
                let objs = w.objs.borrow();
                match objs.buf(*buf).and_then(|b| b.att(*dev)) {
                    Some(a) if pin => a.pin(),
                    Some(a) => a.unpin(),
                    None => {
                        drop(objs);
                        not_attached(w, *dev, *buf);
                    }
                }
            }
            Cmd::Migrate { buf, to_device } => {
                let Some(h) = self.handle(*buf) else { return Ok(()) };
                let place = if *to_device { Placement::Device } else { Placement::System };
                w.san.borrow_mut().begin_copy();
                let r = h.migrate(place);
                w.san.borrow_mut().end_copy();
                match r {
                    Ok(()) => trace_buffer(w, *buf, &h),
                    Err(e) => fw_error(w, *buf, vec![], e),
                }
            }
            Cmd::Map { dev, buf, dir } => {
                if let Some(b) = w.objs.borrow_mut().buf_mut(*buf) {
                    b.map_lines[dev.index()] = s.line;
                }
                let handle = w.objs.borrow().handle(*buf);
                let r = {
                    let objs = w.objs.borrow();
                    objs.buf(*buf).and_then(|b| b.att(*dev)).map(|a| raw::map_attachment(a, *dir))
                };
                match r {
                    None => not_attached(w, *dev, *buf),
                    Some(r) => {
                        // A static importer's map waited for the kernel's fences.
                        if let Some(h) = handle {
                            let c = resv_clock(&h, ResvUsage::Kernel);
                            w.jobs.borrow_mut().cpu.join(&c);
                            trace_resv_wait(w, &h, ResvUsage::Kernel);
                        }
                        if let Err(e) = r {
                            fw_error(w, *buf, vec![w.prog.device(*dev).to_string()], e);
                        }
                    }
                }
            }
            Cmd::Unmap { dev, buf } => {
                self.in_flight_check(*dev, *buf, "unmap");
                let r = w.objs.borrow().buf(*buf).and_then(|b| b.att(*dev)).map(raw::unmap_attachment);
                match r {
                    None => not_attached(w, *dev, *buf),
                    Some(Err(e)) => fw_error(w, *buf, vec![w.prog.device(*dev).to_string()], e),
                    Some(Ok(())) => {}
                }
            }
            Cmd::DeviceBegin { dev, bytes } | Cmd::DeviceEnd { dev, bytes } => {
                let begin = matches!(s.cmd, Cmd::DeviceBegin { .. });
                let r = {
                    let objs = w.objs.borrow();
                    objs.buf(bytes.buf).and_then(|b| b.att(*dev)).map(|a| {
                        if begin {
                            raw::begin_device_access(a, bytes.range.clone())
                        } else {
                            raw::end_device_access(a, bytes.range.clone())
                        }
                    })
                };
                match r {
                    None => not_attached(w, *dev, bytes.buf),
                    Some(Err(e)) => fw_error(w, bytes.buf, vec![w.prog.device(*dev).to_string()], e),
                    Some(Ok(())) => {}
                }
            }
            Cmd::DeviceSync { from, to, bytes } => {
                let r = {
                    let objs = w.objs.borrow();
                    let b = objs.buf(bytes.buf);
                    match (b.and_then(|b| b.att(*from)), b.and_then(|b| b.att(*to))) {
                        (Some(a), Some(c)) => Ok(raw::sync_device_to_device(a, c, bytes.range.clone())),
                        (None, _) => Err(*from),
                        (_, None) => Err(*to),
                    }
                };
                match r {
                    Err(missing) => not_attached(w, missing, bytes.buf),
                    Ok(Err(e)) => {
                        let names = vec![w.prog.device(*from).to_string(), w.prog.device(*to).to_string()];
                        fw_error(w, bytes.buf, names, e)
                    }
                    Ok(Ok(())) => {}
                }
            }
            Cmd::Job(j) => submit(w, j, s.line),
            Cmd::CpuBegin { bytes, dir, overwrite } => {
                let Some(h) = self.handle(bytes.buf) else { return Ok(()) };
                let begun = if *overwrite {
                    raw::begin_cpu_bracket(&h, dmabuf::CpuBracket::overwrite(bytes.range.clone()))
                } else {
                    raw::begin_cpu_access(&h, *dir, bytes.range.clone())
                };
                match begun {
                    Ok(()) => {
                        self.implicit_wait_done(&h, *dir);
                        if let Some(x) = w.objs.borrow_mut().buf_mut(bytes.buf) {
                            x.kernel_open.push(s.line);
                        }
                    }
                    Err(e) => fw_error(w, bytes.buf, vec!["cpu".into()], e),
                }
            }
            Cmd::CpuEnd { buf, dir } => {
                let Some(h) = self.handle(*buf) else { return Ok(()) };
                if let Err(e) = raw::end_cpu_access(&h, *dir) {
                    fw_error(w, *buf, vec!["cpu".into()], e);
                }
                if let Some(x) = w.objs.borrow_mut().buf_mut(*buf) {
                    x.kernel_open.pop();
                }
            }
            Cmd::CpuRead { bytes, expect } => cpu_access(w, bytes, None, *expect),
            Cmd::CpuWrite { bytes, value } => cpu_access(w, bytes, Some(*value), None),
            Cmd::ImporterVmap { dev, buf } => self.importer_vmap(*dev, *buf),
            Cmd::ImporterVunmap { dev, buf } => {
                let id = w.objs.borrow_mut().buf_mut(*buf).and_then(|b| b.importer_maps[dev.index()].take());
                match id {
                    Some(id) => {
                        if let Err(e) = w.sys.with_sim(|sim| sim.cpu_unmap(id)) {
                            fw_error(w, *buf, vec![w.prog.device(*dev).to_string()], e.into());
                        }
                    }
                    None => {
                        let (d, b) = (w.prog.device(*dev), w.prog.buffer(*buf));
                        F::new(FindingKind::Misuse, *buf)
                            .agent(d.to_string())
                            .message(format!("{d} vunmaps {b}, which it has not mapped"))
                            .hint(format!("`{d} vmap {b}` first, and vunmap once"))
                            .report(w)
                    }
                }
            }
            Cmd::Vmap { buf } => {
                let Some(h) = self.handle(*buf) else { return Ok(()) };
                if let Err(e) = raw::vmap(&h) {
                    fw_error(w, *buf, vec!["cpu".into()], e);
                }
            }
            Cmd::Vunmap { buf } => {
                let Some(h) = self.handle(*buf) else { return Ok(()) };
                // A vunmap of what is not vmapped is reported by the framework; the
                // report is the finding, any other error is one too.
                if let Err(e) = raw::vunmap(&h) {
                    fw_error(w, *buf, vec!["cpu".into()], e);
                }
            }
            Cmd::Mmap { buf } => {
                let Some(h) = self.handle(*buf) else { return Ok(()) };
                match h.mmap() {
                    Ok(m) => {
                        if let Some(x) = w.objs.borrow_mut().buf_mut(*buf) {
                            x.umap = Some(m);
                        }
                    }
                    Err(e) => fw_error(w, *buf, vec!["cpu".into()], e),
                }
            }
            Cmd::Munmap { buf } => {
                let had = w.objs.borrow_mut().buf_mut(*buf).and_then(|x| x.umap.take());
                if had.is_none() {
                    let b = w.prog.buffer(*buf);
                    F::new(FindingKind::Misuse, *buf)
                        .cpu()
                        .message(format!("munmap of {b}, which is not mmapped"))
                        .hint("munmap once per mmap")
                        .report(w);
                }
            }
            Cmd::Sync { buf, flags, partial } => self.sync(*buf, *flags, partial.clone()),
            Cmd::SetName { buf, name } => {
                let Some(h) = self.handle(*buf) else { return Ok(()) };
                if let Err(e) = h.set_name(name) {
                    fw_error(w, *buf, vec!["cpu".into()], e);
                }
            }
            Cmd::Fence { fence } => {
                let f = w.new_fence(w.prog.fence(*fence), None);
                w.software.borrow_mut().push((f.clone(), s.line));
                w.objs.borrow_mut().fences[fence.index()] = Some(f);
            }
            Cmd::Signal { fence } => {
                let f = w.objs.borrow().fence(*fence);
                let clock = w.jobs.borrow().cpu.clone();
                let software = f.as_ref().is_some_and(super::world::is_software);
                if software && let Some(f) = f.as_ref().filter(|f| signal_with_clock(f, clock)) {
                    w.jobs.borrow_mut().cpu.tick(0);
                    let (fence, name) = (FenceKey(f.seqno()), w.prog.fence(*fence));
                    w.trace(|t| t.trace(&TraceEvent::CpuSignal { fence, name }));
                } else {
                    let name = w.prog.fence(*fence);
                    F::new(FindingKind::Misuse, None)
                        .cpu()
                        .message(format!("signal of fence {name}, which is not an unsignalled software fence"))
                        .hint("a fence signals once; a job's fence is signalled by the job")
                        .report(w);
                }
            }
            Cmd::Wait { fences } => {
                for f in fences {
                    self.cpu_wait(*f);
                }
            }
            Cmd::Export { buf, write, fence } => {
                let Some(h) = self.handle(*buf) else { return Ok(()) };
                // The export observes every fence it leaves out as signalled: the CPU has
                // synchronised with those.
                let c = resv_clock(&h, ResvUsage::rw(*write));
                w.jobs.borrow_mut().cpu.join(&c);
                trace_resv_wait(w, &h, ResvUsage::rw(*write));
                let flags = if *write { dmabuf::DMA_BUF_SYNC_WRITE } else { dmabuf::DMA_BUF_SYNC_READ };
                match h.export_sync_file(flags) {
                    Ok(sf) => w.objs.borrow_mut().fences[fence.index()] = Some(sf.fence().clone()),
                    Err(e) => fw_error(w, *buf, vec!["cpu".into()], e),
                }
            }
            Cmd::Import { fence, buf, write } => {
                let Some(h) = self.handle(*buf) else { return Ok(()) };
                let Some(f) = w.objs.borrow().fence(*fence) else { return Ok(()) };
                let flags = if *write { dmabuf::DMA_BUF_SYNC_WRITE } else { dmabuf::DMA_BUF_SYNC_READ };
                if let Err(e) = h.import_sync_file(flags, &SyncFile::new(f)) {
                    fw_error(w, *buf, vec!["cpu".into()], e);
                }
            }
            Cmd::ResvAdd { buf, fence, usage } => {
                let Some(h) = self.handle(*buf) else { return Ok(()) };
                let Some(f) = w.objs.borrow().fence(*fence) else { return Ok(()) };
                // Containers go in as the fences they hold, as the kernel's callers do.
                let resv = h.resv();
                let mut g = resv.lock();
                for leaf in dmabuf::fence::unwrap(&f) {
                    g.reserve_fences(1);
                    let _ = g.add_fence(&leaf, *usage);
                }
            }
            Cmd::Release { buf } => {
                let h = w.objs.borrow_mut().buf_mut(*buf).and_then(|b| b.handle.take());
                if h.is_none() {
                    released(w, *buf);
                }
                drop(h);
            }
            Cmd::Repeat { .. } => {}
        }
        Ok(())
    }

    fn allocate(
        &mut self,
        buf: BufId,
        size: u64,
        source: &Source,
        span: crate::scenario::Span,
        label: Option<&str>,
    ) -> Result<(), RunError> {
        let w = &*self.w;
        // A name declared again replaces its buffer: the old one goes.
        let old = w.objs.borrow_mut().bufs[buf.index()].take();
        drop(old);
        drain_reports(w, None);
        w.san.borrow_mut().forget_buffer(w.prog.buffer(buf));
        let mut memfd = None;
        let res = match source {
            Source::Heap(h) => w.sys.heap(h).and_then(|heap| heap.allocate(size)),
            Source::Device(d) => w.sys.device_exporter(w.prog.device(*d)).and_then(|x| x.allocate(size)),
            Source::Udmabuf => w.sys.memfd(size).and_then(|mut m| {
                m.seal_shrink();
                let r = m.udmabuf(0, size);
                memfd = Some(m);
                r
            }),
        };
        let name = w.prog.buffer(buf);
        let h = res.map_err(|e| self.ctx.err(span, format!("cannot allocate `{name}`: {e}"), None))?;
        let fw_name: String = label.unwrap_or(name).chars().take(31).collect();
        let _ = h.set_name(&fw_name);
        trace_buffer(w, buf, &h);
        let mut objs = w.objs.borrow_mut();
        objs.ids.insert(h.id(), buf);
        objs.bufs[buf.index()] = Some(BufRt::new(h, w.prog.devices.len(), memfd));
        Ok(())
    }

    fn attach(&mut self, dev: DeviceId, buf: BufId, dynamic: bool, p2p: bool, expect_refused: Option<&str>) {
        let w = &*self.w;
        let Some(h) = self.handle(buf) else { return };
        let (d, b) = (w.prog.device(dev).to_string(), w.prog.buffer(buf).to_string());
        // A dynamic exporter may migrate the buffer to suit the new importer: the copy
        // carries the bytes' provenance.
        let before = w.sys.report_count();
        w.san.borrow_mut().begin_copy();
        let res = if dynamic {
            h.attach_dynamic(dev, p2p, || {})
        } else {
            h.attach_with(dev, ImporterCaps { allow_peer2peer: p2p, dynamic: false })
        };
        w.san.borrow_mut().end_copy();
        if dynamic {
            // The exporter may have moved the buffer for the new importer.
            trace_buffer(w, buf, &h);
        }
        match res {
            Ok(a) => {
                // Upstream accepts what a rule refuses, and reports the rule: a scenario
                // expecting that rule's refusal is satisfied, and its device stays out.
                let accepted = w.sys.reports_since(before).into_iter().find_map(|r| match r {
                    dmabuf::Report::AttachAccepted { error, .. } => Some(error.rule()),
                    _ => None,
                });
                let satisfied = expect_refused.is_some() && accepted == expect_refused;
                if satisfied {
                    *w.expected_rule.borrow_mut() = accepted.map(str::to_string);
                }
                let old = w.objs.borrow_mut().buf_mut(buf).map(|x| {
                    x.refused[dev.index()] = satisfied;
                    // A second attach of the same device replaces (and detaches) the first.
                    x.atts[dev.index()].replace(a)
                });
                drop(old);
                if let Some(rule) = expect_refused.filter(|_| !satisfied) {
                    F::new(FindingKind::ExpectFailed, buf)
                        .agent(d.clone())
                        .message(format!("attach of {b} to {d} was expected to be refused ({rule}) but was accepted"))
                        .hint("no rule refuses this attach on this platform; check the rule and the platform")
                        .report(w);
                }
            }
            Err(dmabuf::Error::Attach(e)) => {
                if let Some(x) = w.objs.borrow_mut().buf_mut(buf) {
                    x.refused[dev.index()] = true;
                }
                if expect_refused != Some(e.rule()) {
                    F::new(FindingKind::AttachRefused, buf)
                        .agent(d)
                        .message(format!("{e} (rule: {})", e.rule()))
                        .hint(attach_hint(&e))
                        .report(w);
                }
            }
            Err(e) => fw_error(w, buf, vec![d], e),
        }
    }

    /// An unmap while the device's job on the buffer is still in flight.
    fn in_flight_check(&mut self, dev: DeviceId, buf: BufId, what: &str) {
        let w = &*self.w;
        let line = w.jobs.borrow().pending.iter().find(|p| p.dev == dev && touches(&p.job.kind, buf)).map(|p| p.line);
        if let Some(l) = line {
            let (d, b) = (w.prog.device(dev), w.prog.buffer(buf));
            F::new(FindingKind::Race, buf)
                .agent(d.to_string())
                .message(format!("{what} of {b} by {d} while its job from line {l} is still in flight"))
                .hint(format!("`wait` for the job's fence before line {}", w.pos.get().line))
                .report(w);
            // The hardware most likely finished the job first; run it so the rest of the
            // scenario sees its effect.
            w.run_device_until(dev, None);
        }
    }

    /// After the framework's implicit wait of a CPU bracket: the CPU has synchronised
    /// with the fences it waited for.
    fn implicit_wait_done(&self, h: &dmabuf::DmaBuf, dir: DmaDirection) {
        let usage = ResvUsage::rw(dir != DmaDirection::FromDevice);
        let c = resv_clock(h, usage);
        self.w.jobs.borrow_mut().cpu.join(&c);
        trace_resv_wait(&self.w, h, usage);
    }

    /// `sync`: the ioctl as a program issues it. A ranged one is `DMA_BUF_IOCTL_SYNC_PARTIAL`,
    /// with the fallbacks of a program that probes for it as Rockchip's MPP does
    /// (`mpp_dmabuf_sync_partial_begin` in osal/mpp_dmabuf.c): `ENOTTY` (upstream) makes it
    /// `DMA_BUF_IOCTL_SYNC` on the whole buffer, and `EINVAL` for `DMA_BUF_SYNC_OVERWRITE`
    /// (a kernel with the ioctl, not the flag) the ranged sync without the flag. Both are
    /// correct: each maintains a superset of what the refused call would have.
    fn sync(&mut self, buf: BufId, flags: u64, partial: Option<Range<u64>>) {
        let w = &*self.w;
        let Some(h) = self.handle(buf) else { return };
        let has_map = w.objs.borrow().buf(buf).is_some_and(|x| x.umap.is_some());
        if !has_map {
            let b = w.prog.buffer(buf);
            return F::new(FindingKind::Misuse, buf)
                .cpu()
                .message(format!("sync ioctl on {b}, which is not mmapped"))
                .hint(format!("`mmap {b}` first"))
                .report(w);
        }
        let res = {
            let objs = w.objs.borrow();
            let m = objs.buf(buf).and_then(|x| x.umap.as_ref());
            m.map(|m| match &partial {
                None => raw::sync_ioctl(m, flags),
                Some(r) => {
                    // The lowering kept the range within the struct's 32-bit fields.
                    let (offset, len) = (r.start as u32, (r.end - r.start) as u32);
                    match raw::sync_ioctl_partial(m, flags, offset, len) {
                        Err(dmabuf::Error::NoSyncPartial) => raw::sync_ioctl(m, flags & !DMA_BUF_SYNC_OVERWRITE),
                        Err(dmabuf::Error::NoOverwrite { .. }) => {
                            raw::sync_ioctl_partial(m, flags & !DMA_BUF_SYNC_OVERWRITE, offset, len)
                        }
                        other => other,
                    }
                }
            })
        };
        let decoded = match partial {
            None => decode_sync_flags(flags),
            Some(_) => decode_sync_partial_flags(flags).map(|(end, d, _)| (end, d)),
        };
        if let Some((end, d)) = decoded {
            if !end && res.as_ref().is_some_and(Result::is_ok) {
                self.implicit_wait_done(&h, d);
            }
            if let Some(x) = w.objs.borrow_mut().buf_mut(buf) {
                x.user_open = (flags & DMA_BUF_SYNC_END == 0).then_some(w.pos.get().line);
            }
        }
        if let Some(Err(e)) = res {
            fw_error(w, buf, vec!["cpu".into()], e);
        }
    }

    fn cpu_wait(&mut self, fence: FenceId) {
        let w = &*self.w;
        let Some(f) = w.objs.borrow().fence(fence) else { return };
        match f.wait() {
            Ok(()) => {
                let c = clock_of(&f);
                w.jobs.borrow_mut().cpu.join(&c);
                w.trace_waited(&f, Waiter::Cpu { implicit: false });
            }
            Err(_) => {
                let name = stuck_leaf(&f).unwrap_or_else(|| w.prog.fence(fence).to_string());
                F::new(FindingKind::Misuse, None)
                    .cpu()
                    .message(format!("wait for fence {name} would block forever: nothing signals it"))
                    .hint(format!("`signal {name}` before waiting for it, or make a job signal it"))
                    .report(w)
            }
        }
    }

    /// The importer's own cacheable kernel mapping of the buffer's pages.
    fn importer_vmap(&mut self, dev: DeviceId, buf: BufId) {
        let w = &*self.w;
        if w.objs.borrow().buf(buf).and_then(|b| b.att(dev)).is_none() {
            return not_attached(w, dev, buf);
        }
        let Some(h) = self.handle(buf) else { return };
        let pages = h.backing().pages;
        match w.sys.with_sim(|sim| sim.cpu_map(&pages, MemAttr::Cached)) {
            Ok(id) => {
                if let Some(x) = w.objs.borrow_mut().buf_mut(buf) {
                    x.importer_maps[dev.index()] = Some(id);
                }
            }
            Err(e) => {
                let (d, b) = (w.prog.device(dev), w.prog.buffer(buf));
                F::new(FindingKind::Misuse, buf)
                    .agent(d.to_string())
                    .message(format!("{d} cannot map {b}: {e}"))
                    .hint("map through dma_buf_vmap")
                    .report(w)
            }
        }
    }

    /// What the program left behind at its end, as loom checks after every execution:
    /// device mappings never unmapped, CPU brackets never ended, software fences never
    /// signalled. (Attachments of buffers the program still holds are not leaks: the
    /// importer keeps its import until the process exits. Those of released buffers are
    /// reported at the release.)
    pub(crate) fn leak_check(&mut self) {
        let w = &*self.w;
        let mut found: Vec<(u32, F)> = Vec::new();
        for (i, b) in w.objs.borrow().bufs.iter().enumerate() {
            let Some(b) = b else { continue };
            let buf = BufId(i as u32);
            let name = w.prog.buffer(buf);
            if b.handle.is_none() {
                continue;
            }
            for (d, a) in b.atts.iter().enumerate() {
                if a.as_ref().is_some_and(|a| a.mapped_direction().is_some()) {
                    let dev = w.prog.device(DeviceId(d as u16));
                    let line = b.map_lines[d];
                    found.push((
                        line,
                        F::new(FindingKind::Misuse, buf)
                            .agent(dev.to_string())
                            .message(format!(
                                "{dev} still maps {name} at the end of the program (mapped at line {line})"
                            ))
                            .hint(format!(
                                "`unmap {dev} {name}` after its last job: what it wrote is handed over at the unmap"
                            )),
                    ));
                }
            }
            for &line in &b.kernel_open {
                found.push((
                    line,
                    F::new(FindingKind::Misuse, buf)
                        .cpu()
                        .message(format!("the CPU access to {name} begun at line {line} never ends"))
                        .hint(format!(
                            "`cpu end {name} DIR` after the last access: the end hands the CPU's writes over"
                        )),
                ));
            }
            if let Some(line) = b.user_open {
                found.push((
                    line,
                    F::new(FindingKind::Misuse, buf)
                        .cpu()
                        .message(format!("the sync bracket on {name} started at line {line} never ends"))
                        .hint(format!(
                            "`sync {name} end DIR` after the last access: the end hands the CPU's writes over"
                        )),
                ));
            }
        }
        for (f, line) in w.software.borrow().iter() {
            if !f.is_signaled() {
                let name = super::world::fence_name(f);
                found.push((
                    *line,
                    F::new(FindingKind::Misuse, None)
                        .cpu()
                        .message(format!("fence {name} made at line {line} is never signalled"))
                        .hint(format!(
                            "`signal {name}` once the work it stands for is done: whoever waits for it hangs"
                        )),
                ));
            }
        }
        for (line, f) in found {
            w.set_pos(line, 0);
            f.report(w);
        }
    }

    /// The end of the program: jobs nobody waited for still run (the hardware does not
    /// forget them).
    pub(crate) fn finish(&mut self) {
        let w = &*self.w;
        loop {
            let first = w.jobs.borrow().pending.first().map(|p| p.dev);
            match first {
                Some(d) => w.run_device_until(d, None),
                None => break,
            }
        }
    }
}

/// Tells the tracer where buffer variable `buf`'s memory is now.
fn trace_buffer(w: &World, buf: BufId, h: &dmabuf::DmaBuf) {
    if w.tracer.is_some() {
        let pages = h.backing().pages;
        let name = w.prog.buffer(buf);
        w.trace(|t| t.trace(&TraceEvent::Buffer { name, pages: &pages }));
    }
}

fn touches(k: &super::program::JobKind, buf: BufId) -> bool {
    k.reads() == Some(buf) || k.writes() == Some(buf)
}
