//! Validation and lowering: checks every name and range of a scenario against the
//! platform, before anything runs, and resolves them into a [`Program`].

use std::collections::HashMap;

use dmabuf::ResvUsage;
use dmabuf_sim::{DeviceId, Platform};

use super::error::{Ctx, RunError, suggest};
use super::program::{BufId, Bytes, Cmd, FenceId, JobCmd, JobKind, Program, Source, Stmt, dma_dir};
use crate::scenario::{self, Access, Ident, Op, Scenario, Span, Spanned, Step, SyncFlags, Target, Usage};

/// The attach rules a scenario may expect a refusal by (`AttachError::rule`).
pub(crate) const ATTACH_RULES: [&str; 9] =
    ["contiguity", "reachability", "p2p", "p2p-not-allowed", "bounce", "dma-mask", "memory", "exporter", "coherency"];

/// The heap names the framework knows.
const HEAPS: [&str; 6] = ["system", "cma", "uncached", "linux,cma", "reserved", "default_cma_region"];

/// The most steps a run may execute (a `repeat` body counts once per iteration).
pub const MAX_STEPS: u64 = 100_000_000;

/// How many steps a run executes: a `repeat` body counts once per iteration (saturating).
pub fn total_steps(steps: &[Step]) -> u64 {
    steps.iter().fold(0u64, |n, s| {
        let k = match &s.op {
            Op::Repeat { count, body } => count.node.saturating_mul(total_steps(body)),
            _ => 1,
        };
        n.saturating_add(k)
    })
}

struct Lower<'a> {
    ctx: Ctx<'a>,
    platform: &'a Platform,
    devices: Vec<String>,
    /// Every buffer variable, and the size of its latest declaration so far (in file order).
    buffers: Vec<String>,
    buffer_ids: HashMap<String, BufId>,
    sizes: HashMap<BufId, u64>,
    fences: Vec<String>,
    fence_ids: HashMap<String, FenceId>,
    made: std::collections::HashSet<FenceId>,
}

