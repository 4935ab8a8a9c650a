//! The golden store: blessed reference traces under `golden/<experiment>/<cell>/<arm>.golden.json`,
//! and the update workflow around them, modelled on insta.
//!
//! A golden holds the arm's whole ensemble (seed and perturbation traces), summary statistics,
//! and provenance: the spec hash it was blessed under, the fingerprint of the machine that blessed
//! it, and the lossdiff version. A golden whose spec hash no longer matches the experiment is
//! *stale*: the spec changed, so comparing would be meaningless — it is reported as such, never as
//! a divergence. A changed fingerprint (new candle, other CPU) is exactly what the gate judges and
//! never makes a golden stale.
//!
//! Updates follow insta: `LOSSDIFF_UPDATE=auto|new|always|no` picks an [`UpdateMode`];
//! [`update_action`] (a pure function) turns mode, CI and outcome into an [`UpdateAction`]. Pending
//! goldens are written next to the real ones as `*.golden.json.new` and finished with
//! `lossdiff golden review | accept | reject`. Nothing is ever written when `CI` is set. Every
//! write is atomic (temp file, fsync, rename): a reader sees the old golden or the new one.

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::trace::Trace;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of the golden file format this build writes and the newest it reads.
pub const GOLDEN_VERSION: u32 = 1;
const SUFFIX: &str = ".golden.json";
const PENDING: &str = ".golden.json.new";

/// Where a golden came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Hash of the spec (resolved configs of the arm's runs) it was blessed under.
    pub spec_hash: String,
    /// The spec file, as given when blessing.
    pub spec_path: String,
    /// lossdiff version that blessed it.
    pub lossdiff_version: String,
    /// Environment of the blessing run.
    pub fingerprint: serde_json::Value,
    /// Seconds since the Unix epoch when it was blessed.
    pub blessed_at_unix: u64,
}

/// Per-ensemble summary, for reports and for reviewing a pending golden at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of seed traces.
    pub seeds: usize,
    /// Number of perturbation traces.
    pub perturbations: usize,
    /// Steps per trace.
    pub steps: usize,
    /// Mean over seed traces of the final-20 % mean lm loss.
    pub late_loss_mean: f64,
    /// Standard deviation over seed traces of the final-20 % mean lm loss (0 for one seed).
    pub late_loss_sd: f64,
}

/// One blessed golden: header first (format, identity, provenance, summary), then the traces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Golden {
    /// Always `lossdiff-golden`.
    pub format: String,
    /// [`GOLDEN_VERSION`] when written by this build.
    pub version: u32,
    /// Experiment name.
    pub experiment: String,
    /// Sweep cell id.
    pub cell: String,
    /// Arm name.
    pub arm: String,
    /// Where it came from.
    pub provenance: Provenance,
    /// Ensemble summary.
    pub summary: Summary,
    /// Seed traces, in seed order.
    pub seed_traces: Vec<Trace>,
    /// Perturbation traces (baseline arm only).
    pub perturbation_traces: Vec<Trace>,
}

