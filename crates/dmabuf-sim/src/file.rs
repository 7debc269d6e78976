//! Reading a file with a hard limit on its size.

use std::io::Read;
use std::path::Path;

/// Reads at most `limit` bytes of the file at `path`, refusing a longer one without
/// reading the rest. A device or a pipe (`/dev/zero`, a FIFO) reports no size, so the
/// size the file system reports is never trusted: the read itself stops one byte past
/// the limit.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than the limit of {limit} bytes; not read further"),
        ));
    }
    Ok(bytes)
}
