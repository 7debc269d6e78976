//! The TextMate grammar under `editors/` against the scenario language's reference.

use std::path::Path;

use fancy_regex::Regex;
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn grammar() -> Value {
    let p = root().join("editors/vscode/syntaxes/dmabuf.tmLanguage.json");
    serde_json::from_str(&std::fs::read_to_string(&p).expect("the grammar")).expect("the grammar is JSON")
}

/// The grammar's rules in the order a highlighter tries them (the top-level patterns,
/// includes resolved), each as (its scope, its pattern compiled): a rule with captures
/// gives its first capture's scope.
fn rules(g: &Value) -> Vec<(String, Regex)> {
    let mut out = Vec::new();
    for p in g["patterns"].as_array().expect("patterns") {
        let rule = match p["include"].as_str() {
            Some(inc) => &g["repository"][inc.trim_start_matches('#')],
            None => p,
        };
        assert!(rule.is_object(), "{p} names no rule of the repository");
        let scope = rule["captures"]["1"]["name"].as_str().or(rule["name"].as_str()).unwrap_or_default();
        let pat = rule["match"].as_str().or(rule["begin"].as_str()).expect("a match or a begin");
        let re = Regex::new(pat).unwrap_or_else(|e| panic!("`{pat}` does not compile: {e}"));
        out.push((scope.to_string(), re));
    }
    out
}

/// Every pattern anywhere in the grammar (`match`, `begin`, `end`), compiled.
fn every_pattern(v: &Value, n: &mut usize) {
    match v {
        Value::Object(m) => {
            for key in ["match", "begin", "end"] {
                if let Some(p) = m.get(key).and_then(Value::as_str) {
                    Regex::new(p).unwrap_or_else(|e| panic!("`{p}` does not compile: {e}"));
                    *n += 1;
                }
            }
            m.values().for_each(|x| every_pattern(x, n));
        }
        Value::Array(a) => a.iter().for_each(|x| every_pattern(x, n)),
        _ => {}
    }
}

/// The `'keywords'` of the grammar block of docs/scenario-language.md.
fn documented_keywords() -> Vec<String> {
    let doc = std::fs::read_to_string(root().join("docs/scenario-language.md")).unwrap();
    let start = doc.find("```text\nscenario").expect("the grammar block");
    let block = &doc[start..start + doc[start..].find("\n```\n").unwrap()];
    let word = Regex::new(r"'([A-Za-z][A-Za-z0-9_]*)'").unwrap();
    let mut out: Vec<String> = word.captures_iter(block).map(|c| c.unwrap()[1].to_string()).collect();
    out.sort();
    out.dedup();
    out
}

/// The scope `word` gets where it stands in `line`, as a highlighter gives it: from the
/// position before it, the rule whose match starts first (the earlier rule on a tie) and
/// covers exactly the word.
fn scope_of(all: &[(String, Regex)], line: &str, word: &str) -> Option<String> {
    let at = line.find(word)?;
    let mut pos = 0;
    while pos <= at {
        let mut best: Option<(usize, usize, usize, &str)> = None;
        for (scope, re) in all {
            let Some(c) = re.captures_from_pos(line, pos).ok().flatten() else { continue };
            let whole = c.get(0).unwrap();
            let m = c.get(1).unwrap_or(whole);
            if best.is_none_or(|b| whole.start() < b.0) {
                best = Some((whole.start(), m.start(), m.end(), scope));
            }
        }
        let (start, ms, me, scope) = best?;
        if ms == at {
            return (me == at + word.len()).then(|| scope.to_string());
        }
        pos = if me > start { me } else { start + 1 };
    }
    None
}

#[test]
fn the_grammar_is_json_and_every_pattern_compiles() {
    let g = grammar();
    assert_eq!(g["scopeName"], "source.dmabuf");
    let mut n = 0;
    every_pattern(&g, &mut n);
    assert!(n >= 10, "{n} patterns");
    assert_eq!(rules(&g).len(), g["patterns"].as_array().unwrap().len());
}

#[test]
fn every_documented_keyword_is_highlighted() {
    let all = rules(&grammar());
    let kws = documented_keywords();
    assert!(kws.len() > 50, "the keywords were found: {kws:?}");
    let is_kw = |s: &str| s.starts_with("keyword.") || s.starts_with("constant.language");
    for k in &kws {
        let units = ["B", "K", "M", "G", "T", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"];
        if units.contains(&k.as_str()) {
            // A unit is part of its number.
            let n = format!("4{k}");
            let s = scope_of(&all, &format!("gpu x[..{n}]"), &n);
            assert_eq!(s.as_deref(), Some("constant.numeric.dmabuf"), "`{n}`");
            continue;
        }
        // A step's verb starts its line; the other keywords come inside a step.
        let first = scope_of(&all, &format!("{k} x"), k).unwrap_or_default();
        let inside = scope_of(&all, &format!("gpu x {k} y"), k).unwrap_or_default();
        assert!(is_kw(&first) || is_kw(&inside), "`{k}` is `{first}` first on a line and `{inside}` inside one");
    }
}

#[test]
fn names_that_start_with_a_keyword_are_names() {
    let all = rules(&grammar());
    for (line, word) in
        [("gpu read writer", "writer"), ("gpu read write-back", "write-back"), ("attach gpu frame_2", "frame_2")]
    {
        let s = scope_of(&all, line, word).unwrap_or_default();
        assert!(!s.starts_with("keyword.") && !s.starts_with("constant."), "`{word}` in `{line}` is `{s}`");
    }
    assert_eq!(scope_of(&all, "isp write frame = 0x5a", "isp").as_deref(), Some("entity.name.function.device.dmabuf"));
    assert_eq!(scope_of(&all, "cpu write frame = 0x5a", "cpu").as_deref(), Some("keyword.other.step.dmabuf"));
    assert_eq!(scope_of(&all, "cpu write frame[0..64KiB] = 1", "64KiB").as_deref(), Some("constant.numeric.dmabuf"));
    assert_eq!(
        scope_of(&all, "cpu write f = 1 # a note", "# a note").as_deref(),
        Some("comment.line.number-sign.dmabuf")
    );
    assert_eq!(scope_of(&all, "gpu sync frame to cpu", "sync").as_deref(), Some("keyword.other.dmabuf"));
}