impl Lower<'_> {
    fn device(&self, d: &Ident) -> Result<DeviceId, RunError> {
        if let Some(i) = self.devices.iter().position(|n| *n == d.node) {
            return Ok(DeviceId(i as u16));
        }
        Err(self.ctx.err(
            d.span,
            format!("platform {} has no device `{}`", self.platform.name, d.node),
            suggest(&d.node, &self.devices),
        ))
    }

    fn buffer(&self, b: &Ident) -> Result<BufId, RunError> {
        if let Some(&id) = self.buffer_ids.get(&b.node) {
            return Ok(id);
        }
        Err(self.ctx.err(
            b.span,
            format!("no buffer `{}` is declared before this line", b.node),
            suggest(&b.node, &self.buffers).or(Some("declare it with `buffer NAME size=SIZE heap=system`".into())),
        ))
    }

    fn target(&self, t: &Target) -> Result<Bytes, RunError> {
        let buf = self.buffer(&t.buf)?;
        let size = self.sizes[&buf];
        let range = match &t.range {
            None => 0..size,
            Some(r) => {
                if r.node.end > size || r.node.start > r.node.end {
                    return Err(self.ctx.err(
                        r.span,
                        format!("range {} is outside buffer `{}` of {size:#x} bytes", r.node, t.buf.node),
                        Some(format!("use offsets within 0..{size:#x}")),
                    ));
                }
                r.node.start..r.node.end
            }
        };
        Ok(Bytes { buf, range })
    }

    fn fence(&self, f: &Ident) -> Result<FenceId, RunError> {
        if let Some(&id) = self.fence_ids.get(&f.node)
            && self.made.contains(&id)
        {
            return Ok(id);
        }
        Err(self.ctx.err(
            f.span,
            format!("no fence `{}` is made before this line", f.node),
            suggest(&f.node, &self.fences)
                .or(Some("make it with `fence F`, a job's `signal F`, or `export BUF read as F`".into())),
        ))
    }

    /// The fence variable `f` names, made here.
    fn make_fence(&mut self, f: &Ident) -> FenceId {
        let id = match self.fence_ids.get(&f.node) {
            Some(&id) => id,
            None => {
                let id = FenceId(self.fences.len() as u32);
                self.fences.push(f.node.clone());
                self.fence_ids.insert(f.node.clone(), id);
                id
            }
        };
        self.made.insert(id);
        id
    }

    fn steps(&mut self, steps: &[Step]) -> Result<Vec<Stmt>, RunError> {
        steps.iter().map(|s| Ok(Stmt { line: s.line, span: s.span, cmd: self.step(s)? })).collect()
    }

    fn step(&mut self, s: &Step) -> Result<Cmd, RunError> {
        let write = |a: &Spanned<Access>| matches!(a.node, Access::Write | Access::ReadWrite);
        Ok(match &s.op {
            Op::Buffer(b) => {
                if b.size.node == 0 {
                    return Err(self.ctx.err(b.size.span, "a buffer cannot be empty".into(), None));
                }
                let source = match &b.source.node {
                    scenario::Source::Heap(h) => {
                        if !HEAPS.contains(&h.as_str()) {
                            let known: Vec<String> = HEAPS.iter().map(|s| s.to_string()).collect();
                            return Err(self.ctx.err(b.source.span, format!("no heap `{h}`"), suggest(h, &known)));
                        }
                        Source::Heap(h.clone())
                    }
                    scenario::Source::Device(d) => {
                        Source::Device(self.device(&Spanned::new(d.clone(), b.source.span))?)
                    }
                    scenario::Source::Udmabuf => Source::Udmabuf,
                };
                // A name declared again is the same variable: the new buffer replaces the
                // old one from here on (docs/scenario-language.md, `buffer`).
                let buf = match self.buffer_ids.get(&b.name.node) {
                    Some(&id) => id,
                    None => {
                        let id = BufId(self.buffers.len() as u32);
                        self.buffers.push(b.name.node.clone());
                        self.buffer_ids.insert(b.name.node.clone(), id);
                        id
                    }
                };
                self.sizes.insert(buf, b.size.node);
                Cmd::Alloc {
                    buf,
                    size: b.size.node,
                    source,
                    source_span: b.source.span,
                    label: b.label.as_ref().map(|l| l.node.clone()),
                }
            }
            Op::Attach { dev, buf, dynamic, p2p, expect_refused } => {
                let (dev, buf) = (self.device(dev)?, self.buffer(buf)?);
                if let Some(rule) = expect_refused
                    && !ATTACH_RULES.contains(&rule.node.as_str())
                {
                    let known: Vec<String> = ATTACH_RULES.iter().map(|s| s.to_string()).collect();
                    return Err(self.ctx.err(
                        rule.span,
                        format!("no attach rule `{}`", rule.node),
                        suggest(&rule.node, &known),
                    ));
                }
                Cmd::Attach {
                    dev,
                    buf,
                    dynamic: *dynamic,
                    p2p: *p2p,
                    expect_refused: expect_refused.as_ref().map(|r| r.node.clone()),
                }
            }
            Op::Detach { dev, buf } => Cmd::Detach { dev: self.device(dev)?, buf: self.buffer(buf)? },
            Op::Pin { dev, buf } => Cmd::Pin { dev: self.device(dev)?, buf: self.buffer(buf)? },
            Op::Unpin { dev, buf } => Cmd::Unpin { dev: self.device(dev)?, buf: self.buffer(buf)? },
            Op::ImporterVmap { dev, buf } => Cmd::ImporterVmap { dev: self.device(dev)?, buf: self.buffer(buf)? },
            Op::ImporterVunmap { dev, buf } => Cmd::ImporterVunmap { dev: self.device(dev)?, buf: self.buffer(buf)? },
            Op::Map { dev, buf, dir } => {
                Cmd::Map { dev: self.device(dev)?, buf: self.buffer(buf)?, dir: dma_dir(dir.node) }
            }
            Op::Unmap { dev, buf } => Cmd::Unmap { dev: self.device(dev)?, buf: self.buffer(buf)? },
            Op::Migrate { buf, to } => {
                Cmd::Migrate { buf: self.buffer(buf)?, to_device: to.node == scenario::MigrateTo::Device }
            }
            Op::Vmap { buf } => Cmd::Vmap { buf: self.buffer(buf)? },
            Op::Vunmap { buf } => Cmd::Vunmap { buf: self.buffer(buf)? },
            Op::Mmap { buf } => Cmd::Mmap { buf: self.buffer(buf)? },
            Op::Munmap { buf } => Cmd::Munmap { buf: self.buffer(buf)? },
            Op::Release { buf } => Cmd::Release { buf: self.buffer(buf)? },
            Op::SetName { buf, name } => Cmd::SetName { buf: self.buffer(buf)?, name: name.node.clone() },
            Op::CpuEnd { buf, dir } => Cmd::CpuEnd { buf: self.buffer(buf)?, dir: dma_dir(dir.node) },
            Op::Sync { target, flags } => {
                let flags_span = flags.span;
                let (flags, overwrite) = match flags.node {
                    SyncFlags::Raw(f) => (f, false),
                    SyncFlags::Named { end, access, overwrite } => {
                        let a = match access {
                            Access::Read => dmabuf::DMA_BUF_SYNC_READ,
                            Access::Write => dmabuf::DMA_BUF_SYNC_WRITE,
                            Access::ReadWrite => dmabuf::DMA_BUF_SYNC_RW,
                        };
                        let o = if overwrite { dmabuf::DMA_BUF_SYNC_OVERWRITE } else { 0 };
                        (a | o | if end { dmabuf::DMA_BUF_SYNC_END } else { dmabuf::DMA_BUF_SYNC_START }, overwrite)
                    }
                };
                let bytes = self.target(target)?;
                // `struct dma_buf_sync_partial` has a 32-bit offset and length: a ranged sync,
                // and an overwrite (which goes through that ioctl), stay below 4 GiB.
                let partial = (target.range.is_some() || overwrite).then_some(bytes.range);
                if let Some(p) = &partial
                    && p.end > u64::from(u32::MAX)
                {
                    let (span, what) = match &target.range {
                        Some(r) => (r.span, format!("range {}", r.node)),
                        None => (flags_span, format!("an overwrite of the whole buffer ({} bytes)", p.end)),
                    };
                    return Err(self.ctx.err(
                        span,
                        format!("{what} does not fit DMA_BUF_IOCTL_SYNC_PARTIAL's 32-bit offset and length"),
                        Some("a ranged or overwrite sync covers bytes below 4 GiB".to_string()),
                    ));
                }
                Cmd::Sync { buf: bytes.buf, flags, partial }
            }
            Op::DeviceBegin { dev, target } => Cmd::DeviceBegin { dev: self.device(dev)?, bytes: self.target(target)? },
            Op::DeviceEnd { dev, target } => Cmd::DeviceEnd { dev: self.device(dev)?, bytes: self.target(target)? },
            Op::DeviceSync { from, to, target } => {
                Cmd::DeviceSync { from: self.device(from)?, to: self.device(to)?, bytes: self.target(target)? }
            }
            Op::Job(j) => {
                let dev = self.device(&j.dev)?;
                let after = j.after.iter().map(|f| self.fence(f)).collect::<Result<Vec<_>, _>>()?;
                let kind = match &j.kind {
                    scenario::JobKind::Read { src, expect } => {
                        JobKind::Read { src: self.target(src)?, expect: expect.as_ref().map(|e| e.node) }
                    }
                    scenario::JobKind::Write { dst, value } => {
                        JobKind::Write { dst: self.target(dst)?, value: value.node }
                    }
                    scenario::JobKind::Copy { src, dst } | scenario::JobKind::Transform { src, dst, .. } => {
                        let (s, d) = (self.target(src)?, self.target(dst)?);
                        let (ls, ld) = (s.range.end - s.range.start, d.range.end - d.range.start);
                        if ls != ld {
                            let span = dst.range.as_ref().map_or(dst.buf.span, |r| r.span);
                            return Err(self.ctx.err(
                                span,
                                format!("a copy needs ranges of one length: {ls} bytes to {ld} bytes"),
                                None,
                            ));
                        }
                        let xor = if let scenario::JobKind::Transform { xor, .. } = &j.kind { xor.node } else { 0 };
                        JobKind::Copy { src: s, dst: d, xor }
                    }
                };
                let signal = j.signal.as_ref().map(|f| self.make_fence(f));
                Cmd::Job(JobCmd { dev, kind, after, signal })
            }
            Op::CpuBegin { target, dir, overwrite } => {
                Cmd::CpuBegin { bytes: self.target(target)?, dir: dma_dir(dir.node), overwrite: *overwrite }
            }
            Op::CpuRead { target, expect } => {
                Cmd::CpuRead { bytes: self.target(target)?, expect: expect.as_ref().map(|e| e.node) }
            }
            Op::CpuWrite { target, value } => Cmd::CpuWrite { bytes: self.target(target)?, value: value.node },
            Op::Fence { name } => Cmd::Fence { fence: self.make_fence(name) },
            Op::Signal { fence } => Cmd::Signal { fence: self.fence(fence)? },
            Op::Wait { fences } => {
                Cmd::Wait { fences: fences.iter().map(|f| self.fence(f)).collect::<Result<Vec<_>, _>>()? }
            }
            Op::Export { buf, access, fence } => {
                let buf = self.buffer(buf)?;
                Cmd::Export { buf, write: write(access), fence: self.make_fence(fence) }
            }
            Op::Import { fence, buf, access } => {
                Cmd::Import { fence: self.fence(fence)?, buf: self.buffer(buf)?, write: write(access) }
            }
            Op::ResvAdd { buf, fence, usage } => {
                let usage = match usage.node {
                    Usage::Kernel => ResvUsage::Kernel,
                    Usage::Write => ResvUsage::Write,
                    Usage::Read => ResvUsage::Read,
                    Usage::Bookkeep => ResvUsage::Bookkeep,
                };
                Cmd::ResvAdd { fence: self.fence(fence)?, buf: self.buffer(buf)?, usage }
            }
            Op::Repeat { count, body } => Cmd::Repeat { count: count.node, body: self.steps(body)? },
        })
    }
}