impl Golden {
    /// Builds a golden from an arm's fresh traces.
    pub fn new(
        experiment: &str,
        cell: &str,
        arm: &str,
        provenance: Provenance,
        seed_traces: Vec<Trace>,
        perturbation_traces: Vec<Trace>,
    ) -> Golden {
        let late: Vec<f64> = seed_traces.iter().map(late_mean).collect();
        let mean = late.iter().sum::<f64>() / late.len().max(1) as f64;
        let sd = match late.len() {
            0 | 1 => 0.0,
            n => (late.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt(),
        };
        Golden {
            format: "lossdiff-golden".into(),
            version: GOLDEN_VERSION,
            experiment: experiment.into(),
            cell: cell.into(),
            arm: arm.into(),
            provenance,
            summary: Summary {
                seeds: seed_traces.len(),
                perturbations: perturbation_traces.len(),
                steps: seed_traces.first().map_or(0, |t| t.steps.len()),
                late_loss_mean: mean,
                late_loss_sd: sd,
            },
            seed_traces,
            perturbation_traces,
        }
    }

    /// Reads and checks a golden file.
    ///
    /// # Errors
    /// I/O and JSON errors naming the file; [`Error::GoldenVersion`] for a golden written by a newer
    /// lossdiff; [`Error::InvalidTrace`] for a trace inside that breaks its invariants.
    pub fn load(path: &Path) -> Result<Golden> {
        let text = crate::limits::read_input_to_string(path)?;
        #[derive(Deserialize)]
        struct Head {
            format: Option<String>,
            version: Option<u32>,
            provenance: Option<serde_json::Value>,
        }
        let head: Head = serde_json::from_str(&text).map_err(|e| Error::json(path, &e))?;
        if head.format.as_deref() != Some("lossdiff-golden") {
            return Err(Error::InvalidTrace {
                path: path.into(),
                reason: "not a lossdiff golden (missing `format: lossdiff-golden`)".into(),
            });
        }
        match head.version {
            Some(v) if v > GOLDEN_VERSION => {
                return Err(Error::GoldenVersion {
                    path: path.into(),
                    written_by: head
                        .provenance
                        .as_ref()
                        .and_then(|p| p["lossdiff_version"].as_str())
                        .unwrap_or("?")
                        .to_string(),
                    found: v,
                    supported: GOLDEN_VERSION,
                })
            }
            None => {
                return Err(Error::InvalidTrace {
                    path: path.into(),
                    reason: "missing `version`".into(),
                })
            }
            _ => {}
        }
        let g: Golden = serde_json::from_str(&text).map_err(|e| Error::json(path, &e))?;
        for t in g.seed_traces.iter().chain(&g.perturbation_traces) {
            if t.schema_version > crate::trace::TRACE_SCHEMA_VERSION {
                return Err(Error::TraceSchema {
                    path: path.into(),
                    written_by: g.provenance.lossdiff_version.clone(),
                    found: t.schema_version,
                    supported: crate::trace::TRACE_SCHEMA_VERSION,
                });
            }
            t.validate(path)?;
        }
        Ok(g)
    }

    /// Serialises as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("goldens serialise")
    }
}

fn late_mean(t: &Trace) -> f64 {
    let loss = t.lm_loss().unwrap_or_default();
    let start = loss.len() - (loss.len() / 5).max(1).min(loss.len());
    let tail = &loss[start..];
    tail.iter().sum::<f64>() / tail.len().max(1) as f64
}

/// How goldens may be updated, from `LOSSDIFF_UPDATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// `new` outside CI, `no` on CI (the default).
    Auto,
    /// Write pending `.new` files for missing, stale or failing goldens.
    New,
    /// Overwrite missing, stale, failing or changed goldens in place.
    Always,
    /// Never write.
    No,
}

impl UpdateMode {
    /// Reads `LOSSDIFF_UPDATE`.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] for a value other than auto, new, always, no (or unset).
    pub fn from_env() -> Result<UpdateMode> {
        match std::env::var("LOSSDIFF_UPDATE").ok().as_deref() {
            None | Some("") | Some("auto") => Ok(UpdateMode::Auto),
            Some("new") => Ok(UpdateMode::New),
            Some("always") | Some("overwrite") => Ok(UpdateMode::Always),
            Some("no") => Ok(UpdateMode::No),
            Some(other) => Err(Error::InvalidValue {
                origin: "environment".into(),
                key: "LOSSDIFF_UPDATE".into(),
                expected: "auto, new, always or no".into(),
                got: other.into(),
            }),
        }
    }
}

/// What the gate found for one golden, as far as updating is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GoldenOutcome {
    /// No golden exists.
    Missing,
    /// The golden was blessed under another spec.
    Stale,
    /// The fresh run diverged from the golden.
    Failed,
    /// The fresh run is bitwise identical to the golden.
    Identical,
    /// The fresh run differs but is equivalent (or inconclusive): the gate passes.
    Passed,
}

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateAction {
    /// Replace the golden.
    InPlace,
    /// Write a pending `.new` next to it.
    NewFile,
    /// Write nothing.
    NoUpdate,
}

/// Decides what to write: the whole update policy in one pure function.
pub fn update_action(mode: UpdateMode, ci: bool, outcome: GoldenOutcome) -> UpdateAction {
    use GoldenOutcome::*;
    if ci {
        return UpdateAction::NoUpdate;
    }
    match (mode, outcome) {
        (UpdateMode::No, _) | (_, Identical) => UpdateAction::NoUpdate,
        (UpdateMode::Always, _) => UpdateAction::InPlace,
        (UpdateMode::Auto | UpdateMode::New, Missing | Stale | Failed) => UpdateAction::NewFile,
        (UpdateMode::Auto | UpdateMode::New, Passed) => UpdateAction::NoUpdate,
    }
}

