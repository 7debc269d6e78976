//! Device jobs: submission, the run of a job (its waits, its clock, its accesses, its
//! fence), and the accesses devices and the CPU make under the sanitizer's eye.

use std::ops::Range;

use dmabuf::{DmaBuf, ResvUsage, raw};
use dmabuf_sim::DeviceId;

use super::findings::{Finding as F, first_mismatch, value_bytes};
use super::program::{BufId, Bytes, JobCmd, JobKind};
use super::trace::{FenceKey, TraceEvent, Waiter};
use super::world::{Pending, World, clock_of, fence_name, signal_with_clock, tick_time};
use crate::sanitizer::{AccessInfo, FindingKind, Path, VClock};
use crate::scenario::Value;

/// Submits a job at `line`: with a fence it runs later; without one the step waits for it.
pub(crate) fn submit(w: &World, job: &JobCmd, line: u32) {
    let (frame, in_loop) = (w.pos.get().frame, w.pos.get().in_loop);
    let (id, submit) = {
        let mut jobs = w.jobs.borrow_mut();
        let id = jobs.next_id;
        jobs.next_id += 1;
        let submit = jobs.cpu.clone();
        jobs.cpu.tick(0);
        (id, submit)
    };
    let after: Vec<_> = {
        let objs = w.objs.borrow();
        job.after.iter().filter_map(|&f| objs.fence(f).map(|fence| (f, fence))).collect()
    };
    let fence = job.signal.map(|f| {
        // A software fence the program made (`fence F`) is the job's to signal; one that
        // has signalled already cannot signal again, and the job gets a fence of its own.
        let bound = w.objs.borrow().fence(f).filter(super::world::is_software);
        let fence = match bound {
            Some(sw) if !sw.is_signaled() => {
                w.job_of.borrow_mut().insert(sw.seqno(), id);
                sw
            }
            bound => {
                if bound.is_some() {
                    let name = w.prog.fence(f);
                    F::new(FindingKind::Misuse, job.kind.buffer())
                        .agent(w.prog.device(job.dev).to_string())
                        .message(format!("the job signals fence {name}, which has signalled already"))
                        .hint(format!("a fence signals once: give the job a fence of its own (`signal {name}2`)"))
                        .report(w);
                }
                w.new_fence(w.prog.fence(f), Some(id))
            }
        };
        w.objs.borrow_mut().fences[f.index()] = Some(fence.clone());
        // Drivers add their job's fence to the buffers it touches (implicit sync).
        for (b, usage) in [(job.kind.reads(), ResvUsage::Read), (job.kind.writes(), ResvUsage::Write)] {
            if let Some(h) = b.and_then(|b| w.objs.borrow().handle(b)) {
                let resv = h.resv();
                let mut g = resv.lock();
                g.reserve_fences(1);
                let _ = g.add_fence(&fence, usage);
            }
        }
        fence
    });
    let synchronous = fence.is_none();
    let dev = job.dev;
    w.trace(|t| t.trace(&TraceEvent::JobSubmitted { id, dev, line }));
    w.jobs.borrow_mut().pending.push(Pending { id, dev, job: job.clone(), line, frame, in_loop, submit, after, fence });
    if synchronous {
        w.run_device_until(dev, Some(id));
        let c = w.jobs.borrow().devs[dev.index()].clone();
        w.jobs.borrow_mut().cpu.join(&c);
    }
}

