//! The one policy that turns raw `(step, value)` points per foreign metric name into a
//! [`Trace`]: name mapping, the step grid, dropped and discarded points (see the module docs of
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

/// Collects points per raw metric name and turns them into a trace with the module's policy.
pub(super) struct Collector<'p> {
    path: &'p Path,
    /// Raw names in first-seen order (decides ties deterministically).
    order: Vec<String>,
    series: BTreeMap<String, RawSeries>,
    /// Format-specific notes, written to `config.import`.
    notes: Map<String, Value>,
}

impl<'p> Collector<'p> {
    pub(super) fn new(path: &'p Path) -> Self {
        Collector {
            path,
            order: Vec::new(),
            series: BTreeMap::new(),
            notes: Map::new(),
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
        let (mut dropped, mut discarded, mut sources) = (Map::new(), Map::new(), Map::new());
        for (raw, name) in &names {
            let s = &self.series[raw];
            match on_grid(&s.points, &steps) {
                Some(values) => {
                    let extra = s.points.len() - values.len();
                    if extra > 0 {
                        discarded.insert(name.clone(), json!(extra));
                    }
                    sources.insert(name.clone(), json!(raw));
                    let kept = Series {
                        precision: s.precision,
                        values,
                    };
                    series.insert(name.clone(), kept);
                }
                None => {
                    let own: Vec<u64> = s.points.iter().map(|p| p.0).collect();
                    let why = format!(
                        "logged at {}, not at every step of the `{grid_name}` grid ({})",
                        describe_steps(&own),
                        describe_steps(&steps)
                    );
                    dropped.insert(raw.clone(), json!(why));
                }
            }
        }
        let mut import = Map::new();
        import.insert("format".into(), json!(format.name()));
        import.insert("grid".into(), json!(grid_name));
        import.insert("sources".into(), Value::Object(sources));
        if !dropped.is_empty() {
            import.insert("dropped".into(), Value::Object(dropped));
        }
        if !discarded.is_empty() {
            import.insert("discarded_points".into(), Value::Object(discarded));
        }
        import.append(&mut self.notes);
        let trace = Trace {
            schema_version: TRACE_SCHEMA_VERSION,
            name: self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            origin: Origin {
                format: format.name().into(),
                path: Some(self.path.display().to_string()),
            },
            config: json!({ "import": import }),
            fingerprint: json!({}),
            seeds: BTreeMap::new(),
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

/// Returns the values of `points` at each of `grid`'s steps, or `None` if one is missing.
/// Both are strictly increasing, so one merge pass suffices. Time: `O(points + grid)`.
fn on_grid(points: &[(u64, f64)], grid: &[u64]) -> Option<Vec<f64>> {
    let mut values = Vec::with_capacity(grid.len());
    let mut it = points.iter().peekable();
    for &step in grid {
        while it.next_if(|p| p.0 < step).is_some() {}
        values.push(it.next_if(|p| p.0 == step)?.1);
    }
    Some(values)
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
    fn metrics_on_another_grid_are_dropped_not_padded() {
        // `eval` was logged every 2 steps, `lr` at every step: eval is dropped, lr kept.
        let t = collect(&[
            ("loss", &[(1, 3.0), (2, 2.0), (3, 1.0)]),
            ("eval", &[(2, 2.5)]),
            ("learning-rate", &[(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.3)]),
        ])
        .unwrap();
        assert_eq!(t.steps, vec![1, 2, 3]);
        assert_eq!(t.metric(LR).unwrap(), &[0.1, 0.2, 0.3]);
        assert!(t.metric("eval").is_none());
        let import = &t.config["import"];
        assert_eq!(import["grid"], "lm_loss");
        assert!(import["dropped"]["eval"]
            .as_str()
            .unwrap()
            .contains("1 step (2)"));
        assert_eq!(import["discarded_points"]["lr"], 1);
        assert_eq!(import["sources"]["lr"], "learning-rate");
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
