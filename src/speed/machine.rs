//! What the header of a speed table says about where it was measured: the commit, the CPU and
//! its widest vector unit, the cores, the date and the command line. Numbers from a shared VM are
//! only comparable with these next to them.

use std::path::Path;
use std::process::Command;

/// Where and when a speed table was measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// `git rev-parse --short HEAD` of the checkout this binary was built from, `-dirty` when
    /// tracked files differ from it; `unknown` without git or a checkout.
    pub commit: String,
    /// CPU model name from the OS.
    pub cpu: String,
    /// Widest SIMD the kernels can use here (`avx512f`, `avx2`, …, or `none detected`).
    pub simd: String,
    /// Cores available to this process.
    pub cores: usize,
    /// UTC date and time, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// The exact command line.
    pub command_line: String,
}

impl Machine {
    /// Reads the current machine.
    pub fn current(command_line: &str) -> Machine {
        let fp = crate::fingerprint::Fingerprint::current();
        let widest = ["avx512f", "avx2", "avx", "neon", "sse4.1"]
            .into_iter()
            .find(|f| fp.cpu_features.get(*f).copied().unwrap_or(false));
        Machine {
            commit: commit(Path::new(env!("CARGO_MANIFEST_DIR"))),
            cpu: fp.cpu_model,
            simd: widest.unwrap_or("none detected").to_string(),
            cores: std::thread::available_parallelism().map_or(1, |c| c.get()),
            date: crate::clock::utc_minutes(crate::clock::now_secs()),
            command_line: command_line.to_string(),
        }
    }
}

/// Returns the short commit of the checkout at `root`, with `-dirty` when a tracked file differs
/// from it, or `unknown` when git or the checkout is not there.
pub fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match (
        git(&["rev-parse", "--short", "HEAD"]),
        git(&["status", "--porcelain", "--untracked-files=no"]),
    ) {
        (Some(rev), Some(status)) if !rev.is_empty() => match status.is_empty() {
            true => rev,
            false => format!("{rev}-dirty"),
        },
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_outside_any_checkout_has_an_unknown_commit() {
        let dir = std::env::temp_dir().join(format!("lossdiff-no-git-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = commit(&dir);
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(c, "unknown");
    }
}
