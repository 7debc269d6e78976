//! A whole board: memory, reserved memory, caches, IOMMUs and DMA masters read from the
//! tree into a [`Platform`], each fact with the node it came from.

use dmabuf_sim::{
    Address, ByteSize, CacheGeometry, Costs, CpuDesc, DeviceDesc, DeviceRole, DmaProfile, IommuDesc, PAGE_SIZE,
    PhysAddr, PhysRange, Platform, RegionDesc, RegionKind, SystemCacheDesc,
};

use crate::dma;
use crate::masters;
use crate::tree::{Tree, be32, number};

/// Memory the tree leaves to the bootloader (a `memory` node of size 0, or none) is
/// assumed to be this much.
pub const ASSUMED_MEMORY: u64 = 2 << 30;
/// The swiotlb pool Linux allocates by default (`IO_TLB_DEFAULT_SIZE`).
const SWIOTLB: u64 = 64 << 20;
/// The default CMA area of Debian's arm64 kernel (`CONFIG_CMA_SIZE_MBYTES=64`), reserved
/// when the tree names no default pool.
const DEFAULT_CMA: u64 = 64 << 20;

/// What an import produced: the platform, where each fact came from, and what the format
/// could not say.
#[derive(Debug)]
pub struct Import {
    /// The platform, validated.
    pub platform: Platform,
    /// Per region (by index), the comment lines saying where it came from.
    pub region_notes: Vec<Vec<String>>,
    /// Per device (by index), the comment lines.
    pub device_notes: Vec<Vec<String>>,
    /// Per IOMMU (by index), the comment lines.
    pub iommu_notes: Vec<Vec<String>>,
    /// Board-wide facts (the model, caches, interconnects, carve-outs).
    pub notes: Vec<String>,
    /// What the tree says that the platform does not describe, each with why.
    pub not_described: Vec<String>,
    /// Paths of cache-coherent interconnect nodes (CCI, CCN, CMN), with their status.
    pub interconnects: Vec<(String, bool)>,
    /// Masters the tree has but disables (a board enables them with an overlay).
    pub disabled: Vec<Disabled>,
    /// Nodes enabled on request before the import ([`crate::import_enabling`]), by path.
    pub enabled: Vec<String>,
    /// The names the tree gives masters, enabled or not: `(alias or label, node path)`
    /// from `/aliases` and `/__symbols__` (`csi1`, `lcdif1`, `isi_0`), in the tree's order.
    pub labels: Vec<(String, String)>,
}

/// A DMA master the tree disables: what it would be.
#[derive(Debug, Clone)]
pub struct Disabled {
    /// The master's node path in the tree.
    pub node: String,
    /// Its first compatible string (`brcm,bcm2835-unicam`).
    pub compatible: String,
    /// What kind of master its node name or `compatible` says it is (display, GPU, USB,
    /// ...).
    pub role: DeviceRole,
    /// The IOMMU its `iommus` names, if any.
    pub iommu: Option<String>,
    /// Whether it would be coherent.
    pub coherent: bool,
}

struct Range {
    start: u64,
    end: u64,
}

fn subtract(free: &mut Vec<Range>, s: u64, e: u64) {
    let mut out = Vec::new();
    for r in free.drain(..) {
        if e <= r.start || s >= r.end {
            out.push(r);
            continue;
        }
        if r.start < s {
            out.push(Range { start: r.start, end: s });
        }
        if e < r.end {
            out.push(Range { start: e, end: r.end });
        }
    }
    *free = out;
}

/// The highest `size`-byte page-aligned range inside `[lo, hi)` and the free ranges
/// (memblock allocates top-down).
fn top_down(free: &[Range], size: u64, lo: u64, hi: u64) -> Option<u64> {
    free.iter().rev().find_map(|r| {
        let end = r.end.min(hi) / PAGE_SIZE * PAGE_SIZE;
        let start = r.start.max(lo);
        (end >= start.saturating_add(size)).then(|| end - size)
    })
}

