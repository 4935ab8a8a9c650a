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
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Machine {
            commit: commit(Path::new(env!("CARGO_MANIFEST_DIR"))),
            cpu: fp.cpu_model,
            simd: widest.unwrap_or("none detected").to_string(),
            cores: std::thread::available_parallelism().map_or(1, |c| c.get()),
            date: utc_date(secs),
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

/// Formats seconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
///
/// # Formula
/// ```text
/// Howard Hinnant's civil_from_days: days since 1970-01-01 → (year, month, day), proleptic
/// Gregorian, via 400-year eras of 146,097 days.
/// ```
pub fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_date_matches_gnu_date() {
        // date -u -d @0 '+%F %H:%M'           -> 1970-01-01 00:00
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        // date -u -d @951782400 '+%F %H:%M'   -> 2000-02-29 00:00 (a 400-year leap day)
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
        // date -u -d @1796495400 '+%F %H:%M'  -> 2026-12-05 18:30
        assert_eq!(utc_date(1_796_495_400), "2026-12-05 18:30 UTC");
    }

    #[test]
    fn a_directory_outside_any_checkout_has_an_unknown_commit() {
        let dir = std::env::temp_dir().join(format!("lossdiff-no-git-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = commit(&dir);
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(c, "unknown");
    }
}
