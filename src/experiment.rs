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
//! `"stdout"`), `format`, `timeout_s`, `env = { KEY = "value" }`, `workdir` (relative to the
//! spec), and what its cache key must cover: `inputs` (file patterns) and `probe` (a command
//! printing versions). Its placeholders are checked here, at load; `docs/external.md` has the
//! details.
//!
//! This module parses and expands specs into [`Cell`]s and [`RunRequest`]s; running them is
//! `runner`'s job, judging them `compare`'s, storing them `golden`'s.

use crate::config::{self, RunConfig};
use crate::error::{Error, Result};
use crate::external::{ExternalSpec, TraceSource, DEFAULT_TIMEOUT_S};
use crate::faults::Fault;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Keys of an `[[arm]]` table that are not config overrides.
const ARM_ENV_KEYS: &[&str] = &[
    "name",
    "threads",
    "command",
    "trace",
    "format",
    "timeout_s",
    "env",
    "workdir",
    "inputs",
    "probe",
];
/// Arm keys that only make sense with `command`.
const EXTERNAL_KEYS: &[&str] = &[
    "trace",
    "format",
    "timeout_s",
    "env",
    "workdir",
    "inputs",
    "probe",
];
const EXPERIMENT_KEYS: &[&str] = &[
    "name",
    "description",
    "seeds",
    "perturbations",
    "declared",
    "expect",
    "expect_diverged",
    "expect_undeclared",
    "include",
];
const TOP_KEYS: &[&str] = &["experiment", "base", "arm", "sweep", "compare"];
/// Largest seed count (`seeds = n`) and sweep grid accepted. Each is a number of training runs,
/// far past any real spec. Without a bound, `seeds = 100000000000` or twenty two-value sweep
/// keys made the parser allocate until the machine ran out of memory (found writing the fuzz
/// target).
const MAX_SEEDS: i64 = 10_000;
const MAX_CELLS: usize = 10_000;

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
    /// The `[compare]` table, handed to the comparison engine as is.
    pub compare: toml::Table,
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
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Experiment::parse(&text, path)
    }

    /// Parses a spec already in memory. `path` names it in errors and anchors the relative paths
    /// it holds (`include`, `workdir`); nothing is read from disk and nothing is run, so any text
    /// is safe to parse (this is what the fuzz target drives).
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
        if let Some(k) = doc.keys().find(|k| !TOP_KEYS.contains(&k.as_str())) {
            return Err(config::unknown_key(&origin, k, TOP_KEYS.iter().copied()));
        }
        let bad = |key: &str, expected: &str, got: String| Error::InvalidValue {
            origin: origin.clone(),
            key: key.to_string(),
            expected: expected.to_string(),
            got,
        };
        let mut exp = match doc.remove("experiment") {
            Some(toml::Value::Table(t)) => t,
            Some(other) => return Err(bad("experiment", "a table", other.to_string())),
            None => {
                return Err(bad(
                    "experiment",
                    "an [experiment] table with a name",
                    "nothing".into(),
                ))
            }
        };
        if let Some(k) = exp.keys().find(|k| !EXPERIMENT_KEYS.contains(&k.as_str())) {
            return Err(Error::UnknownKey {
                origin,
                key: format!("experiment.{k}"),
                suggestion: config::closest(k, EXPERIMENT_KEYS.iter().copied())
                    .map(|s| format!("experiment.{s}")),
            });
        }
        let name = match exp.remove("name") {
            Some(toml::Value::String(s)) if valid_name(&s) => s,
            other => {
                return Err(bad(
                    "experiment.name",
                    "a name of letters, digits, '_' or '-'",
                    other.map_or("nothing".into(), |v| v.to_string()),
                ))
            }
        };
        let description = match exp.remove("description") {
            Some(toml::Value::String(s)) => s,
            None => String::new(),
            Some(other) => {
                return Err(bad("experiment.description", "a string", other.to_string()))
            }
        };
        let seeds =
            seed_list(exp.remove("seeds"), "experiment.seeds", &origin)?.unwrap_or_else(|| vec![1]);
        if seeds.is_empty() {
            return Err(bad("experiment.seeds", "at least one seed", "[]".into()));
        }
        let perturbations = seed_list(
            exp.remove("perturbations"),
            "experiment.perturbations",
            &origin,
        )?
        .unwrap_or_default();
        let include = match exp.remove("include") {
            None => vec![],
            Some(toml::Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(path.parent().unwrap_or(Path::new(".")).join(s)),
                    other => Err(bad("include", "a list of spec paths", other.to_string())),
                })
                .collect::<Result<_>>()?,
            Some(other) => return Err(bad("include", "a list of spec paths", other.to_string())),
        };
        let (base, base_pins) = match doc.remove("base") {
            Some(toml::Value::Table(t)) => {
                let pins = pinned_in_table(&t);
                (RunConfig::from_table(t, &format!("{origin} [base]"))?, pins)
            }
            None => (RunConfig::default(), vec![]),
            Some(other) => return Err(bad("base", "a run-spec table", other.to_string())),
        };
        let spec_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let arms = parse_arms(doc.remove("arm"), &origin, &base, spec_dir)?;
        if !perturbations.is_empty() {
            for a in &arms {
                let Some(c) = &a.command else { continue };
                if !c.placeholders(&origin)?.iter().any(|p| p == "perturb_seed") {
                    return Err(bad(
                        "experiment.perturbations",
                        &format!("no perturbations, or a command that uses `{{perturb_seed}}`: arm `{}` runs an external command that never sees it, so its perturbation runs would repeat its first seed run; pass it to the script (e.g. `--perturb-seed {{perturb_seed}}`) and nudge the initial weights in the last bit when it is not 0", a.name),
                        format!("{perturbations:?}"),
                    ));
                }
            }
        }
        if arms.len() < 2 && include.is_empty() {
            return Err(bad(
                "arm",
                "two or more [[arm]] tables",
                format!("{}", arms.len()),
            ));
        }
        let sweep = parse_sweep(doc.remove("sweep"), &origin)?;
        let declared = match exp.remove("declared") {
            Some(toml::Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => qualify_factor(&s, &origin),
                    other => Err(bad(
                        "experiment.declared",
                        "a list of config keys",
                        other.to_string(),
                    )),
                })
                .collect::<Result<Vec<_>>>()?,
            None => {
                let mut keys: Vec<String> = arms
                    .iter()
                    .flat_map(|a| a.overrides.iter().map(|(k, _)| k.clone()))
                    .collect();
                // An external arm's command and env are keys it sets, too.
                for ext in arms.iter().filter_map(|a| a.command.as_ref()) {
                    keys.push("external.command".into());
                    if !ext.env.is_empty() {
                        keys.push("external.env".into());
                    }
                }
                keys.sort();
                keys.dedup();
                keys
            }
            Some(other) => {
                return Err(bad(
                    "experiment.declared",
                    "a list of config keys",
                    other.to_string(),
                ))
            }
        };
        let mut expect = Expectation::default();
        match exp.remove("expect") {
            None => {}
            Some(toml::Value::String(s)) if s == "match" => {}
            Some(toml::Value::String(s)) if s == "diverged" => expect.diverged = vec!["*".into()],
            Some(toml::Value::String(s)) if s == "changed" => expect.changed = true,
            Some(other) => {
                return Err(bad(
                    "experiment.expect",
                    "\"match\", \"changed\" or \"diverged\"",
                    other.to_string(),
                ))
            }
        }
        for (key, list) in [
            ("expect_diverged", &mut expect.diverged),
            ("expect_undeclared", &mut expect.undeclared),
        ] {
            match exp.remove(key) {
                None => {}
                Some(toml::Value::Array(a)) => {
                    for v in a {
                        match v {
                            toml::Value::String(s) if key == "expect_undeclared" => {
                                list.push(qualify_factor(&s, &origin)?)
                            }
                            toml::Value::String(s) => list.push(s),
                            other => {
                                return Err(bad(
                                    &format!("experiment.{key}"),
                                    "a list of strings",
                                    other.to_string(),
                                ))
                            }
                        }
                    }
                }
                Some(other) => {
                    return Err(bad(
                        &format!("experiment.{key}"),
                        "a list of strings",
                        other.to_string(),
                    ))
                }
            }
        }
        let compare = match doc.remove("compare") {
            Some(toml::Value::Table(t)) => t,
            None => toml::Table::new(),
            Some(other) => return Err(bad("compare", "a table", other.to_string())),
        };
        let exp = Experiment {
            path: path.to_path_buf(),
            name,
            description,
            seeds,
            perturbations,
            declared,
            base,
            base_pins,
            arms,
            sweep,
            compare,
            include,
            expect,
        };
        let cells: Vec<String> = exp.cells().into_iter().map(|c| c.id).collect();
        if let Some(c) = exp
            .expect
            .diverged
            .iter()
            .find(|c| *c != "*" && !cells.contains(c))
        {
            return Err(bad(
                "experiment.expect_diverged",
                &format!("cell ids of this sweep ({})", cells.join(", ")),
                c.clone(),
            ));
        }
        Ok(exp)
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