/// `reg` entries of `n` as `(address, size)`, with the parent's cells.
fn regs(t: &Tree, n: usize) -> Vec<(u64, u64)> {
    let Some(p) = t.nodes[n].parent else { return Vec::new() };
    let (na, ns) = (t.address_cells(p) as usize, t.size_cells(p) as usize);
    if na == 0 || na > 2 || ns > 2 {
        return Vec::new();
    }
    t.nodes[n]
        .cells("reg")
        .chunks_exact(na + ns)
        .map(|e| (number(&e[..na]), if ns == 0 { 0 } else { number(&e[na..]) }))
        .collect()
}

/// Imports a tree; `file` names it in errors and notes.
pub fn import_tree(t: &Tree, file: &str, name: &str) -> Result<Import, String> {
    let root = &t.nodes[0];
    let mut notes = Vec::new();
    let mut not_described = Vec::new();
    let model = root.strings("model").first().cloned().unwrap_or_default();
    let compat = root.strings("compatible");
    notes.push(format!("{file}: {model} ({})", compat.join(", ")));

    // --- memory ---------------------------------------------------------------------
    let mut mem: Vec<(u64, u64, String)> = Vec::new();
    for (i, n) in t.nodes.iter().enumerate() {
        let is_mem = n.strings("device_type").first().is_some_and(|s| s == "memory") && n.parent == Some(0);
        if !is_mem || !n.enabled() {
            continue;
        }
        for (a, s) in regs(t, i) {
            if s == 0 {
                mem.push((
                    a,
                    ASSUMED_MEMORY,
                    format!("{}: size 0 (the bootloader fills it in): assumed {}", n.path, ByteSize(ASSUMED_MEMORY)),
                ));
                not_described.push(format!(
                    "{}: memory size left to the bootloader; assumed {}",
                    n.path,
                    ByteSize(ASSUMED_MEMORY)
                ));
            } else {
                mem.push((a, s, format!("{}: reg {:#x} + {}", n.path, a, ByteSize(s))));
            }
        }
    }
    if mem.is_empty() {
        mem.push((0, ASSUMED_MEMORY, format!("no memory node: assumed {} at 0x0", ByteSize(ASSUMED_MEMORY))));
        not_described.push(format!("/: no memory node; assumed {} at 0x0", ByteSize(ASSUMED_MEMORY)));
    }
    let mut free: Vec<Range> = mem
        .iter()
        .map(|(a, s, _)| Range {
            start: a.next_multiple_of(PAGE_SIZE),
            end: (a.saturating_add(*s)) / PAGE_SIZE * PAGE_SIZE,
        })
        .filter(|r| r.end > r.start)
        .collect();
    free.sort_by_key(|r| r.start);

    // --- reserved memory ------------------------------------------------------------
    let mut cma: Option<(u64, u64, String)> = None;
    if let Some(rm) = t.find("/reserved-memory") {
        for &c in &t.nodes[rm].children {
            let n = &t.nodes[c];
            if !n.enabled() {
                continue;
            }
            let compat = n.strings("compatible");
            let nomap = n.has("no-map");
            let fixed = regs(t, c);
            if compat.iter().any(|s| s == "restricted-dma-pool") {
                not_described.push(format!(
                    "{}: a restricted DMA pool (its devices bounce every transfer through it): the format has no per-device pools",
                    n.path
                ));
            }
            for &(a, s) in &fixed {
                subtract(&mut free, a / PAGE_SIZE * PAGE_SIZE, a.saturating_add(s).next_multiple_of(PAGE_SIZE));
                notes.push(format!(
                    "{}: {:#x} + {} reserved{}: no heap allocates there",
                    n.path,
                    a,
                    ByteSize(s),
                    if nomap { " (no-map: outside the kernel's linear map)" } else { "" }
                ));
            }
            if n.has("linux,cma-default") {
                let size = n.prop("size").map(|v| number(&crate::tree::cells(v))).unwrap_or(DEFAULT_CMA);
                let size = size.next_multiple_of(PAGE_SIZE);
                let ranges = n.cells("alloc-ranges");
                let (na, ns) = (t.address_cells(rm) as usize, t.size_cells(rm) as usize);
                let (lo, hi) = match ranges.chunks_exact((na + ns).max(1)).next() {
                    Some(e) if na + ns > 0 && na <= 2 && ns <= 2 => {
                        let a = number(&e[..na]);
                        (a, a.saturating_add(number(&e[na..])))
                    }
                    _ => (0, u64::MAX),
                };
                let why = format!(
                    "{}: linux,cma-default, size {}, alloc-ranges [{lo:#x}, {hi:#x}) (placed top-down, as memblock does)",
                    n.path,
                    ByteSize(size)
                );
                match fixed.first() {
                    Some(&(a, s)) => {
                        cma = Some((
                            a,
                            s.next_multiple_of(PAGE_SIZE),
                            format!("{}: linux,cma-default at its reg", n.path),
                        ))
                    }
                    None => match top_down(&free, size, lo, hi) {
                        Some(at) => cma = Some((at, size, why)),
                        None => not_described.push(format!(
                            "{}: no free memory of {} in its alloc-ranges",
                            n.path,
                            ByteSize(size)
                        )),
                    },
                }
            }
        }
    }
    // The DMA zone's limit: the lowest top of any window (`of_dma_get_max_cpu_address`),
    // at most 4 GiB; the default CMA area and swiotlb sit below it.
    let mut dma_limit: u64 = 1 << 32;
    for i in 0..t.nodes.len() {
        if let Ok(Some((w, _))) = dma::windows(t, i) {
            for w in w {
                dma_limit = dma_limit.min(w.cpu.0.saturating_add(w.size.0));
            }
        }
    }
    let cma = match cma {
        Some(c) => Some(c),
        None => top_down(&free, DEFAULT_CMA, 0, dma_limit).map(|at| {
            (
                at,
                DEFAULT_CMA,
                format!(
                    "no linux,cma-default pool: the kernel's default {} below {dma_limit:#x}",
                    ByteSize(DEFAULT_CMA)
                ),
            )
        }),
    };
    let mut regions: Vec<(RegionDesc, Vec<String>)> = Vec::new();
    if let Some((at, size, why)) = cma {
        subtract(&mut free, at, at + size);
        regions.push((region("cma", RegionKind::Cma, at, size), vec![why]));
    }
    if let Some(at) = top_down(&free, SWIOTLB, 0, dma_limit) {
        subtract(&mut free, at, at + SWIOTLB);
        regions.push((
            region("swiotlb", RegionKind::Bounce, at, SWIOTLB),
            vec![format!(
                "the kernel's default swiotlb pool, {} below the DMA zone's limit {dma_limit:#x}",
                ByteSize(SWIOTLB)
            )],
        ));
    }
    for (k, r) in free.iter().enumerate() {
        let name = if k == 0 { "dram".to_string() } else { format!("dram-{k}") };
        let from: Vec<String> =
            mem.iter().filter(|(a, s, _)| *a < r.end && a.saturating_add(*s) > r.start).map(|m| m.2.clone()).collect();
        regions.push((region(&name, RegionKind::Dram, r.start, r.end - r.start), from));
    }
    regions.sort_by_key(|(r, _)| r.base);

    // --- caches ---------------------------------------------------------------------
    let (cpu_cache, line_size, cache_note) = cpu_cache(t);
    notes.push(cache_note);
    let mut system_cache: Option<(String, String)> = None;
    for (i, n) in t.nodes.iter().enumerate() {
        let llcc = n.strings("compatible").iter().any(|c| c.ends_with("-llcc"));
        let outside_cpus = !n.path.starts_with("/cpus");
        let l3 = outside_cpus
            && n.strings("compatible").iter().any(|c| c == "cache")
            && n.prop("cache-level").and_then(be32).is_some_and(|l| l >= 3);
        if (llcc || l3) && t.available(i) && system_cache.is_none() {
            let name = if llcc { "llcc".to_string() } else { masters::sanitize(n.base_name()) };
            system_cache = Some((name, n.path.clone()));
        }
    }

    // --- DMA masters ----------------------------------------------------------------
    let mut disabled = Vec::new();
    let mut cand: Vec<(usize, Option<DeviceRole>)> = Vec::new();
    for i in 1..t.nodes.len() {
        let n = &t.nodes[i];
        // Not a DMA master: a bus, something without registers, an IOMMU, a reserved
        // memory region, a device on a bus without sizes (I2C, SPI, MDIO).
        let no_sizes = n.parent.is_some_and(|p| t.size_cells(p) == 0);
        if masters::is_bus(t, i)
            || !n.has("reg")
            || n.has("#iommu-cells")
            || n.path.starts_with("/reserved-memory")
            || no_sizes
        {
            continue;
        }
        if !t.available(i) {
            if let Some(role) = masters::role_of(t, i) {
                let iommu = dma::iommu_node(t, i).map(|m| t.nodes[m].path.clone());
                disabled.push(Disabled {
                    node: n.path.clone(),
                    compatible: n.strings("compatible").first().cloned().unwrap_or_default(),
                    role,
                    iommu,
                    coherent: dma::is_coherent(t, i).is_some(),
                });
            }
            continue;
        }
        let role = masters::role_of(t, i);
        let pci_host = role == Some(DeviceRole::Pcie) && n.strings("device_type").first().is_some_and(|s| s == "pci");
        // Nodes under a PCI host are its endpoints: the host bridge stands for them.
        if ancestors(t, i).any(|a| t.nodes[a].strings("device_type").first().is_some_and(|s| s == "pci")) {
            continue;
        }
        if role.is_some() || n.has("iommus") || (pci_host && n.has("iommu-map")) {
            cand.push((i, role));
        }
    }
    // A glue node whose child is the master of the same role gives way to it.
    let all: Vec<usize> = cand.iter().map(|c| c.0).collect();
    // A glue node whose child is the master of the same role gives way to it, unless the
    // glue holds the IOMMU the child works through (Qualcomm's MDSS and its DPU).
    let same = |i: usize, j: usize, role| j != i && ancestors(t, j).any(|a| a == i) && masters::role_of(t, j) == role;
    let glue_iommu = |i: usize, j: usize| t.nodes[i].has("iommus") && !t.nodes[j].has("iommus");
    cand.retain(|&(i, role)| {
        let child_wins = all.iter().any(|&j| same(i, j, role) && !glue_iommu(i, j));
        let parent_wins = all.iter().any(|&p| same(p, i, role) && glue_iommu(p, i));
        !child_wins && !parent_wins
    });
    let nodes: Vec<usize> = cand.iter().map(|c| c.0).collect();
    let names = masters::names(t, &nodes);

    let mut iommus: Vec<(IommuDesc, Vec<String>)> = Vec::new();
    let mut iommu_nodes: Vec<usize> = Vec::new();
    let mut devices: Vec<(DeviceDesc, Vec<String>)> = Vec::new();
    for (k, &(i, role)) in cand.iter().enumerate() {
        let n = &t.nodes[i];
        let mut why = vec![format!("{} ({})", n.path, n.strings("compatible").first().cloned().unwrap_or_default())];
        let coherent_from = dma::is_coherent(t, i);
        match coherent_from {
            Some(c) if c == i => why.push("dma-coherent".into()),
            Some(c) => why.push(format!("coherent: dma-coherent inherited from {}", t.nodes[c].path)),
            None => why.push("not coherent: no dma-coherent on it or its buses".into()),
        }
        let pci = role == Some(DeviceRole::Pcie);
        let bus_np = if pci { Some(i) } else { n.parent };
        let mut dma_windows = Vec::new();
        if let Some(b) = bus_np {
            match dma::windows(t, b) {
                Ok(Some((w, from))) => {
                    for x in &w {
                        why.push(format!(
                            "dma-ranges of {}: physical {} at bus {:#x}",
                            t.nodes[from].path,
                            PhysRange { start: PhysAddr(x.cpu.0), len: x.size.0 },
                            x.bus.0
                        ));
                    }
                    dma_windows = w;
                }
                Ok(None) => {}
                Err(e) => not_described.push(format!("{e}: the device's DMA windows are left out")),
            }
        }
        let mut iommu_unit = None;
        if let Some(m) = dma::iommu_node(t, i) {
            if t.available(m) {
                let idx = match iommu_nodes.iter().position(|&x| x == m) {
                    Some(x) => x,
                    None => {
                        iommu_nodes.push(m);
                        iommus.push((iommu_desc(t, m), vec![]));
                        iommu_nodes.len() - 1
                    }
                };
                iommu_unit = Some(idx);
                why.push(format!("behind the IOMMU {}", t.nodes[m].path));
            } else {
                why.push(format!("its IOMMU {} is disabled: it translates nothing", t.nodes[m].path));
            }
        }
        let iommu = iommu_unit.is_some();
        let mask = if pci { 64 } else { 32 };
        let contiguous =
            !iommu && matches!(role, Some(DeviceRole::Display | DeviceRole::Camera | DeviceRole::VideoCodec));
        if contiguous {
            why.push("no IOMMU and its driver allocates contiguous buffers (DRM GEM DMA, videobuf2-dma-contig)".into());
        }
        let d = DeviceDesc {
            name: names[k].clone(),
            description: format!(
                "{} {}",
                n.strings("compatible").first().cloned().unwrap_or_else(|| n.name.clone()),
                role.map(|r| format!("({r})")).unwrap_or_default()
            )
            .trim()
            .to_string(),
            coherent: coherent_from.is_some(),
            dma_mask: mask,
            iommu,
            needs_contiguous: contiguous,
            keeps_mapping: role == Some(DeviceRole::Display),
            job_contract: true,
            stash: false,
            reaches: None,
            p2p: Vec::new(),
            cache: None,
            dma_windows,
            iommu_unit: None,
            port: None,
            role,
            node: Some(n.path.clone()),
        };
        devices.push((d, why));
        if let (Some(u), Some((d, _))) = (iommu_unit, devices.last_mut()) {
            d.iommu_unit = Some(u.to_string());
        }
    }
    // IOMMU names, once all are known.
    let inames = masters::names(t, &iommu_nodes);
    for (k, (m, why)) in iommus.iter_mut().enumerate() {
        m.name = inames[k].clone();
        why.push(format!(
            "{}: input address width {} bits",
            iommu_nodes.get(k).map(|&x| t.nodes[x].path.clone()).unwrap_or_default(),
            m.input_bits
        ));
    }
    for (d, _) in &mut devices {
        if let Some(u) = d.iommu_unit.take() {
            d.iommu_unit = u.parse::<usize>().ok().and_then(|k| inames.get(k).cloned());
        }
    }

    let mut interconnects = Vec::new();
    for (i, n) in t.nodes.iter().enumerate() {
        if n.strings("compatible")
            .iter()
            .any(|c| c.starts_with("arm,cci-") || c.starts_with("arm,ccn-") || c.starts_with("arm,cmn-"))
        {
            let on = t.available(i);
            interconnects.push((n.path.clone(), on));
            notes.push(format!(
                "{}: {} ({}); masters take their coherency from dma-coherent",
                n.path,
                n.strings("compatible").first().cloned().unwrap_or_default(),
                if on { "enabled" } else { "disabled" }
            ));
        }
    }

    let system_caches = system_cache
        .map(|(name, node)| {
            let mut masters = vec!["cpu".to_string()];
            masters.extend(devices.iter().map(|(d, _)| d.name.clone()));
            notes.push(format!(
                "{node}: a system-level cache in the path to DRAM of every master (it is beyond the point of coherency)"
            ));
            vec![SystemCacheDesc {
                name,
                description: "system-level cache in front of DRAM".into(),
                cache: None,
                masters,
                node: Some(node),
            }]
        })
        .unwrap_or_default();

    let platform = Platform {
        name: name.to_string(),
        description: format!("{model}, imported from {file}"),
        line_size,
        dma_profile: DmaProfile::Arm64,
        cpu: CpuDesc { cache: cpu_cache, wc_buffer_lines: 4, cacheable_linear_alias: true },
        regions: regions.iter().map(|r| r.0.clone()).collect(),
        devices: devices.iter().map(|d| d.0.clone()).collect(),
        iommus: iommus.iter().map(|m| m.0.clone()).collect(),
        ports: Vec::new(),
        system_caches,
        costs: Costs::default(),
    };
    Ok(Import {
        platform,
        region_notes: regions.into_iter().map(|r| r.1).collect(),
        device_notes: devices.into_iter().map(|d| d.1).collect(),
        iommu_notes: iommus.into_iter().map(|m| m.1).collect(),
        notes,
        not_described,
        interconnects,
        labels: labels(
            t,
            &cand
                .iter()
                .map(|c| t.nodes[c.0].path.as_str())
                .chain(disabled.iter().map(|d| d.node.as_str()))
                .collect::<Vec<_>>(),
        ),
        disabled,
        enabled: Vec::new(),
    })
}

