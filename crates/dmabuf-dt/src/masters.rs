//! Which nodes are DMA masters, what role each plays, and a short stable name for each
//! that scenarios can use.

use dmabuf_sim::DeviceRole;

use crate::tree::Tree;

/// Words in a node name or compatible that tell a role, most specific first. A word
/// matches a whole `-`/`,`/`_`-separated part of the name or of the compatible's model.
const ROLE_WORDS: &[(&str, DeviceRole)] = &[
    ("vop", DeviceRole::Display),
    ("hvs", DeviceRole::Display),
    ("lcdif", DeviceRole::Display),
    ("dss", DeviceRole::Display),
    ("dpu", DeviceRole::Display),
    ("mdp", DeviceRole::Display),
    ("mdss", DeviceRole::Display),
    ("lcdc", DeviceRole::Display),
    ("display", DeviceRole::Display),
    ("dcss", DeviceRole::Display),
    ("txp", DeviceRole::Display),
    ("video", DeviceRole::VideoCodec),
    ("vpu", DeviceRole::VideoCodec),
    ("vdec", DeviceRole::VideoCodec),
    ("venc", DeviceRole::VideoCodec),
    ("rkvdec", DeviceRole::VideoCodec),
    ("hantro", DeviceRole::VideoCodec),
    ("venus", DeviceRole::VideoCodec),
    ("jpeg", DeviceRole::VideoCodec),
    ("codec", DeviceRole::VideoCodec),
    ("gpu", DeviceRole::Gpu),
    ("mali", DeviceRole::Gpu),
    ("adreno", DeviceRole::Gpu),
    ("v3d", DeviceRole::Gpu),
    ("gc", DeviceRole::Gpu),
    ("rga", DeviceRole::Graphics2d),
    ("g2d", DeviceRole::Graphics2d),
    ("pxp", DeviceRole::Graphics2d),
    ("isp", DeviceRole::Camera),
    ("isp0", DeviceRole::Camera),
    ("isp1", DeviceRole::Camera),
    ("isi", DeviceRole::Camera),
    ("csi", DeviceRole::Camera),
    ("unicam", DeviceRole::Camera),
    ("camss", DeviceRole::Camera),
    ("cif", DeviceRole::Camera),
    ("vin", DeviceRole::Camera),
    ("camera", DeviceRole::Camera),
    ("usb", DeviceRole::Usb),
    ("dwc3", DeviceRole::Usb),
    ("dwc2", DeviceRole::Usb),
    ("xhci", DeviceRole::Usb),
    ("ehci", DeviceRole::Usb),
    ("ohci", DeviceRole::Usb),
    ("usb3", DeviceRole::Usb),
    ("pcie", DeviceRole::Pcie),
    ("pci", DeviceRole::Pcie),
    ("dma", DeviceRole::DmaEngine),
    ("udmap", DeviceRole::DmaEngine),
    ("bcdma", DeviceRole::DmaEngine),
    ("pktdma", DeviceRole::DmaEngine),
    ("pl330", DeviceRole::DmaEngine),
    ("sdma", DeviceRole::DmaEngine),
    ("edma", DeviceRole::DmaEngine),
    ("bam", DeviceRole::DmaEngine),
    ("gpcdma", DeviceRole::DmaEngine),
    ("mmc", DeviceRole::Storage),
    ("sdhci", DeviceRole::Storage),
    ("emmc2", DeviceRole::Storage),
    ("ufs", DeviceRole::Storage),
    ("ufshc", DeviceRole::Storage),
    ("sata", DeviceRole::Storage),
    ("ahci", DeviceRole::Storage),
    ("nand", DeviceRole::Storage),
    ("ethernet", DeviceRole::Network),
    ("gem", DeviceRole::Network),
    ("crypto", DeviceRole::Crypto),
];

/// Parts of a name that mark a node as no DMA master although a role word appears.
const NOT_MASTER: &[&str] = &[
    "phy",
    "connector",
    "pinctrl",
    "pins",
    "clock",
    "clk",
    "regulator",
    "reset",
    "controller-mux",
    "grf",
    "syscon",
    "mux",
    "port",
    "ports",
    "endpoint",
    "bridge",
    "hdmi",
    "dsi",
    "lvds",
    "edp",
    "dp",
    "panel",
    "encoder",
    "pwm",
    "cec",
    "sram",
    "mbox",
    "mailbox",
    "opp",
    "iommu",
    "smmu",
    "mmu",
    "router",
    "intr",
    "tx",
    "rx",
];

