//! Trace files: the record of one training run — what ran (resolved config, environment
//! fingerprint, seeds) and what it measured per step (loss, grad norm, lr, step time).
//!
//! Traces are what every other part of lossdiff consumes: the comparison engine reads their series,
//! the config diff reads their config and fingerprint, goldens store them. Importers turn other
//! stacks' logs into this type. This module owns the schema, its validation and exact round-trip;
//! it does not interpret the numbers.
//!
//! Loss values recorded by the reference trainer are `f32`. They are written as `f32` (shortest
//! representation that parses back to the same bits), so a bitwise comparison of two traces read
//! from disk is as exact as one made in memory. Non-finite values are written as the strings
//! `"nan"`, `"inf"` and `"-inf"` (JSON has no such numbers), as Megatron-LM's golden files do.

use crate::error::{Error, Result};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::path::Path;

/// Version of the trace schema this build writes and the newest it reads.
pub const TRACE_SCHEMA_VERSION: u32 = 1;

/// Name of the language-model loss series.
pub const LM_LOSS: &str = "lm_loss";
/// Name of the global gradient-norm series (before clipping).
pub const GRAD_NORM: &str = "grad_norm";
/// Name of the learning-rate series (the lr used at that step).
pub const LR: &str = "lr";
/// Name of the wall-clock step-time series, in seconds.
pub const STEP_TIME: &str = "step_time_s";

/// The precision a series was recorded in; decides how it is written and parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Values are `f32` widened to `f64`; written as `f32`.
    F32,
    /// Values are `f64`.
    F64,
}

/// One per-step metric. Values are held as `f64`; an `F32` series holds exact widenings of `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Recorded precision.
    pub precision: Precision,
    /// One value per step of the trace (or of `steps`, when set); may be non-finite.
    pub values: Vec<f64>,
    /// The series' own steps, for a metric logged at another cadence than the trace's grid (an
    /// eval loss every 50 steps); `None` means the trace's `steps`. Kept apart rather than padded
    /// with NaN, because a NaN is a divergence to the comparison.
    pub steps: Option<Vec<u64>>,
}

impl Series {
    /// Builds an `f32` series, widening each value exactly.
    pub fn from_f32(values: &[f32]) -> Self {
        Series {
            precision: Precision::F32,
            values: values.iter().map(|&v| f64::from(v)).collect(),
            steps: None,
        }
    }

    /// Builds an `f64` series.
    pub fn from_f64(values: Vec<f64>) -> Self {
        Series {
            precision: Precision::F64,
            values,
            steps: None,
        }
    }
}

/// A value as read from JSON: a number, or a string for non-finite values.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonValue {
    Num(serde_json::Number),
    Str(String),
}

/// A value as written to JSON. `F32` goes through `serialize_f32`, which `serde_json` prints with
/// ryu's shortest *f32* representation (going through `serde_json::Value` would widen it first).
enum OutValue {
    F32(f32),
    F64(f64),
    NonFinite(&'static str),
}

impl Serialize for OutValue {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match *self {
            OutValue::F32(v) => s.serialize_f32(v),
            OutValue::F64(v) => s.serialize_f64(v),
            OutValue::NonFinite(name) => s.serialize_str(name),
        }
    }
}

fn non_finite_name(v: f64) -> &'static str {
    if v.is_nan() {
        "nan"
    } else if v > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