/// Runs one job: waits for its fences (running the jobs they need), takes its clock,
/// makes its accesses, signals its fence.
pub(crate) fn run_job(w: &World, p: Pending) {
    let saved = w.pos.get();
    w.pos.set(super::world::Pos { line: p.line, frame: p.frame, in_loop: p.in_loop });
    let mut clock = p.submit.clone();
    clock.join(&w.jobs.borrow().devs[p.dev.index()]);
    for (_, f) in &p.after {
        match f.wait() {
            Ok(()) => {
                clock.join(&clock_of(f));
                w.trace_waited(f, Waiter::Job(p.id));
            }
            Err(_) => {
                let name = fence_name(f);
                F::new(FindingKind::Misuse, p.job.kind.buffer())
                    .agent(w.prog.device(p.dev).to_string())
                    .message(format!("the job waits for fence {name}, which nothing signals: it never runs"))
                    .hint(format!("`signal {name}` (or a job that signals it) before the job can run"))
                    .report(w);
                // Its own fence never signals; whoever waits for it hears so.
                w.pos.set(saved);
                return;
            }
        }
    }
    let (id, dev, line, iteration) = (p.id, p.dev, p.line, w.pos.get().iteration());
    let buffer = w.prog.buffer(p.job.kind.buffer());
    w.trace(|t| t.trace(&TraceEvent::JobStart { id, dev, line, iteration, buffer }));
    let thread = p.dev.index() + 1;
    clock.tick(thread);
    w.jobs.borrow_mut().devs[p.dev.index()] = clock.clone();
    w.san.borrow_mut().set_step(p.line, w.prog.buffer(p.job.kind.buffer()));
    let gone: Vec<BufId> = [p.job.kind.reads(), p.job.kind.writes()]
        .into_iter()
        .flatten()
        .filter(|&b| w.objs.borrow().handle(b).is_none())
        .collect();
    for &b in &gone {
        super::findings::released(w, b);
    }
    let touched: Vec<&Bytes> = match &p.job.kind {
        JobKind::Read { src, .. } => vec![src],
        JobKind::Write { dst, .. } => vec![dst],
        JobKind::Copy { src, dst, .. } => vec![src, dst],
    };
    if gone.is_empty() {
        job_boundary(w, p.dev, &touched, false);
    }
    match &p.job.kind {
        _ if !gone.is_empty() => {}
        JobKind::Read { src, expect } => {
            if let Some(got) = device_read(w, p.dev, &clock, src)
                && let Some(e) = expect
            {
                check_expect(w, src, *e, &got, Some(p.dev), p.frame);
            }
        }
        JobKind::Write { dst, value } => {
            let data = value_bytes(*value, &dst.range, p.frame);
            device_write(w, p.dev, &clock, dst, &data);
        }
        JobKind::Copy { src, dst, xor } => {
            if let Some(mut got) = device_read(w, p.dev, &clock, src) {
                got.iter_mut().for_each(|b| *b ^= xor);
                device_write(w, p.dev, &clock, dst, &got);
            }
        }
    }
    if gone.is_empty() {
        job_boundary(w, p.dev, &touched, true);
    }
    super::findings::drain_reports(w, None);
    tick_time(w);
    if let Some(f) = &p.fence {
        signal_with_clock(f, clock);
    }
    if w.tracer.is_some() {
        let name = p.fence.as_ref().map(fence_name);
        let fence = p.fence.as_ref().map(|f| FenceKey(f.seqno())).zip(name.as_deref());
        w.trace(|t| t.trace(&TraceEvent::JobEnd { id, dev, fence }));
    }
    w.pos.set(saved);
}

/// The driver's side of a job's start or end (the job contract): the device's private
/// cache forgets the job's bytes before it, and gives back what it wrote after it.
fn job_boundary(w: &World, dev: DeviceId, touched: &[&Bytes], end: bool) {
    let objs = w.objs.borrow();
    for b in touched {
        if let Some(att) = objs.buf(b.buf).and_then(|x| x.att(dev))
            && att.mapped_direction().is_some()
        {
            let _ = if end { raw::end_job(att, b.range.clone()) } else { raw::begin_job(att, b.range.clone()) };
        }
    }
}

/// The line where `dev` mapped `buf` (0 when unknown).
fn map_line(w: &World, buf: BufId, dev: DeviceId) -> u32 {
    w.objs.borrow().buf(buf).map_or(0, |b| b.map_lines[dev.index()])
}

