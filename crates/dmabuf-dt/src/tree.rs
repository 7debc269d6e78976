//! The device tree as an owned tree of nodes with paths, parents and properties, read
//! once from the blob by `flat_device_tree`, with the questions every reader of a tree
//! asks (cells, strings, phandles, status).

use std::collections::HashMap;

/// The most nodes a tree may have (the largest real trees have a few thousand).
const MAX_NODES: usize = 100_000;
/// The deepest nesting accepted (real trees nest under 10).
const MAX_DEPTH: usize = 64;

/// One node: its name with unit address, its full path, its parent and children, its
/// properties' raw bytes.
pub struct Node {
    /// `vop@ff900000`.
    pub name: String,
    /// `/vop@ff900000`.
    pub path: String,
    /// The parent, `None` for the root.
    pub parent: Option<usize>,
    /// Children in tree order.
    pub children: Vec<usize>,
    props: Vec<(String, Vec<u8>)>,
}

/// A whole tree; node 0 is the root.
pub struct Tree {
    /// Every node, the root first, depth first.
    pub nodes: Vec<Node>,
    by_phandle: HashMap<u32, usize>,
}

impl Tree {
    /// Reads a blob. Errors name what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<Tree, String> {
        check_header(bytes)?;
        let fdt = flat_device_tree::Fdt::new(bytes).map_err(|e| format!("not a device tree blob: {e:?}"))?;
        let root = fdt.find_node("/").ok_or("the blob has no root node")?;
        let mut t = Tree { nodes: Vec::new(), by_phandle: HashMap::new() };
        t.add(root, None, 0)?;
        for (i, n) in t.nodes.iter().enumerate() {
            for key in ["phandle", "linux,phandle"] {
                if let Some(p) = n.prop(key).and_then(be32) {
                    t.by_phandle.entry(p).or_insert(i);
                }
            }
        }
        Ok(t)
    }

    fn add(
        &mut self,
        n: flat_device_tree::node::FdtNode<'_, '_>,
        parent: Option<usize>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nodes nest deeper than {MAX_DEPTH} levels"));
        }
        if self.nodes.len() >= MAX_NODES {
            return Err(format!("more than {MAX_NODES} nodes"));
        }
        let name = if parent.is_none() { String::new() } else { n.name.to_string() };
        let path = match parent {
            None => "/".to_string(),
            Some(p) if self.nodes[p].path == "/" => format!("/{name}"),
            Some(p) => format!("{}/{name}", self.nodes[p].path),
        };
        let props = n.properties().map(|p| (p.name.to_string(), p.value.to_vec())).collect();
        let me = self.nodes.len();
        self.nodes.push(Node { name, path, parent, children: Vec::new(), props });
        if let Some(p) = parent {
            self.nodes[p].children.push(me);
        }
        for c in n.children() {
            self.add(c, Some(me), depth + 1)?;
        }
        Ok(())
    }

    /// The node a phandle names.
    pub fn by_phandle(&self, p: u32) -> Option<usize> {
        self.by_phandle.get(&p).copied()
    }

    /// The node at `path`.
    pub fn find(&self, path: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.path == path)
    }

    /// `#address-cells` that `n` gives its children (2 by default, as the spec says).
    pub fn address_cells(&self, n: usize) -> u32 {
        self.nodes[n].prop("#address-cells").and_then(be32).unwrap_or(2)
    }

    /// `#size-cells` that `n` gives its children (1 by default).
    pub fn size_cells(&self, n: usize) -> u32 {
        self.nodes[n].prop("#size-cells").and_then(be32).unwrap_or(1)
    }

    /// The node a user names: a path (`/soc/csi@7e801000`), an alias (`csi1`, from
    /// `/aliases`) or a label (`isi_0`, from `/__symbols__`, as an overlay's `&isi_0`
    /// names it).
    pub fn resolve(&self, spec: &str) -> Option<usize> {
        if spec.starts_with('/') {
            return self.find(spec);
        }
        ["/aliases", "/__symbols__"].iter().find_map(|table| {
            let t = self.find(table)?;
            let path = self.nodes[t].strings(spec).into_iter().next()?;
            self.find(&path)
        })
    }

    /// Sets `status = "okay"` on node `n`, as an overlay enabling it does.
    pub fn enable(&mut self, n: usize) {
        let props = &mut self.nodes[n].props;
        props.retain(|(k, _)| k != "status");
        props.push(("status".into(), b"okay\0".to_vec()));
    }

    /// Whether `n` and every ancestor are enabled (`status` absent, `okay` or `ok`): Linux
    /// creates no device for a disabled node nor below one (`of_device_is_available`).
    pub fn available(&self, mut n: usize) -> bool {
        loop {
            if !self.nodes[n].enabled() {
                return false;
            }
            match self.nodes[n].parent {
                Some(p) => n = p,
                None => return true,
            }
        }
    }
}

