//! The one policy that turns raw `(step, value)` points per foreign metric name, and what the
//! source records about the run (settings, seeds, versions), into a [`Trace`]: name mapping, the
//! step grid, series at their own cadence, config and seeds (see the module docs of
//! [`crate::import`]). Every importer feeds a [`Collector`] so they all behave alike.

use super::{describe_steps, quote, Format};
use crate::error::{Error, Result};
use crate::trace::{
    Origin, Precision, Series, Trace, GRAD_NORM, LM_LOSS, LR, STEP_TIME, TRACE_SCHEMA_VERSION,
};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lowercases, joins words with `_` and replaces `-` with `_`: `"num-zeros"` → `"num_zeros"`.
pub(super) fn sanitize(raw: &str) -> String {
    let words: Vec<&str> = raw.split_whitespace().collect();
    words.join("_").to_lowercase().replace('-', "_")
}

/// Sanitised raw names that map to lossdiff's series, best match first.
pub(super) const ALIASES: [(&str, &[&str]); 4] = [
    (
        LM_LOSS,
        &[
            "lm_loss",
            "loss",
            "train/lm_loss",
            "train/loss",
            "train_loss",
            "training_loss",
            "loss/train",
        ],
    ),
    (
        GRAD_NORM,
        &["grad_norm", "train/grad_norm", "gradient_norm"],
    ),
    (
        LR,
        &["lr", "learning_rate", "train/lr", "train/learning_rate"],
    ),
    (STEP_TIME, &["step_time_s", "iteration_time"]),
];

/// One raw metric's points, in file order.
struct RawSeries {
    precision: Precision,
    points: Vec<(u64, f64)>,
}

/// Config paths where a source records its seed, most specific first: lossdiff and most
/// configs (`seed`, `train.seed`), torchtitan (`training.seed`, `debug.seed`), Hugging Face
/// (`training_args.seed`). The first integer found becomes `seeds["init"]`, which pairs runs.
const SEED_PATHS: [&str; 5] = [
    "/seed",
    "/train/seed",
    "/training/seed",
    "/debug/seed",
    "/training_args/seed",
];

/// Collects points per raw metric name and turns them into a trace with the module's policy.
pub(super) struct Collector<'p> {
    path: &'p Path,
    /// Raw names in first-seen order (decides ties deterministically).
    order: Vec<String>,
    series: BTreeMap<String, RawSeries>,
    /// Format-specific notes, written to `config.import`.
    notes: Map<String, Value>,
    /// Settings the source recorded, under their source names.
    config: Map<String, Value>,
    /// Where each config leaf was set (dotted key → place), to name both places of a conflict.
    config_places: BTreeMap<String, String>,
    seeds: BTreeMap<String, u64>,
    fingerprint: Map<String, Value>,
    name: Option<String>,
}

impl<'p> Collector<'p> {
    pub(super) fn new(path: &'p Path) -> Self {
        Collector {
            path,
            order: Vec::new(),
            series: BTreeMap::new(),
            notes: Map::new(),
            config: Map::new(),
            config_places: BTreeMap::new(),
            seeds: BTreeMap::new(),
            fingerprint: Map::new(),
            name: None,
        }
    }

