//! How a device reaches memory, as the kernel reads it from the tree: its DMA windows
//! (`dma-ranges` composed up to the root), its coherency (`dma-coherent` and its
//! inheritance) and its IOMMU (`iommus`, `iommu-map`, and whether that IOMMU is enabled).

use dmabuf_sim::{Address, ByteSize, DmaWindow};

use crate::tree::{Tree, number};

/// The node whose DMA configuration a node inherits: its parent. (The kernel's
/// `of_get_next_dma_parent()` also follows an `interconnects` entry named `dma-mem`, which
/// no board in the package uses for a DMA master.)
fn dma_parent(t: &Tree, n: usize) -> Option<usize> {
    t.nodes[n].parent
}

/// `of_dma_is_coherent()`: the node or its nearest DMA parent saying `dma-coherent` (or
/// `dma-noncoherent`) decides; nothing said is non-coherent on arm64.
pub fn is_coherent(t: &Tree, n: usize) -> Option<usize> {
    let mut cur = Some(n);
    while let Some(c) = cur {
        if t.nodes[c].has("dma-coherent") {
            return Some(c);
        }
        if t.nodes[c].has("dma-noncoherent") {
            return None;
        }
        cur = dma_parent(t, c);
    }
    None
}

/// Whether the node is a PCI bus (3-cell child addresses whose first cell is flags).
fn is_pci(t: &Tree, n: usize) -> bool {
    t.nodes[n].strings("device_type").first().is_some_and(|s| s == "pci")
}

/// The DMA windows of a device whose bus is `bus_np` (the device's parent for a platform
/// device, the host bridge itself for PCI endpoints), and the node that stated them.
/// `Ok(None)`: no translation, the whole address space (no `dma-ranges` found).
///
/// As `of_dma_get_range()`: the first non-empty `dma-ranges` from `bus_np` up (an empty
/// one means 1:1 and the walk goes on; a missing one past the first level ends it with no
/// windows), then each entry's parent address translated up to the root through every
/// ancestor's `dma-ranges` (`of_translate_dma_address()`: missing or empty is 1:1, an
/// address no entry covers cannot be translated and the entry is dropped).
pub fn windows(t: &Tree, bus_np: usize) -> Result<Option<(Vec<DmaWindow>, usize)>, String> {
    let mut cur = Some(bus_np);
    let mut first = true;
    let mut found = None;
    while let Some(c) = cur {
        match t.nodes[c].prop("dma-ranges") {
            Some(v) if !v.is_empty() => {
                found = Some(c);
                break;
            }
            None if !first => return Ok(None),
            _ => {}
        }
        first = false;
        cur = dma_parent(t, c);
    }
    let Some(node) = found else { return Ok(None) };
    let Some(parent) = dma_parent(t, node) else { return Ok(None) };
    let (na, pna, ns) = (t.address_cells(node) as usize, t.address_cells(parent) as usize, t.size_cells(node) as usize);
    if na == 0 || na > 3 || pna == 0 || pna > 2 || ns == 0 || ns > 2 {
        return Err(format!("{}: dma-ranges with {na}/{pna}/{ns} cells", t.nodes[node].path));
    }
    let c = t.nodes[node].cells("dma-ranges");
    let entry = na + pna + ns;
    if !c.len().is_multiple_of(entry) {
        return Err(format!("{}: dma-ranges is not a whole number of entries", t.nodes[node].path));
    }
    let pci = is_pci(t, node) && na == 3;
    let mut out = Vec::new();
    for e in c.chunks_exact(entry) {
        let bus = if pci { number(&e[1..3]) } else { number(&e[..na.min(2)]) };
        let size = number(&e[na + pna..]);
        if size == 0 {
            continue;
        }
        let Some(cpu) = translate_up(t, node, number(&e[na..na + pna])) else { continue };
        out.push(DmaWindow { cpu: Address(cpu), bus: Address(bus), size: ByteSize(size) });
    }
    Ok(Some((out, node)))
}

/// Translates an address in the address space of `node`'s parent bus up to the CPU's,
/// through the `dma-ranges` of every ancestor below the root.
fn translate_up(t: &Tree, node: usize, mut addr: u64) -> Option<u64> {
    let mut dev = dma_parent(t, node)?;
    while let Some(up) = dma_parent(t, dev) {
        let c = t.nodes[dev].cells("dma-ranges");
        if !c.is_empty() {
            let (na, pna, ns) =
                (t.address_cells(dev) as usize, t.address_cells(up) as usize, t.size_cells(dev) as usize);
            let entry = na + pna + ns;
            if entry == 0 || na > 3 || pna > 2 || ns > 2 {
                return None;
            }
            let pci = is_pci(t, dev) && na == 3;
            let hit = c.chunks_exact(entry).find_map(|e| {
                let b = if pci { number(&e[1..3]) } else { number(&e[..na.min(2)]) };
                let size = number(&e[na + pna..]);
                let off = addr.checked_sub(b).filter(|&o| o < size)?;
                number(&e[na..na + pna]).checked_add(off)
            });
            addr = hit?;
        }
        dev = up;
    }
    Some(addr)
}

/// The IOMMU node a device's `iommus` (or a host bridge's `iommu-map`) names first.
pub fn iommu_node(t: &Tree, n: usize) -> Option<usize> {
    let node = &t.nodes[n];
    let c = node.cells("iommus");
    if let Some(&ph) = c.first() {
        return t.by_phandle(ph);
    }
    // iommu-map = <rid-base &iommu iommu-base length>...
    let m = node.cells("iommu-map");
    m.get(1).and_then(|&ph| t.by_phandle(ph))
}
