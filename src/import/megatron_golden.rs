//! Megatron-LM functional-test golden values: import and export.
//!
//! Schema (Megatron-LM `tests/functional_tests/test_cases/*/golden_values_*.json`):
//! `{metric: {"start_step": 1, "end_step": 50, "step_interval": 1, "values": {"1": 10.9, "2": "nan"}}}`.
//! Older files hold `values` as a list, one value per `step_interval` from `start_step`; both are
//! read. With the object form the keys are the truth and `start_step`/`end_step` are ignored.
//!
//! Every metric is imported (`lm loss` → `lm_loss`, `iteration-time` → `step_time_s`, the others
//! sanitised: `num-zeros` → `num_zeros`). Metrics on another grid than `lm loss` keep their own
//! steps by the module-wide policy: in the real `gpt3_mcore_tp1_pp2` files `iteration-time` starts
//! at step 2 while `lm loss` starts at step 1 (listed in `config.import.own_steps`). A step key
//! twice in one `values` object is an [`Error::DuplicateKey`].
//!
//! # Resumed runs
//! The `_2nd.json` file of a checkpoint-resume test holds steps 1..50 as `"nan"` in *every*
//! metric: that half did not run them. Leading steps where every metric is NaN are therefore read
//! as "not logged" and cut, not as a divergence; the cut steps are listed in
//! `config.import.not_logged_leading_steps` and [`to_megatron_golden`] writes them back as `"nan"`.
//! A NaN in some metrics only (e.g. `num-zeros` on fp16 steps skipped for overflow) is kept.

use super::{describe_steps, parse_step, quote, Collector, Format};
use crate::error::{Error, Result};
use crate::trace::{Precision, Trace, LM_LOSS, STEP_TIME};
use serde_json::{json, Map, Value};
use std::path::Path;

/// One metric as read, before the resume cut.
struct Metric {
    raw: String,
    points: Vec<(u64, f64)>,
}

/// Whether top-level values, each reduced to "is an object with a `values` key", have the
/// golden-values shape (for detection, which never builds a `Value` of the whole file).
pub(super) fn looks_like(metrics_with_values: &[bool]) -> bool {
    !metrics_with_values.is_empty() && metrics_with_values.iter().all(|&v| v)
}

/// Parses a golden-values file into a trace.
pub(super) fn parse(text: &str, path: &Path) -> Result<Trace> {
    // Strict: a step key twice in `values` would otherwise keep the last value silently.
    let top = crate::json::parse_document(text, path)?;
    let Value::Object(top) = top else {
        return Err(bad(
            path,
            "the top level".into(),
            "an object of metrics",
            &top,
        ));
    };
    let mut metrics = Vec::with_capacity(top.len());
    for (raw, body) in &top {
        metrics.push(read_metric(raw, body, path)?);
    }
    let cut = not_logged_prefix(&metrics);
    let mut c = Collector::new(path);
    if let Some(&last_cut) = cut.last() {
        let everything = metrics
            .iter()
            .all(|m| m.points.iter().all(|p| p.0 <= last_cut));
        if everything {
            return Err(Error::EmptyInput {
                path: path.to_path_buf(),
                reason: format!(
                    "every metric is \"nan\" at every step ({})",
                    describe_steps(&cut)
                ),
            });
        }
        c.note("not_logged_leading_steps", json!(cut));
        c.note(
            "not_logged_why",
            json!("every metric was \"nan\" there: the second half of a checkpoint-resume test"),
        );
    }
    for m in &metrics {
        for &(step, v) in m
            .points
            .iter()
            .filter(|p| cut.last().is_none_or(|&l| p.0 > l))
        {
            let place = || format!("key {}/\"values\"/\"{step}\"", quote(&m.raw));
            c.push(&m.raw, step, v, Precision::F64, place)?;
        }
    }
    c.finish(Format::MegatronGolden)
}

fn bad(path: &Path, place: String, expected: &str, got: &Value) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        place,
        expected: expected.into(),
        got: quote(&got.to_string()),
    }
}

