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
//!
//! # Integrity
//! Every golden carries a `digest` (SHA-256 of its content, written by [`Golden::to_json`]) and
//! the experiment, cell and arm it was blessed for. A golden whose content does not match its
//! digest (a corrupted file, a hand-edited loss) or that sits at another arm's path is an error
//! naming the file and how to re-bless, never a comparison: a gate must not pass on numbers that
//! were never blessed. The digest detects accidents and hand edits, not forgery: anyone can run
//! the writer. Version-1 goldens predate the digest; they are refused until `lossdiff golden
//! migrate` seals them (see [`GoldenStore::migrate`]), which is a statement that the file is as
//! blessed — review its history first.

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::trace::Trace;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Version of the golden file format this build writes and the newest it reads.
///
/// Version 2 added the `digest`; version 1 goldens are read only by [`GoldenStore::migrate`].
pub const GOLDEN_VERSION: u32 = 2;
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
    /// `sha256:<hex>` of the content (see [`Golden::content_digest`]); `None` only in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
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
        let mut g = Golden {
            format: "lossdiff-golden".into(),
            version: GOLDEN_VERSION,
            digest: None,
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
        };
        g.digest = Some(g.content_digest());
        g
    }

    /// Returns `sha256:<hex>` of the golden's content: its compact JSON with `digest` left out.
    ///
    /// Hashing the parsed values rather than the file's bytes makes the digest blind to
    /// whitespace and key order but not to any number: every float round-trips exactly through
    /// the JSON (`float_roundtrip`, and f32 series print their shortest f32 form).
    pub fn content_digest(&self) -> String {
        let unsealed = Golden {
            digest: None,
            ..self.clone()
        };
        let bytes = serde_json::to_vec(&unsealed).expect("goldens serialise");
        format!("sha256:{}", crate::experiment::hex(&Sha256::digest(bytes)))
    }

    /// Reads and checks a golden file.
    ///
    /// # Errors
    /// I/O and JSON errors naming the file; [`Error::GoldenVersion`] for a golden written by a newer
    /// lossdiff; [`Error::GoldenUnsealed`] for a version-1 golden; [`Error::GoldenDigest`] for
    /// content that does not match its digest; [`Error::InvalidTrace`] for a trace inside that
    /// breaks its invariants.
    pub fn load(path: &Path) -> Result<Golden> {
        let g = Golden::load_any_version(path)?;
        if g.version < 2 {
            return Err(Error::GoldenUnsealed {
                path: path.into(),
                found: g.version,
            });
        }
        g.verify(path)?;
        Ok(g)
    }

    /// Checks the stored digest against the content.
    fn verify(&self, path: &Path) -> Result<()> {
        let computed = self.content_digest();
        match &self.digest {
            Some(d) if *d == computed => Ok(()),
            stored => Err(Error::GoldenDigest {
                path: path.into(),
                stored: stored.clone().unwrap_or_else(|| "none".into()),
                computed,
            }),
        }
    }

    /// Reads a golden of any version this build knows, without checking its digest.
    fn load_any_version(path: &Path) -> Result<Golden> {
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

    /// Serialises as pretty JSON, sealed: the digest is computed from the content being written.
    pub fn to_json(&self) -> String {
        let sealed = Golden {
            digest: Some(self.content_digest()),
            ..self.clone()
        };
        serde_json::to_string_pretty(&sealed).expect("goldens serialise")
    }

    /// Returns `experiment/cell/arm`, the key the golden was blessed for.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.experiment, self.cell, self.arm)
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

/// Who runs a gate, so that its hints name the command that re-runs it with goldens blessed. The
/// library cannot tell who called it (a test binary, the CLI and the CLI under pytest all look
/// alike from inside), so each caller says: `cargo test` gates get the default, the CLI sets
/// [`BlessHint::Cli`], and the CLI sets [`BlessHint::Command`] from `LOSSDIFF_BLESS_COMMAND` when a
/// wrapper (the Python pytest helper) names its own command there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BlessHint {
    /// A `cargo test` gate (`assert_gate!`): `LOSSDIFF_UPDATE=always cargo test`.
    #[default]
    CargoTest,
    /// The `lossdiff` binary: `lossdiff run SPEC --bless`.
    Cli,
    /// The caller's own command, used verbatim (e.g. `LOSSDIFF_UPDATE=always python3 -m pytest
    /// tests/test_gate.py::test_x`).
    Command(String),
}

impl BlessHint {
    /// Name of the environment variable through which a wrapper of the CLI names its own bless
    /// command (read by the CLI, never by the library).
    pub const ENV: &'static str = "LOSSDIFF_BLESS_COMMAND";

    /// Returns the hint a wrapper named in `value` (of [`BlessHint::ENV`]), else `fallback`;
    /// a blank value counts as unset.
    pub fn from_wrapper(value: Option<String>, fallback: BlessHint) -> BlessHint {
        match value.filter(|v| !v.trim().is_empty()) {
            Some(v) => BlessHint::Command(v.trim().to_string()),
            None => fallback,
        }
    }

