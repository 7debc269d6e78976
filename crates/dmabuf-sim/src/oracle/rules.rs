//! The oracle's rules, one line at a time: for each access, which needs it records and
//! how it changes what may be wrong with the line (the table of the module documentation).

use super::{Kind, Oracle, Out};

impl Oracle {
    /// Another agent reads bytes `t`: device caches holding them dirty must write back.
    fn flush_for_reader(&mut self, line: u64, t: u64, except: Option<usize>) {
        for slot in 0..self.caches {
            if Some(slot) == except {
                continue;
            }
            let d = self.dev(line, slot);
            if d.dirty & t != 0 {
                let start = d.dirty_at;
                d.dirty = 0;
                self.need_line(Kind::DeviceFlush(slot), line, start);
            }
        }
    }

    /// Another agent writes bytes `t` (covering `c`): device caches holding dirty bytes
    /// must lose them first, and may now hold stale ones.
    fn foreign_write_to_caches(&mut self, line: u64, t: u64, c: u64, except: Option<usize>) {
        for slot in 0..self.caches {
            if Some(slot) == except {
                continue;
            }
            let d = self.dev(line, slot);
            if d.dirty != 0 {
                let (start, keep) = (d.dirty_at, d.dirty & !c != 0);
                d.dirty = 0;
                if !keep {
                    d.present = false;
                    d.stale = 0;
                }
                let kind = if keep { Kind::DeviceFlush(slot) } else { Kind::DeviceInvalidate(slot) };
                self.need_line(kind, line, start);
            }
            let d = self.dev(line, slot);
            if d.present {
                d.stale |= t;
            }
        }
    }

    /// A write by an agent that does not snoop the CPU cache reaches memory.
    fn noncoherent_write(&mut self, line: u64, t: u64, c: u64) {
        let now = self.seq;
        let cacheable = self.cacheable(line);
        let l = self.cpu(line);
        let dirty = (l.dirty, l.dirty_at);
        l.dirty = 0;
        if cacheable {
            l.stale |= t;
            l.stale_at = now;
        }
        l.write_at = now;
        if dirty.0 != 0 {
            let kind = if dirty.0 & !c != 0 { Kind::Clean } else { Kind::Invalidate };
            self.need_line(kind, line, dirty.1);
        }
    }

    /// A coherent write: the snoop writes back and drops the CPU's line.
    fn coherent_write(&mut self, line: u64) {
        let now = self.seq;
        let l = self.cpu(line);
        l.dirty = 0;
        l.stale = 0;
        l.write_at = now;
    }

    /// Anyone but the bounced device reads original bytes `t`: what the device left in
    /// its slot is copied back first (through the CPU cache).
    fn copy_out(&mut self, line: u64, t: u64) {
        if self.out.is_empty() {
            return;
        }
        let Some(o) = self.out.get_mut(&line) else { return };
        let n = o.mask & t;
        if n == 0 {
            return;
        }
        o.mask &= !n;
        let o = *o;
        if o.mask == 0 {
            self.out.remove(&line);
        }
        self.need_bytes(line, n, o.at);
        if o.noncoherent {
            self.need_line(Kind::Invalidate, o.slot_line, o.at);
        }
        let now = self.seq;
        let (pfn, _) = self.line_pos(line);
        self.page(pfn).cacheable = true;
        let l = self.cpu(line);
        l.dirty |= n;
        l.dirty_at = now;
        l.write_at = now;
    }

    /// Original bytes `t` (covering `c`) changed: slots no longer hold them, and what a
    /// device left in its slot is overwritten.
    fn forget_slots(&mut self, line: u64, t: u64, c: u64) {
        if let Some(f) = self.slot_fresh.get_mut(&line) {
            *f &= !t;
        }
        if let Some(o) = self.out.get_mut(&line) {
            o.mask &= !c;
            if o.mask == 0 {
                self.out.remove(&line);
            }
        }
    }

    pub(super) fn cpu_cached_read(&mut self, line: u64, t: u64) {
        self.copy_out(line, t);
        self.flush_for_reader(line, t, None);
        let (pfn, _) = self.line_pos(line);
        self.page(pfn).cacheable = true;
        let l = self.cpu(line);
        if l.stale & t != 0 {
            let start = l.stale_at;
            l.stale = 0;
            self.need_line(Kind::Invalidate, line, start);
        }
    }

