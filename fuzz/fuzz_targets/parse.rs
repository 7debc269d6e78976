//! The scenario parser on arbitrary bytes: it must return a scenario or an error, never
//! panic, and an error's place must lie inside the text.

#![no_main]

use dmabuf_check::scenario::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Valid UTF-8 as it is; anything else as a file reader would see it after a lossy
    // decode, so invalid bytes still reach the parser as U+FFFD.
    let text = String::from_utf8_lossy(data);
    if let Err(e) = parse(&text, "fuzz.dmabuf") {
        if let Some(line) = e.line() {
            let lines = text.split('\n').count();
            assert!(line >= 1 && line as usize <= lines, "line {line} of {lines}: {e}");
            assert!(e.column().is_some_and(|c| c >= 1), "{e}");
        }
    }
});