/// Reads one metric's `values`, sorted by step (JSON object keys come back in text order).
fn read_metric(raw: &str, body: &Value, path: &Path) -> Result<Metric> {
    let at = |rest: &str| format!("key {}{rest}", quote(raw));
    let values = body
        .get("values")
        .ok_or_else(|| bad(path, at(""), "an object with \"values\"", body))?;
    let mut points = Vec::new();
    match values {
        Value::Object(map) => {
            for (key, v) in map {
                let place = at(&format!("/\"values\"/{}", quote(key)));
                let step = parse_step(key)
                    .ok_or_else(|| bad(path, place.clone(), "a step number as key", &json!(key)))?;
                points.push((step, value(v, path, place)?));
            }
            points.sort_by_key(|p| p.0);
        }
        Value::Array(list) => {
            let field = |name: &str| {
                body.get(name).and_then(Value::as_u64).ok_or_else(|| {
                    bad(
                        path,
                        at(&format!("/\"{name}\"")),
                        "a non-negative integer",
                        body,
                    )
                })
            };
            let (start, interval) = (field("start_step")?, field("step_interval")?.max(1));
            for (i, v) in list.iter().enumerate() {
                let step = (i as u64)
                    .checked_mul(interval)
                    .and_then(|d| d.checked_add(start))
                    .ok_or_else(|| bad(path, at("/\"values\""), "steps below 2^64", body))?;
                points.push((step, value(v, path, at(&format!("/\"values\"/{i}")))?));
            }
        }
        other => return Err(bad(path, at("/\"values\""), "an object or a list", other)),
    }
    Ok(Metric {
        raw: raw.to_string(),
        points,
    })
}

fn value(v: &Value, path: &Path, place: String) -> Result<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => super::parse_number(s),
        _ => None,
    }
    .ok_or_else(|| bad(path, place, "a number or \"nan\"", v))
}

/// Returns the leading steps (of the union of all metrics' steps) at which every metric that
/// has the step holds NaN.
fn not_logged_prefix(metrics: &[Metric]) -> Vec<u64> {
    let mut all: Vec<u64> = metrics
        .iter()
        .flat_map(|m| m.points.iter().map(|p| p.0))
        .collect();
    all.sort_unstable();
    all.dedup();
    let nan_everywhere = |step: u64| {
        metrics.iter().all(|m| {
            m.points
                .binary_search_by_key(&step, |p| p.0)
                .map_or(true, |i| m.points[i].1.is_nan())
        })
    };
    all.into_iter().take_while(|&s| nan_everywhere(s)).collect()
}

/// Writes a trace in Megatron-LM's golden-values schema, so a lossdiff run can be checked into
/// (or diffed with) Megatron's functional tests.
///
/// Metric names: `lm_loss` → `lm loss`, `step_time_s` → `iteration-time`, others with `_` → `-`
/// (`num_zeros` → `num-zeros`); a trace imported from a golden file keeps its original names.
/// Non-finite values become `"nan"`, `"inf"`, `"-inf"`; `f32` series are written with their
/// shortest `f32` decimal. Steps cut as not logged on import are written back as `"nan"`.
/// `step_interval` is the greatest common divisor of the step gaps (1 for a single step).
pub fn to_megatron_golden(trace: &Trace) -> Value {
    let from_golden = trace.origin.format == Format::MegatronGolden.name();
    let import = &trace.config["import"];
    let cut: Vec<u64> = match (from_golden, import["not_logged_leading_steps"].as_array()) {
        (true, Some(list)) => list.iter().filter_map(Value::as_u64).collect(),
        _ => Vec::new(),
    };
    let mut out = Map::new();
    for (name, s) in &trace.series {
        let raw = match import["sources"][name].as_str() {
            Some(raw) if from_golden => raw.to_string(),
            _ => export_name(name),
        };
        // A series at its own cadence (Megatron's `iteration-time` from step 2) keeps its steps.
        let own = s.steps.as_deref().unwrap_or(&trace.steps);
        let mut steps = cut.clone();
        steps.extend(own.iter().filter(|&&s| cut.last().is_none_or(|&l| s > l)));
        let mut values = Map::new();
        for &step in &cut {
            values.insert(step.to_string(), json!("nan"));
        }
        for (&step, &v) in own.iter().zip(&s.values) {
            values.insert(step.to_string(), golden_value(v, s.precision));
        }
        let metric = json!({
            "start_step": steps.first().copied().unwrap_or(0),
            "end_step": steps.last().copied().unwrap_or(0),
            "step_interval": interval(&steps),
            "values": values,
        });
        out.insert(raw, metric);
    }
    Value::Object(out)
}