/// Parses the strings lossdiff and Megatron-LM use for non-finite values.
pub fn parse_non_finite(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nan" | "-nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

#[derive(Deserialize)]
struct SeriesRepr {
    precision: Precision,
    values: Vec<JsonValue>,
    #[serde(default)]
    steps: Option<Vec<u64>>,
}

impl Serialize for Series {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let values: Vec<OutValue> = self
            .values
            .iter()
            .map(|&v| match (v.is_finite(), self.precision) {
                (false, _) => OutValue::NonFinite(non_finite_name(v)),
                (true, Precision::F32) => OutValue::F32(v as f32),
                (true, Precision::F64) => OutValue::F64(v),
            })
            .collect();
        let mut st = s.serialize_struct("Series", 3)?;
        st.serialize_field("precision", &self.precision)?;
        if let Some(steps) = &self.steps {
            st.serialize_field("steps", steps)?;
        }
        st.serialize_field("values", &values)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Series {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let repr = SeriesRepr::deserialize(d)?;
        let mut values = Vec::with_capacity(repr.values.len());
        for (i, v) in repr.values.into_iter().enumerate() {
            let x = match v {
                JsonValue::Num(n) => {
                    let text = n.to_string();
                    match repr.precision {
                        Precision::F32 => text.parse::<f32>().map(f64::from).map_err(|e| {
                            D::Error::custom(format!("value {i} ({text}) is not an f32: {e}"))
                        })?,
                        Precision::F64 => text.parse::<f64>().map_err(|e| {
                            D::Error::custom(format!("value {i} ({text}) is not an f64: {e}"))
                        })?,
                    }
                }
                JsonValue::Str(s) => parse_non_finite(&s).ok_or_else(|| {
                    D::Error::custom(format!(
                        "value {i} is the string {s:?}: expected a number, \"nan\", \"inf\" or \"-inf\""
                    ))
                })?,
            };
            values.push(x);
        }
        Ok(Series {
            precision: repr.precision,
            values,
            steps: repr.steps,
        })
    }
}

/// Where a trace came from: lossdiff's own trainer or an importer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// `lossdiff` for the reference trainer, else the importer's format name.
    pub format: String,
    /// The file the trace was imported from, when imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// One training run's record.
///
/// # Invariants (checked by [`Trace::validate`] on every load)
/// - `steps` is strictly increasing, and so are a series' own `steps`;
/// - every series has exactly one value per step (of the trace, or of its own steps).
///
/// Values may be non-finite: a NaN loss is a finding, not a parse error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Schema version ([`TRACE_SCHEMA_VERSION`] when written by this build).
    pub schema_version: u32,
    /// A human name (e.g. the spec's name and arm).
    pub name: String,
    /// Where the trace came from.
    pub origin: Origin,
    /// The fully resolved configuration, every default explicit (a JSON object of sections).
    pub config: serde_json::Value,
    /// The environment the run executed in (versions, CPU, threads, build).
    pub fingerprint: serde_json::Value,
    /// Every seed the run used, by role (`init`, `data`, `dropout`, `perturb`).
    pub seeds: BTreeMap<String, u64>,
    /// The loss an ideal model reaches on this data, when known exactly (nats per token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_floor: Option<f64>,
    /// Optimiser steps at which the series were recorded (1-based, as Megatron-LM logs them).
    pub steps: Vec<u64>,
    /// Per-step metrics by name ([`LM_LOSS`], [`GRAD_NORM`], [`LR`], [`STEP_TIME`], …).
    pub series: BTreeMap<String, Series>,
}

impl Trace {
    /// Returns the named series' values, if present on the trace's step grid.
    ///
    /// A series logged at another cadence has no value per `steps` entry, so it is `None` here
    /// (code that zips `steps` with values stays right); [`Trace::points`] returns it.
    pub fn metric(&self, name: &str) -> Option<&[f64]> {
        self.series
            .get(name)
            .filter(|s| s.steps.is_none())
            .map(|s| s.values.as_slice())
    }

    /// Returns the named series' steps and values, whatever its cadence.
    pub fn points(&self, name: &str) -> Option<(&[u64], &[f64])> {
        let s = self.series.get(name)?;
        let steps = s.steps.as_deref().unwrap_or(&self.steps);
        Some((steps, s.values.as_slice()))
    }

    /// Describes the series present, for "no such series" messages: `lm_loss, lr,
    /// eval_loss (4 points, own steps)`.
    pub fn describe_series(&self) -> String {
        let names: Vec<String> = (self.series.iter())
            .map(|(name, s)| match &s.steps {
                None => name.clone(),
                Some(steps) => format!("{name} ({} points, own steps)", steps.len()),
            })
            .collect();
        match names.is_empty() {
            true => "no series".into(),
            false => names.join(", "),
        }
    }

