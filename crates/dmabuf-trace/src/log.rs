//! The interposer's log, read back: one [`Record`] per line.
//!
//! A line is `T PID TID VERB key=value...` (the writer is `dmabuf-record`'s `log`
//! module): `T` is `CLOCK_MONOTONIC` in nanoseconds, values are decimal, `0x`
//! hexadecimal, or text with bytes outside `!`..`~` and `%` written `%XX` (a lone `%`
//! is the empty text).

use std::fmt;

/// One logged event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// When it began, in `CLOCK_MONOTONIC` nanoseconds.
    pub t: u64,
    /// The process.
    pub pid: u32,
    /// The thread.
    pub tid: u32,
    /// What happened (`sync`, `mmap`, `misuse`, ...).
    pub verb: String,
    /// Its fields, in the order written.
    pub fields: Vec<(String, String)>,
    /// Its line in the log (1-based), for errors.
    pub line: usize,
}

/// A log line that is not one the interposer writes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogError {
    /// Fewer than four words.
    #[error("line {line}: a record needs `T PID TID VERB`")]
    Short {
        /// The line.
        line: usize,
    },
    /// A header word that is not a number.
    #[error("line {line}: `{word}` is not a number")]
    BadNumber {
        /// The line.
        line: usize,
        /// The word.
        word: String,
    },
    /// A field without `=`.
    #[error("line {line}: field `{word}` has no `=`")]
    BadField {
        /// The line.
        line: usize,
        /// The word.
        word: String,
    },
    /// A field the record needs is missing or malformed.
    #[error("line {line}: `{verb}` needs a numeric `{key}`")]
    MissingField {
        /// The line.
        line: usize,
        /// The record's verb.
        verb: String,
        /// The field.
        key: String,
    },
}

impl Record {
    /// Parses one line (`line` is its number, for errors).
    pub fn parse(text: &str, line: usize) -> Result<Record, LogError> {
        let mut words = text.split_ascii_whitespace();
        let (Some(t), Some(pid), Some(tid), Some(verb)) = (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(LogError::Short { line });
        };
        let num = |w: &str| w.parse::<u64>().map_err(|_| LogError::BadNumber { line, word: w.to_string() });
        let t = num(t)?;
        let pid = num(pid)? as u32;
        let tid = num(tid)? as u32;
        let mut fields = Vec::new();
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(LogError::BadField { line, word: w.to_string() });
            };
            fields.push((k.to_string(), unescape(v)));
        }
        Ok(Record { t, pid, tid, verb: verb.to_string(), fields, line })
    }

    /// A field's text.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A numeric field (decimal, `0x` hexadecimal, or negative decimal as its two's
    /// complement is not accepted: see [`Record::int`]).
    pub fn num(&self, key: &str) -> Result<u64, LogError> {
        self.get(key).and_then(parse_u64).ok_or_else(|| LogError::MissingField {
            line: self.line,
            verb: self.verb.clone(),
            key: key.to_string(),
        })
    }

    /// A signed decimal field.
    pub fn int(&self, key: &str) -> Result<i64, LogError> {
        self.get(key).and_then(|v| v.parse::<i64>().ok()).ok_or_else(|| LogError::MissingField {
            line: self.line,
            verb: self.verb.clone(),
            key: key.to_string(),
        })
    }

    /// A list of `0x` addresses (`bt=`).
    pub fn addrs(&self, key: &str) -> Vec<u64> {
        self.get(key).map(|v| v.split(',').filter_map(parse_u64).filter(|a| *a != 0).collect()).unwrap_or_default()
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {}", self.t, self.pid, self.tid, self.verb)?;
        for (k, v) in &self.fields {
            write!(f, " {k}={}", escape(v))?;
        }
        Ok(())
    }
}

fn parse_u64(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Undoes the `%XX` escapes (a lone `%` is the empty text; a malformed escape is kept).
pub fn unescape(v: &str) -> String {
    if v == "%" {
        return String::new();
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(x) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The interposer's escaping, for writing a record back.
pub fn escape(v: &str) -> String {
    if v.is_empty() {
        return "%".into();
    }
    let mut out = String::new();
    for b in v.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads a whole log: records in time order (ties in the order written). Blank lines
/// are skipped; a malformed line is an error naming it.
pub fn read(text: &str) -> Result<Vec<Record>, LogError> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        out.push(Record::parse(l, i + 1)?);
    }
    out.sort_by_key(|r| (r.t, r.line));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_parses_with_escapes() {
        let r = Record::parse("12 3 4 set_name ino=7 name=uvc%20capture flags=0x5 exp=%", 1).unwrap();
        assert_eq!((r.t, r.pid, r.tid, r.verb.as_str()), (12, 3, 4, "set_name"));
        assert_eq!(r.get("name"), Some("uvc capture"));
        assert_eq!(r.num("flags").unwrap(), 5);
        assert_eq!(r.get("exp"), Some(""));
        assert_eq!(Record::parse(&r.to_string(), 1).unwrap(), r);
    }

    #[test]
    fn bad_lines_name_their_line() {
        assert_eq!(Record::parse("1 2 3", 9), Err(LogError::Short { line: 9 }));
        assert!(matches!(Record::parse("x 2 3 v", 4), Err(LogError::BadNumber { line: 4, .. })));
        assert!(matches!(Record::parse("1 2 3 v novalue", 5), Err(LogError::BadField { line: 5, .. })));
        let r = Record::parse("1 2 3 sync ino=x", 6).unwrap();
        assert!(matches!(r.num("ino"), Err(LogError::MissingField { line: 6, .. })));
    }

    #[test]
    fn records_come_back_in_time_order() {
        let rs = read("5 1 1 b\n\n3 1 2 a\n5 1 1 c\n").unwrap();
        let verbs: Vec<_> = rs.iter().map(|r| r.verb.as_str()).collect();
        assert_eq!(verbs, ["a", "b", "c"]);
    }
}

/// What makes two misuse records one access over consecutive pages: the same thread,
/// buffer, kind of misuse, direction and backtrace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MisuseKey {
    /// The process.
    pub pid: u32,
    /// The thread.
    pub tid: u32,
    /// The buffer's inode.
    pub ino: u64,
    /// `outside`, `write_in_read`, `end_without_start`.
    pub what: String,
    /// A write (else a read).
    pub write: bool,
    /// The backtrace.
    pub bt: Vec<u64>,
}

/// A run of misuse records of one key over consecutive pages.
#[derive(Clone, Debug)]
pub struct MisuseRun {
    /// What the pages share.
    pub key: MisuseKey,
    /// The offset the next page of the run would have.
    pub next: u64,
    /// Pages in the run.
    pub pages: u64,
}

impl MisuseRun {
    /// A misuse record's key and offset.
    pub fn of(r: &Record) -> Result<(MisuseKey, u64), LogError> {
        let key = MisuseKey {
            pid: r.pid,
            tid: r.tid,
            ino: r.num("ino")?,
            what: r.get("what").unwrap_or("").to_string(),
            write: r.num("w")? == 1,
            bt: r.addrs("bt"),
        };
        Ok((key, r.num("off")?))
    }

    /// Extends the run with a record of `key` at `off`, if it continues it.
    pub fn extend(&mut self, key: &MisuseKey, off: u64) -> bool {
        if *key == self.key && off == self.next {
            self.next += 4096;
            self.pages += 1;
            true
        } else {
            false
        }
    }
}
