//! The rules a description must keep, each reported with the key that breaks it.

use super::{CacheGeometry, MAX_COST, Platform, PlatformError, RegionKind};
use crate::addr::PAGE_SIZE;

impl Platform {
    /// Checks every rule; `file` names the description in errors.
    pub fn validate(&self, file: &str) -> Result<(), PlatformError> {
        let bad = |key: String, rule: String| PlatformError::Invalid { file: file.to_string(), key, rule, at: None };
        if !(self.line_size.is_power_of_two() && (32..=256).contains(&self.line_size)) {
            return Err(bad("line_size".into(), format!("must be 32, 64, 128 or 256 bytes, not {}", self.line_size)));
        }
        if let Some(g) = &self.cpu.cache {
            check_geometry(g).map_err(|rule| bad("cpu.cache".into(), rule))?;
        }
        if self.cpu.wc_buffer_lines == 0 || self.cpu.wc_buffer_lines > 64 {
            return Err(bad("cpu.wc_buffer_lines".into(), "must be between 1 and 64".into()));
        }
        if self.regions.is_empty() {
            return Err(bad("region".into(), "a platform needs at least one memory region".into()));
        }
        for (i, r) in self.regions.iter().enumerate() {
            let key = format!("region[{i}] ({})", r.name);
            if r.name.is_empty() {
                return Err(bad(format!("region[{i}].name"), "must not be empty".into()));
            }
            if self.regions[..i].iter().any(|o| o.name == r.name) {
                return Err(bad(format!("{key}.name"), format!("duplicate region name `{}`", r.name)));
            }
            if r.size.0 == 0 || !r.size.0.is_multiple_of(PAGE_SIZE) {
                return Err(bad(format!("{key}.size"), format!("must be a non-zero multiple of {PAGE_SIZE} bytes")));
            }
            if !r.base.0.is_multiple_of(PAGE_SIZE) {
                return Err(bad(format!("{key}.base"), format!("must be aligned to {PAGE_SIZE} bytes")));
            }
            if r.base.0.checked_add(r.size.0).is_none() {
                return Err(bad(format!("{key}.size"), "base + size overflows 64 bits".into()));
            }
            for (j, o) in self.regions[..i].iter().enumerate() {
                if o.range().overlaps(&r.range()) {
                    return Err(bad(
                        key.clone(),
                        format!("overlaps region[{j}] ({}) {} with {}", o.name, o.range(), r.range()),
                    ));
                }
            }
            match (&r.kind, &r.owner) {
                (RegionKind::DeviceLocal, None) => {
                    return Err(bad(format!("{key}.owner"), "a device-local region names its owner device".into()));
                }
                (RegionKind::DeviceLocal, Some(o)) if self.device_index(o).is_none() => {
                    return Err(bad(format!("{key}.owner"), format!("no device is named `{o}`")));
                }
                (k, Some(_)) if *k != RegionKind::DeviceLocal => {
                    return Err(bad(format!("{key}.owner"), "only device-local regions have an owner".into()));
                }
                _ => {}
            }
        }
        if self.regions.iter().filter(|r| r.kind == RegionKind::Bounce).count() > 1 {
            return Err(bad("region".into(), "at most one bounce pool".into()));
        }
        for (i, d) in self.devices.iter().enumerate() {
            let key = format!("device[{i}] ({})", d.name);
            if d.name.is_empty() || d.name == "cpu" {
                return Err(bad(format!("device[{i}].name"), "must be non-empty and not `cpu`".into()));
            }
            if self.devices[..i].iter().any(|o| o.name == d.name) {
                return Err(bad(format!("{key}.name"), format!("duplicate device name `{}`", d.name)));
            }
            if d.dma_mask == 0 || d.dma_mask > 64 {
                return Err(bad(
                    format!("{key}.dma_mask"),
                    format!("must be between 1 and 64 address bits, not {}", d.dma_mask),
                ));
            }
            if let Some(g) = &d.cache {
                check_geometry(g).map_err(|rule| bad(format!("{key}.cache"), rule))?;
            }
            for n in d.reaches.iter().flatten() {
                match self.region_index(n) {
                    None => return Err(bad(format!("{key}.reaches"), format!("no region is named `{n}`"))),
                    Some(r) if self.regions[r].kind == RegionKind::DeviceLocal => {
                        return Err(bad(
                            format!("{key}.reaches"),
                            format!("`{n}` is device-local memory: list it under `p2p`"),
                        ));
                    }
                    _ => {}
                }
            }
            for n in &d.p2p {
                match self.region_index(n) {
                    Some(r) if self.regions[r].kind == RegionKind::DeviceLocal => {}
                    Some(_) => {
                        return Err(bad(format!("{key}.p2p"), format!("`{n}` is not device-local memory")));
                    }
                    None => return Err(bad(format!("{key}.p2p"), format!("no region is named `{n}`"))),
                }
            }
            if !(0..self.regions.len()).any(|r| self.device_reaches(i, r)) {
                return Err(bad(format!("{key}.reaches"), "the device reaches no memory region".into()));
            }
        }
        self.validate_units(file)?;
        for (i, d) in self.devices.iter().enumerate() {
            let key = format!("device[{i}] ({})", d.name);
            for (j, w) in d.dma_windows.iter().enumerate() {
                let wk = format!("{key}.dma_windows[{j}]");
                if w.size.0 == 0 {
                    return Err(bad(wk, "a DMA window's size is not zero".into()));
                }
                if w.cpu.0.checked_add(w.size.0 - 1).is_none() || w.bus.0.checked_add(w.size.0 - 1).is_none() {
                    return Err(bad(wk, "cpu + size and bus + size must fit in 64 bits".into()));
                }
                if let Some(k) = d.dma_windows[..j].iter().position(|o| o.phys().overlaps(&w.phys())) {
                    return Err(bad(wk, format!("overlaps dma_windows[{k}] physically")));
                }
            }
            if !d.iommu && !d.dma_windows.is_empty() {
                let reach = d.direct_reach();
                let holds = self
                    .regions
                    .iter()
                    .enumerate()
                    .any(|(r, g)| self.device_reaches(i, r) && reach.iter().any(|w| w.overlaps(&g.range())));
                let pool = self.regions.iter().any(|g| g.kind == RegionKind::Bounce);
                if !holds && !pool {
                    return Err(bad(
                        format!("{key}.dma_windows"),
                        "no memory region lies in the device's DMA windows (within its mask) and there is no bounce pool".into(),
                    ));
                }
            }
            if let Some(u) = &d.iommu_unit {
                if !self.iommus.iter().any(|m| &m.name == u) {
                    return Err(bad(format!("{key}.iommu_unit"), format!("no [[iommu]] is named `{u}`")));
                }
                if !d.iommu {
                    return Err(bad(
                        format!("{key}.iommu"),
                        format!("the device sits behind IOMMU `{u}`: drop `iommu = false`"),
                    ));
                }
            }
            if let Some(pn) = &d.port {
                match self.ports.iter().find(|p| &p.name == pn) {
                    None => return Err(bad(format!("{key}.port"), format!("no [[port]] is named `{pn}`"))),
                    Some(p) if p.snoop != d.coherent => {
                        return Err(bad(
                            format!("{key}.coherent"),
                            format!(
                                "the device is on port `{pn}`, which {}: its coherency is the port's (drop `coherent`)",
                                if p.snoop { "snoops" } else { "does not snoop" }
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        for (name, cost) in self.costs.entries() {
            if cost > MAX_COST {
                return Err(bad(
                    format!("costs.{name}"),
                    format!(
                        "must be at most {MAX_COST} cycles (10^9, per operation or per line: more would drown \
                         every counter of a run), not {cost}"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Platform {
    /// The rules of `[[iommu]]`, `[[port]]` and `[[system_cache]]`.
    fn validate_units(&self, file: &str) -> Result<(), PlatformError> {
        let bad = |key: String, rule: String| PlatformError::Invalid { file: file.to_string(), key, rule, at: None };
        for (i, m) in self.iommus.iter().enumerate() {
            let key = format!("iommu[{i}] ({})", m.name);
            if m.name.is_empty() || self.iommus[..i].iter().any(|o| o.name == m.name) {
                return Err(bad(format!("{key}.name"), "must be non-empty and unique".into()));
            }
            if !(12..=64).contains(&m.input_bits) {
                return Err(bad(
                    format!("{key}.input_bits"),
                    format!("must be between 12 and 64 address bits, not {}", m.input_bits),
                ));
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            if p.name.is_empty() || self.ports[..i].iter().any(|o| o.name == p.name) {
                return Err(bad(format!("port[{i}] ({}).name", p.name), "must be non-empty and unique".into()));
            }
        }
        if self.system_caches.len() > 1 {
            return Err(bad("system_cache".into(), "at most one system-level cache (the simulator models one)".into()));
        }
        for (i, s) in self.system_caches.iter().enumerate() {
            let key = format!("system_cache[{i}] ({})", s.name);
            if let Some(g) = &s.cache {
                check_geometry(g).map_err(|rule| bad(format!("{key}.cache"), rule))?;
            }
            for m in &s.masters {
                if m != "cpu" && self.device_index(m).is_none() {
                    return Err(bad(format!("{key}.masters"), format!("`{m}` is neither `cpu` nor a device")));
                }
            }
        }
        Ok(())
    }
}

fn check_geometry(g: &CacheGeometry) -> Result<(), String> {
    if g.sets == 0 || !g.sets.is_power_of_two() || g.ways == 0 || g.ways > 64 {
        return Err(format!("sets must be a power of two and ways 1 to 64 (got {} x {})", g.sets, g.ways));
    }
    Ok(())
}