    /// Names the trace (default: the file stem), e.g. a TensorBoard run by its directory.
    pub(super) fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }

    /// Merges settings the source recorded into the trace's config, object into object.
    ///
    /// # Errors
    /// [`Error::Parse`] when a setting already read elsewhere in the file has another value,
    /// naming both places: two claims about one run cannot both hold.
    pub(super) fn add_config(&mut self, settings: Map<String, Value>, place: &str) -> Result<()> {
        let mut target = std::mem::take(&mut self.config);
        let merged = merge(&mut target, settings, "", place, &mut self.config_places);
        self.config = target;
        merged.map_err(|(key, first)| Error::Parse {
            path: self.path.to_path_buf(),
            place: place.to_string(),
            expected: format!("setting `{key}` to keep the value it has at {first}"),
            got: "another value".into(),
        })
    }

    /// Records a seed by role (`init`, `data`, …).
    ///
    /// # Errors
    /// [`Error::Parse`] when the role already has another seed.
    pub(super) fn add_seed(&mut self, role: &str, seed: u64, place: &str) -> Result<()> {
        match self.seeds.insert(role.to_string(), seed) {
            Some(old) if old != seed => Err(Error::Parse {
                path: self.path.to_path_buf(),
                place: place.to_string(),
                expected: format!("seed `{role}` = {old} as recorded before"),
                got: seed.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Records an environment fact (`versions`, `torch`, `"2.5.1"`) for the trace's fingerprint.
    pub(super) fn add_fingerprint(&mut self, section: &str, key: &str, value: Value) {
        let entry = (self.fingerprint)
            .entry(section.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(map) = entry {
            map.insert(key.to_string(), value);
        }
    }

    /// Records `value` of `raw` at `step`; `place` says where it was read, for errors.
    pub(super) fn push(
        &mut self,
        raw: &str,
        step: u64,
        value: f64,
        precision: Precision,
        place: impl FnOnce() -> String,
    ) -> Result<()> {
        if !self.series.contains_key(raw) {
            self.order.push(raw.to_string());
        }
        let s = self.series.entry(raw.to_string()).or_insert(RawSeries {
            precision,
            points: Vec::new(),
        });
        // One f64 point makes the series f64: an f32 label would round it when saved.
        if precision == Precision::F64 {
            s.precision = Precision::F64;
        }
        if let Some(&(previous, _)) = s.points.last() {
            if step <= previous {
                return Err(Error::StepOrder {
                    path: self.path.to_path_buf(),
                    place: place(),
                    series: raw.to_string(),
                    previous,
                    step,
                });
            }
        }
        s.points.push((step, value));
        Ok(())
    }

    /// Adds a format-specific note to `config.import`.
    pub(super) fn note(&mut self, key: &str, value: Value) {
        self.notes.insert(key.to_string(), value);
    }

    /// Maps raw names to series names (see the module docs); errors if two land on one name.
    fn resolve_names(&self) -> Result<Vec<(String, String)>> {
        let mut named: BTreeMap<&str, String> = BTreeMap::new();
        for (canonical, aliases) in ALIASES {
            let best = self
                .order
                .iter()
                .filter(|raw| !named.contains_key(raw.as_str()))
                .filter_map(|raw| {
                    let rank = aliases.iter().position(|a| *a == sanitize(raw))?;
                    Some((rank, raw))
                })
                .min_by_key(|(rank, _)| *rank);
            if let Some((_, raw)) = best {
                named.insert(raw, canonical.to_string());
            }
        }
        let mut out: Vec<(String, String)> = Vec::new();
        let mut taken = BTreeSet::new();
        for raw in &self.order {
            let name = named
                .get(raw.as_str())
                .cloned()
                .unwrap_or_else(|| sanitize(raw));
            if !taken.insert(name.clone()) {
                return Err(Error::Parse {
                    path: self.path.to_path_buf(),
                    place: format!("metric {}", quote(raw)),
                    expected: "metric names that stay distinct after lowercasing and replacing spaces and '-' with '_'".into(),
                    got: format!("a second metric named `{name}`"),
                });
            }
            out.push((raw.clone(), name));
        }
        Ok(out)
    }

    /// Builds the trace: names, the grid policy, notes, then [`Trace::validate`].
    pub(super) fn finish(mut self, format: Format) -> Result<Trace> {
        let names = self.resolve_names()?;
        let grid_raw = names
            .iter()
            .find(|(_, name)| name == LM_LOSS)
            .or_else(|| {
                names
                    .iter()
                    .max_by_key(|(raw, name)| (self.points_of(raw), std::cmp::Reverse(name)))
            })
            .map(|(raw, name)| (raw.clone(), name.clone()));
        let Some((grid_raw, grid_name)) = grid_raw.filter(|(raw, _)| self.points_of(raw) > 0)
        else {
            return Err(Error::EmptyInput {
                path: self.path.to_path_buf(),
                reason: format!("no metric values were read as {format}"),
            });
        };
        let steps: Vec<u64> = self.series[&grid_raw].points.iter().map(|p| p.0).collect();
        let mut series = BTreeMap::new();
        let (mut cadence, mut sources) = (Map::new(), Map::new());
        for (raw, name) in &names {
            let s = &self.series[raw];
            let own: Vec<u64> = s.points.iter().map(|p| p.0).collect();
            let values: Vec<f64> = s.points.iter().map(|p| p.1).collect();
            sources.insert(name.clone(), json!(raw));
            // A series on another cadence keeps its own steps: padding it onto the grid with
            // NaN would read as a divergence, and dropping it would lose an eval curve.
            let own_steps = (own != steps).then(|| {
                cadence.insert(name.clone(), json!(describe_steps(&own)));
                own
            });
            let kept = Series {
                precision: s.precision,
                values,
                steps: own_steps,
            };
            series.insert(name.clone(), kept);
        }
        let mut import = Map::new();
        import.insert("format".into(), json!(format.name()));
        import.insert("grid".into(), json!(grid_name));
        import.insert("sources".into(), Value::Object(sources));
        if !cadence.is_empty() {
            import.insert("own_steps".into(), Value::Object(cadence));
        }
        import.append(&mut self.notes);
        let mut config = std::mem::take(&mut self.config);
        // `import` is lossdiff's provenance section; a source setting of that name is kept
        // beside it rather than mixed into it.
        if let Some(v) = config.remove("import") {
            config.insert("import_setting".into(), v);
        }
        if !self.seeds.contains_key("init") {
            let recorded = SEED_PATHS.iter().find_map(|p| seed_at(&config, p));
            if let Some(seed) = recorded {
                self.seeds.insert("init".into(), seed);
            }
        }
        config.insert("import".into(), Value::Object(import));
        let trace = Trace {
            schema_version: TRACE_SCHEMA_VERSION,
            name: self.name.take().unwrap_or_else(|| {
                self.path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            }),
            origin: Origin {
                format: format.name().into(),
                path: Some(self.path.display().to_string()),
            },
            config: Value::Object(config),
            fingerprint: Value::Object(std::mem::take(&mut self.fingerprint)),
            seeds: std::mem::take(&mut self.seeds),
            loss_floor: None,
            steps,
            series,
        };
        trace.validate(self.path)?;
        Ok(trace)
    }

    fn points_of(&self, raw: &str) -> usize {
        self.series.get(raw).map_or(0, |s| s.points.len())
    }
}

/// Returns the non-negative integer at a JSON-pointer-like `path` (`/train/seed`) in `config`.
fn seed_at(config: &Map<String, Value>, path: &str) -> Option<u64> {
    let mut keys = path.split('/').filter(|k| !k.is_empty());
    let mut v = config.get(keys.next()?)?;
    for k in keys {
        v = v.get(k)?;
    }
    v.as_u64()
}

/// Merges `from` into `into` recursively; on a leaf set twice to different values returns the
/// dotted key and the place it was first set.
fn merge(
    into: &mut Map<String, Value>,
    from: Map<String, Value>,
    prefix: &str,
    place: &str,
    places: &mut BTreeMap<String, String>,
) -> std::result::Result<(), (String, String)> {
    for (k, v) in from {
        let key = match prefix {
            "" => k.clone(),
            p => format!("{p}.{k}"),
        };
        match (into.get_mut(&k), v) {
            (Some(Value::Object(old)), Value::Object(new)) => {
                merge(old, new, &key, place, places)?;
            }
            (Some(old), new) if *old != new => {
                let first = places.get(&key).cloned().unwrap_or_else(|| "?".into());
                return Err((key, first));
            }
            (Some(_), _) => {}
            (None, new) => {
                for leaf in crate::trace::flatten_json(&new).into_keys() {
                    places.insert(format!("{key}.{leaf}"), place.to_string());
                }
                places.insert(key, place.to_string());
                into.insert(k, new);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(points: &[(&str, &[(u64, f64)])]) -> Result<Trace> {
        let path = Path::new("mem.txt");
        let mut c = Collector::new(path);
        for (raw, pts) in points {
            for &(step, v) in *pts {
                c.push(raw, step, v, Precision::F64, || format!("step {step}"))?;
            }
        }
        c.finish(Format::Jsonl)
    }

    #[test]
    fn metrics_at_another_cadence_keep_their_own_steps_not_padded() {
        // `eval` was logged at step 2 only, `lr` also at step 0: both keep every point they have.
        let t = collect(&[
            ("loss", &[(1, 3.0), (2, 2.0), (3, 1.0)]),
            ("eval", &[(2, 2.5)]),
            ("learning-rate", &[(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.3)]),
        ])
        .unwrap();
        assert_eq!(t.steps, vec![1, 2, 3]);
        assert_eq!(t.points("eval"), Some((&[2u64][..], &[2.5][..])));
        assert_eq!(t.points(LR).unwrap().0, &[0, 1, 2, 3]);
        assert!(t.metric("eval").is_none(), "not a per-grid-step metric");
        assert!(t
            .series
            .values()
            .all(|s| s.values.iter().all(|v| !v.is_nan())));
        let import = &t.config["import"];
        assert_eq!(import["grid"], "lm_loss");
        assert_eq!(import["own_steps"]["eval"], "1 step (2)");
        assert_eq!(import["sources"]["lr"], "learning-rate");
    }

    #[test]
    fn config_from_several_records_merges_and_a_conflict_names_both_places() {
        let path = Path::new("m.jsonl");
        let mut c = Collector::new(path);
        let obj = |v: Value| v.as_object().unwrap().clone();
        c.add_config(
            obj(json!({"model": {"a": 1}, "train": {"seed": 7}})),
            "line 1",
        )
        .unwrap();
        c.add_config(obj(json!({"model": {"b": 2, "a": 1}})), "line 4")
            .unwrap();
        let err = c
            .add_config(obj(json!({"model": {"a": 3}})), "line 9")
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("line 9") && msg.contains("`model.a`") && msg.contains("line 1"),
            "{msg}"
        );
        c.push("loss", 1, 2.0, Precision::F64, || "line 2".into())
            .unwrap();
        let t = c.finish(Format::Jsonl).unwrap();
        assert_eq!(t.config["model"], json!({"a": 1, "b": 2}));
        // A recorded seed pairs the run in comparisons.
        assert_eq!(t.seeds["init"], 7);
    }

    #[test]
    fn best_alias_wins_and_others_keep_their_names() {
        let t = collect(&[("train/loss", &[(1, 1.0)]), ("lm loss", &[(1, 2.0)])]).unwrap();
        assert_eq!(t.lm_loss().unwrap(), &[2.0]);
        assert_eq!(t.metric("train/loss").unwrap(), &[1.0]);
    }

    #[test]
    fn clashing_names_and_repeated_steps_are_errors() {
        let err = collect(&[("num zeros", &[(1, 1.0)]), ("num-zeros", &[(1, 2.0)])]).unwrap_err();
        assert!(err.to_string().contains("`num_zeros`"), "{err}");
        let err = collect(&[("loss", &[(1, 1.0), (2, 1.0), (2, 0.5)])]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::StepOrder {
                    previous: 2,
                    step: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn without_loss_the_longest_series_is_the_grid() {
        let t = collect(&[("a", &[(1, 1.0)]), ("b", &[(1, 1.0), (2, 2.0)])]).unwrap();
        assert_eq!(t.config["import"]["grid"], "b");
        assert_eq!(t.steps, vec![1, 2]);
    }
}