    /// Returns the language-model loss values, if present.
    pub fn lm_loss(&self) -> Option<&[f64]> {
        self.metric(LM_LOSS)
    }

    /// Checks the invariants listed on [`Trace`]; `path` names the trace in the error.
    ///
    /// # Errors
    /// [`Error::InvalidTrace`] naming the first broken invariant.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let invalid = |reason: String| Error::InvalidTrace {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(w) = self.steps.windows(2).position(|w| w[1] <= w[0]) {
            return Err(invalid(format!(
                "steps must be strictly increasing, but step {} (index {}) is followed by step {}",
                self.steps[w],
                w,
                self.steps[w + 1]
            )));
        }
        for (name, s) in &self.series {
            let steps = s.steps.as_deref().unwrap_or(&self.steps);
            if let Some(w) = s
                .steps
                .as_ref()
                .and_then(|own| own.windows(2).position(|w| w[1] <= w[0]))
            {
                return Err(invalid(format!(
                    "series `{name}`: its steps must be strictly increasing, but step {} is followed by step {}",
                    steps[w],
                    steps[w + 1]
                )));
            }
            if s.values.len() != steps.len() {
                return Err(invalid(format!(
                    "series `{name}` has {} values for {} steps",
                    s.values.len(),
                    steps.len()
                )));
            }
        }
        Ok(())
    }

    /// Reads and validates a trace file.
    ///
    /// # Errors
    /// I/O and JSON errors name the file; [`Error::TraceSchema`] for a trace from a newer lossdiff;
    /// [`Error::InvalidTrace`] for a broken invariant.
    pub fn load(path: &Path) -> Result<Trace> {
        let text = crate::limits::read_input_to_string(path)?;
        Trace::from_json(&text, path)
    }

    /// Parses and validates a trace from JSON text; `path` names it in errors.
    ///
    /// # Errors
    /// As [`Trace::load`].
    pub fn from_json(text: &str, path: &Path) -> Result<Trace> {
        // Read the version first so a newer schema gets a version error, not a field error.
        #[derive(Deserialize)]
        struct Version {
            schema_version: Option<u32>,
            fingerprint: Option<serde_json::Value>,
        }
        let v: Version = serde_json::from_str(text).map_err(|e| Error::json(path, &e))?;
        match v.schema_version {
            Some(found) if found > TRACE_SCHEMA_VERSION => {
                return Err(Error::TraceSchema {
                    path: path.to_path_buf(),
                    written_by: v
                        .fingerprint
                        .as_ref()
                        .and_then(|f| f["lossdiff_version"].as_str())
                        .unwrap_or("?")
                        .to_string(),
                    found,
                    supported: TRACE_SCHEMA_VERSION,
                })
            }
            None => {
                return Err(Error::InvalidTrace {
                    path: path.to_path_buf(),
                    reason: "missing `schema_version`: not a lossdiff trace (use `lossdiff compare` to import other formats)".into(),
                })
            }
            _ => {}
        }
        // serde keeps the last of two equal keys (a hand-merged `lm_loss` twice): refuse instead.
        crate::json::refuse_duplicate_keys(text, path)?;
        let trace: Trace = serde_json::from_str(text).map_err(|e| Error::json(path, &e))?;
        trace.validate(path)?;
        Ok(trace)
    }

    /// Serialises the trace as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a trace always serialises: keys are strings")
    }

    /// Writes the trace atomically (temp file in the same directory, fsync, rename).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_atomic(path, self.to_json().as_bytes())
    }
}

