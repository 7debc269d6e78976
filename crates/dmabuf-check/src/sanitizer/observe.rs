//! The sanitizer as the simulator's observer: the bytes every access really returned,
//! and every write-back, discard and copy the hardware made.

use dmabuf_sim::{Cause, Event, Observer, ProvRun};

use super::{FindingKind, Involved, Origin, Sanitizer, mix};

impl Observer for Sanitizer {
    fn event(&mut self, ev: &Event<'_>) {
        match ev {
            Event::CpuRead { prov, len, .. } | Event::DeviceRead { prov, len, .. } => {
                if let Some(o) = &mut self.open {
                    for p in prov.iter() {
                        o.prov.push(ProvRun { offset: p.offset + o.prov_len, len: p.len, write: p.write });
                    }
                    o.prov_len += *len;
                } else if let Some((src, read, _)) = &mut self.copy {
                    for p in prov.iter() {
                        src.push(ProvRun { offset: p.offset + *read, len: p.len, write: p.write });
                    }
                    *read += *len;
                }
            }
            Event::CpuWrite { write, .. } => {
                if let Some(o) = &self.open {
                    self.writes.insert(write.0, o.idx);
                    self.writes_digest = mix(self.writes_digest, write.0, o.idx);
                }
            }
            Event::DeviceWrite { write, len, .. } => {
                if let Some(o) = &self.open {
                    self.writes.insert(write.0, o.idx);
                    self.writes_digest = mix(self.writes_digest, write.0, o.idx);
                } else if let Some((src, _, written)) = &mut self.copy {
                    let (s, e) = (*written, *written + *len);
                    let mut part = Vec::new();
                    for p in src.iter() {
                        let (a, b) = (p.offset.max(s), (p.offset + p.len).min(e));
                        if a < b {
                            part.push(ProvRun { offset: a, len: b - a, write: p.write });
                        }
                    }
                    *written = e;
                    self.aliases.insert(write.0, part);
                }
            }
            Event::Discard { lost, cache, cause, .. } if !lost.is_empty() => {
                let mut origins = Vec::new();
                self.resolve(lost, None, &mut origins, 0);
                let how = match cause {
                    Cause::Maintenance => {
                        format!("an invalidate dropped dirty lines of the {} cache", cache_name(cache))
                    }
                    _ => format!("the {} cache dropped dirty lines", cache_name(cache)),
                };
                for (_, _, o) in origins {
                    if let Origin::Access(w) = o {
                        self.destroy(w, how.clone(), (0, String::new()));
                    }
                }
            }
            Event::WriteBack { prov, replaced, cache, cause, .. } => {
                let (mut old, mut new) = (Vec::new(), Vec::new());
                self.resolve(replaced, None, &mut old, 0);
                self.resolve(prov, None, &mut new, 0);
                for &(o, l, before) in &old {
                    let Origin::Access(victim) = before else { continue };
                    for &(no, nl, after) in &new {
                        if no >= o + l || no + nl <= o || after == before {
                            continue;
                        }
                        let older = match after {
                            Origin::Unknown => true,
                            Origin::Ambiguous => false,
                            Origin::Access(x) => {
                                let (xa, va) = (&self.accesses[x as usize], &self.accesses[victim as usize]);
                                xa.hb(va)
                            }
                        };
                        if older {
                            let why = match cause {
                                Cause::Maintenance => "a clean",
                                Cause::Capacity => "an eviction",
                                _ => "a write-back the hardware chose",
                            };
                            let how =
                                format!("{why} wrote an older dirty line of the {} cache over it", cache_name(cache));
                            let by = match after {
                                Origin::Access(x) => {
                                    let xa = &self.accesses[x as usize];
                                    (xa.line, xa.agent.clone())
                                }
                                Origin::Unknown | Origin::Ambiguous => (0, String::new()),
                            };
                            self.destroy(victim, how, by);
                        }
                    }
                }
            }
            Event::MismatchedAlias { existing, new, .. } => {
                let (line, buffer) = (self.line, self.buffer.clone());
                self.report(
                    FindingKind::Misuse,
                    &buffer,
                    0..0,
                    vec!["cpu".into()],
                    vec![Involved { line, role: "mapped the pages again".into() }],
                    format!(
                        "mismatched alias: {buffer} is mapped {} and {} at once; a cached alias can write stale lines back over the other mapping's data",
                        existing.name(),
                        new.name()
                    ),
                    format!(
                        "map every alias of {buffer} with the exporter's attribute ({}), or take the buffer from a heap whose attribute all parties share",
                        existing.name()
                    ),
                );
            }
            _ => {}
        }
    }
}

fn cache_name(c: &dmabuf_sim::CacheId) -> String {
    match c {
        dmabuf_sim::CacheId::Cpu => "CPU".into(),
        dmabuf_sim::CacheId::Device(d) => format!("device {}", d.0),
    }
}
