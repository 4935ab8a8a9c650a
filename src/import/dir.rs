//! Reading a directory of runs as arms: which files are seeds of which arm. `lossdiff report DIR`
//! uses it; anything that hands lossdiff a directory of curves can.
//!
//! # The grouping rule
//! 1. Each subdirectory of `DIR` is one arm, named after the subdirectory; every file (or run
//!    directory, such as a TensorBoard run) directly in it is one seed of that arm:
//!    `runs/flash/seed1.jsonl`, `runs/flash/seed2.jsonl` → arm `flash`, two seeds.
//! 2. A file directly in `DIR` whose stem ends in a seed tag is seed `N` of the arm named by what
//!    precedes the tag. Tags: `.seed<N>`, `-seed<N>`, `_seed<N>`, `.s<N>`, `-s<N>`, `_s<N>`
//!    (`base.seed1.jsonl`, `base-s2.csv` → arm `base`, seeds 1 and 2).
//! 3. Any other file directly in `DIR` is an arm of its own, named after its stem.
//!
//! Arms of the same name from rules 1 and 2 are one arm. Arms are listed in name order (the
//! caller picks the reference). Within an arm, runs are ordered by seed tag, then by name. Hidden
//! entries and `DIR/report` (where `lossdiff report` writes) are skipped.
//!
//! # Seeds
//! A trace that records no seed (no `seeds.init`, no `config.train.seed`) but whose file name —
//! or, under rule 1, whose file name inside its arm's directory (`seed3.jsonl`, `s3.jsonl`) —
//! carries a seed number takes that number as its recorded seed, noted in its
//! `config.import.seed_from_file_name`. The comparison then pairs runs by seed as it does for
//! traces that record one; a seed the trace itself records always wins.

use super::{import_with, ImportOptions};
use crate::error::{Error, Result};
use crate::trace::Trace;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Name of the directory `lossdiff report DIR` writes its report into; never read as an arm.
pub const REPORT_SUBDIR: &str = "report";

/// One arm read from a directory: its name and its runs.
#[derive(Debug, Clone, PartialEq)]
pub struct DirArm {
    /// The arm's name (the subdirectory, or the file name before its seed tag).
    pub name: String,
    /// Its runs, by seed tag then file name.
    pub runs: Vec<DirRun>,
}

/// One run of a [`DirArm`].
#[derive(Debug, Clone, PartialEq)]
pub struct DirRun {
    /// The file (or run directory) it was read from.
    pub path: PathBuf,
    /// The seed number in its name, if any.
    pub name_seed: Option<u64>,
    /// The trace.
    pub trace: Trace,
}

impl DirArm {
    /// Returns the arm's traces in run order.
    pub fn traces(&self) -> Vec<Trace> {
        self.runs.iter().map(|r| r.trace.clone()).collect()
    }
}

/// Splits a file stem into `(arm, seed)` when it ends in a seed tag (see the module docs):
/// `base.seed12` → `("base", 12)`, `run-s3` → `("run", 3)`; `seed3` alone → `("", 3)`.
pub fn seed_tag(stem: &str) -> Option<(&str, u64)> {
    let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 18 {
        return None;
    }
    let (head, number) = stem.split_at(stem.len() - digits);
    let seed = number.parse().ok()?;
    for tag in ["seed", "s"] {
        let Some(arm) = head.strip_suffix(tag) else {
            continue;
        };
        if arm.is_empty() {
            return Some(("", seed));
        }
        if let Some(arm) = arm.strip_suffix(['.', '-', '_']).filter(|a| !a.is_empty()) {
            return Some((arm, seed));
        }
    }
    None
}

/// Returns the stem of a file name: without its extension, unless it is a directory.
fn stem(path: &Path) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match path.is_dir() {
        true => name(path).unwrap_or_default(),
        false => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// Lists a directory's entries in name order, hidden ones skipped.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |e: std::io::Error| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()).map_err(io))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Whether a directory is one run (a TensorBoard run or a Hugging Face checkpoint) rather than
/// an arm's directory of runs.
fn is_run_dir(dir: &Path) -> bool {
    dir.join("trainer_state.json").is_file()
        || entries(dir).is_ok_and(|es| {
            es.iter().any(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("tfevents"))
            })
        })
}

