//! [`Device`]: a simulated device driven as its driver would drive it, importing buffers
//! and running fenced jobs on them in simulated time.

use std::fmt;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use dmabuf_sim::{DeviceId, DmaDirection};
use dmabuf_uapi::{Errno, Error, Result, validate};

use super::{DEFAULT_JOB_TIME, DEPENDENCY_TIMEOUT, DmaBuf, Shared};
use crate::Attachment;
use crate::fence::{Fence, MonotonicTime, context_alloc};
use crate::resv::ResvUsage;
use crate::sim_time::Simulation;

fn range64(r: &Range<usize>) -> Range<u64> {
    r.start as u64..r.end as u64
}

/// A buffer a device has imported: attached and mapped until the device lets it go.
struct Import {
    id: u64,
    att: Attachment,
    /// The reference the importer holds (a driver holds the dma-buf's file).
    _buf: crate::DmaBuf,
}

impl Drop for Import {
    fn drop(&mut self) {
        // The mapping goes before the attachment, as a driver's release does it; an
        // unmap the hardware refuses leaves nothing to undo.
        let _ = self.att.unmap_raw();
    }
}

/// A simulated device on the same [`System`](crate::System), driven as its driver would drive it: it
/// imports buffers and runs jobs on them, fenced through their reservation objects, in
/// simulated time. Made by [`Heaps::device`](super::Heaps::device).
pub struct Device {
    shared: Rc<Shared>,
    id: DeviceId,
    name: String,
    context: u64,
    seqno: u64,
    job_time: Duration,
    imports: Vec<Import>,
    /// The fence of the last job submitted.
    last: Option<Fence>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device").field("name", &self.name).field("jobs", &self.seqno).finish()
    }
}

impl Device {
    /// The platform's device `name`; the error lists the platform's devices.
    pub(super) fn new(shared: Rc<Shared>, name: &str) -> Result<Device> {
        let id = shared.sys.device(name).map_err(|source| Error::Device {
            device: name.to_owned(),
            action: "lookup",
            source: Box::new(source),
        })?;
        Ok(Device {
            shared,
            id,
            name: name.to_owned(),
            context: context_alloc(1),
            seqno: 0,
            job_time: DEFAULT_JOB_TIME,
            imports: Vec::new(),
            last: None,
        })
    }

    /// The device's name on the platform.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets how long each job takes in simulated time (at least 1 ns).
    pub fn set_job_time(&mut self, t: Duration) {
        self.job_time = t.max(Duration::from_nanos(1));
    }

    /// How many jobs have been submitted.
    pub fn jobs(&self) -> u64 {
        self.seqno
    }

    /// The fence of the last job, if any (signalled once the job completed).
    pub fn last_fence(&self) -> Option<&Fence> {
        self.last.as_ref()
    }

    /// Whether the device has imported `buf`.
    pub fn has_imported(&self, buf: &DmaBuf) -> bool {
        self.imports.iter().any(|i| i.id == buf.id)
    }

    /// Imports `buf` if not done yet: attaches the device and maps the buffer for it, both
    /// ways, for as long as the device holds it (a DRM driver's PRIME import).
    pub fn import(&mut self, buf: &DmaBuf) -> Result<()> {
        self.import_index(buf).map(|_| ())
    }

    /// Lets `buf` go: unmaps and detaches it. Nothing happens if it was not imported.
    pub fn release(&mut self, buf: &DmaBuf) {
        self.imports.retain(|i| i.id != buf.id);
    }

    /// The index of `buf`'s import, importing it first if needed.
    fn import_index(&mut self, buf: &DmaBuf) -> Result<usize> {
        if !Rc::ptr_eq(&buf.shared, &self.shared) {
            return Err(Error::ForeignBuffer { device: self.name.clone(), buffer: buf.inner.name() });
        }
        if let Some(pos) = self.imports.iter().position(|i| i.id == buf.id) {
            return Ok(pos);
        }
        let err = |action| {
            let device = self.name.clone();
            move |source: crate::Error| Error::Device { device, action, source: Box::new(source) }
        };
        let att = buf.inner.attach(self.id).map_err(err("attach"))?;
        att.map_raw(DmaDirection::Bidirectional).map_err(err("map"))?;
        self.imports.push(Import { id: buf.id, att, _buf: buf.inner.clone() });
        Ok(self.imports.len() - 1)
    }

