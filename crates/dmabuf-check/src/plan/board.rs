//! The board a plan is for (a preset, a platform TOML, or a board's device tree with
//! disabled nodes enabled), and the parties' devices on it.

use std::path::{Path, PathBuf};

use dmabuf_sim::Platform;

use super::{Access, Party, PlanError, Request, Who};

/// Where the platform came from: what the scenario's `platform` line names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A built-in preset, by name.
    Preset(String),
    /// A platform TOML or a board's DTB, by path, read as it is.
    File(PathBuf),
    /// A board's DTB with nodes enabled before the import: no file holds that platform
    /// until [`Board::toml`] is written.
    Enabled {
        /// The DTB.
        path: PathBuf,
        /// The node paths enabled.
        nodes: Vec<String>,
    },
}

/// A platform with where it came from.
#[derive(Clone, Debug)]
pub struct Board {
    /// The platform.
    pub platform: Platform,
    /// Where it came from.
    pub source: Source,
    /// Masters the board's tree disables (none for a TOML), for the hint when a `--user`
    /// names one.
    pub disabled: Vec<dmabuf_dt::Disabled>,
    /// The tree's aliases and labels of masters, `(name, node path)`: a `--user` may name
    /// a device by them.
    pub labels: Vec<(String, String)>,
    /// The platform as TOML (commented with the nodes the facts came from, for a tree).
    pub toml: String,
}

impl Board {
    /// A board of a platform built in code (a preset's, changed by a test).
    pub fn from_platform(platform: Platform) -> Board {
        let toml = platform.to_toml();
        Board {
            source: Source::Preset(platform.name.clone()),
            platform,
            disabled: Vec::new(),
            labels: Vec::new(),
            toml,
        }
    }

    /// The scenario's `platform` line. `saved_toml`: where [`Board::toml`] was written,
    /// relative to the scenario, for a tree with nodes enabled (no other file holds that
    /// platform); `absolute`: name files by absolute path (a scenario saved elsewhere).
    pub fn platform_line(&self, saved_toml: Option<&str>, absolute: bool) -> String {
        let path = |p: &Path| {
            let p = if absolute { std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()) } else { p.to_path_buf() };
            quote(&p.display().to_string())
        };
        match (&self.source, saved_toml) {
            (Source::Preset(n), _) => format!("platform {n}"),
            (Source::File(p), _) => format!("platform {}", path(p)),
            (Source::Enabled { .. }, Some(t)) => format!("platform {}", quote(t)),
            (Source::Enabled { path: p, nodes }, None) => format!(
                "# the tree with {} enabled: `dmabuf plan --save FILE` writes that platform beside FILE\nplatform {}",
                nodes.join(", "),
                path(p)
            ),
        }
    }
}

/// A scenario string literal.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Loads `--platform` (a preset name, a TOML path, or a `.dtb`), enabling `enable`'s nodes
/// first when it is a tree.
pub fn load(spec: &str, enable: &[String]) -> Result<Board, PlanError> {
    if spec.ends_with(".dtb") {
        let path = PathBuf::from(spec);
        let imp = dmabuf_dt::import_path_enabling(&path, enable)?;
        let toml = imp.to_commented_toml();
        let source = if imp.enabled.is_empty() {
            Source::File(path)
        } else {
            Source::Enabled { path, nodes: imp.enabled.clone() }
        };
        return Ok(Board { platform: imp.platform, source, disabled: imp.disabled, labels: imp.labels, toml });
    }
    if let Some(node) = enable.first() {
        return Err(PlanError::EnableWithoutTree { node: node.clone(), platform: spec.into() });
    }
    let platform = Platform::load(spec)?;
    let toml = platform.to_toml();
    let source =
        if Platform::preset_names().contains(&spec) { Source::Preset(spec.into()) } else { Source::File(spec.into()) };
    Ok(Board { platform, source, disabled: Vec::new(), labels: Vec::new(), toml })
}

/// The device a `--user` names: its platform name, its node path or the path's last
/// component (`csi@7e801000`), or an alias or label the tree gives its node (`csi1`).
fn find_device(board: &Board, name: &str) -> Option<usize> {
    let p = &board.platform;
    let by_node = |path: &str| p.devices.iter().position(|d| d.node.as_deref() == Some(path));
    p.device_index(name)
        .or_else(|| {
            p.devices
                .iter()
                .position(|d| d.node.as_deref().is_some_and(|n| n == name || n.rsplit('/').next() == Some(name)))
        })
        .or_else(|| board.labels.iter().find(|(l, _)| l == name).and_then(|(_, path)| by_node(path)))
}