/// Flattens nested JSON objects into dotted keys; arrays and scalars are leaves. A trace's
/// `config` and `fingerprint` are read this way by the config diff, the CLI and external
/// commands' placeholders alike.
///
/// `{"model": {"attention": "flash"}}` becomes `{"model.attention": "flash"}`.
pub fn flatten_json(v: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    fn go(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
        match v {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    go(&key, child, out);
                }
            }
            _ if prefix.is_empty() => {}
            _ => {
                out.insert(prefix.to_string(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    go("", v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Trace {
        Trace {
            schema_version: TRACE_SCHEMA_VERSION,
            name: "t".into(),
            origin: Origin {
                format: "lossdiff".into(),
                path: None,
            },
            config: serde_json::json!({"model": {"hidden_size": 8}}),
            fingerprint: serde_json::json!({}),
            seeds: BTreeMap::from([("init".to_string(), 1)]),
            loss_floor: Some(1.5),
            steps: vec![1, 2, 3, 4],
            series: BTreeMap::from([
                (
                    LM_LOSS.to_string(),
                    Series::from_f32(&[
                        4.158_883,
                        f32::from_bits(0x3F80_0001),
                        f32::NAN,
                        f32::NEG_INFINITY,
                    ]),
                ),
                (
                    LR.to_string(),
                    Series::from_f64(vec![0.1, 1e-300, 3.0e-4, std::f64::consts::PI]),
                ),
            ]),
        }
    }

    #[test]
    fn f32_losses_round_trip_bit_for_bit() {
        let t = sample();
        let back = Trace::from_json(&t.to_json(), Path::new("mem")).unwrap();
        let a = t.lm_loss().unwrap();
        let b = back.lm_loss().unwrap();
        for (x, y) in a.iter().zip(b) {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "{x} vs {y}"
            );
        }
        assert_eq!(t.metric(LR), back.metric(LR));
    }

    #[test]
    fn f32_series_are_written_short() {
        let json = sample().to_json();
        assert!(json.contains("4.158883"), "{json}");
        assert!(!json.contains("4.1588830947"), "{json}");
        assert!(json.contains("\"nan\"") && json.contains("\"-inf\""));
    }

    #[test]
    fn newer_schema_is_refused_with_version_error() {
        let mut t = sample();
        t.schema_version = 99;
        let err = Trace::from_json(&t.to_json(), Path::new("x.json")).unwrap_err();
        assert!(matches!(err, Error::TraceSchema { found: 99, .. }), "{err}");
    }

    #[test]
    fn decreasing_steps_are_refused() {
        let mut t = sample();
        t.steps = vec![1, 3, 2, 4];
        let err = Trace::from_json(&t.to_json(), Path::new("x.json")).unwrap_err();
        assert!(err.to_string().contains("strictly increasing"), "{err}");
    }

    #[test]
    fn a_series_named_twice_is_refused_not_overwritten() {
        let json = sample().to_json().replacen("\"lr\":", "\"lm_loss\":", 1);
        let err = Trace::from_json(&json, Path::new("x.json")).unwrap_err();
        assert!(
            matches!(&err, Error::DuplicateKey { key, .. } if key == "\"lm_loss\""),
            "{err}"
        );
    }

    #[test]
    fn a_series_with_its_own_steps_round_trips_and_is_checked() {
        let mut t = sample();
        let eval = Series {
            precision: Precision::F64,
            values: vec![2.5, 2.0],
            steps: Some(vec![2, 4]),
        };
        t.series.insert("eval_loss".into(), eval);
        let back = Trace::from_json(&t.to_json(), Path::new("x.json")).unwrap();
        assert_eq!(back.series["eval_loss"], t.series["eval_loss"]);
        // Off the grid, the series is not a per-step metric, but its points are there.
        assert_eq!(back.metric("eval_loss"), None);
        assert_eq!(
            back.points("eval_loss"),
            Some((&[2u64, 4][..], &[2.5, 2.0][..]))
        );
        assert!(back
            .describe_series()
            .contains("eval_loss (2 points, own steps)"));
        t.series.get_mut("eval_loss").unwrap().steps = Some(vec![4, 2]);
        let err = Trace::from_json(&t.to_json(), Path::new("x.json")).unwrap_err();
        assert!(err.to_string().contains("`eval_loss`: its steps"), "{err}");
    }

    #[test]
    fn length_mismatch_is_refused() {
        let mut t = sample();
        t.steps.push(5);
        let err = Trace::from_json(&t.to_json(), Path::new("x.json")).unwrap_err();
        assert!(err.to_string().contains("4 values for 5 steps"), "{err}");
    }
}