fn parts(s: &str) -> impl Iterator<Item = &str> {
    s.split(['-', ',', '_', '.'])
}

/// The compatible's model: after the vendor, without a leading SoC id (`rk3399-`,
/// `imx8mp-`, `bcm2711-`).
fn model(compatible: &str) -> String {
    let m = compatible.split_once(',').map_or(compatible, |(_, m)| m);
    match m.split_once('-') {
        Some((soc, rest))
            if !rest.is_empty()
                && soc.chars().any(|c| c.is_ascii_digit())
                && soc.chars().any(|c| c.is_ascii_alphabetic()) =>
        {
            rest.to_string()
        }
        _ => m.to_string(),
    }
}

/// The role a node's name or compatible tells, if any.
pub fn role_of(t: &Tree, n: usize) -> Option<DeviceRole> {
    let node = &t.nodes[n];
    if node.strings("device_type").first().is_some_and(|s| s == "pci") {
        return Some(DeviceRole::Pcie);
    }
    let base = node.base_name().to_ascii_lowercase();
    let compat: Vec<String> = node.strings("compatible").iter().map(|c| model(c).to_ascii_lowercase()).collect();
    if parts(&base).any(|p| NOT_MASTER.contains(&p)) {
        return None;
    }
    if compat.first().is_some_and(|c| parts(c).any(|p| NOT_MASTER.contains(&p))) {
        return None;
    }
    for (w, r) in ROLE_WORDS {
        if parts(&base).any(|p| p == *w) || compat.iter().any(|c| parts(c).any(|p| p == *w)) {
            return Some(*r);
        }
    }
    None
}

/// Whether a node is a bus rather than a device (`simple-bus` and its kin).
pub fn is_bus(t: &Tree, n: usize) -> bool {
    t.nodes[n].strings("compatible").iter().any(|c| c == "simple-bus" || c.ends_with("-bus") || c == "simple-mfd")
}

/// Words that may not be a device's name in a scenario (the language's verbs).
const RESERVED: &[&str] = &[
    "platform", "buffer", "attach", "detach", "pin", "unpin", "migrate", "map", "unmap", "vmap", "vunmap", "mmap",
    "munmap", "sync", "set_name", "fence", "signal", "wait", "export", "import", "resv", "release", "repeat", "cpu",
];

/// A scenario name from free text: lower case, `[a-z0-9_-]`, starting with a letter.
pub fn sanitize(s: &str) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
        .collect();
    out = out.trim_matches('-').to_string();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out = format!("d{out}");
    }
    if RESERVED.contains(&out.as_str()) {
        out.push_str("-dev");
    }
    out
}

/// Short stable names for `nodes`: the node name when unique among them; else the
/// compatible's model when that is unique among those sharing the name; else the node
/// name with the unit address; else that with an index.
pub fn names(t: &Tree, nodes: &[usize]) -> Vec<String> {
    let base: Vec<String> = nodes.iter().map(|&n| sanitize(t.nodes[n].base_name())).collect();
    let model_of = |n: usize| {
        t.nodes[n]
            .strings("compatible")
            .first()
            .map(|c| sanitize(&model(c)))
            .unwrap_or_else(|| sanitize(&t.nodes[n].name))
    };
    let mut out: Vec<String> = Vec::with_capacity(nodes.len());
    for (i, &n) in nodes.iter().enumerate() {
        let same: Vec<usize> = (0..nodes.len()).filter(|&j| base[j] == base[i]).collect();
        if same.len() == 1 {
            out.push(base[i].clone());
            continue;
        }
        let m = model_of(n);
        if same.iter().filter(|&&j| model_of(nodes[j]) == m).count() == 1 {
            out.push(m);
            continue;
        }
        match t.nodes[n].unit() {
            Some(u) => out.push(sanitize(&format!("{}-{u}", base[i]))),
            None => out.push(base[i].clone()),
        }
    }
    // Whatever still collides (a model equal to another's node name) takes an index.
    for i in 0..out.len() {
        if out[..i].contains(&out[i]) {
            let mut k = 1;
            while out.contains(&format!("{}-{k}", out[i])) {
                k += 1;
            }
            out[i] = format!("{}-{k}", out[i]);
        }
    }
    out
}