/// Groups a directory's runs into arms by the rule in the module docs and reads each run.
///
/// # Errors
/// [`Error::Io`] if the directory cannot be listed, and any import error naming the file that
/// failed (every file in the directory is read as a run).
pub fn read_arms_dir(dir: &Path, opts: &ImportOptions) -> Result<Vec<DirArm>> {
    let mut files: BTreeMap<String, Vec<(PathBuf, Option<u64>)>> = BTreeMap::new();
    for path in entries(dir)? {
        let name = stem(&path);
        if path.is_dir() && !is_run_dir(&path) {
            if name == REPORT_SUBDIR {
                continue;
            }
            for run in entries(&path)? {
                let seed = seed_tag(&stem(&run)).map(|(_, s)| s);
                files.entry(name.clone()).or_default().push((run, seed));
            }
            continue;
        }
        let (arm, seed) = match seed_tag(&name) {
            Some((arm, seed)) if !arm.is_empty() => (arm.to_string(), Some(seed)),
            _ => (name.clone(), None),
        };
        files.entry(arm).or_default().push((path, seed));
    }
    let mut arms = Vec::new();
    for (name, mut runs) in files {
        runs.sort_by(|(pa, sa), (pb, sb)| (sa.is_none(), sa, pa).cmp(&(sb.is_none(), sb, pb)));
        let runs = runs
            .into_iter()
            .map(|(path, name_seed)| {
                let mut trace = import_with(&path, opts)?;
                if let Some(seed) = name_seed {
                    adopt_name_seed(&mut trace, seed);
                }
                Ok(DirRun {
                    path,
                    name_seed,
                    trace,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if !runs.is_empty() {
            arms.push(DirArm { name, runs });
        }
    }
    Ok(arms)
}

/// Records the seed a file's name states, when the trace records none itself.
fn adopt_name_seed(trace: &mut Trace, seed: u64) {
    let recorded =
        trace.seeds.contains_key("init") || trace.config.pointer("/train/seed").is_some();
    if recorded {
        return;
    }
    trace.seeds.insert("init".into(), seed);
    if let Some(import) = trace
        .config
        .get_mut("import")
        .and_then(|v| v.as_object_mut())
    {
        import.insert("seed_from_file_name".into(), seed.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_tags_follow_the_documented_spellings() {
        assert_eq!(seed_tag("base.seed12"), Some(("base", 12)));
        assert_eq!(seed_tag("base-seed1"), Some(("base", 1)));
        assert_eq!(seed_tag("flash_attn_s3"), Some(("flash_attn", 3)));
        assert_eq!(seed_tag("run.s0"), Some(("run", 0)));
        assert_eq!(seed_tag("seed4"), Some(("", 4)));
        assert_eq!(seed_tag("s4"), Some(("", 4)));
        // Digits that are not a seed tag: part of the arm's name.
        assert_eq!(seed_tag("gpt2"), None);
        assert_eq!(seed_tag("lr3e-4"), None);
        assert_eq!(seed_tag("bf16"), None);
        assert_eq!(seed_tag("base.seed"), None);
        assert_eq!(seed_tag("-s3"), None);
    }

    fn write(path: &Path, seed_line: &str, offset: f64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = seed_line.to_string();
        for s in 1..=20 {
            text += &format!(
                "{{\"step\": {s}, \"loss\": {}}}\n",
                3.0 - 0.01 * s as f64 + offset
            );
        }
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn subdirectories_and_seed_tags_group_runs_into_arms() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("base.seed2.jsonl"), "", 0.0);
        write(&d.join("base.seed10.jsonl"), "", 0.0);
        write(&d.join("base.seed1.jsonl"), "", 0.0);
        write(&d.join("flash/s1.jsonl"), "", 0.1);
        write(&d.join("flash/s2.jsonl"), "", 0.1);
        write(&d.join("odd.jsonl"), "", 0.2);
        write(&d.join("report/ignored.jsonl"), "", 0.0);
        write(&d.join(".hidden.jsonl"), "", 0.0);
        let arms = read_arms_dir(d, &ImportOptions::default()).unwrap();
        let names: Vec<&str> = arms.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["base", "flash", "odd"]);
        let seeds: Vec<Option<u64>> = arms[0].runs.iter().map(|r| r.name_seed).collect();
        assert_eq!(seeds, [Some(1), Some(2), Some(10)]);
        assert_eq!(arms[1].runs.len(), 2);
        assert_eq!(arms[1].runs[1].trace.seeds.get("init"), Some(&2));
        assert_eq!(arms[2].runs[0].name_seed, None);
        assert!(!arms[2].runs[0].trace.seeds.contains_key("init"));
    }

    #[test]
    fn a_seed_the_trace_records_wins_over_its_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let meta = "{\"format\": \"lossdiff-jsonl/1\", \"config\": {}, \"seed\": 77}\n";
        write(&dir.path().join("a.seed1.jsonl"), meta, 0.0);
        let arms = read_arms_dir(dir.path(), &ImportOptions::default()).unwrap();
        let t = &arms[0].runs[0].trace;
        assert_eq!(arms[0].runs[0].name_seed, Some(1));
        assert_eq!(t.seeds.get("init"), Some(&77));
    }
}
