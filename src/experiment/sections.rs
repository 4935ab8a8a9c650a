//! One parser per section of an experiment spec: `[experiment]`, `[base]`, `[[arm]]` (with its
//! external-command keys), `[sweep]` and `[compare]`. Each takes its section's TOML value and
//! returns a checked type, or an error naming the file and the qualified key
//! (`compare.alpha`, `arm.flash.threads`); `Experiment::from_table` only puts them together and
//! checks what spans sections.

use super::{relabel, Arm, Expectation, ENVIRONMENT_KEYS};
use crate::config::{self, RunConfig};
use crate::error::{Error, Result};
use crate::external::{ExternalSpec, TraceSource, DEFAULT_TIMEOUT_S};
use std::path::{Path, PathBuf};

/// Keys of an `[[arm]]` table that are not config overrides, besides [`EXTERNAL_KEYS`].
const ARM_KEYS: &[&str] = &["name", "threads", "command"];
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
/// Most threads an arm may ask for. Results are bitwise identical for any thread count, so more
/// threads than cores only adds contention; `threads = 1000` made a run practically stall on two
/// cores (issue 21).
pub(super) const MAX_THREADS: usize = 256;

/// The `[experiment]` section, checked.
pub(super) struct ExperimentSection {
    pub name: String,
    pub description: String,
    pub seeds: Vec<u64>,
    pub perturbations: Vec<u64>,
    /// `None`: default to the keys the arms set.
    pub declared: Option<Vec<String>>,
    pub include: Vec<PathBuf>,
    pub expect: Expectation,
}

/// Builds the error for `key` in `origin`.
fn bad(origin: &str, key: &str, expected: &str, got: String) -> Error {
    Error::InvalidValue {
        origin: origin.to_string(),
        key: key.to_string(),
        expected: expected.to_string(),
        got,
    }
}

/// Refuses a top-level key that is not a section.
pub(super) fn check_sections(doc: &toml::Table, origin: &str) -> Result<()> {
    match doc.keys().find(|k| !TOP_KEYS.contains(&k.as_str())) {
        Some(k) => Err(config::unknown_key(origin, k, TOP_KEYS.iter().copied())),
        None => Ok(()),
    }
}

/// Returns a list of strings, or refuses `v` naming `key`.
fn string_list(v: toml::Value, key: &str, origin: &str, expected: &str) -> Result<Vec<String>> {
    let toml::Value::Array(a) = v else {
        return Err(bad(origin, key, expected, v.to_string()));
    };
    a.into_iter()
        .map(|x| match x {
            toml::Value::String(s) => Ok(s),
            other => Err(bad(origin, key, expected, other.to_string())),
        })
        .collect()
}

