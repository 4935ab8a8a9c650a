//! Experiment specs: a base config, two or more arms that differ by declared factors, the seed
//! and perturbation ensembles, a sweep grid, and the comparison settings — all from one TOML file
//! in `experiments/`.
//!
//! ```toml
//! [experiment]
//! name = "flash_vs_noflash"
//! seeds = [1, 2, 3]            # the seed ensemble, run for every arm
//! perturbations = 4            # last-bit perturbations of the baseline arm's first seed
//! declared = ["model.attention"]   # what the arms are meant to differ in (default: the keys they set)
//!
//! [base]                       # a run spec: preset + [base.model] / [base.train] / [base.data]
//! preset = "gate"
//!
//! [[arm]]                      # the first arm is the baseline
//! name = "naive"
//! attention = "naive"          # any config key (bare or qualified) …
//! [[arm]]
//! name = "flash"
//! attention = "flash"
//! threads = 2                  # … or an environment knob
//!
//! [sweep]                      # optional grid: every combination is a cell
//! lr_decay_iters = [50, 100, 200]
//!
//! [compare]                    # comparison settings (see `compare`)
//! alpha = 0.05
//! ```
//!
//! A nightly spec has only `[experiment]` with `include = ["a.toml", …]` (paths relative to it).
//!
//! An arm may instead run another stack's command and import its trace (`external`):
//! `command = "python3 train.py --seed {seed} --out {out}"`, with optional `trace` (`"file"` or
//! `"stdout"`), `format`, `timeout_s`, `env = { KEY = "value" }` and `workdir` (relative to the
//! spec). Its placeholders are checked here, at load; `docs/external.md` has the details.
//!
//! This module parses and expands specs into [`Cell`]s and [`RunRequest`]s; running them is
//! `runner`'s job, judging them `compare`'s, storing them `golden`'s.

mod sections;

pub use sections::CompareSpec;

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::external::ExternalSpec;
use crate::faults::Fault;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Config keys that say *where* a run executes rather than *what* the experiment is: like the
/// candle release or the CPU, they are the environment a gate judges. Their resolved defaults
/// are left out of [`Experiment::spec_hash`], so a new default (fused kernels replacing composed
/// ops) is judged against the goldens instead of making them stale; a spec that sets one
/// explicitly (in `[base]`, an arm or the sweep) pins it, and then it is hashed like any key.
pub const ENVIRONMENT_KEYS: &[&str] = &["model.kernels"];

/// One arm: a named set of overrides on the base config, plus its environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    /// The arm's name (unique in the experiment).
    pub name: String,
    /// Config overrides as `(qualified key, TOML value text)`, in spec order.
    pub overrides: Vec<(String, String)>,
    /// Threads for candle's kernels (`None`: the runner's default of 1).
    pub threads: Option<usize>,
    /// An external command producing the arm's trace (not run by the built-in trainer).
    pub command: Option<ExternalSpec>,
}

/// A parsed experiment spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// The spec file.
    pub path: PathBuf,
    /// Unique name; also the golden directory's name.
    pub name: String,
    /// One-paragraph purpose, for reports.
    pub description: String,
    /// Seeds run for every arm.
    pub seeds: Vec<u64>,
    /// Perturbation seeds, run for every arm at its first seed: the rounding-noise yardstick for
    /// cross-arm comparisons (the baseline's) and for each arm's golden check (its own).
    pub perturbations: Vec<u64>,
    /// Config keys the arms are meant to differ in.
    pub declared: Vec<String>,
    /// The base config all arms start from.
    pub base: RunConfig,
    /// [`ENVIRONMENT_KEYS`] that `[base]` sets explicitly (pinned, hence part of the spec hash).
    pub base_pins: Vec<String>,
    /// The arms; `arms[0]` is the baseline every other arm is compared against.
    pub arms: Vec<Arm>,
    /// Sweep axes: `(qualified key, values as TOML text)`.
    pub sweep: Vec<(String, Vec<String>)>,
    /// The `[compare]` settings, checked at load.
    pub compare: CompareSpec,
    /// Other experiments this one includes (the nightly).
    pub include: Vec<PathBuf>,
    /// What the comparisons must show.
    pub expect: Expectation,
}

