//! Crash-safe file writes. Goldens, caches and traces are written whole or not at all: a killed
//! process must never leave a half-written file where a reader expects a complete one.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Suffix of every temp file [`write_atomic`] creates; nothing that reads a store matches it.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Per-process sequence number, so two threads writing the same file never share a temp file.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// `.{file}.{pid}.{seq}.tmp`: unique per process (pid) and per write within it (sequence), and
/// hidden, so a killed writer's leftover is never taken for the file itself.
fn temp_name(file_name: &str) -> String {
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!(".{file_name}.{}.{seq}{TEMP_SUFFIX}", std::process::id())
}

/// Turns "File exists", which `create_dir_all` reports when a component of the path is a
/// regular file, into an error that names that file.
pub(crate) fn explain_create_dir(dir: &Path, e: std::io::Error) -> std::io::Error {
    let file = dir.ancestors().find(|a| a.is_file());
    match file {
        Some(f) => std::io::Error::new(
            e.kind(),
            format!(
                "cannot create the directory: {} is a regular file",
                f.display()
            ),
        ),
        None => e,
    }
}

/// Checks that `path` could be written (creating its directory), so a command that computes for
/// minutes before writing fails at once on an output path under a regular file or in a
/// read-only place. `path` itself is not touched.
///
/// # Errors
/// [`Error::Io`] naming `path`, with the file in the way when there is one.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    probe_dir(dir).map_err(|e| Error::io(path, e))
}

/// Creates `dir` and writes and removes an empty temp file in it: the one writability probe
/// behind [`check_writable`] and the report directory check.
///
/// # Errors
/// The OS error, naming the regular file in the way when `dir` cannot be created because of one.
pub(crate) fn probe_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| explain_create_dir(dir, e))?;
    let probe = dir.join(temp_name("write-check"));
    std::fs::write(&probe, b"")?;
    // The probe proved the directory writable; a leftover empty temp file is swept like any other.
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Returns the writer's pid when `path` is a temp file of [`write_atomic`].
pub fn temp_file_pid(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    let rest = name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    let mut parts = rest.rsplitn(3, '.');
    let _seq: u64 = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next().filter(|f| !f.is_empty())?;
    Some(pid)
}

/// Removes temp files under `dir` (recursively) left by writers that no longer run, and returns
/// them. A temp file whose writer is alive is left alone: it is about to be renamed.
///
/// # Errors
/// [`Error::Io`] naming a file that could not be removed.
pub fn remove_stale_temp_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            // A symlinked directory is not walked: it leads out of the store, and what lies
            // there is not ours to delete.
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if temp_file_pid(&p).is_some_and(|pid| !process_alive(pid)) {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                removed.push(p);
            }
        }
    }
    removed.sort();
    Ok(removed)
}

/// Resolves `rel`, a path that `file` names under `key`, inside `dir`: a relative path of plain
/// components whose target (after symlinks, when it exists) is still inside `dir`. Paths in
/// summaries and specs are data, and data must not be able to point lossdiff at `/etc/hostname`
/// or `../../x` and have it copied into a report.
///
/// # Errors
/// [`Error::PathOutsideDir`] naming `file`, `key`, the path and `dir`; [`Error::Io`] when `dir`
/// cannot be resolved.
pub fn resolve_inside(dir: &Path, rel: &str, file: &Path, key: &str) -> Result<PathBuf> {
    use std::path::Component;
    let outside = || Error::PathOutsideDir {
        file: file.to_path_buf(),
        key: key.to_string(),
        path: rel.to_string(),
        dir: dir.to_path_buf(),
    };
    let plain = Path::new(rel)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if rel.is_empty() || !plain {
        return Err(outside());
    }
    let joined = dir.join(rel);
    if let Ok(real) = joined.canonicalize() {
        // `Path::parent` of a bare file name is "", which is the working directory.
        let dir = match dir.as_os_str().is_empty() {
            true => Path::new("."),
            false => dir,
        };
        let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        if !real.starts_with(&root) {
            return Err(outside());
        }
    }
    Ok(joined)
}

/// Whether a process with this pid exists (Linux `/proc`; elsewhere every writer counts as alive,
/// so nothing is removed that might still be in use).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    match Path::new("/proc/self").exists() {
        true => Path::new(&format!("/proc/{pid}")).exists(),
        false => true,
    }
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory (named by pid and a
/// per-process sequence number, so concurrent writers never share one), fsync, then rename.
///
/// Readers see either the old file or the new one, never a mix. The parent directory is created
/// when missing and fsynced after the rename so the new name survives a power cut.
///
/// # Errors
/// [`Error::Io`] naming `path` (or its directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, explain_create_dir(dir, e)))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(temp_name(&file_name));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Directory fsync is not supported everywhere; the rename itself already happened.
            let _ = d.sync_all();
        }
        Ok::<(), std::io::Error>(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_unique_per_write_and_recognised() {
        let (a, b) = (temp_name("g.golden.json"), temp_name("g.golden.json"));
        assert_ne!(a, b);
        assert_eq!(temp_file_pid(Path::new(&a)), Some(std::process::id()));
        assert_eq!(temp_file_pid(Path::new("g.golden.json")), None);
        assert_eq!(temp_file_pid(Path::new(".x.tmp")), None);
    }

    #[test]
    fn a_path_under_a_regular_file_names_that_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("taken"), "x").unwrap();
        let err = write_atomic(&dir.path().join("taken/sub/out.json"), b"{}").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("taken/sub: cannot create the directory"),
            "{msg}"
        );
        assert!(msg.contains("taken is a regular file"), "{msg}");
    }

    #[test]
    fn only_temp_files_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // pid 0 is never a user process; our own pid is alive.
        let dead = dir.path().join(".a.golden.json.0.3.tmp");
        let alive = dir.path().join(temp_name("a.golden.json"));
        let golden = dir.path().join("a.golden.json");
        for p in [&dead, &alive, &golden] {
            std::fs::write(p, "{").unwrap();
        }
        assert_eq!(
            remove_stale_temp_files(dir.path()).unwrap(),
            vec![dead.clone()]
        );
        assert!(!dead.exists() && alive.exists() && golden.exists());
    }
}
