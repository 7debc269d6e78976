//! The crate's modules form floors: no module imports one that imports it back, directly
//! or through others, and every top-level module imports only modules on floors below its
//! own. The graph is read from the source (`use` statements and `crate::`/`super::` paths
//! in code, comments and strings left out); `cargo test -p dmabuf-sim --test layering --
//! --nocapture` prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules, ground floor first: each may import only modules listed before
/// it. A new module takes its floor here.
const FLOORS: &[&str] =
    &["file", "addr", "stats", "vocab", "store", "platform", "cache", "hw", "event", "chooser", "sim", "oracle"];

/// A module path from the crate root (`["sim", "cpu"]`); the root is empty.
type ModPath = Vec<String>;

/// Source text with comments removed and string and character literals emptied, so that
/// only code is searched for paths.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if let Some(hashes) = raw_string_start(rest).filter(|_| !out.ends_with(is_ident)) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            i += body + rest[body..].find(&close).map_or(rest.len() - body, |e| e + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && (rest.starts_with("'\\") || rest.chars().nth(2) == Some('\'')) {
            // A character literal (a lifetime has no closing quote two characters on).
            i += 1 + rest[1..].find('\'').map_or(rest.len() - 1, |e| e + 1);
            if rest.starts_with("'\\'") {
                i += 1;
            }
            out.push_str("' '");
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The number of `#` of a raw string literal starting `s`, if one does.
fn raw_string_start(s: &str) -> Option<usize> {
    let s = s.strip_prefix('b').unwrap_or(s);
    let s = s.strip_prefix('r')?;
    let hashes = s.len() - s.trim_start_matches('#').len();
    s[hashes..].starts_with('"').then_some(hashes)
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands the path tree at the start of `s` (`a::b::{c, d::{e, f}}`, `a::*`, `a as b`)
/// into full paths, each a list of segments.
fn path_tree(s: &str) -> Vec<Vec<String>> {
    fn tree(s: &[char], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        loop {
            while *i < s.len() && s[*i].is_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == '{' {
                *i += 1;
                loop {
                    tree(s, i, &path, out);
                    while *i < s.len() && s[*i].is_whitespace() {
                        *i += 1;
                    }
                    match s.get(*i) {
                        Some(',') => *i += 1,
                        Some('}') => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                    while *i < s.len() && s[*i].is_whitespace() {
                        *i += 1;
                    }
                    if s.get(*i) == Some(&'}') {
                        *i += 1;
                        return;
                    }
                }
            }
            let start = *i;
            while *i < s.len() && (is_ident(s[*i]) || s[*i] == '*') {
                *i += 1;
            }
            if *i > start {
                path.push(s[start..*i].iter().collect());
            }
            if s[*i..].starts_with(&[':', ':']) {
                *i += 2;
                continue;
            }
            out.push(path);
            // Skip an `as name` rename.
            while *i < s.len() && !matches!(s[*i], ',' | '}' | ';') {
                *i += 1;
            }
            return;
        }
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    tree(&chars, &mut 0, &[], &mut out);
    out
}

/// One source file: its module and its code.
struct File {
    module: ModPath,
    code: String,
}

fn read_files(dir: &Path, module: &ModPath, out: &mut Vec<File>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("src is readable").map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_stem().unwrap().to_str().unwrap().to_string();
        if p.is_dir() {
            let mut m = module.clone();
            m.push(name);
            read_files(&p, &m, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let mut m = module.clone();
            if name != "mod" && name != "lib" {
                m.push(name);
            }
            out.push(File { module: m, code: code_only(&std::fs::read_to_string(&p).unwrap()) });
        }
    }
}

/// Word-boundary positions of `word` in `code`.
fn find_word(code: &str, word: &str) -> Vec<usize> {
    code.match_indices(word)
        .map(|(i, _)| i)
        .filter(|&i| !code[..i].chars().next_back().is_some_and(is_ident))
        .filter(|&i| !code[i + word.len()..].chars().next().is_some_and(is_ident))
        .collect()
}

/// Inline modules (`mod tests { .. }`) of a file: byte range and name.
fn inline_modules(code: &str) -> Vec<(usize, usize, String)> {
    let mut v = Vec::new();
    for at in find_word(code, "mod") {
        let rest = &code[at + 3..];
        let name: String = rest.trim_start().chars().take_while(|&c| is_ident(c)).collect();
        let after = rest.trim_start()[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        let open = code.len() - after.len();
        let mut depth = 0;
        for (k, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        v.push((open, open + k, name.clone()));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    v
}

/// The module graph: each file's module and the modules it imports.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    read_files(src, &Vec::new(), &mut files);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
    // Every path a file names, made absolute.
    let paths_of = |f: &File| -> Vec<ModPath> {
        let inline = inline_modules(&f.code);
        let here = |at: usize| {
            let mut m = f.module.clone();
            if let Some((_, _, name)) = inline.iter().find(|(s, e, _)| (*s..*e).contains(&at)) {
                m.push(name.clone());
            }
            m
        };
        let mut out = Vec::new();
        let mut absolute = |at: usize, p: Vec<String>| {
            let cur = here(at);
            let mut abs = match p.first().map(String::as_str) {
                Some("crate") => Vec::new(),
                Some("super") => cur[..cur.len().saturating_sub(1)].to_vec(),
                Some("self") => cur.clone(),
                Some(first) => {
                    // A `use` of a child module of the current one (uniform paths).
                    let mut child = cur.clone();
                    child.push(first.to_string());
                    if !modules.contains(&child) {
                        return;
                    }
                    cur.clone()
                }
                None => return,
            };
            let skip = usize::from(matches!(p[0].as_str(), "crate" | "super" | "self"));
            abs.extend(p[skip..].iter().filter(|s| s.as_str() != "self").cloned());
            out.push(abs);
        };
        for at in find_word(&f.code, "use") {
            for p in path_tree(&f.code[at + 3..]) {
                absolute(at, p);
            }
        }
        for word in ["crate", "super"] {
            for at in find_word(&f.code, word) {
                if f.code[at + word.len()..].starts_with("::") {
                    for p in path_tree(&f.code[at..]) {
                        absolute(at, p);
                    }
                }
            }
        }
        out
    };
    // Names the crate root re-exports, by the module they come from.
    let root = files.iter().find(|f| f.module.is_empty()).expect("lib.rs");
    let mut exported: BTreeMap<String, ModPath> = BTreeMap::new();
    let longest_module = |p: &ModPath| (1..=p.len()).rev().map(|n| p[..n].to_vec()).find(|m| modules.contains(m));
    for p in paths_of(root) {
        if let (Some(m), Some(name)) = (longest_module(&p), p.last()) {
            exported.insert(name.clone(), m);
        }
    }
    let mut graph = BTreeMap::new();
    for f in files.iter().filter(|f| !f.module.is_empty()) {
        let mut deps = BTreeSet::new();
        for p in paths_of(f) {
            let target = longest_module(&p).or_else(|| p.first().and_then(|n| exported.get(n).cloned()));
            if let Some(t) = target.filter(|t| *t != f.module) {
                deps.insert(t.join("::"));
            }
        }
        graph.insert(f.module.join("::"), deps);
    }
    graph
}

/// A cycle of the graph, if it has one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<&'a str>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| *s == n) {
            let mut c: Vec<String> = stack[i..].iter().map(|s| s.to_string()).collect();
            c.push(n.to_string());
            return Some(c);
        }
        if !done.insert(n) {
            return None;
        }
        stack.push(n);
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

/// The graph between top-level modules (a file's imports count for its top-level module).
fn top_level(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_string();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, deps) in graph {
        let entry = g.entry(top(m)).or_default();
        entry.extend(deps.iter().map(|d| top(d)).filter(|d| *d != top(m)));
    }
    g
}

/// Groups of modules that import each other in a circle (each reaches all the others).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = g.get(from).into_iter().flatten().collect();
        while let Some(n) = todo.pop() {
            if seen.insert(n.clone()) {
                todo.extend(g.get(n).into_iter().flatten());
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|n| (n, reach(n))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for (n, r) in &reaches {
        if r.contains(*n) && !out.iter().any(|c| c.contains(*n)) {
            out.push(r.iter().filter(|m| reaches.get(m).is_some_and(|rm| rm.contains(*n))).cloned().collect());
        }
    }
    out
}

fn print(title: &str, g: &BTreeMap<String, BTreeSet<String>>) {
    println!("{title}");
    for (m, deps) in g {
        println!("  {m} -> {}", deps.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    for c in circles(g) {
        println!("  circle: {}", c.into_iter().collect::<Vec<_>>().join(", "));
    }
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let top = top_level(&graph);
    print("modules (files):", &graph);
    print("top-level modules:", &top);
    assert!(graph.contains_key("sim") && graph.contains_key("addr"), "the source was not found: {graph:?}");
    if let Some(c) = find_cycle(&graph) {
        panic!("the modules import each other in a circle: {}", c.join(" -> "));
    }
    if let Some(c) = find_cycle(&top) {
        panic!("the top-level modules import each other in a circle: {}", c.join(" -> "));
    }
}

#[test]
fn every_module_imports_only_modules_on_lower_floors() {
    let top = top_level(&module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src")));
    let floor = |m: &str| FLOORS.iter().position(|f| *f == m);
    for (m, deps) in &top {
        let Some(fm) = floor(m) else { panic!("module `{m}` has no floor: add it to FLOORS") };
        for d in deps {
            let fd = floor(d).unwrap_or_else(|| panic!("module `{d}` has no floor: add it to FLOORS"));
            assert!(fd < fm, "`{m}` (floor {fm}) imports `{d}` (floor {fd}), which is not below it");
        }
    }
    assert_eq!(top.len(), FLOORS.len(), "FLOORS names a module that does not exist: {top:?}");
}

#[test]
fn the_reader_sees_paths_through_comments_strings_and_groups() {
    let code = code_only("use crate::{a::{B, c::D}, e}; // crate::f\nlet s = \"crate::g\"; let c = '\"';");
    assert!(!code.contains("crate::f") && !code.contains("crate::g"), "{code}");
    let paths = path_tree("crate::{a::{B, c::D}, e as E};");
    let want: Vec<Vec<String>> = [&["crate", "a", "B"][..], &["crate", "a", "c", "D"], &["crate", "e"]]
        .iter()
        .map(|p| p.iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(paths, want);
    let g = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(find_cycle(&g), Some(vec!["a".to_string(), "b".to_string(), "a".to_string()]));
    assert_eq!(circles(&g), vec![BTreeSet::from(["a".to_string(), "b".to_string()])]);
}