/// The aliases and labels that name one of `masters` (node paths).
fn labels(t: &Tree, masters: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for table in ["/aliases", "/__symbols__"] {
        let Some(n) = t.find(table) else { continue };
        for (name, _) in t.nodes[n].props() {
            if let Some(path) = t.nodes[n].strings(name).into_iter().next()
                && masters.contains(&path.as_str())
            {
                out.push((name.to_string(), path));
            }
        }
    }
    out
}

fn region(name: &str, kind: RegionKind, base: u64, size: u64) -> RegionDesc {
    RegionDesc { name: name.into(), kind, base: Address(base), size: ByteSize(size), owner: None, linear_map: None }
}

fn ancestors(t: &Tree, n: usize) -> impl Iterator<Item = usize> + '_ {
    std::iter::successors(t.nodes[n].parent, move |&p| t.nodes[p].parent)
}

/// An IOMMU's description: its input address width from its compatible (the tree does not
/// state it; the hardware's ID registers do).
fn iommu_desc(t: &Tree, m: usize) -> IommuDesc {
    let c = t.nodes[m].strings("compatible");
    let has = |s: &str| c.iter().any(|x| x.contains(s));
    // arm-smmu and arm-smmu-v3 use 48-bit input addresses with 4 KiB pages (VA_BITS);
    // Rockchip's, Apple's DART and the older MediaTek IOMMUs translate 32 bits.
    let bits = if has("smmu") || has("mmu-500") || has("mmu-401") || has("mmu-400") {
        48
    } else if has("mtk") || has("mediatek") {
        34
    } else {
        32
    };
    IommuDesc {
        name: String::new(),
        description: c.first().cloned().unwrap_or_default(),
        input_bits: bits,
        node: Some(t.nodes[m].path.clone()),
    }
}

