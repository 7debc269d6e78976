//! `--live`: each misuse printed as it happens, with its backtrace, one block per run of
//! pages of one access.

use std::io::Write;

use crate::log::{MisuseRun, Record};
use crate::symbolize::Symbolizer;

/// Prints misuse records as they come.
pub struct Live<W: Write> {
    out: W,
    /// The run being collapsed.
    run: Option<MisuseRun>,
}

impl<W: Write> Live<W> {
    /// A printer writing to `out`.
    pub fn new(out: W) -> Live<W> {
        Live { out, run: None }
    }

    /// Looks at one record (modules are learnt, misuse printed).
    pub fn record(&mut self, r: &Record, sym: &mut Symbolizer) {
        match r.verb.as_str() {
            "module" => {
                if let Ok(base) = r.num("base") {
                    sym.module(r.pid, base, r.get("path").unwrap_or(""));
                }
            }
            "hello" => {
                if let Ok(ppid) = r.num("ppid") {
                    sym.inherit(r.pid, ppid as u32);
                }
            }
            "misuse" => self.misuse(r, sym),
            _ => {}
        }
    }

    fn misuse(&mut self, r: &Record, sym: &mut Symbolizer) {
        let Ok((key, off)) = MisuseRun::of(r) else { return };
        if self.run.as_mut().is_some_and(|run| run.extend(&key, off)) {
            return;
        }
        self.finish();
        let who = format!("process {} thread {}", r.pid, r.tid);
        let ino = key.ino;
        let text = match key.what.as_str() {
            "outside" => format!(
                "{who} {} dma-buf {ino} at offset {off:#x} outside a sync bracket",
                if key.write { "wrote" } else { "read" }
            ),
            "write_in_read" => format!("{who} wrote dma-buf {ino} at offset {off:#x} inside a READ bracket"),
            "end_without_start" => {
                format!("{who} ended a bracket on dma-buf {ino} it never started (DMA_BUF_SYNC_END without START)")
            }
            other => format!("{who}: {other} on dma-buf {ino}"),
        };
        let _ = writeln!(self.out, "dmabuf record: MISUSE: {text}");
        for f in sym.backtrace(r.pid, &key.bt) {
            let _ = writeln!(self.out, "    at {f}");
        }
        let _ = self.out.flush();
        self.run = Some(MisuseRun { key, next: off + 4096, pages: 1 });
    }

    /// Ends the current run (prints how many more pages it covered).
    pub fn finish(&mut self) {
        if let Some(run) = self.run.take()
            && run.pages > 1
        {
            let _ = writeln!(self.out, "    (the same access on {} more page(s))", run.pages - 1);
            let _ = self.out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_pages_is_one_block() {
        let mut out = Vec::new();
        let mut sym = Symbolizer::new();
        {
            let mut l = Live::new(&mut out);
            for (i, off) in [0u64, 4096, 8192].iter().enumerate() {
                let r = Record::parse(&format!("{i} 7 8 misuse what=outside ino=3 off={off} w=0 bt=0x10,0x20"), i + 1)
                    .unwrap();
                l.record(&r, &mut sym);
            }
            let r = Record::parse("9 7 8 misuse what=write_in_read ino=3 off=0 w=1 bt=0x10", 4).unwrap();
            l.record(&r, &mut sym);
            l.finish();
        }
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("MISUSE").count(), 2, "{text}");
        assert!(text.contains("read dma-buf 3 at offset 0x0 outside a sync bracket"), "{text}");
        assert!(text.contains("on 2 more page(s)"), "{text}");
        assert!(text.contains("inside a READ bracket"), "{text}");
    }
}
