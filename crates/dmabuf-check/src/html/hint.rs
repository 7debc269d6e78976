//! Where a finding's hint puts the step it says is missing.
//!
//! Hints are sentences the sanitizer and the runner write in a few fixed shapes: "put
//! `A` before line N and `B` after it", "the write at line N is outside a CPU bracket:
//! put `A` before it and `B` after it", "`A` (or `B`) before line N". The report draws
//! each named step as a ghost line where the hint places it; a hint in no such shape
//! draws nothing (the hint is still shown beside the finding).

use serde::Serialize;

/// A step the hint says is missing, and where it goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ghost {
    /// The step, as the scenario would write it (`cpu end frame write`).
    pub code: String,
    /// The line it goes next to.
    pub line: u32,
    /// After that line (else before it).
    pub after: bool,
}

/// The number after "line " at the start of `t`, if any.
fn line_at(t: &str) -> Option<u32> {
    let rest = t.strip_prefix("line ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The ghosts a hint places. Alternatives (`A` or `B`, `A` / `B`) give the first; a
/// step followed by "before it" or "after it" goes next to the last line the hint named
/// before the step.
pub fn ghosts(hint: &str) -> Vec<Ghost> {
    let parts: Vec<&str> = hint.split('`').collect();
    let mut out = Vec::new();
    // Odd parts are code; even parts the text around them.
    let mut it_line: Option<u32> = None;
    let mut i = 0;
    while i < parts.len() {
        if i % 2 == 0 {
            // A "line N" in the text before a step is what "it" refers to.
            let text = parts[i];
            for (k, _) in text.match_indices("line ") {
                if let Some(n) = line_at(&text[k..]) {
                    it_line = Some(n);
                }
            }
            i += 1;
            continue;
        }
        let code = parts[i];
        // Skip the alternatives that follow: "` (or `B`)", "` / `B`", "` or `B`".
        let mut j = i + 1;
        while j + 1 < parts.len() {
            let t = parts[j].trim();
            if matches!(t, "(or" | "/" | "or" | ", or") {
                j += 2;
                // A closing parenthesis after the alternative belongs to it.
                continue;
            }
            break;
        }
        let after_text = parts.get(j).map_or("", |t| t.trim_start_matches(')').trim_start());
        let place = if let Some(t) = after_text.strip_prefix("before ") {
            line_at(t)
                .map(|n| (n, false))
                .or_else(|| t.starts_with("it").then_some(it_line).flatten().map(|n| (n, false)))
        } else if let Some(t) = after_text.strip_prefix("after ") {
            line_at(t)
                .map(|n| (n, true))
                .or_else(|| t.starts_with("it").then_some(it_line).flatten().map(|n| (n, true)))
        } else {
            None
        };
        if let Some((line, after)) = place
            && !code.contains("DIR")
        {
            out.push(Ghost { code: code.to_string(), line, after });
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(code: &str, line: u32, after: bool) -> Ghost {
        Ghost { code: code.into(), line, after }
    }

    #[test]
    fn a_bracket_around_one_line() {
        assert_eq!(
            ghosts("put `sync fb start write` before line 15 and `sync fb end write` after it"),
            vec![g("sync fb start write", 15, false), g("sync fb end write", 15, true)]
        );
    }

    #[test]
    fn it_is_the_line_named_before() {
        assert_eq!(
            ghosts(
                "the write at line 11 is outside a CPU bracket: put `cpu begin b write` before it and `cpu end b write` after it, before line 15"
            ),
            vec![g("cpu begin b write", 11, false), g("cpu end b write", 11, true)]
        );
    }

    #[test]
    fn alternatives_give_the_first() {
        assert_eq!(
            ghosts(
                "end the CPU's write bracket before gpu maps frame: `cpu end frame write` (or `sync frame end write`) before line 20"
            ),
            vec![g("cpu end frame write", 20, false)]
        );
        assert_eq!(
            ghosts(
                "gpu keeps f mapped while the CPU writes it: end the CPU's write bracket (`cpu end f write` / `sync f end write`) before line 9, and bracket the device's use with `gpu begin f` / `gpu end f`"
            ),
            vec![g("cpu end f write", 9, false)]
        );
    }

    #[test]
    fn a_hint_without_a_place_draws_nothing() {
        assert!(ghosts("release a buffer only after its last use").is_empty());
        assert!(ghosts("`unmap gpu f` after its last job: what it wrote is handed over at the unmap").is_empty());
        assert!(ghosts("`wait` for the job's fence before line 7").is_empty(), "not a step of its own");
    }
}