fn device_access(w: &World, dev: DeviceId, clock: &VClock, bytes: &Bytes, write: bool) -> AccessInfo {
    AccessInfo {
        agent: w.prog.device(dev).to_string(),
        thread: dev.index() + 1,
        clock: clock.clone(),
        buffer: w.prog.buffer(bytes.buf).to_string(),
        range: bytes.range.clone(),
        write,
        line: w.pos.get().line,
        path: Path::Device {
            coherent: w.sys.platform().devices[dev.index()].coherent,
            mapped_at: map_line(w, bytes.buf, dev),
        },
        iteration: w.pos.get().iteration(),
    }
}

/// Whether a device access through `dev`'s attachment to `buf` goes ahead: `Some(true)`
/// when the mapping allows it; `Some(false)` when it does not happen (the attach or import
/// was refused, which is the finding; or the framework refuses the access and reports
/// why); `None` when the device is not attached (reported here).
fn access_allowed(w: &World, dev: DeviceId, buf: BufId, write: bool) -> Option<bool> {
    let objs = w.objs.borrow();
    let b = objs.buf(buf)?;
    if b.refused[dev.index()] {
        return Some(false);
    }
    let Some(att) = b.att(dev) else {
        drop(objs);
        super::findings::not_attached(w, dev, buf);
        return None;
    };
    Some(att.mapped_direction().is_some_and(|d| if write { d.device_writes() } else { d.device_reads() }))
}

fn device_read(w: &World, dev: DeviceId, clock: &VClock, src: &Bytes) -> Option<Vec<u8>> {
    let allowed = access_allowed(w, dev, src.buf, false)?;
    if allowed {
        open_access(w, device_access(w, dev, clock, src, false));
    } else if w.objs.borrow().buf(src.buf).is_some_and(|b| b.refused[dev.index()]) {
        return None;
    }
    let res = {
        let objs = w.objs.borrow();
        let att = objs.buf(src.buf).and_then(|b| b.att(dev))?;
        raw::device_read(att, src.range.clone())
    };
    let found = allowed && close_access(w);
    match res {
        Ok(v) if allowed && !found => Some(v),
        Ok(_) => None,
        Err(e) => {
            super::findings::fw_error(w, src.buf, vec![w.prog.device(dev).to_string()], e);
            None
        }
    }
}

fn device_write(w: &World, dev: DeviceId, clock: &VClock, dst: &Bytes, data: &[u8]) {
    let Some(allowed) = access_allowed(w, dev, dst.buf, true) else { return };
    if allowed {
        open_access(w, device_access(w, dev, clock, dst, true));
    } else if w.objs.borrow().buf(dst.buf).is_some_and(|b| b.refused[dev.index()]) {
        return;
    }
    let res = {
        let objs = w.objs.borrow();
        let Some(att) = objs.buf(dst.buf).and_then(|b| b.att(dev)) else { return };
        raw::device_write(att, dst.range.start, data)
    };
    if allowed {
        close_access(w);
    }
    if let Err(e) = res {
        super::findings::fw_error(w, dst.buf, vec![w.prog.device(dev).to_string()], e);
    }
}