impl Node {
    /// Every property, `(name, raw bytes)`, in the tree's order.
    pub fn props(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.props.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// A property's raw bytes.
    pub fn prop(&self, name: &str) -> Option<&[u8]> {
        self.props.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }

    /// Whether the node has the property (a flag such as `dma-coherent`).
    pub fn has(&self, name: &str) -> bool {
        self.prop(name).is_some()
    }

    /// A property as big-endian cells (trailing bytes ignored).
    pub fn cells(&self, name: &str) -> Vec<u32> {
        self.prop(name).map(cells).unwrap_or_default()
    }

    /// A string-list property (`compatible`).
    pub fn strings(&self, name: &str) -> Vec<String> {
        self.prop(name)
            .map(|v| {
                v.split(|&b| b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The node's name without its unit address.
    pub fn base_name(&self) -> &str {
        self.name.split('@').next().unwrap_or(&self.name)
    }

    /// The unit address, if any.
    pub fn unit(&self) -> Option<&str> {
        self.name.split_once('@').map(|(_, u)| u)
    }

    /// Whether `status` is absent, `okay` or `ok`.
    pub fn enabled(&self) -> bool {
        match self.strings("status").first().map(String::as_str) {
            None | Some("okay") | Some("ok") => true,
            Some(_) => false,
        }
    }
}

/// A value as big-endian 32-bit cells.
pub fn cells(v: &[u8]) -> Vec<u32> {
    v.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// A one-cell value.
pub fn be32(v: &[u8]) -> Option<u32> {
    (v.len() == 4).then(|| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
}

/// A number of `n` cells (at most 2 are meaningful; more is refused by the caller).
pub fn number(c: &[u32]) -> u64 {
    c.iter().fold(0u64, |a, &x| (a << 32) | x as u64)
}

/// The header's offsets and sizes lie inside the blob, so the parser never reads past it.
fn check_header(b: &[u8]) -> Result<(), String> {
    let word = |i: usize| b.get(i * 4..i * 4 + 4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize);
    let magic = word(0).ok_or("shorter than a device tree header")?;
    if magic != 0xd00d_feed {
        return Err(format!("bad magic {magic:#x} (a device tree blob starts with 0xd00dfeed)"));
    }
    let total = word(1).ok_or("shorter than a device tree header")?;
    let (off_struct, off_strings, off_rsv) = (word(2).unwrap_or(0), word(3).unwrap_or(0), word(4).unwrap_or(0));
    let version = word(5).ok_or("shorter than a device tree header")?;
    let (size_strings, size_struct) = (word(8).unwrap_or(0), word(9).unwrap_or(0));
    if total > b.len() {
        return Err(format!("the header says {total} bytes, the file has {}", b.len()));
    }
    if version < 17 {
        return Err(format!("version {version}: only version 17 blobs (dtc's output since 2008) are read"));
    }
    let inside = |off: usize, len: usize| off.checked_add(len).is_some_and(|e| e <= total);
    if !inside(off_struct, size_struct) || !inside(off_strings, size_strings) || off_rsv >= total {
        return Err("the header's blocks lie outside the blob".into());
    }
    Ok(())
}