    /// Runs a job on `buf`: waits for the fences it must (a writer for everyone, a reader
    /// for the writers), adds its own fence, runs `work` on the attachment inside a
    /// device-side access bracket over `range` (with the device's own cache dropped over
    /// it first, as a GPU driver does at every job), and schedules the fence to signal
    /// after the job time.
    fn job<R>(
        &mut self,
        buf: &DmaBuf,
        write: bool,
        range: Range<usize>,
        work: impl FnOnce(&Attachment) -> Result<R, crate::Error>,
    ) -> Result<R> {
        validate::range(&range, buf.size())?;
        let idx = self.import_index(buf)?;
        let device = self.name.clone();
        let fail = |action| {
            let device = device.clone();
            move |source: crate::Error| Error::Device { device, action, source: Box::new(source) }
        };
        let resv = buf.inner.resv();
        resv.wait_timeout(ResvUsage::rw(write), Some(DEPENDENCY_TIMEOUT))
            .map_err(|e| fail("waiting for the job's dependencies")(e.into()))?;
        self.seqno += 1;
        let fence = self.shared.queue.fence(self.context, self.seqno, &self.name, "jobs");
        {
            let mut guard = resv.lock();
            guard.reserve_fences(1);
            guard
                .add_fence(&fence, if write { ResvUsage::Write } else { ResvUsage::Read })
                .map_err(|e| fail("adding the job's fence")(e.into()))?;
        }
        let r64 = range64(&range);
        let att = &self.imports[idx].att;
        // The driver starts the job with its device's cache dropped over the range, as GPU
        // drivers do whatever they know of who wrote the buffer; then the device-side
        // access bracket hands it what others wrote.
        let result =
            att.begin_access_raw(r64.clone()).and_then(|()| att.invalidate_device_cache(r64.clone())).and_then(|()| {
                let out = work(att);
                let ended = att.end_access_raw(r64);
                out.and_then(|o| ended.map(|()| o))
            });
        match result {
            Ok(out) => {
                let at =
                    self.shared.queue.now().checked_add(self.job_time).unwrap_or(MonotonicTime::from_nanos(u64::MAX));
                self.shared.queue.signal_at(at, &fence);
                self.last = Some(fence);
                Ok(out)
            }
            Err(source) => {
                // A failed job signals at once, with the error, as a driver's reset does.
                let _ = fence.signal_with_error(Errno::EIO);
                self.last = Some(fence);
                Err(Error::Device {
                    device,
                    action: if write { "write job" } else { "read job" },
                    source: Box::new(source),
                })
            }
        }
    }

    /// A job in which the device reads `range` of `buf`; returns the bytes it read. Its
    /// read fence stays on the buffer until the job completes in simulated time.
    pub fn read(&mut self, buf: &DmaBuf, range: Range<usize>) -> Result<Vec<u8>> {
        let r = range64(&range);
        self.job(buf, false, range, |att| att.device_read_raw(r))
    }

    /// A job in which the device writes `data` at offset `at` of `buf`. Its write fence
    /// stays on the buffer until the job completes in simulated time.
    pub fn write(&mut self, buf: &DmaBuf, at: usize, data: &[u8]) -> Result<()> {
        let range = at..at.saturating_add(data.len());
        self.job(buf, true, range, |att| att.device_write_raw(at as u64, data).map(|_| ()))
    }

    /// Runs simulated time until every job of this device has completed (its fence
    /// signalled).
    pub fn complete(&mut self) -> Result<()> {
        let Some(last) = &self.last else { return Ok(()) };
        // Jobs complete in submission order: the last one signals last.
        match last.wait_opt(None) {
            Ok(()) => Ok(()),
            Err(e) => Err(Error::Device {
                device: self.name.clone(),
                action: "completing jobs",
                source: Box::new(crate::Error::from(e)),
            }),
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // A device going away finishes its jobs first: no fence is left for nobody to
        // signal.
        let _ = self.complete();
        self.imports.clear();
    }
}