/// Writes [`to_megatron_golden`] as text laid out like Megatron-LM's files (4-space indent,
/// `lm loss` first, steps in numeric order), so an exported file diffs cleanly against theirs.
/// `serde_json`'s own writer would order the step keys as text: `"1", "10", "100", "11"`.
pub fn megatron_golden_json(trace: &Trace) -> String {
    let golden = to_megatron_golden(trace);
    let mut metrics: Vec<(&String, &Value)> = golden.as_object().into_iter().flatten().collect();
    metrics.sort_by_key(|(name, _)| (name.as_str() != "lm loss", name.as_str()));
    let mut out = String::from("{\n");
    for (i, (name, m)) in metrics.iter().enumerate() {
        out += &format!("    {}: {{\n", Value::from(name.as_str()));
        for key in ["start_step", "end_step", "step_interval"] {
            out += &format!("        \"{key}\": {},\n", m[key]);
        }
        out += "        \"values\": {\n";
        let mut values: Vec<(u64, &Value)> = m["values"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
            .collect();
        values.sort_by_key(|(step, _)| *step);
        let rows: Vec<String> = values
            .iter()
            .map(|(step, v)| format!("            \"{step}\": {v}"))
            .collect();
        out += &rows.join(",\n");
        let comma = if i + 1 < metrics.len() { "," } else { "" };
        out += &format!("\n        }}\n    }}{comma}\n");
    }
    out + "}\n"
}

fn export_name(name: &str) -> String {
    match name {
        LM_LOSS => "lm loss".into(),
        STEP_TIME => "iteration-time".into(),
        other => other.replace('_', "-"),
    }
}

fn golden_value(v: f64, precision: Precision) -> Value {
    if v.is_nan() {
        json!("nan")
    } else if v.is_infinite() {
        json!(if v > 0.0 { "inf" } else { "-inf" })
    } else if precision == Precision::F32 {
        // The shortest f32 decimal, as a JSON number: 10.94919, not 10.949190139770508.
        let short = (v as f32).to_string();
        json!(short.parse::<f64>().unwrap_or(v))
    } else {
        json!(v)
    }
}

fn interval(steps: &[u64]) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = steps.windows(2).fold(0, |g, w| gcd(g, w[1] - w[0]));
    g.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::import_bytes;
    use crate::trace::{Series, GRAD_NORM};

    fn parse_str(text: &str) -> Result<Trace> {
        parse(text, Path::new("golden_values.json"))
    }

    fn same(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
    }

    #[test]
    fn all_metrics_are_read_with_nan_strings() {
        let t = parse_str(
            r#"{"lm loss": {"start_step": 1, "end_step": 3, "step_interval": 1,
                 "values": {"1": 10.5, "3": "nan", "2": 10.25}},
                "num-zeros": {"start_step": 1, "end_step": 3, "step_interval": 1,
                 "values": {"1": "nan", "2": 7.0, "3": 8.0}}}"#,
        )
        .unwrap();
        assert_eq!(t.steps, vec![1, 2, 3]);
        assert!(same(t.lm_loss().unwrap(), &[10.5, 10.25, f64::NAN]));
        assert!(same(t.metric("num_zeros").unwrap(), &[f64::NAN, 7.0, 8.0]));
        assert_eq!(t.origin.format, "megatron-golden");
    }

    #[test]
    fn old_list_form_uses_start_and_interval() {
        let t = parse_str(
            r#"{"lm loss": {"start_step": 0, "end_step": 10, "step_interval": 5,
                 "values": [10.8, 10.1, 9.5]}}"#,
        )
        .unwrap();
        assert_eq!(t.steps, vec![0, 5, 10]);
    }

    #[test]
    fn resume_prefix_is_cut_and_written_back() {
        let text = r#"{"lm loss": {"start_step": 1, "end_step": 4, "step_interval": 1,
                 "values": {"1": "nan", "2": "nan", "3": 9.5, "4": 9.25}},
                "iteration-time": {"start_step": 1, "end_step": 4, "step_interval": 1,
                 "values": {"1": "nan", "2": "nan", "3": 0.5, "4": "nan"}}}"#;
        let t = parse_str(text).unwrap();
        assert_eq!(t.steps, vec![3, 4]);
        assert!(same(t.metric(STEP_TIME).unwrap(), &[0.5, f64::NAN]));
        assert_eq!(
            t.config["import"]["not_logged_leading_steps"],
            json!([1, 2])
        );
        let back = to_megatron_golden(&t);
        let orig: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn json_text_is_megatron_layout_in_step_order() {
        let text = r#"{"num-zeros": {"values": {"1": 3.0, "2": 4.0, "10": 5.0}},
                       "lm loss": {"values": {"1": 9.5, "2": "nan", "10": 9.25}}}"#;
        let t = parse_str(text).unwrap();
        let out = megatron_golden_json(&t);
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, to_megatron_golden(&t));
        assert!(
            out.starts_with("{\n    \"lm loss\": {\n        \"start_step\": 1,"),
            "{out}"
        );
        let (two, ten) = (
            out.find("\"2\": \"nan\"").unwrap(),
            out.find("\"10\": 9.25").unwrap(),
        );
        assert!(two < ten, "{out}");
        assert!(out.contains("\"step_interval\": 1,"), "{out}");
    }

    /// cargo fuzz (import_megatron_golden), minimised. Was a known loss while series on another
    /// grid were dropped: the export held only `lm loss`, NaN at step 0, which read back as "not
    /// run". Now `iteration-time` keeps its own steps, is exported, and the NaN survives.
    #[test]
    fn export_of_a_leading_nan_in_the_loss_keeps_it() {
        let t = parse_str(
            r#"{"lm loss": {"values": {"0": "nan", "1": 10.8}},
                "iteration-time": {"values": {"0": 1.5, "5": 1.0}}}"#,
        )
        .unwrap();
        assert_eq!(t.steps, vec![0, 1]);
        let back = parse_str(&megatron_golden_json(&t)).unwrap();
        assert_eq!(back.steps, vec![0, 1]);
        assert!(back.lm_loss().unwrap()[0].is_nan());
    }

    #[test]
    fn all_nan_file_is_empty_not_a_divergence() {
        let err = parse_str(r#"{"lm loss": {"values": {"1": "nan", "2": "nan"}}}"#).unwrap_err();
        assert!(matches!(err, Error::EmptyInput { .. }), "{err}");
    }

    #[test]
    fn bad_values_and_keys_name_the_key() {
        let err = parse_str(r#"{"lm loss": {"values": {"1": 1.0, "2": "oops"}}}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(r#"key "lm loss"/"values"/"2""#) && msg.contains("oops"),
            "{msg}"
        );
        let err = parse_str(r#"{"lm loss": {"values": {"x": 1.0}}}"#).unwrap_err();
        assert!(err.to_string().contains("a step number as key"), "{err}");
        let err = parse_str(r#"{"lm loss": {"values": {"1": 1.0, "01": 2.0}}}"#).unwrap_err();
        assert!(matches!(err, Error::StepOrder { step: 1, .. }), "{err}");
        assert!(parse_str("[1, 2]").is_err());
        assert!(parse_str(r#"{"lm loss": {"values": 3}}"#).is_err());
    }

    /// See: issue 21 item 7 — a golden with step "5" twice kept the last value.
    #[test]
    fn issue_21_a_step_key_twice_is_refused() {
        let err = parse_str(
            "{\"lm loss\": {\"start_step\": 1, \"end_step\": 5, \"step_interval\": 1,\n \"values\": {\"4\": 1.0, \"5\": 0.9,\n \"5\": 0.1}}}",
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::DuplicateKey { place, key, .. } if place == "line 3, in \"values\"" && key == "\"5\""),
            "{err}"
        );
    }

    #[test]
    fn export_then_import_round_trips() {
        let mut t = parse_str(r#"{"lm loss": {"values": {"1": 1.0}}}"#).unwrap();
        t.origin.format = "lossdiff".into();
        t.config = json!({});
        t.steps = vec![5, 10, 15, 20];
        t.series.clear();
        let loss = Series::from_f32(&[10.949_19, 10.5, f32::NAN, f32::INFINITY]);
        t.series.insert(LM_LOSS.into(), loss);
        t.series.insert(
            GRAD_NORM.into(),
            Series::from_f64(vec![1.5, 2.25, 3.0, 0.125]),
        );
        let golden = to_megatron_golden(&t);
        assert_eq!(golden["lm loss"]["values"]["5"], json!(10.94919));
        assert_eq!(golden["lm loss"]["step_interval"], json!(5));
        assert_eq!(golden["grad-norm"]["end_step"], json!(20));
        let text = serde_json::to_string(&golden).unwrap();
        let back = import_bytes(text.as_bytes(), Path::new("g.json"), None).unwrap();
        assert_eq!(back.steps, t.steps);
        for (name, s) in &t.series {
            let got = back.metric(name).unwrap();
            let want: Vec<f64> = match s.precision {
                // Megatron's representation is the decimal: compare through f32.
                Precision::F32 => got.iter().map(|&v| f64::from(v as f32)).collect(),
                Precision::F64 => got.to_vec(),
            };
            assert!(same(&want, &s.values), "{name}: {got:?} vs {:?}", s.values);
        }
    }
}