/// Returns the [`ENVIRONMENT_KEYS`] a `[base]` table sets (`[base.model] kernels = …`).
fn pinned_in_table(base: &toml::Table) -> Vec<String> {
    ENVIRONMENT_KEYS
        .iter()
        .filter(|key| {
            key.split_once('.').is_some_and(|(section, field)| {
                base.get(section)
                    .and_then(|v| v.as_table())
                    .is_some_and(|t| t.contains_key(field))
            })
        })
        .map(|k| k.to_string())
        .collect()
}

/// Returns lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

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

/// Qualifies a declared factor: a config key, or `external` / `external.*` (the recorded command,
/// env and format of external-command arms).
fn qualify_factor(key: &str, origin: &str) -> Result<String> {
    if key == "external" || key.starts_with("external.") {
        return Ok(key.to_string());
    }
    RunConfig::qualify(key, origin)
}

/// Returns every config key, qualified and bare, for suggestions.
fn key_candidates() -> Vec<String> {
    let all = RunConfig::all_keys();
    let bare: Vec<String> = all
        .iter()
        .filter_map(|k| k.rsplit('.').next().map(str::to_string))
        .collect();
    all.into_iter().chain(bare).collect()
}

/// Parses an arm's external-command keys (`command`, `trace`, `format`, `timeout_s`, `env`,
/// `workdir`) and checks its placeholders; `Ok(None)` for a built-in arm.
fn parse_external(
    t: &mut toml::Table,
    name: &str,
    origin: &str,
    spec_dir: &Path,
) -> Result<Option<ExternalSpec>> {
    let bad = |key: &str, expected: &str, got: String| Error::InvalidValue {
        origin: format!("{origin} [[arm]] {name}"),
        key: key.to_string(),
        expected: expected.to_string(),
        got,
    };
    let command = match t.remove("command") {
        None => {
            if let Some(k) = EXTERNAL_KEYS.iter().find(|k| t.contains_key(**k)) {
                return Err(bad(
                    k,
                    "no value: it only applies to arms with a `command`",
                    t[*k].to_string(),
                ));
            }
            return Ok(None);
        }
        Some(toml::Value::String(s)) => s,
        Some(other) => return Err(bad("command", "a command string", other.to_string())),
    };
    let spec = external_keys(t, command, &bad, spec_dir)?;
    spec.check(
        &format!("{origin} [[arm]] {name}"),
        |n| RunConfig::qualify(n, origin).is_ok(),
        &key_candidates(),
    )?;
    Ok(Some(spec))
}