/// Checks a scenario's names and ranges against a platform and resolves them.
pub fn lower(scenario: &Scenario, platform: &Platform, file: &str, src: &str) -> Result<Program, RunError> {
    let mut l = Lower {
        ctx: Ctx { file, src },
        platform,
        devices: platform.devices.iter().map(|d| d.name.clone()).collect(),
        buffers: Vec::new(),
        buffer_ids: HashMap::new(),
        sizes: HashMap::new(),
        fences: Vec::new(),
        fence_ids: HashMap::new(),
        made: Default::default(),
    };
    let steps = l.steps(&scenario.steps)?;
    let total = total_steps(&scenario.steps);
    if total > MAX_STEPS {
        // Point at the outermost repeat that makes it so.
        let span = scenario
            .steps
            .iter()
            .filter(|s| matches!(s.op, Op::Repeat { .. }))
            .max_by_key(|s| total_steps(std::slice::from_ref(*s)))
            .map_or(Span::new(0, 0), |s| s.span);
        return Err(l.ctx.err(
            span,
            format!("the scenario runs {total} steps; the limit is {MAX_STEPS}"),
            Some("lower the repeat counts: a few hundred frames show any bug a loop has".into()),
        ));
    }
    Ok(Program { buffers: l.buffers, fences: l.fences, devices: l.devices, steps })
}