    pub(super) fn cpu_uncached_read(&mut self, line: u64, t: u64) {
        self.copy_out(line, t);
        self.flush_for_reader(line, t, None);
        let l = self.cpu(line);
        if l.dirty & t != 0 {
            let start = l.dirty_at;
            l.dirty = 0;
            self.need_line(Kind::Clean, line, start);
        }
    }

    pub(super) fn cpu_cached_write(&mut self, line: u64, t: u64, c: u64) {
        let now = self.seq;
        self.forget_slots(line, t, c);
        let (pfn, _) = self.line_pos(line);
        self.page(pfn).cacheable = true;
        let l = self.cpu(line);
        let merge = (l.stale & !c != 0).then_some(l.stale_at);
        l.stale = if merge.is_some() { 0 } else { l.stale & !c };
        l.dirty |= t;
        l.dirty_at = now;
        l.write_at = now;
        if let Some(start) = merge {
            self.need_line(Kind::Invalidate, line, start);
        }
        self.foreign_write_to_caches(line, t, c, None);
    }

    pub(super) fn cpu_uncached_write(&mut self, line: u64, t: u64, c: u64) {
        self.forget_slots(line, t, c);
        self.foreign_write_to_caches(line, t, c, None);
        self.noncoherent_write(line, t, c);
    }

    pub(super) fn device_read(&mut self, dev: usize, line: u64, t: u64) {
        let (coherent, slot) = self.devs[dev];
        self.copy_out(line, t);
        self.flush_for_reader(line, t, slot);
        if let Some(s) = slot {
            let now = self.seq;
            let d = self.dev(line, s);
            let stale = (d.present && d.stale & t != 0).then_some(d.access_at);
            if stale.is_some() {
                d.stale = 0;
            }
            d.present = true;
            d.access_at = now;
            if let Some(start) = stale {
                self.need_line(Kind::DeviceInvalidate(s), line, start);
            }
        }
        let l = self.cpu(line);
        if coherent {
            if l.stale & t != 0 {
                let start = l.stale_at;
                l.stale = 0;
                self.need_line(Kind::Invalidate, line, start);
            }
        } else if l.dirty & t != 0 {
            let start = l.dirty_at;
            l.dirty = 0;
            self.need_line(Kind::Clean, line, start);
        }
    }

    pub(super) fn device_write(&mut self, dev: usize, line: u64, t: u64, c: u64) {
        let (coherent, slot) = self.devs[dev];
        let now = self.seq;
        self.forget_slots(line, t, c);
        if let Some(s) = slot {
            let d = self.dev(line, s);
            let merge = (d.present && d.stale & !c != 0).then_some(d.access_at);
            d.stale = if merge.is_some() { 0 } else { d.stale & !c };
            d.dirty |= t;
            d.dirty_at = now;
            d.present = true;
            d.access_at = now;
            if let Some(start) = merge {
                self.need_line(Kind::DeviceInvalidate(s), line, start);
            }
        }
        self.foreign_write_to_caches(line, t, c, slot);
        if coherent {
            self.coherent_write(line);
        } else {
            self.noncoherent_write(line, t, c);
        }
    }

    /// A bounced device reads original bytes `t` of `line` through slot line `slot_line`.
    pub(super) fn bounced_read(&mut self, dev: usize, line: u64, t: u64, slot_line: u64) {
        let fresh = self.slot_fresh.get(&line).copied().unwrap_or(0);
        let n = t & !fresh;
        if n == 0 {
            return;
        }
        // The kernel copies the bytes in through the CPU cache: it reads the original as
        // the CPU does, and a non-coherent device then needs the slot's lines cleaned.
        let start = self.cpu(line).write_at;
        self.need_bytes(line, n, start);
        self.cpu_cached_read(line, n);
        if !self.devs[dev].0 {
            self.need_line(Kind::Clean, slot_line, start);
        }
        *self.slot_fresh.entry(line).or_insert(0) |= n;
    }

    /// A bounced device writes original bytes `t` (covering `c`) into its slot.
    pub(super) fn bounced_write(&mut self, dev: usize, line: u64, t: u64, c: u64, slot_line: u64) {
        let now = self.seq;
        *self.slot_fresh.entry(line).or_insert(0) |= t;
        let noncoherent = !self.devs[dev].0;
        let o = self.out.entry(line).or_insert(Out { mask: 0, slot_line, noncoherent, at: now });
        o.mask |= t;
        o.slot_line = slot_line;
        o.noncoherent = noncoherent;
        o.at = now;
        self.foreign_write_to_caches(line, t, c, None);
    }
}