/// Parses the optional keys of an external arm around its `command`.
fn external_keys(
    t: &mut toml::Table,
    command: String,
    bad: &dyn Fn(&str, &str, String) -> Error,
    spec_dir: &Path,
) -> Result<ExternalSpec> {
    let trace = match t.remove("trace") {
        None => TraceSource::File,
        Some(toml::Value::String(s)) if s == "file" => TraceSource::File,
        Some(toml::Value::String(s)) if s == "stdout" => TraceSource::Stdout,
        Some(other) => return Err(bad("trace", "\"file\" or \"stdout\"", other.to_string())),
    };
    let format = match t.remove("format") {
        None => None,
        Some(toml::Value::String(s)) => {
            s.parse::<crate::import::Format>().map_err(|e| match e {
                Error::InvalidValue { expected, .. } => bad("format", &expected, format!("{s:?}")),
                other => other,
            })?;
            Some(s)
        }
        Some(other) => return Err(bad("format", "a format name", other.to_string())),
    };
    let timeout_s = match t.remove("timeout_s") {
        None => DEFAULT_TIMEOUT_S,
        Some(toml::Value::Integer(n)) if n > 0 => n as f64,
        Some(toml::Value::Float(x)) if x > 0.0 && x.is_finite() => x,
        Some(other) => {
            return Err(bad(
                "timeout_s",
                "a positive number of seconds",
                other.to_string(),
            ))
        }
    };
    let env = match t.remove("env") {
        None => vec![],
        Some(toml::Value::Table(env)) => env
            .into_iter()
            .map(|(k, v)| match v {
                toml::Value::String(s) => Ok((k, s)),
                other => Err(bad(&format!("env.{k}"), "a string", other.to_string())),
            })
            .collect::<Result<_>>()?,
        Some(other) => return Err(bad("env", "a table of NAME = \"value\"", other.to_string())),
    };
    let workdir = match t.remove("workdir") {
        None => spec_dir.to_path_buf(),
        Some(toml::Value::String(s)) => spec_dir.join(s),
        Some(other) => return Err(bad("workdir", "a directory path", other.to_string())),
    };
    let inputs_expected =
        "a list of file patterns relative to `workdir`, e.g. [\"train.py\", \"conf/**/*.yaml\"]";
    let inputs = match t.remove("inputs") {
        None => vec![],
        Some(toml::Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                toml::Value::String(s) if !s.is_empty() => Ok(s),
                other => Err(bad("inputs", inputs_expected, other.to_string())),
            })
            .collect::<Result<_>>()?,
        Some(other) => return Err(bad("inputs", inputs_expected, other.to_string())),
    };
    let probe = match t.remove("probe") {
        None => None,
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s),
        Some(other) => {
            return Err(bad(
                "probe",
                "a command printing versions, e.g. \"python3 -c 'import torch; print(torch.__version__)'\"",
                other.to_string(),
            ))
        }
    };
    Ok(ExternalSpec {
        command,
        trace,
        format,
        timeout_s,
        env,
        workdir,
        inputs,
        probe,
    })
}

