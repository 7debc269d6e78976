//! Presets, files and TOML: reading a description in (with every error located at the
//! key in the text) and writing one out.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::error::Location;
use super::{PRESETS, Platform, PlatformError};
use crate::file::read_bounded;

impl Platform {
    /// The names of the built-in presets.
    pub fn preset_names() -> Vec<&'static str> {
        PRESETS.iter().map(|(n, _)| *n).collect()
    }

    /// The TOML text of a preset, as shipped.
    pub fn preset_source(name: &str) -> Option<&'static str> {
        PRESETS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// The built-in preset `name`, parsed and validated as a user's file is.
    pub fn preset(name: &str) -> Result<Platform, PlatformError> {
        let src = Self::preset_source(name).ok_or_else(|| PlatformError::UnknownPreset {
            name: name.to_string(),
            known: Self::preset_names().iter().map(|s| s.to_string()).collect(),
        })?;
        Self::from_toml(src, &format!("<preset {name}>"))
    }

    /// Reads a TOML file's text (at most 1 MiB, UTF-8).
    pub fn read_toml_file(path: &Path) -> Result<String, PlatformError> {
        let file = path.display().to_string();
        // A platform is a page of text; refuse anything that is clearly not one.
        let bytes = read_bounded(path, 1 << 20).map_err(|e| PlatformError::Io {
            file: file.clone(),
            reason: if e.kind() == std::io::ErrorKind::FileTooLarge {
                "larger than 1 MiB; not a platform description".into()
            } else {
                e.to_string()
            },
        })?;
        String::from_utf8(bytes).map_err(|e| {
            let at =
                Some(Location { line: 0, column: 0, span: e.utf8_error().valid_up_to()..e.utf8_error().valid_up_to() });
            PlatformError::Syntax { file, message: "not UTF-8 text".into(), at }
        })
    }

    /// Reads a description from a TOML file.
    pub fn from_file(path: &Path) -> Result<Platform, PlatformError> {
        let text = Self::read_toml_file(path)?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Reads a preset by name, or a file when `name_or_path` ends in `.toml` or contains a
    /// path separator.
    pub fn load(name_or_path: &str) -> Result<Platform, PlatformError> {
        if name_or_path.ends_with(".toml") || name_or_path.contains('/') {
            Self::from_file(Path::new(name_or_path))
        } else {
            Self::preset(name_or_path)
        }
    }

    /// Parses and validates a description; `file` names it in errors, which carry the
    /// line and column of the offending key in `text`.
    pub fn from_toml(text: &str, file: &str) -> Result<Platform, PlatformError> {
        let mut p: Platform = toml::from_str(text).map_err(|e| PlatformError::Syntax {
            file: file.to_string(),
            message: e.message().trim_end().to_string(),
            at: e.span().map(|s| Location::of(text, s)),
        })?;
        let doc = DeTable::parse(text).ok();
        let given = |path: &[&str]| doc.as_ref().is_some_and(|d| lookup(d.get_ref(), path).is_some());
        p.resolve(|dev, key| given(&["device", &dev.to_string(), key]));
        p.validate(file).map_err(|e| match e {
            PlatformError::Invalid { file, key, rule, at: None } => {
                let at = doc.as_ref().and_then(|d| locate(d.get_ref(), &key)).map(|s| Location::of(text, s));
                PlatformError::Invalid { file, key, rule, at }
            }
            e => e,
        })?;
        Ok(p)
    }

    /// Fills in what a device's `port` and `iommu_unit` imply (its coherency, that it sits
    /// behind an IOMMU) where the description does not say it itself; `given(device, key)`
    /// tells whether it does. What it says and contradicts is left for validation.
    pub fn resolve(&mut self, given: impl Fn(usize, &str) -> bool) {
        for i in 0..self.devices.len() {
            let port = self.devices[i].port.as_ref().and_then(|n| self.ports.iter().find(|p| &p.name == n));
            if let Some(snoop) = port.map(|p| p.snoop)
                && !given(i, "coherent")
            {
                self.devices[i].coherent = snoop;
            }
            if self.devices[i].iommu_unit.is_some() && !given(i, "iommu") {
                self.devices[i].iommu = true;
            }
        }
    }

    /// The description as TOML, which [`Platform::from_toml`] reads back to an equal
    /// platform.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialize platform: {e}\n"))
    }
}

/// The value at `path` (table keys, array indices as decimal strings).
fn lookup<'a, 'i>(t: &'a DeTable<'i>, path: &[&str]) -> Option<&'a toml::Spanned<DeValue<'i>>> {
    let (first, rest) = path.split_first()?;
    let mut v = t.get(*first)?;
    for seg in rest {
        v = match v.get_ref() {
            DeValue::Table(t) => t.get(*seg)?,
            DeValue::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// The span of the key a validation error names (`device[2] (gpu).dma_mask`,
/// `costs.clean_line`, `region`): the deepest part of the path the text has.
fn locate(t: &DeTable<'_>, key: &str) -> Option<std::ops::Range<usize>> {
    let mut path: Vec<String> = Vec::new();
    for part in key.split('.') {
        let part = part.split(" (").next().unwrap_or(part).trim();
        match part.split_once('[') {
            Some((name, idx)) => {
                path.push(name.to_string());
                path.push(idx.trim_end_matches(']').to_string());
            }
            None => path.push(part.to_string()),
        }
    }
    // The key itself when present (`device[0].dma_mask`), else its nearest ancestor.
    for n in (1..=path.len()).rev() {
        let segs: Vec<&str> = path[..n].iter().map(String::as_str).collect();
        if let Some(v) = lookup(t, &segs) {
            // A key's own span, for a table entry: the key's name is where a reader looks.
            if n >= 2
                && let Some(DeValue::Table(parent)) = lookup(t, &segs[..n - 1]).map(|p| p.get_ref())
                && let Some((k, _)) = parent.get_key_value(segs[n - 1])
            {
                return Some(k.span());
            }
            if n == 1
                && let Some((k, _)) = t.get_key_value(segs[0])
            {
                return Some(k.span());
            }
            return Some(v.span());
        }
    }
    None
}