    /// Returns the command that re-runs the gate of `spec` with its goldens blessed in place.
    pub fn command(&self, spec: &Path) -> String {
        match self {
            BlessHint::CargoTest => "LOSSDIFF_UPDATE=always cargo test".to_string(),
            BlessHint::Cli => format!("lossdiff run {} --bless", spec.display()),
            BlessHint::Command(c) => c.clone(),
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

impl GoldenOutcome {
    /// Returns the outcome in words, as the terminal and reports print it.
    pub fn label(self) -> &'static str {
        match self {
            GoldenOutcome::Missing => "missing",
            GoldenOutcome::Stale => "stale",
            GoldenOutcome::Failed => "failed",
            GoldenOutcome::Identical => "identical",
            GoldenOutcome::Passed => "passed",
        }
    }
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
    /// As [`Golden::load`], for a file that exists but cannot be used; [`Error::GoldenKey`] for a
    /// golden blessed for another experiment, cell or arm than its path.
    pub fn load(&self, experiment: &str, cell: &str, arm: &str) -> Result<Option<Golden>> {
        let p = self.path(experiment, cell, arm);
        if !p.exists() {
            return Ok(None);
        }
        let g = Golden::load(&p)?;
        let expected = format!("{experiment}/{cell}/{arm}");
        if g.key() != expected {
            return Err(Error::GoldenKey {
                path: p,
                expected,
                found: g.key(),
            });
        }
        Ok(Some(g))
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
                // Not followed through symlinks: a link to `/` would walk the whole disk.
                if e.file_type().is_ok_and(|t| t.is_dir()) {
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

/// What [`GoldenStore::migrate`] did to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// A version-1 golden, now sealed with a digest (values unchanged).
    Sealed,
    /// Already sealed and intact; left alone.
    Current,
}

impl GoldenStore {
    /// Seals version-1 goldens and pending goldens (all, or those whose path contains `filter`):
    /// rewrites each through this build's writer with its values unchanged and a digest added.
    ///
    /// Sealing trusts the file as it is now, so it checks what it can first: the traces' invariants
    /// and that the summary still follows from the traces (a hand-edited late loss changes it).
    /// Sealed goldens are only verified: migration never re-seals a digest mismatch.
    ///
    /// # Errors
    /// As [`Golden::load`] for a sealed file; [`Error::GoldenInconsistent`] for a version-1 file
    /// whose summary disagrees with its traces; [`Error::Io`] naming the file.
    pub fn migrate(&self, filter: Option<&str>) -> Result<Vec<(PathBuf, Migration)>> {
        let mut files = self.goldens();
        files.extend(self.pending());
        let mut done = Vec::new();
        for p in files.into_iter().filter(|p| matches(p, filter)) {
            let g = Golden::load_any_version(&p)?;
            if g.version >= 2 {
                g.verify(&p)?;
                done.push((p, Migration::Current));
                continue;
            }
            check_summary(&g, &p)?;
            let sealed = Golden {
                version: GOLDEN_VERSION,
                ..g
            };
            write_atomic(&p, sealed.to_json().as_bytes())?;
            done.push((p, Migration::Sealed));
        }
        Ok(done)
    }
}

/// Checks that a golden's summary is what its traces give.
fn check_summary(g: &Golden, path: &Path) -> Result<()> {
    let fresh = Golden::new(
        &g.experiment,
        &g.cell,
        &g.arm,
        g.provenance.clone(),
        g.seed_traces.clone(),
        g.perturbation_traces.clone(),
    )
    .summary;
    let s = &g.summary;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs()) || a == b;
    let checks = [
        (
            "seeds",
            s.seeds == fresh.seeds,
            s.seeds.to_string(),
            fresh.seeds.to_string(),
        ),
        (
            "perturbations",
            s.perturbations == fresh.perturbations,
            s.perturbations.to_string(),
            fresh.perturbations.to_string(),
        ),
        (
            "steps",
            s.steps == fresh.steps,
            s.steps.to_string(),
            fresh.steps.to_string(),
        ),
        (
            "late_loss_mean",
            close(s.late_loss_mean, fresh.late_loss_mean),
            s.late_loss_mean.to_string(),
            fresh.late_loss_mean.to_string(),
        ),
        (
            "late_loss_sd",
            close(s.late_loss_sd, fresh.late_loss_sd),
            s.late_loss_sd.to_string(),
            fresh.late_loss_sd.to_string(),
        ),
    ];
    match checks.into_iter().find(|c| !c.1) {
        Some((what, _, stored, computed)) => Err(Error::GoldenInconsistent {
            path: path.into(),
            what: what.into(),
            stored,
            computed,
        }),
        None => Ok(()),
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

    /// A store in a fresh temporary directory holding one sealed golden (`exp/default/naive`),
    /// and that golden's path. Keep the directory alive for as long as the store is used.
    fn store_with_one_golden() -> (tempfile::TempDir, GoldenStore, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = GoldenStore::new(dir.path());
        let p = store
            .write(&golden("h", 2.0), UpdateAction::InPlace)
            .unwrap()
            .unwrap();
        (dir, store, p)
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

    /// Writes `g` as a version-1 golden (no digest), as lossdiff wrote them before sealing.
    fn write_v1(path: &Path, g: &Golden) {
        let mut v = serde_json::to_value(g).unwrap();
        v["version"] = serde_json::json!(1);
        v.as_object_mut().unwrap().remove("digest");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }

    #[test]
    fn a_hand_edited_loss_fails_the_digest_naming_the_file_and_how_to_rebless() {
        let (_dir, store, p) = store_with_one_golden();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"digest\": \"sha256:"), "{text}");
        std::fs::write(&p, text.replacen("2.5,", "9.5,", 1)).unwrap();
        let err = store.load("exp", "default", "naive").unwrap_err();
        assert!(matches!(err, Error::GoldenDigest { .. }), "{err}");
        let msg = err.to_string();
        for want in [
            p.display().to_string().as_str(),
            "edited by hand",
            "LOSSDIFF_UPDATE=always",
        ] {
            assert!(msg.contains(want), "missing {want:?} in {msg}");
        }
    }

    #[test]
    fn reformatting_a_golden_keeps_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.golden.json");
        let g = golden("h", 2.0);
        let compact: serde_json::Value = serde_json::from_str(&g.to_json()).unwrap();
        std::fs::write(&p, compact.to_string()).unwrap();
        assert_eq!(Golden::load(&p).unwrap(), g);
    }

    // Issue 21 item 1: one loss of the committed flash_vs_noflash golden edited by hand
    // (2.819663 -> 9.819663) passed the gate.
    #[test]
    fn the_committed_flash_golden_with_one_loss_edited_is_refused() {
        let committed = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("golden/flash_vs_noflash/default/naive.golden.json");
        Golden::load(&committed).expect("the committed golden is sealed and intact");
        let text = std::fs::read_to_string(&committed).unwrap();
        assert!(text.contains("2.819663,"));
        let dir = tempfile::tempdir().unwrap();
        let store = GoldenStore::new(dir.path());
        let p = store.path("flash_vs_noflash", "default", "naive");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text.replacen("2.819663,", "9.819663,", 1)).unwrap();
        let err = store
            .load("flash_vs_noflash", "default", "naive")
            .unwrap_err();
        assert!(matches!(err, Error::GoldenDigest { .. }), "{err}");
    }

    #[test]
    fn a_golden_copied_to_another_arms_path_is_refused() {
        let (_dir, store, p) = store_with_one_golden();
        std::fs::copy(&p, store.path("exp", "default", "flash")).unwrap();
        let err = store.load("exp", "default", "flash").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: this is the golden of exp/default/naive, but the path belongs to exp/default/flash; \
                 a golden copied or renamed by hand is not a blessing: re-bless it with \
                 `LOSSDIFF_UPDATE=always lossdiff run <spec>`",
                store.path("exp", "default", "flash").display()
            )
        );
    }

    #[test]
    fn a_version_1_golden_is_refused_until_migrated_with_its_values_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let store = GoldenStore::new(dir.path());
        let g = golden("h", 2.0);
        let p = store.path("exp", "default", "naive");
        write_v1(&p, &g);
        let err = store.load("exp", "default", "naive").unwrap_err();
        assert!(
            matches!(err, Error::GoldenUnsealed { found: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("lossdiff golden migrate"), "{err}");
        assert_eq!(
            store.migrate(None).unwrap(),
            [(p.clone(), Migration::Sealed)]
        );
        assert_eq!(store.load("exp", "default", "naive").unwrap().unwrap(), g);
        assert_eq!(store.migrate(None).unwrap(), [(p, Migration::Current)]);
    }

    #[test]
    fn migration_refuses_a_version_1_golden_edited_after_blessing() {
        let dir = tempfile::tempdir().unwrap();
        let store = GoldenStore::new(dir.path());
        let mut g = golden("h", 2.0);
        // A late loss edited by hand: the summary no longer follows from the traces.
        g.seed_traces[0].series.get_mut(LM_LOSS).unwrap().values[4] = 9.0;
        let p = store.path("exp", "default", "naive");
        write_v1(&p, &g);
        let before = std::fs::read_to_string(&p).unwrap();
        let err = store.migrate(None).unwrap_err();
        assert!(
            matches!(&err, Error::GoldenInconsistent { what, .. } if what == "late_loss_mean"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), before, "not sealed");
    }

    #[test]
    fn migration_never_reseals_a_digest_mismatch() {
        let (_dir, store, p) = store_with_one_golden();
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replacen("2.5,", "9.5,", 1);
        std::fs::write(&p, &text).unwrap();
        assert!(matches!(
            store.migrate(None).unwrap_err(),
            Error::GoldenDigest { .. }
        ));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
    }

    #[test]
    fn unused_goldens_are_listed() {
        let (_dir, store, _) = store_with_one_golden();
        assert_eq!(
            store.unused(&[("exp".into(), "default".into(), "naive".into())]),
            Vec::<PathBuf>::new()
        );
        assert_eq!(store.unused(&[]).len(), 1);
    }
}