/// What an experiment's comparisons are supposed to show; a gate passes when they do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectation {
    /// Cells whose comparisons must be reported as diverged (`["*"]`: every cell — a canary);
    /// every other cell must not diverge.
    pub diverged: Vec<String>,
    /// Config keys that must be named as undeclared differences (a confound demonstration);
    /// any other undeclared difference fails the gate.
    pub undeclared: Vec<String>,
    /// `expect = "changed"`: the arms' numerics must differ in at least one bit (the planted
    /// change took effect) while staying within noise. An environment pair whose effect is real
    /// but small (f32 vs bf16 compute on the gate model) is judged by this, not by a divergence
    /// it may or may not reach.
    #[serde(default)]
    pub changed: bool,
}

impl Expectation {
    /// Returns whether `cell` is expected to diverge.
    pub fn diverges(&self, cell: &str) -> bool {
        self.diverged.iter().any(|c| c == "*" || c == cell)
    }
}

/// One point of the sweep grid (the whole experiment when there is no sweep).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Stable id, e.g. `lr_decay_iters=50` or `default`; a directory name in `golden/`.
    pub id: String,
    /// The sweep assignments of this cell, `(qualified key, TOML value text)`.
    pub assignments: Vec<(String, String)>,
}

/// What a run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A member of the seed ensemble.
    Seed,
    /// A member of the perturbation ensemble.
    Perturbation,
}

/// One training run an experiment needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    /// The cell it belongs to.
    pub cell: String,
    /// The arm it belongs to.
    pub arm: String,
    /// Seed or perturbation member.
    pub role: Role,
    /// The seed (for perturbations: the perturbation seed).
    pub seed: u64,
    /// The fully built config.
    pub config: RunConfig,
    /// Threads for candle's kernels.
    pub threads: usize,
    /// External command, when the arm has one (placeholders unresolved).
    pub command: Option<ExternalSpec>,
}

impl RunRequest {
    /// Returns a readable run id, e.g. `flash_vs_noflash/default/flash/seed-2`.
    pub fn id(&self, experiment: &str) -> String {
        let role = match self.role {
            Role::Seed => "seed",
            Role::Perturbation => "perturb",
        };
        format!(
            "{experiment}/{}/{}/{role}-{}",
            self.cell, self.arm, self.seed
        )
    }
}

impl Experiment {
    /// Loads and checks an experiment spec.
    ///
    /// # Errors
    /// I/O and TOML errors naming the file; [`Error::UnknownKey`] with the closest valid key for a
    /// misspelled section, experiment key or config key; [`Error::InvalidValue`] naming the key.
    pub fn load(path: &Path) -> Result<Experiment> {
        // Under the input limit, and never a FIFO: a spec is an input like any other.
        let text = crate::limits::read_input_to_string(path)?;
        Experiment::parse(&text, path)
    }

