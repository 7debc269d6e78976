//! The HTML report as a whole: self-contained, and bounded on long runs.

use std::path::Path;

use dmabuf_check::html::{CheckedFile, check_page, record};
use dmabuf_check::scenario::parse;
use dmabuf_check::verdict::{CheckConfig, check};
use serde_json::Value;

/// `check --html` of one scenario, as the CLI makes it.
fn page_of(src: &str, name: &str) -> String {
    let s = parse(src, name).expect("parses");
    let cfg = CheckConfig::default();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios").join(name);
    let checked = check(&s, &path, src, &cfg, &mut |_| {}).expect("runs");
    let file = CheckedFile { name, path: &path, src, scenario: &s, checked: &checked };
    check_page(&[file], &cfg).expect("a page")
}

/// The data the page's script draws, as the page carries it.
fn data(page: &str) -> Value {
    let open = "<script type=\"application/json\" id=\"data\">";
    let at = page.find(open).expect("a data element") + open.len();
    let len = page[at..].find("</script>").expect("closed");
    serde_json::from_str(&page[at..at + len].replace("<\\/", "</")).expect("the data is JSON")
}

#[test]
fn every_example_page_is_self_contained() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "dmabuf") {
            continue;
        }
        let name = p.file_name().unwrap().to_str().unwrap();
        let src = std::fs::read_to_string(&p).unwrap();
        let page = page_of(&src, name);
        // Nothing is fetched: no script, style or image from elsewhere, and the one URL
        // is SVG's namespace (a name, never fetched).
        let without_ns = page.replace("http://www.w3.org/2000/svg", "");
        for bad in ["http://", "https://", "<script src", "<link rel=\"stylesheet\"", "@import", "url(http"] {
            assert!(!without_ns.contains(bad), "{name}: the page holds `{bad}`");
        }
        // Two script elements: the data and the renderer; the data's `</` cannot end it.
        assert_eq!(page.matches("</script>").count(), 2, "{name}");
        let d = data(&page);
        let section = &d["sections"][0];
        assert_eq!(section["source"].as_str(), Some(src.as_str()), "{name}: the scenario is shown as it is");
        let runs = section["runs"].as_array().expect("runs");
        assert!(!runs.is_empty(), "{name}");
        for r in runs {
            assert!(!r["recording"]["moments"].as_array().expect("moments").is_empty(), "{name}: a timeline");
        }
        n += 1;
    }
    assert!(n >= 20, "the examples were found ({n})");
}

#[test]
fn a_script_end_tag_in_the_scenario_cannot_end_the_data() {
    let src = "# </script><script>alert(1)</script>\nplatform arm64-noncoherent\nbuffer b size=4KiB heap=system\n";
    let page = page_of(src, "x.dmabuf");
    assert_eq!(page.matches("</script>").count(), 2);
    assert_eq!(data(&page)["sections"][0]["source"].as_str(), Some(src));
}

/// A scenario whose loop body makes a CPU write in its bracket (its lines go dirty in
/// the cache, then clean, with memory written) and a device read, `n` times.
fn long_repeat(n: u64) -> String {
    format!(
        "platform arm64-noncoherent\nbuffer fb size=4KiB heap=system\nattach display fb\nmmap fb\nmap display fb to_device\n\
         repeat {n} {{\n  sync fb start write\n  cpu write fb = frame\n  sync fb end write\n  display read fb expect frame\n}}\n"
    )
}

#[test]
fn a_long_repeat_is_folded_into_one_moment() {
    let page = page_of(&long_repeat(3000), "long.dmabuf");
    let d = data(&page);
    for r in d["sections"][0]["runs"].as_array().unwrap() {
        let rec = &r["recording"];
        let moments = rec["moments"].as_array().unwrap();
        // Two iterations before the fold, the last after it: a few dozen moments, not
        // the 6,000 steps of the run.
        assert!(moments.len() < 100, "{} moments", moments.len());
        let folded = moments.iter().filter(|m| m["label"].as_str().is_some_and(|l| l.contains("folded"))).count();
        assert_eq!(folded, 1, "one folded moment: {moments:?}");
        // The folded iterations' line changes are one entry per place, not one per
        // change: the recording reaches the last iteration without its cap.
        assert_eq!(rec["notes"].as_array().unwrap().len(), 0, "{}", rec["notes"]);
        assert!(moments.iter().any(|m| m["it"] == 3000), "the last iteration is drawn");
    }
    assert!(page.len() < 200_000, "the page is {} bytes", page.len());
}

#[test]
fn straight_line_steps_past_the_cap_stop_the_recording_with_a_note() {
    // Steps outside any `repeat` cannot be folded: the recording stops at its cap and says
    // where, and the page stays bounded.
    let mut src = String::from("platform arm64-noncoherent\nbuffer fb size=4KiB heap=system\nmmap fb\n");
    let steps = record::MAX_MOMENTS + 500;
    for _ in 0..steps / 2 {
        src.push_str("sync fb start write\nsync fb end write\n");
    }
    let page = page_of(&src, "flat.dmabuf");
    let d = data(&page);
    for r in d["sections"][0]["runs"].as_array().unwrap() {
        let rec = &r["recording"];
        assert!(rec["moments"].as_array().unwrap().len() <= record::MAX_MOMENTS);
        let notes: Vec<&str> = rec["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect();
        assert!(notes.iter().any(|n| n.contains("recording stopped")), "{notes:?}");
    }
    assert!(page.len() < 8 << 20, "the page is {} bytes", page.len());
}