/// The CPU's last-level cache with a stated geometry, the line size, and a note.
fn cpu_cache(t: &Tree) -> (Option<CacheGeometry>, u64, String) {
    let Some(cpu) = t.nodes.iter().position(|n| n.strings("device_type").first().is_some_and(|s| s == "cpu")) else {
        return (None, 64, "no cpu node: an unbounded cache, 64-byte lines".into());
    };
    let mut line = t.nodes[cpu].prop("d-cache-line-size").and_then(be32).map(u64::from);
    let mut best: Option<(CacheGeometry, String)> = None;
    let mut cur = t.nodes[cpu].prop("next-level-cache").and_then(be32).and_then(|p| t.by_phandle(p));
    let mut guard = 0;
    while let Some(c) = cur {
        guard += 1;
        if guard > 8 {
            break;
        }
        let n = &t.nodes[c];
        let size = n.prop("cache-size").and_then(be32).map(u64::from);
        let sets = n.prop("cache-sets").and_then(be32).map(u64::from);
        let l = n.prop("cache-line-size").or(n.prop("cache-block-size")).and_then(be32).map(u64::from);
        if line.is_none() {
            line = l;
        }
        if let (Some(size), Some(sets), Some(l)) = (size, sets, l)
            && sets.is_power_of_two()
            && l > 0
            && size % (sets * l) == 0
            && (1..=64).contains(&(size / (sets * l)))
        {
            best = Some((
                CacheGeometry { sets: sets as u32, ways: (size / (sets * l)) as u32 },
                format!("{} ({} bytes, {sets} sets, {l}-byte lines)", n.path, size),
            ));
        }
        cur = n.prop("next-level-cache").and_then(be32).and_then(|p| t.by_phandle(p));
    }
    let line = line.filter(|l| l.is_power_of_two() && (32..=256).contains(l)).unwrap_or(64);
    match best {
        Some((g, why)) => (Some(g), line, format!("CPU cache geometry from {why}")),
        None => (None, line, "no CPU cache states its size and sets: an unbounded CPU cache".into()),
    }
}