/// Returns whether `CI` is set to anything but empty, `0` or `false` (as insta reads it).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Goldens under one root directory.
#[derive(Debug, Clone)]
pub struct GoldenStore {
    root: PathBuf,
}

impl GoldenStore {
    /// A store rooted at `root` (normally `golden/`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        GoldenStore { root: root.into() }
    }

    /// Returns the root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns the path of a golden.
    pub fn path(&self, experiment: &str, cell: &str, arm: &str) -> PathBuf {
        self.root
            .join(experiment)
            .join(cell)
            .join(format!("{arm}{SUFFIX}"))
    }

    /// Loads a golden, `None` when it does not exist.
    ///
    /// # Errors
    /// As [`Golden::load`], for a file that exists but cannot be used.
    pub fn load(&self, experiment: &str, cell: &str, arm: &str) -> Result<Option<Golden>> {
        let p = self.path(experiment, cell, arm);
        match p.exists() {
            true => Golden::load(&p).map(Some),
            false => Ok(None),
        }
    }

    /// Writes a golden as `action` says; returns the path written, if any.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn write(&self, golden: &Golden, action: UpdateAction) -> Result<Option<PathBuf>> {
        let path = self.path(&golden.experiment, &golden.cell, &golden.arm);
        let target = match action {
            UpdateAction::NoUpdate => return Ok(None),
            UpdateAction::InPlace => path,
            UpdateAction::NewFile => pending_path(&path),
        };
        write_atomic(&target, golden.to_json().as_bytes())?;
        Ok(Some(target))
    }

    /// Lists every pending `.new` golden under the root, sorted.
    pub fn pending(&self) -> Vec<PathBuf> {
        self.files(PENDING)
    }

    /// Lists every golden under the root, sorted.
    pub fn goldens(&self) -> Vec<PathBuf> {
        self.files(SUFFIX)
    }

    fn files(&self, suffix: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.to_string_lossy().ends_with(suffix) {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// Accepts pending goldens (all, or those whose path contains `filter`): renames each
    /// `.new` over its golden. Returns the goldens written.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file; a pending file that does not parse is refused, not accepted.
    pub fn accept(&self, filter: Option<&str>) -> Result<Vec<PathBuf>> {
        let mut done = Vec::new();
        for p in self.pending().into_iter().filter(|p| matches(p, filter)) {
            match Golden::load(&p) {
                // Another `golden accept` running at the same time took it first.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    continue
                }
                other => other?,
            };
            let target = PathBuf::from(p.to_string_lossy().trim_end_matches(".new"));
            match std::fs::rename(&p, &target) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                other => other.map_err(|e| Error::io(&target, e))?,
            }
            done.push(target);
        }
        Ok(done)
    }

    /// Rejects pending goldens (all, or those whose path contains `filter`) by deleting them.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn reject(&self, filter: Option<&str>) -> Result<Vec<PathBuf>> {
        let mut done = Vec::new();
        for p in self.pending().into_iter().filter(|p| matches(p, filter)) {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            done.push(p);
        }
        Ok(done)
    }

    /// Returns goldens that no `(experiment, cell, arm)` in `used` produces.
    pub fn unused(&self, used: &[(String, String, String)]) -> Vec<PathBuf> {
        let wanted: Vec<PathBuf> = used.iter().map(|(e, c, a)| self.path(e, c, a)).collect();
        self.goldens()
            .into_iter()
            .filter(|p| !wanted.contains(p))
            .collect()
    }
}

fn matches(p: &Path, filter: Option<&str>) -> bool {
    filter.is_none_or(|f| p.to_string_lossy().contains(f))
}