/// A CPU read or write of `bytes` through the buffer's user mapping if it has one, else
/// the kernel mapping.
pub(crate) fn cpu_access(w: &World, bytes: &Bytes, write: Option<Value>, expect: Option<Value>) {
    let (handle, user, path) = {
        let objs = w.objs.borrow();
        let Some(b) = objs.buf(bytes.buf) else { return };
        let user = b.umap.is_some();
        let path = if user {
            Path::User { bracketed: b.user_open.is_some() }
        } else {
            Path::Kernel { bracketed: !b.kernel_open.is_empty() }
        };
        (b.handle.clone(), user, path)
    };
    let Some(handle) = handle else { return super::findings::released(w, bytes.buf) };
    let r = bytes.range.clone();
    let frame = w.pos.get().frame;
    let info = AccessInfo {
        agent: "cpu".into(),
        thread: 0,
        clock: w.jobs.borrow().cpu.clone(),
        buffer: w.prog.buffer(bytes.buf).to_string(),
        range: r.clone(),
        write: write.is_some(),
        line: w.pos.get().line,
        path,
        iteration: w.pos.get().iteration(),
    };
    let data = write.map(|v| value_bytes(v, &r, frame));
    open_access(w, info);
    let res = {
        let objs = w.objs.borrow();
        let umap = objs.buf(bytes.buf).and_then(|b| b.umap.as_ref());
        cpu_move(&handle, umap, &r, data.as_deref())
    };
    let found = close_access(w);
    w.jobs.borrow_mut().cpu.tick(0);
    super::findings::drain_reports(w, Some(user));
    match res {
        Ok(Some(got)) => {
            if let Some(e) = expect
                && !found
            {
                check_expect(w, bytes, e, &got, None, frame);
            }
        }
        Ok(None) => {}
        Err(e) => super::findings::fw_error(w, bytes.buf, vec!["cpu".into()], e),
    }
}

fn cpu_move(
    handle: &DmaBuf,
    umap: Option<&dmabuf::UserMapping>,
    r: &Range<u64>,
    data: Option<&[u8]>,
) -> Result<Option<Vec<u8>>, dmabuf::Error> {
    match (data, umap) {
        (Some(d), Some(m)) => raw::mmap_write(m, r.start, d).map(|_| None),
        (Some(d), None) => raw::kernel_write(handle, r.start, d).map(|_| None),
        (None, Some(m)) => {
            let mut out = vec![0u8; (r.end - r.start) as usize];
            raw::mmap_read(m, r.start, &mut out).map(|()| Some(out))
        }
        (None, None) => {
            let mut out = vec![0u8; (r.end - r.start) as usize];
            raw::kernel_read(handle, r.start, &mut out).map(|()| Some(out))
        }
    }
}

/// A read's `expect` that did not hold, and no coherency finding explains it.
fn check_expect(w: &World, bytes: &Bytes, v: Value, got: &[u8], dev: Option<DeviceId>, frame: u64) {
    // A device whose attach was refused never wrote: the refusal is the finding.
    if w.objs.borrow().buf(bytes.buf).is_some_and(|b| b.refused.iter().any(|&r| r)) {
        return;
    }
    let r = &bytes.range;
    if let Some(i) = first_mismatch(v, r.start, frame, got) {
        let off = r.start + i as u64;
        let want = value_bytes(v, &(off..off + 1), frame);
        let agent = dev.map_or("cpu".to_string(), |d| w.prog.device(d).to_string());
        let name = w.prog.buffer(bytes.buf);
        F::new(FindingKind::ExpectFailed, bytes.buf)
            .range(off..r.end)
            .agent(agent.clone())
            .message(format!(
                "{agent} read {name}{} and byte {off:#x} is {:#04x}, expected {:#04x}",
                crate::sanitizer::fmt_range(r),
                got[i],
                want[0]
            ))
            .hint("the sanitizer saw no coherency problem here: check what the scenario writes and expects")
            .report(w);
    }
}

/// An access of the scenario starts: the sanitizer watches it, and the explorer knows.
fn open_access(w: &World, info: AccessInfo) {
    w.trace(|t| t.trace(&TraceEvent::Access(true)));
    w.san.borrow_mut().begin_access(info);
    if let Some(a) = &w.accessing {
        a.set(true);
    }
}

/// The access ends; whether the sanitizer found something in it.
fn close_access(w: &World) -> bool {
    if let Some(a) = &w.accessing {
        a.set(false);
    }
    w.trace(|t| t.trace(&TraceEvent::Access(false)));
    w.san.borrow_mut().end_access()
}