/// Parses `[experiment]`. `path` anchors `include`, which must stay in the spec's directory.
pub(super) fn parse_experiment(v: Option<toml::Value>, path: &Path) -> Result<ExperimentSection> {
    let origin = &path.display().to_string();
    let mut exp = match v {
        Some(toml::Value::Table(t)) => t,
        Some(other) => return Err(bad(origin, "experiment", "a table", other.to_string())),
        None => {
            return Err(bad(
                origin,
                "experiment",
                "an [experiment] table with a name",
                "nothing".into(),
            ))
        }
    };
    if let Some(k) = exp.keys().find(|k| !EXPERIMENT_KEYS.contains(&k.as_str())) {
        return Err(Error::UnknownKey {
            origin: origin.clone(),
            key: format!("experiment.{k}"),
            suggestion: config::closest(k, EXPERIMENT_KEYS.iter().copied())
                .map(|s| format!("experiment.{s}")),
        });
    }
    let name = match exp.remove("name") {
        Some(toml::Value::String(s)) if valid_name(&s) => s,
        other => {
            return Err(bad(
                origin,
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
            return Err(bad(
                origin,
                "experiment.description",
                "a string",
                other.to_string(),
            ))
        }
    };
    let seeds =
        seed_list(exp.remove("seeds"), "experiment.seeds", origin)?.unwrap_or_else(|| vec![1]);
    if seeds.is_empty() {
        return Err(bad(
            origin,
            "experiment.seeds",
            "at least one seed",
            "[]".into(),
        ));
    }
    let perturbations = seed_list(
        exp.remove("perturbations"),
        "experiment.perturbations",
        origin,
    )?
    .unwrap_or_default();
    let include = parse_include(exp.remove("include"), path)?;
    let declared = exp
        .remove("declared")
        .map(|v| {
            string_list(v, "experiment.declared", origin, "a list of config keys")?
                .iter()
                .map(|s| qualify_factor(s, origin))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let expect = parse_expectation(&mut exp, origin)?;
    Ok(ExperimentSection {
        name,
        description,
        seeds,
        perturbations,
        declared,
        include,
        expect,
    })
}

/// Parses `include`: spec paths relative to the including spec, each inside its directory.
fn parse_include(v: Option<toml::Value>, path: &Path) -> Result<Vec<PathBuf>> {
    let origin = path.display().to_string();
    let Some(v) = v else {
        return Ok(vec![]);
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    string_list(v, "include", &origin, "a list of spec paths")?
        .iter()
        .map(|s| crate::fsutil::resolve_inside(dir, s, path, "experiment.include"))
        .collect()
}

/// Parses `expect`, `expect_diverged` and `expect_undeclared`.
fn parse_expectation(exp: &mut toml::Table, origin: &str) -> Result<Expectation> {
    let mut expect = Expectation::default();
    match exp.remove("expect") {
        None => {}
        Some(toml::Value::String(s)) if s == "match" => {}
        Some(toml::Value::String(s)) if s == "diverged" => expect.diverged = vec!["*".into()],
        Some(toml::Value::String(s)) if s == "changed" => expect.changed = true,
        Some(other) => {
            return Err(bad(
                origin,
                "experiment.expect",
                "\"match\", \"changed\" or \"diverged\"",
                other.to_string(),
            ))
        }
    }
    if let Some(v) = exp.remove("expect_diverged") {
        let cells = string_list(v, "experiment.expect_diverged", origin, "a list of strings")?;
        expect.diverged.extend(cells);
    }
    if let Some(v) = exp.remove("expect_undeclared") {
        for s in string_list(
            v,
            "experiment.expect_undeclared",
            origin,
            "a list of strings",
        )? {
            expect.undeclared.push(qualify_factor(&s, origin)?);
        }
    }
    Ok(expect)
}

/// Parses `[base]`: a run spec, plus which environment keys it pins.
pub(super) fn parse_base(v: Option<toml::Value>, origin: &str) -> Result<(RunConfig, Vec<String>)> {
    match v {
        Some(toml::Value::Table(t)) => {
            let pins = pinned_in_table(&t);
            Ok((RunConfig::from_table(t, &format!("{origin} [base]"))?, pins))
        }
        None => Ok((RunConfig::default(), vec![])),
        Some(other) => Err(bad(origin, "base", "a run-spec table", other.to_string())),
    }
}

/// The factors an experiment declares when it does not say: every key an arm sets, and an
/// external arm's command and env.
pub(super) fn default_declared(arms: &[Arm]) -> Vec<String> {
    let mut keys: Vec<String> = arms
        .iter()
        .flat_map(|a| a.overrides.iter().map(|(k, _)| k.clone()))
        .collect();
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

/// The `[compare]` section, checked at load so a bad value is refused before anything trains.
/// Each field is `None` when the spec leaves it to the comparison engine's default.
///
/// Invariants: `0 < alpha < 0.5`; `0 < window_fraction ≤ 1`; the margin, `rtol` and `atol` are
/// finite and ≥ 0; `metric` is not empty; at most one of `margin` and `margin_abs` is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompareSpec {
    /// Significance level.
    pub alpha: Option<f64>,
    /// Equivalence margin as a fraction of A's late-window mean (`margin`).
    pub margin: Option<f64>,
    /// Equivalence margin in the metric's units (`margin_abs`).
    pub margin_abs: Option<f64>,
    /// Late-window fraction.
    pub window_fraction: Option<f64>,
    /// Tolerance lane's relative tolerance.
    pub rtol: Option<f64>,
    /// Tolerance lane's absolute tolerance.
    pub atol: Option<f64>,
    /// The series compared.
    pub metric: Option<String>,
}

const COMPARE_KEYS: &[&str] = &[
    "alpha",
    "margin",
    "margin_abs",
    "window_fraction",
    "rtol",
    "atol",
    "metric",
];

/// Parses `[compare]`.
pub(super) fn parse_compare(v: Option<toml::Value>, origin: &str) -> Result<CompareSpec> {
    let table = match v {
        None => return Ok(CompareSpec::default()),
        Some(toml::Value::Table(t)) => t,
        Some(other) => return Err(bad(origin, "compare", "a table", other.to_string())),
    };
    let mut s = CompareSpec::default();
    for (k, v) in table {
        let key = format!("compare.{k}");
        let num = |ok: fn(f64) -> bool, expected: &str| {
            v.as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .filter(|&x| ok(x))
                .ok_or_else(|| bad(origin, &key, expected, v.to_string()))
        };
        let non_negative = |x: f64| x.is_finite() && x >= 0.0;
        match k.as_str() {
            // The comparison's own bounds (`CompareSettings::validate`), checked here so the
            // refusal names the file and the key.
            "alpha" => s.alpha = Some(num(|x| x > 0.0 && x < 0.5, "a level in (0, 0.5)")?),
            "margin" => s.margin = Some(num(non_negative, "a finite fraction >= 0")?),
            "margin_abs" => s.margin_abs = Some(num(non_negative, "a finite value >= 0")?),
            "window_fraction" => {
                s.window_fraction = Some(num(|x| x > 0.0 && x <= 1.0, "a fraction in (0, 1]")?)
            }
            "rtol" => s.rtol = Some(num(non_negative, "a finite value >= 0")?),
            "atol" => s.atol = Some(num(non_negative, "a finite value >= 0")?),
            "metric" => {
                s.metric = Some(
                    v.as_str()
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .ok_or_else(|| {
                            bad(
                                origin,
                                &key,
                                "a series name such as \"lm_loss\"",
                                v.to_string(),
                            )
                        })?,
                )
            }
            other => {
                return Err(Error::UnknownKey {
                    origin: origin.to_string(),
                    key: key.clone(),
                    suggestion: config::closest(other, COMPARE_KEYS.iter().copied())
                        .map(|k| format!("compare.{k}")),
                })
            }
        }
    }
    if let (Some(_), Some(abs)) = (s.margin, s.margin_abs) {
        return Err(bad(
            origin,
            "compare.margin_abs",
            "one margin: `margin` (relative) or `margin_abs`, not both",
            abs.to_string(),
        ));
    }
    Ok(s)
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

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
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

pub(super) fn parse_arms(
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
            Some(toml::Value::Integer(n)) if n > 0 && n <= MAX_THREADS as i64 => Some(n as usize),
            Some(other) => {
                return Err(bad(
                    &format!("arm.{name}.threads"),
                    &format!("a positive integer, at most {MAX_THREADS}"),
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
                    suggestion: suggestion.or_else(|| {
                        config::closest(&key, ARM_KEYS.iter().chain(EXTERNAL_KEYS).copied())
                    }),
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

pub(super) fn parse_sweep(
    v: Option<toml::Value>,
    origin: &str,
) -> Result<Vec<(String, Vec<String>)>> {
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
