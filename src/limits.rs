//! The input-size limit. Importers, traces and goldens are parsed from a file read whole, so
//! memory grows with the file: a 1 GB log, or a trace of tens of millions of steps, would take
//! a few GB. Rather than let that surprise a CI runner (an OOM kill reads like a crash), files
//! over a limit are refused up front with a message saying how to raise it.
//!
//! The limit is [`DEFAULT_MAX_INPUT_BYTES`] unless `LOSSDIFF_MAX_INPUT_BYTES` says otherwise
//! (measured peak memory per input size: `docs/limits.md`).

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Default limit: 512 MiB, about 15 million JSONL steps or a Megatron log of 1.7 million
/// iterations; peak memory while reading is 1.7–1.9× the file size (`docs/limits.md`).
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 512 << 20;

/// The environment variable that overrides [`DEFAULT_MAX_INPUT_BYTES`].
pub const MAX_INPUT_BYTES_ENV: &str = "LOSSDIFF_MAX_INPUT_BYTES";

/// Returns the input limit in bytes.
///
/// # Errors
/// [`Error::InvalidValue`] when `LOSSDIFF_MAX_INPUT_BYTES` is not a positive whole number.
pub fn max_input_bytes() -> Result<u64> {
    byte_limit(
        MAX_INPUT_BYTES_ENV,
        DEFAULT_MAX_INPUT_BYTES,
        "a positive number of bytes, e.g. 2147483648 for 2 GiB",
    )
}

/// Reads a byte limit from the environment variable `var`, else `default`.
///
/// # Errors
/// [`Error::InvalidValue`] naming the variable when it is not a positive whole number.
pub(crate) fn byte_limit(var: &str, default: u64, expected: &str) -> Result<u64> {
    match std::env::var(var) {
        Err(_) => Ok(default),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::InvalidValue {
                origin: "environment".into(),
                key: var.into(),
                expected: expected.into(),
                got: format!("{v:?}"),
            }),
    }
}

/// Reads a whole file, refusing one larger than `limit` bytes before reading it.
///
/// The size is checked twice: from the file's metadata, and while reading (a file still being
/// written, or a pipe, has no trustworthy size).
///
/// # Errors
/// [`Error::Io`] naming the file; [`Error::InputTooLarge`] naming it, its size and the limit.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    check_regular_file(path)?;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let too_large = |size: u64| Error::InputTooLarge {
        path: path.to_path_buf(),
        size,
        limit,
    };
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if size > limit {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    match bytes.len() as u64 > limit {
        true => Err(too_large(bytes.len() as u64)),
        false => Ok(bytes),
    }
}

/// Refuses anything but a regular file, before opening it: opening a FIFO blocks until a writer
/// comes (forever, for a pipe nobody writes), and `/dev/zero` never ends.
///
/// # Errors
/// [`Error::Io`] when the path cannot be inspected; [`Error::NotARegularFile`] naming what it is.
pub fn check_regular_file(path: &Path) -> Result<()> {
    let t = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .file_type();
    let kind = match () {
        _ if t.is_file() => return Ok(()),
        _ if t.is_dir() => "a directory",
        _ => special_kind(&t),
    };
    Err(Error::NotARegularFile {
        path: path.to_path_buf(),
        kind,
    })
}

#[cfg(unix)]
fn special_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    match () {
        _ if t.is_fifo() => "a FIFO (named pipe)",
        _ if t.is_socket() => "a socket",
        _ if t.is_char_device() || t.is_block_device() => "a device",
        _ => "not a regular file",
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::FileType) -> &'static str {
    "not a regular file"
}

/// Reads a whole file under the limit from the environment ([`max_input_bytes`]).
///
/// # Errors
/// As [`max_input_bytes`] and [`read_limited`].
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    read_limited(path, max_input_bytes()?)
}

/// Reads a whole UTF-8 file under the limit from the environment.
///
/// # Errors
/// As [`read_input`]; [`Error::Parse`] naming the byte offset of invalid UTF-8.
pub fn read_input_to_string(path: &Path) -> Result<String> {
    String::from_utf8(read_input(path)?).map_err(|e| invalid_utf8(path, e.utf8_error()))
}

/// The error for a file that is not UTF-8, naming the first bad byte.
pub(crate) fn invalid_utf8(path: &Path, e: std::str::Utf8Error) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        place: format!("byte {}", e.valid_up_to()),
        expected: "UTF-8 text".into(),
        got: "invalid UTF-8".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_limit_is_refused_with_its_size_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        std::fs::write(&path, vec![b'x'; 1000]).unwrap();
        assert_eq!(read_limited(&path, 1000).unwrap().len(), 1000);
        let err = read_limited(&path, 999).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InputTooLarge {
                    size: 1000,
                    limit: 999,
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("big.log") && msg.contains(MAX_INPUT_BYTES_ENV),
            "{msg}"
        );
    }
}