/// What to tell someone who named a device the board does not have.
fn unknown_hint(board: &Board, name: &str) -> String {
    let base = |node: &str| node.rsplit('/').next().unwrap_or(node).split('@').next().unwrap_or("").to_string();
    let labelled = |node: &str| board.labels.iter().any(|(l, path)| l == name && path == node);
    // The compatible's model names it too (`unicam` in `brcm,bcm2835-unicam`).
    let model = |c: &str| c.split(',').next_back().is_some_and(|m| m.split('-').any(|w| w == name));
    let off: Vec<&dmabuf_dt::Disabled> = board
        .disabled
        .iter()
        .filter(|d| {
            d.node == name
                || d.node.rsplit('/').next() == Some(name)
                || base(&d.node) == name
                || labelled(&d.node)
                || model(&d.compatible)
        })
        .collect();
    if !off.is_empty() {
        let list: Vec<String> = off
            .iter()
            .map(|d| {
                let names: Vec<&str> =
                    board.labels.iter().filter(|(_, p)| *p == d.node).map(|(l, _)| l.as_str()).collect();
                let names = if names.is_empty() { String::new() } else { format!(", {}", names.join(", ")) };
                format!("{} ({}, {}{names})", d.node, d.role, d.compatible)
            })
            .collect();
        return format!(
            "; the board's tree disables {}: pass --enable NODE to enable {} as an overlay would",
            list.join(" and "),
            if off.len() == 1 { "it" } else { "one" }
        );
    }
    let names: Vec<&str> = board.platform.devices.iter().map(|d| d.name.as_str()).collect();
    let mut hint = String::new();
    if let Some(best) = names
        .iter()
        .map(|n| (strsim::jaro_winkler(n, name), *n))
        .filter(|(s, _)| *s > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
    {
        hint += &format!("; did you mean `{}`?", best.1);
    }
    hint += &format!(" (devices: {})", names.join(", "));
    if !board.disabled.is_empty() {
        let list: Vec<String> = board.disabled.iter().take(8).map(|d| format!("{} ({})", d.node, d.role)).collect();
        let more = board.disabled.len().saturating_sub(8);
        hint += &format!(
            "; the tree disables {}{}: --enable NODE adds one",
            list.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        );
    }
    hint
}

/// The parties of a request, resolved, in the order they act within a frame: the CPU if it
/// only writes, the device writers, the CPU if it reads and writes, the devices that read
/// and write, the device readers, the CPU if it only reads (devices keep the request's
/// order within each group).
pub(super) fn parties(board: &Board, req: &Request) -> Result<Vec<Party>, PlanError> {
    let p = &board.platform;
    if req.users.is_empty() {
        return Err(PlanError::NoUsers);
    }
    if req.users.len() > super::MAX_USERS {
        return Err(PlanError::TooMany { count: req.users.len(), max: super::MAX_USERS });
    }
    let mut devs: Vec<Party> = Vec::new();
    for u in &req.users {
        let Some(i) = find_device(board, &u.device) else {
            return Err(PlanError::UnknownDevice {
                name: u.device.clone(),
                platform: p.name.clone(),
                hint: unknown_hint(board, &u.device),
            });
        };
        let d = &p.devices[i];
        if devs.iter().any(|x| x.who == Who::Device(i)) {
            return Err(PlanError::Twice { name: u.device.clone(), device: d.name.clone() });
        }
        devs.push(Party {
            who: Who::Device(i),
            name: d.name.clone(),
            access: u.access,
            kept: u.kept || d.keeps_mapping,
            kept_by_platform: d.keeps_mapping && !u.kept,
        });
    }
    if !devs.iter().any(|d| d.access.writes()) && !req.cpu.is_some_and(Access::writes) {
        return Err(PlanError::NoWriter);
    }
    let cpu = |access| Party { who: Who::Cpu, name: "cpu".into(), access, kept: false, kept_by_platform: false };
    let mut out = Vec::new();
    let group = |a: Access| devs.iter().filter(move |d| d.access == a).cloned();
    if req.cpu == Some(Access::Write) {
        out.push(cpu(Access::Write));
    }
    out.extend(group(Access::Write));
    if req.cpu == Some(Access::ReadWrite) {
        out.push(cpu(Access::ReadWrite));
    }
    out.extend(group(Access::ReadWrite));
    out.extend(group(Access::Read));
    if req.cpu == Some(Access::Read) {
        out.push(cpu(Access::Read));
    }
    Ok(out)
}