    /// Parses a spec already in memory. `path` names it in errors and anchors the relative paths
    /// it holds (`include`, `workdir`); nothing is read from disk (an `include` that exists is
    /// only resolved, to refuse a symlink out of the spec's directory) and nothing is run, so any
    /// text is safe to parse (this is what the fuzz target drives). Every section is checked
    /// here, `[compare]` and each cell × arm config included, so a bad value never waits for
    /// training to be found.
    ///
    /// # Errors
    /// As [`Experiment::load`], without the I/O error.
    pub fn parse(text: &str, path: &Path) -> Result<Experiment> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| Error::Toml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Experiment::from_table(doc, path)
    }

    fn from_table(mut doc: toml::Table, path: &Path) -> Result<Experiment> {
        let origin = path.display().to_string();
        sections::check_sections(&doc, &origin)?;
        let head = sections::parse_experiment(doc.remove("experiment"), path)?;
        let (base, base_pins) = sections::parse_base(doc.remove("base"), &origin)?;
        let spec_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let arms = sections::parse_arms(doc.remove("arm"), &origin, &base, spec_dir)?;
        let sweep = sections::parse_sweep(doc.remove("sweep"), &origin)?;
        let compare = sections::parse_compare(doc.remove("compare"), &origin)?;
        let exp = Experiment {
            path: path.to_path_buf(),
            name: head.name,
            description: head.description,
            seeds: head.seeds,
            perturbations: head.perturbations,
            declared: head
                .declared
                .unwrap_or_else(|| sections::default_declared(&arms)),
            base,
            base_pins,
            arms,
            sweep,
            compare,
            include: head.include,
            expect: head.expect,
        };
        exp.check_across_sections()?;
        Ok(exp)
    }

    /// Checks what no one section can: arm count, perturbations against external arms, cell
    /// ids (distinct, and those `expect_diverged` names real), and every cell × arm config —
    /// so a sweep value that breaks a config, or a duplicate cell, is refused before anything
    /// trains rather than when its cell comes up.
    fn check_across_sections(&self) -> Result<()> {
        let origin = self.path.display().to_string();
        let bad = |key: &str, expected: &str, got: String| Error::InvalidValue {
            origin: origin.clone(),
            key: key.to_string(),
            expected: expected.to_string(),
            got,
        };
        if !self.perturbations.is_empty() {
            for a in &self.arms {
                let Some(c) = &a.command else { continue };
                if !c.placeholders(&origin)?.iter().any(|p| p == "perturb_seed") {
                    return Err(bad(
                        "experiment.perturbations",
                        &format!("no perturbations, or a command that uses `{{perturb_seed}}`: arm `{}` runs an external command that never sees it, so its perturbation runs would repeat its first seed run; pass it to the script (e.g. `--perturb-seed {{perturb_seed}}`) and nudge the initial weights in the last bit when it is not 0", a.name),
                        format!("{:?}", self.perturbations),
                    ));
                }
            }
        }
        if self.arms.len() < 2 && self.include.is_empty() {
            return Err(bad(
                "arm",
                "two or more [[arm]] tables",
                format!("{}", self.arms.len()),
            ));
        }
        let cells = self.cells();
        let mut seen: std::collections::HashMap<&str, &Cell> = std::collections::HashMap::new();
        for cell in &cells {
            if let Some(first) = seen.insert(&cell.id, cell) {
                return Err(bad(
                    "sweep",
                    "distinct cells: each cell is run, judged and blessed under its id",
                    format!(
                        "cell `{}` twice ({} and {})",
                        cell.id,
                        assignments_text(&first.assignments),
                        assignments_text(&cell.assignments)
                    ),
                ));
            }
            for arm in &self.arms {
                self.config_for(cell, arm, self.seeds[0])?;
            }
        }
        if let Some(c) = self
            .expect
            .diverged
            .iter()
            .find(|c| *c != "*" && !seen.contains_key(c.as_str()))
        {
            let ids: Vec<&str> = cells.iter().map(|c| c.id.as_str()).collect();
            return Err(bad(
                "experiment.expect_diverged",
                &format!("cell ids of this sweep ({})", ids.join(", ")),
                c.clone(),
            ));
        }
        Ok(())
    }

    /// Returns the spec files `spec` stands for: itself, or (for a nightly) the specs it
    /// `include`s, depth first.
    ///
    /// # Errors
    /// As [`Experiment::load`] for every spec reached; [`Error::IncludeCycle`] naming the chain
    /// when a spec includes itself, directly or through others; [`Error::InvalidValue`] for a
    /// missing include, or two experiments with one name (the same spec included twice, or two
    /// specs whose goldens and cells would collide).
    pub fn expand(spec: &Path) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut names = Vec::new();
        expand_into(spec, &mut Vec::new(), &mut out, &mut names)?;
        Ok(out)
    }

    /// Returns the sweep grid's cells (one `default` cell without a sweep), in spec order.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = vec![Vec::<(String, String)>::new()];
        for (key, values) in &self.sweep {
            cells = cells
                .into_iter()
                .flat_map(|prefix| {
                    values.iter().map(move |v| {
                        let mut c = prefix.clone();
                        c.push((key.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        cells
            .into_iter()
            .map(|assignments| Cell {
                id: cell_id(&assignments),
                assignments,
            })
            .collect()
    }

    /// Returns the config of `arm` in `cell` for `seed`, before perturbation.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when an override does not apply (e.g. a value of the wrong type).
    pub fn config_for(&self, cell: &Cell, arm: &Arm, seed: u64) -> Result<RunConfig> {
        let mut cfg = self.base.clone();
        let assignments: Vec<String> = cell
            .assignments
            .iter()
            .chain(&arm.overrides)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        cfg.apply_overrides(&assignments)
            .map_err(|e| relabel(e, &self.path, &arm.name))?;
        cfg.train.seed = seed;
        Ok(cfg)
    }

    /// Expands the experiment into every run it needs: each cell × arm × (seeds + perturbations
    /// of the first seed).
    ///
    /// `inject` forces a fault into every run (a test-only switch: it proves a gate fails when
    /// numerics change, without touching goldens).
    ///
    /// # Errors
    /// As [`Experiment::config_for`].
    pub fn runs(&self, inject: Option<Fault>) -> Result<Vec<RunRequest>> {
        let mut out = Vec::new();
        for cell in self.cells() {
            for arm in &self.arms {
                let mut push = |role, seed: u64, perturb: u64| -> Result<()> {
                    let mut config = self.config_for(
                        &cell,
                        arm,
                        if role == Role::Seed {
                            seed
                        } else {
                            self.seeds[0]
                        },
                    )?;
                    config.train.perturb_seed = perturb;
                    if let Some(f) = inject {
                        config.train.inject = f;
                    }
                    out.push(RunRequest {
                        cell: cell.id.clone(),
                        arm: arm.name.clone(),
                        role,
                        seed,
                        config,
                        threads: arm.threads.unwrap_or(1),
                        command: arm.command.clone(),
                    });
                    Ok(())
                };
                for &s in &self.seeds {
                    push(Role::Seed, s, 0)?;
                }
                for &p in &self.perturbations {
                    push(Role::Perturbation, p, p)?;
                }
            }
        }
        Ok(out)
    }

    /// Returns a hash of everything that defines `arm`'s runs in `cell`: the resolved configs of
    /// its seeds and perturbations and its environment knobs. A golden blessed under another hash
    /// is *stale* (its spec changed), which is not the same as diverged.
    ///
    /// # Errors
    /// As [`Experiment::config_for`].
    pub fn spec_hash(&self, cell: &Cell, arm: &Arm) -> Result<String> {
        let mut h = Sha256::new();
        let pinned = |key: &str| {
            self.base_pins.iter().any(|k| k == key)
                || cell
                    .assignments
                    .iter()
                    .chain(&arm.overrides)
                    .any(|(k, _)| k == key)
        };
        for &s in &self.seeds {
            let mut json = self.config_for(cell, arm, s)?.to_json();
            for key in ENVIRONMENT_KEYS.iter().filter(|k| !pinned(k)) {
                if let Some((section, field)) = key.split_once('.') {
                    if let Some(obj) = json.get_mut(section).and_then(|v| v.as_object_mut()) {
                        obj.remove(field);
                    }
                }
            }
            h.update(json.to_string());
        }
        // The workdir as the spec relates it to itself, so the hash does not depend on how the
        // spec's path was spelled (`experiments/x.toml` from the CLI, absolute from a test).
        let command = arm.command.as_ref().map(|c| {
            let dir = self.path.parent().unwrap_or(Path::new(""));
            let workdir = c.workdir.strip_prefix(dir).unwrap_or(&c.workdir);
            ExternalSpec {
                workdir: workdir.to_path_buf(),
                ..c.clone()
            }
        });
        h.update(format!(
            "perturbations={:?};threads={:?};command={:?}",
            self.perturbations, arm.threads, command
        ));
        Ok(hex(&h.finalize()))
    }
}

fn relabel(e: Error, path: &Path, arm: &str) -> Error {
    match e {
        Error::InvalidValue {
            key, expected, got, ..
        } => Error::InvalidValue {
            origin: format!("{} [[arm]] {arm}", path.display()),
            key,
            expected,
            got,
        },
        other => other,
    }
}

pub use crate::fingerprint::hex;

fn cell_id(assignments: &[(String, String)]) -> String {
    if assignments.is_empty() {
        return "default".into();
    }
    assignments
        .iter()
        .map(|(k, v)| {
            let leaf = k.rsplit('.').next().unwrap_or(k);
            let v: String = v
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .collect();
            format!("{leaf}={v}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Walks the include tree below `spec`; `chain` holds the including specs above it (canonical
/// path, path as written), `names` every experiment seen with its spec.
fn expand_into(
    spec: &Path,
    chain: &mut Vec<(PathBuf, PathBuf)>,
    out: &mut Vec<PathBuf>,
    names: &mut Vec<(String, PathBuf)>,
) -> Result<()> {
    let real = spec.canonicalize().map_err(|e| Error::io(spec, e))?;
    if let Some(i) = chain.iter().position(|(r, _)| *r == real) {
        let mut shown: Vec<PathBuf> = chain[i..].iter().map(|(_, p)| p.clone()).collect();
        shown.push(spec.to_path_buf());
        return Err(Error::IncludeCycle { chain: shown });
    }
    let exp = Experiment::load(spec)?;
    if exp.include.is_empty() {
        if let Some((_, other)) = names.iter().find(|(n, _)| *n == exp.name) {
            return Err(Error::InvalidValue {
                origin: spec.display().to_string(),
                key: "experiment.name".into(),
                expected: format!(
                    "a name no other experiment of the nightly has ({} has it too; goldens and cells are keyed by it)",
                    other.display()
                ),
                got: exp.name,
            });
        }
        names.push((exp.name, spec.to_path_buf()));
        out.push(spec.to_path_buf());
        return Ok(());
    }
    chain.push((real, spec.to_path_buf()));
    for p in &exp.include {
        if !p.is_file() {
            return Err(Error::InvalidValue {
                origin: spec.display().to_string(),
                key: "include".into(),
                expected: "paths of experiment specs, relative to the including spec".into(),
                got: format!("{} (no such file)", p.display()),
            });
        }
        expand_into(p, chain, out, names)?;
    }
    chain.pop();
    Ok(())
}

/// Renders a cell's assignments as the spec wrote them, for messages.
fn assignments_text(assignments: &[(String, String)]) -> String {
    assignments
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Experiment> {
        Experiment::from_table(toml::from_str(text).unwrap(), Path::new("exp.toml"))
    }

    const SPEC: &str = r#"
        [experiment]
        name = "demo"
        seeds = 2
        perturbations = [7]
        [base]
        preset = "gate"
        [[arm]]
        name = "naive"
        attention = "naive"
        [[arm]]
        name = "flash"
        attention = "flash"
        threads = 2
        [sweep]
        lr_decay_iters = [50, 100]
    "#;

    #[test]
    fn expands_cells_arms_seeds_and_perturbations() {
        let e = parse(SPEC).unwrap();
        let cells = e.cells();
        assert_eq!(
            cells.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["lr_decay_iters=50", "lr_decay_iters=100"]
        );
        let runs = e.runs(None).unwrap();
        // 2 cells × 2 arms × (2 seeds + 1 perturbation)
        assert_eq!(runs.len(), 12);
        let p = runs.iter().find(|r| r.role == Role::Perturbation).unwrap();
        assert_eq!(
            (
                p.arm.as_str(),
                p.config.train.seed,
                p.config.train.perturb_seed
            ),
            ("naive", 1, 7)
        );
        let f = runs.iter().find(|r| r.arm == "flash").unwrap();
        assert_eq!(f.threads, 2);
        assert_eq!(f.config.train.lr_decay_iters, Some(50));
        assert_eq!(e.declared, ["model.attention"]);
    }

    #[test]
    fn seed_counts_and_sweep_grids_are_bounded_before_anything_is_allocated() {
        let err = parse(&SPEC.replace("seeds = 2", "seeds = 9223372036854775807"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("experiment.seeds") && err.contains("10000"),
            "{err}"
        );
        assert!(parse(&SPEC.replace("perturbations = [7]", "perturbations = 100000")).is_err());
        // 2^20 cells from twenty two-value keys: refused, naming the grid.
        let keys = RunConfig::all_keys();
        let grid: String = keys[..20]
            .iter()
            .map(|k| format!("\"{k}\" = [1, 2]\n"))
            .collect();
        let err = parse(&SPEC.replace("lr_decay_iters = [50, 100]", &grid))
            .unwrap_err()
            .to_string();
        assert!(err.contains("10000 cells"), "{err}");
    }

    #[test]
    fn spec_hash_changes_with_the_spec_not_with_anything_else() {
        let e = parse(SPEC).unwrap();
        let cell = &e.cells()[0];
        let h = e.spec_hash(cell, &e.arms[0]).unwrap();
        assert_eq!(h, parse(SPEC).unwrap().spec_hash(cell, &e.arms[0]).unwrap());
        let changed = parse(&SPEC.replace("seeds = 2", "seeds = 3")).unwrap();
        assert_ne!(h, changed.spec_hash(cell, &changed.arms[0]).unwrap());
    }

    /// The environment is what a gate judges: a new kernels default must not make goldens stale.
    #[test]
    fn spec_hash_ignores_the_kernels_default_but_not_a_pinned_kernels_value() {
        use crate::config::Kernels;
        let e = parse(SPEC).unwrap();
        let cell = &e.cells()[0];
        let h = e.spec_hash(cell, &e.arms[0]).unwrap();
        let mut other_default = e.clone();
        other_default.base.model.kernels = Kernels::Composed;
        assert_eq!(h, other_default.spec_hash(cell, &e.arms[0]).unwrap());

        let pin = |text: &str| parse(&SPEC.replace("preset = \"gate\"", text)).unwrap();
        let fused = pin("preset = \"gate\"\n[base.model]\nkernels = \"fused\"");
        let composed = pin("preset = \"gate\"\n[base.model]\nkernels = \"composed\"");
        assert_eq!(fused.base_pins, ["model.kernels"]);
        let hf = fused.spec_hash(cell, &fused.arms[0]).unwrap();
        assert_ne!(hf, h, "pinning the default is a spec change");
        assert_ne!(hf, composed.spec_hash(cell, &composed.arms[0]).unwrap());

        let arm = parse(&SPEC.replace(
            "name = \"naive\"",
            "name = \"naive\"\nkernels = \"composed\"",
        ))
        .unwrap();
        assert_ne!(h, arm.spec_hash(cell, &arm.arms[0]).unwrap());
    }

    #[test]
    fn misspelled_arm_key_is_refused_with_a_suggestion() {
        let err = parse(&SPEC.replace("attention = \"flash\"", "atention = \"flash\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exp.toml") && err.contains("flash") && err.contains("`attention`"),
            "{err}"
        );
    }

    #[test]
    fn bad_arm_value_names_the_arm_and_key() {
        let err = parse(&SPEC.replace("attention = \"flash\"", "attention = \"fast\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[[arm]] flash") && err.contains("model.attention"),
            "{err}"
        );
    }

    #[test]
    fn expectations_name_real_cells() {
        let e = parse(&SPEC.replace(
            "seeds = 2",
            "seeds = 2\n        expect_diverged = [\"lr_decay_iters=50\"]",
        ))
        .unwrap();
        assert!(e.expect.diverges("lr_decay_iters=50") && !e.expect.diverges("lr_decay_iters=100"));
        let err = parse(&SPEC.replace(
            "seeds = 2",
            "seeds = 2\n        expect_diverged = [\"lr_decay_iters=7\"]",
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("lr_decay_iters=50, lr_decay_iters=100"),
            "{err}"
        );
    }

    #[test]
    fn arms_cannot_override_seeds() {
        let err = parse(&SPEC.replace("threads = 2", "threads = 2\n        seed = 9"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train.seed") && err.contains("paired"),
            "{err}"
        );
    }

    #[test]
    fn one_arm_is_not_an_experiment() {
        let one = SPEC
            .split("[[arm]]\n        name = \"flash\"")
            .next()
            .unwrap();
        let err = parse(one).unwrap_err().to_string();
        assert!(err.contains("two or more"), "{err}");
    }

    /// Issue 17: `[compare]` is a section like the others, parsed at load with its key named.
    #[test]
    fn compare_values_are_checked_at_load_naming_the_qualified_key() {
        let with = |compare: &str| parse(&format!("{SPEC}\n[compare]\n{compare}\n"));
        let e = with("alpha = 0.01\nmargin_abs = 0.002\nmetric = \"grad_norm\"").unwrap();
        assert_eq!(e.compare.alpha, Some(0.01));
        assert_eq!(e.compare.margin_abs, Some(0.002));
        for (line, key) in [
            ("alpha = 0.7", "compare.alpha"),
            ("alpha = 0", "compare.alpha"),
            ("window_fraction = 1.5", "compare.window_fraction"),
            ("margin = -0.1", "compare.margin"),
            ("rtol = nan", "compare.rtol"),
            ("metric = \"\"", "compare.metric"),
            ("margin = 0.01\nmargin_abs = 0.01", "compare.margin_abs"),
        ] {
            let err = with(line).unwrap_err().to_string();
            assert!(
                err.starts_with("exp.toml: ") && err.contains(&format!("`{key}`")),
                "{line}: {err}"
            );
        }
    }

    /// Issue 21: a sweep value is a config like an arm's, so it is checked before anything runs.
    #[test]
    fn sweep_values_that_break_a_config_are_refused_at_load() {
        let err = parse(&SPEC.replace("lr_decay_iters = [50, 100]", "adam_beta1 = [0.9, 1.0]"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train.adam_beta1") && err.contains("[0, 1)"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_sweep_cells_are_refused_naming_both() {
        let err = parse(&SPEC.replace("[50, 100]", "[50, 100, 50]"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cell `lr_decay_iters=50` twice"), "{err}");
    }

    #[test]
    fn includes_stay_inside_the_including_specs_directory() {
        let nightly = |inc: &str| {
            Experiment::parse(
                &format!("[experiment]\nname = \"n\"\ninclude = [\"{inc}\"]\n"),
                Path::new("experiments/nightly.toml"),
            )
        };
        assert_eq!(
            nightly("a.toml").unwrap().include,
            [Path::new("experiments/a.toml")]
        );
        for inc in ["../a.toml", "/etc/a.toml", "sub/../../a.toml"] {
            let err = nightly(inc).unwrap_err().to_string();
            assert!(
                err.contains("experiment.include") && err.contains(&format!("{inc:?} is outside")),
                "{err}"
            );
        }
    }

    #[test]
    fn arm_threads_are_bounded() {
        let err = parse(&SPEC.replace("threads = 2", "threads = 1000"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("arm.flash.threads") && err.contains("256"),
            "{err}"
        );
    }
}
