//! An import as TOML, each fact preceded by comments naming the node it came from.

use std::fmt::Write;

use dmabuf_sim::{ByteSize, CacheGeometry};

use crate::board::Import;

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn comments(out: &mut String, lines: &[String]) {
    for l in lines {
        for part in l.lines() {
            let _ = writeln!(out, "# {part}");
        }
    }
}

fn geometry(g: &CacheGeometry) -> String {
    format!("{{ sets = {}, ways = {} }}", g.sets, g.ways)
}

pub fn commented(imp: &Import) -> String {
    let p = &imp.platform;
    let mut o = String::new();
    comments(&mut o, &imp.notes);
    if !imp.not_described.is_empty() {
        o.push_str("#\n# Not described:\n");
        comments(&mut o, &imp.not_described.iter().map(|s| format!("  {s}")).collect::<Vec<_>>());
    }
    let _ = writeln!(o, "\nname = {}", q(&p.name));
    let _ = writeln!(o, "description = {}", q(&p.description));
    let _ = writeln!(o, "line_size = {}", p.line_size);
    let _ = writeln!(o, "dma_profile = \"arm64\"");
    let _ = writeln!(o, "\n[cpu]");
    if let Some(g) = &p.cpu.cache {
        let _ = writeln!(o, "cache = {}", geometry(g));
    }
    let _ = writeln!(o, "wc_buffer_lines = {}", p.cpu.wc_buffer_lines);
    for (i, r) in p.regions.iter().enumerate() {
        o.push('\n');
        comments(&mut o, imp.region_notes.get(i).map(Vec::as_slice).unwrap_or(&[]));
        let _ = writeln!(o, "[[region]]\nname = {}", q(&r.name));
        let kind = match r.kind {
            dmabuf_sim::RegionKind::Dram => "dram",
            dmabuf_sim::RegionKind::Cma => "cma",
            dmabuf_sim::RegionKind::Bounce => "bounce",
            dmabuf_sim::RegionKind::DeviceLocal => "device-local",
            dmabuf_sim::RegionKind::Sram => "sram",
        };
        let _ = writeln!(o, "kind = \"{kind}\"\nbase = \"{:#x}\"\nsize = \"{}\"", r.base.0, r.size);
    }
    for (i, m) in p.iommus.iter().enumerate() {
        o.push('\n');
        comments(&mut o, imp.iommu_notes.get(i).map(Vec::as_slice).unwrap_or(&[]));
        let _ = writeln!(
            o,
            "[[iommu]]\nname = {}\ndescription = {}\ninput_bits = {}",
            q(&m.name),
            q(&m.description),
            m.input_bits
        );
        if let Some(n) = &m.node {
            let _ = writeln!(o, "node = {}", q(n));
        }
    }
    for (i, d) in p.devices.iter().enumerate() {
        o.push('\n');
        comments(&mut o, imp.device_notes.get(i).map(Vec::as_slice).unwrap_or(&[]));
        let _ = writeln!(o, "[[device]]\nname = {}\ndescription = {}", q(&d.name), q(&d.description));
        if let Some(r) = d.role {
            let _ = writeln!(o, "role = \"{r}\"");
        }
        let _ = writeln!(o, "coherent = {}\ndma_mask = {}", d.coherent, d.dma_mask);
        match &d.iommu_unit {
            Some(u) => {
                let _ = writeln!(o, "iommu_unit = {}", q(u));
            }
            None => {
                let _ = writeln!(o, "iommu = {}", d.iommu);
            }
        }
        if d.needs_contiguous {
            o.push_str("needs_contiguous = true\n");
        }
        if d.keeps_mapping {
            o.push_str("keeps_mapping = true\n");
        }
        if !d.dma_windows.is_empty() {
            let w: Vec<String> = d
                .dma_windows
                .iter()
                .map(|w| {
                    format!(
                        "{{ cpu = \"{:#x}\", bus = \"{:#x}\", size = \"{}\" }}",
                        w.cpu.0,
                        w.bus.0,
                        ByteSize(w.size.0)
                    )
                })
                .collect();
            let _ = writeln!(o, "dma_windows = [{}]", w.join(", "));
        }
        if let Some(n) = &d.node {
            let _ = writeln!(o, "node = {}", q(n));
        }
    }
    for s in &p.system_caches {
        o.push('\n');
        let _ = writeln!(o, "[[system_cache]]\nname = {}\ndescription = {}", q(&s.name), q(&s.description));
        if let Some(g) = &s.cache {
            let _ = writeln!(o, "cache = {}", geometry(g));
        }
        let m: Vec<String> = s.masters.iter().map(|x| q(x)).collect();
        let _ = writeln!(o, "masters = [{}]", m.join(", "));
        if let Some(n) = &s.node {
            let _ = writeln!(o, "node = {}", q(n));
        }
    }
    o
}