/// Returns the pending path of a golden path.
pub fn pending_path(golden: &Path) -> PathBuf {
    PathBuf::from(format!("{}.new", golden.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Origin, Series, LM_LOSS, TRACE_SCHEMA_VERSION};
    use std::collections::BTreeMap;

    fn trace(last: f32) -> Trace {
        Trace {
            schema_version: TRACE_SCHEMA_VERSION,
            name: "t".into(),
            origin: Origin {
                format: "lossdiff".into(),
                path: None,
            },
            config: serde_json::json!({}),
            fingerprint: serde_json::json!({}),
            seeds: BTreeMap::new(),
            loss_floor: None,
            steps: (1..=5).collect(),
            series: BTreeMap::from([(
                LM_LOSS.to_string(),
                Series::from_f32(&[4.0, 3.0, 2.5, 2.2, last]),
            )]),
        }
    }

    fn golden(spec_hash: &str, last: f32) -> Golden {
        let prov = Provenance {
            spec_hash: spec_hash.into(),
            spec_path: "e.toml".into(),
            lossdiff_version: "0".into(),
            fingerprint: serde_json::json!({}),
            blessed_at_unix: 0,
        };
        Golden::new(
            "exp",
            "default",
            "naive",
            prov,
            vec![trace(last), trace(last + 0.1)],
            vec![],
        )
    }

    #[test]
    fn insta_update_policy() {
        use GoldenOutcome::*;
        use UpdateAction::*;
        use UpdateMode::*;
        // Never on CI, whatever the mode.
        for m in [Auto, New, Always, No] {
            for o in [Missing, Stale, Failed, Passed, Identical] {
                assert_eq!(update_action(m, true, o), NoUpdate, "{m:?} {o:?}");
            }
        }
        assert_eq!(update_action(Auto, false, Missing), NewFile);
        assert_eq!(update_action(New, false, Failed), NewFile);
        assert_eq!(update_action(New, false, Passed), NoUpdate);
        assert_eq!(update_action(Always, false, Stale), InPlace);
        assert_eq!(update_action(Always, false, Passed), InPlace);
        assert_eq!(update_action(Always, false, Identical), NoUpdate);
        assert_eq!(update_action(No, false, Missing), NoUpdate);
    }

    #[test]
    fn pending_then_accept_then_reject() {
        let dir = tempfile::tempdir().unwrap();
        let store = GoldenStore::new(dir.path());
        let g = golden("h1", 2.0);
        let p = store.write(&g, UpdateAction::NewFile).unwrap().unwrap();
        assert!(p.to_string_lossy().ends_with(".golden.json.new"));
        assert!(
            store.load("exp", "default", "naive").unwrap().is_none(),
            "pending is not blessed"
        );
        assert_eq!(store.accept(None).unwrap().len(), 1);
        assert_eq!(store.load("exp", "default", "naive").unwrap().unwrap(), g);
        store
            .write(&golden("h2", 1.0), UpdateAction::NewFile)
            .unwrap();
        assert_eq!(store.reject(Some("naive")).unwrap().len(), 1);
        assert!(store.pending().is_empty());
        assert_eq!(
            store
                .load("exp", "default", "naive")
                .unwrap()
                .unwrap()
                .provenance
                .spec_hash,
            "h1"
        );
    }

    #[test]
    fn summary_and_header_come_first_and_round_trip() {
        let g = golden("h", 2.0);
        let json = g.to_json();
        assert!(json.find("\"provenance\"").unwrap() < json.find("\"seed_traces\"").unwrap());
        approx::assert_relative_eq!(g.summary.late_loss_mean, 2.05, max_relative = 1e-6);
        let dir = tempfile::tempdir().unwrap();
        let store = GoldenStore::new(dir.path());
        store.write(&g, UpdateAction::InPlace).unwrap();
        assert_eq!(store.load("exp", "default", "naive").unwrap().unwrap(), g);
    }

    #[test]
    fn a_golden_from_a_newer_lossdiff_is_refused_by_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.golden.json");
        let mut g = serde_json::to_value(golden("h", 2.0)).unwrap();
        g["version"] = serde_json::json!(7);
        std::fs::write(&p, g.to_string()).unwrap();
        let err = Golden::load(&p).unwrap_err();
        assert!(
            matches!(err, Error::GoldenVersion { found: 7, .. }),
            "{err}"
        );
    }

    #[test]
    fn unused_goldens_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = GoldenStore::new(dir.path());
        store
            .write(&golden("h", 2.0), UpdateAction::InPlace)
            .unwrap();
        assert_eq!(
            store.unused(&[("exp".into(), "default".into(), "naive".into())]),
            Vec::<PathBuf>::new()
        );
        assert_eq!(store.unused(&[]).len(), 1);
    }
}