fn seed_list(v: Option<toml::Value>, key: &str, origin: &str) -> Result<Option<Vec<u64>>> {
    let bad = |got: String| Error::InvalidValue {
        origin: origin.to_string(),
        key: key.to_string(),
        expected: format!(
            "a count (n → seeds 1..=n, n ≤ {MAX_SEEDS}) or a list of non-negative integers"
        ),
        got,
    };
    match v {
        None => Ok(None),
        Some(toml::Value::Integer(n)) if (0..=MAX_SEEDS).contains(&n) => {
            Ok(Some((1..=n as u64).collect()))
        }
        Some(toml::Value::Array(a)) => a
            .into_iter()
            .map(|x| match x {
                toml::Value::Integer(n) if n >= 0 => Ok(n as u64),
                other => Err(bad(other.to_string())),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(other) => Err(bad(other.to_string())),
    }
}

fn parse_arms(
    v: Option<toml::Value>,
    origin: &str,
    base: &RunConfig,
    spec_dir: &Path,
) -> Result<Vec<Arm>> {
    let bad = |key: &str, expected: &str, got: String| Error::InvalidValue {
        origin: origin.to_string(),
        key: key.to_string(),
        expected: expected.to_string(),
        got,
    };
    let tables = match v {
        None => return Ok(vec![]),
        Some(toml::Value::Array(a)) => a,
        Some(other) => return Err(bad("arm", "[[arm]] tables", other.to_string())),
    };
    let mut arms: Vec<Arm> = Vec::new();
    for (i, t) in tables.into_iter().enumerate() {
        let toml::Value::Table(mut t) = t else {
            return Err(bad(&format!("arm[{i}]"), "a table", "another value".into()));
        };
        let name = match t.remove("name") {
            Some(toml::Value::String(s)) if valid_name(&s) => s,
            other => {
                return Err(bad(
                    &format!("arm[{i}].name"),
                    "a name of letters, digits, '_' or '-'",
                    other.map_or("nothing".into(), |v| v.to_string()),
                ))
            }
        };
        if arms.iter().any(|a| a.name == name) {
            return Err(bad(
                &format!("arm[{i}].name"),
                "a name no other arm has",
                name,
            ));
        }
        let threads = match t.remove("threads") {
            None => None,
            Some(toml::Value::Integer(n)) if n > 0 => Some(n as usize),
            Some(other) => {
                return Err(bad(
                    &format!("arm.{name}.threads"),
                    "a positive integer",
                    other.to_string(),
                ))
            }
        };
        let command = parse_external(&mut t, &name, origin, spec_dir)?;
        let arm_origin = format!("{origin} [[arm]] {name}");
        let mut overrides = Vec::new();
        let mut probe = base.clone();
        for (k, v) in t {
            let key = RunConfig::qualify(&k, &arm_origin).map_err(|e| match e {
                Error::UnknownKey {
                    origin,
                    key,
                    suggestion,
                } => Error::UnknownKey {
                    origin,
                    suggestion: suggestion
                        .or_else(|| config::closest(&key, ARM_ENV_KEYS.iter().copied())),
                    key,
                },
                other => other,
            })?;
            if matches!(
                key.as_str(),
                "train.seed" | "train.perturb_seed" | "train.data_seed"
            ) {
                return Err(Error::InvalidValue {
                    origin: arm_origin,
                    key,
                    expected: "no per-arm seed: seeds come from [experiment] seeds and perturbations, so arms stay paired".into(),
                    got: v.to_string(),
                });
            }
            let text = v.to_string();
            // Apply once now so a bad value fails at load, naming the arm.
            probe
                .set_override(&format!("{key}={text}"))
                .map_err(|e| relabel(e, Path::new(origin), &name))?;
            overrides.push((key, text));
        }
        // Consistency is checked once all of the arm's keys are in (their order is free).
        probe
            .validate(&arm_origin)
            .map_err(|e| relabel(e, Path::new(origin), &name))?;
        if let Some(ext) = &command {
            check_overrides_used(ext, &overrides, &arm_origin)?;
        }
        arms.push(Arm {
            name,
            overrides,
            threads,
            command,
        });
    }
    Ok(arms)
}

/// Refuses an override an external arm's command never sees: it would be recorded as a
/// difference the run does not have.
fn check_overrides_used(
    ext: &ExternalSpec,
    overrides: &[(String, String)],
    arm_origin: &str,
) -> Result<()> {
    let used: Vec<String> = ext
        .placeholders(arm_origin)?
        .iter()
        .filter_map(|p| RunConfig::qualify(p, arm_origin).ok())
        .collect();
    match overrides.iter().find(|(k, _)| !used.contains(k)) {
        None => Ok(()),
        Some((key, v)) => Err(Error::InvalidValue {
            origin: arm_origin.to_string(),
            key: key.clone(),
            expected: format!(
                "a key the command uses: an external arm's overrides reach its command only through placeholders such as `{{{}}}`",
                key.rsplit('.').next().unwrap_or(key)
            ),
            got: v.clone(),
        }),
    }
}

fn parse_sweep(v: Option<toml::Value>, origin: &str) -> Result<Vec<(String, Vec<String>)>> {
    let table = match v {
        None => return Ok(vec![]),
        Some(toml::Value::Table(t)) => t,
        Some(other) => {
            return Err(Error::InvalidValue {
                origin: origin.to_string(),
                key: "sweep".into(),
                expected: "a table of key = [values]".into(),
                got: other.to_string(),
            })
        }
    };
    let sweep: Vec<(String, Vec<String>)> = table
        .into_iter()
        .map(|(k, v)| {
            let key = RunConfig::qualify(&k, &format!("{origin} [sweep]"))?;
            match v {
                toml::Value::Array(values) if !values.is_empty() => {
                    Ok((key, values.iter().map(|x| x.to_string()).collect()))
                }
                other => Err(Error::InvalidValue {
                    origin: origin.to_string(),
                    key: format!("sweep.{k}"),
                    expected: "a non-empty list of values".into(),
                    got: other.to_string(),
                }),
            }
        })
        .collect::<Result<_>>()?;
    let cells = sweep
        .iter()
        .try_fold(1usize, |n, (_, values)| n.checked_mul(values.len()))
        .filter(|&n| n <= MAX_CELLS);
    if cells.is_none() {
        return Err(Error::InvalidValue {
            origin: origin.to_string(),
            key: "sweep".into(),
            expected: format!("a grid of at most {MAX_CELLS} cells"),
            got: sweep
                .iter()
                .map(|(k, v)| format!("{} × {k}", v.len()))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(sweep)
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
}
