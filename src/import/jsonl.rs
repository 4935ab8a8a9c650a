//! JSON Lines metric logs: one object per line, `{"step": 1, "loss": 2.3, "lr": 1e-4}`.
//!
//! The step is the first key present of [`STEP_KEYS`], as a non-negative integer. Every other key
//! with a number (or `"nan"`, `"inf"`, `"-inf"`) becomes a series; `loss`, `lm_loss` and
//! `train/loss` map to `lm_loss` by the module-wide alias rule. `null`, text, lists and nested
//! objects are not metrics and are skipped. Rows that log different metrics at the same step are
//! merged; the same metric twice at a step, or a step going backwards, is an [`Error::StepOrder`].
//! A line that is not a JSON object, or has no step, is an error naming the line.

use super::{parse_step, quote, Collector, Format};
use crate::error::{Error, Result};
use crate::trace::{parse_non_finite, Precision, Trace};
use serde_json::Value;
use std::path::Path;

/// Keys accepted as the step, in order of preference (shared with the CSV importer).
pub(super) const STEP_KEYS: [&str; 8] = [
    "step",
    "_step",
    "iteration",
    "iter",
    "global_step",
    "trainer/global_step",
    "train/global_step",
    "steps",
];

/// Parses JSON Lines into a trace.
pub(super) fn parse(text: &str, path: &Path) -> Result<Trace> {
    let mut c = Collector::new(path);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let place = format!("line {}", i + 1);
        let bad = |expected: String| Error::Parse {
            path: path.to_path_buf(),
            place: place.clone(),
            expected,
            got: quote(line),
        };
        let row: Value =
            serde_json::from_str(line).map_err(|e| bad(format!("a JSON object ({e})")))?;
        let Value::Object(row) = row else {
            return Err(bad("a JSON object".into()));
        };
        let step_key = STEP_KEYS
            .iter()
            .find(|k| row.contains_key(**k))
            .ok_or_else(|| bad(format!("a step key (one of {})", STEP_KEYS.join(", "))))?;
        let step = match &row[*step_key] {
            Value::Number(n) => parse_step(&n.to_string()),
            Value::String(s) => parse_step(s),
            _ => None,
        }
        .ok_or_else(|| bad(format!("`{step_key}` to be a non-negative integer")))?;
        for (key, v) in &row {
            if STEP_KEYS.contains(&key.as_str()) {
                continue;
            }
            let x = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => parse_non_finite(s),
                _ => None,
            };
            if let Some(x) = x {
                c.push(key, step, x, Precision::F64, || place.clone())?;
            }
        }
    }
    c.finish(Format::Jsonl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{LM_LOSS, LR};

    fn parse_str(text: &str) -> Result<Trace> {
        parse(text, Path::new("metrics.jsonl"))
    }

    #[test]
    fn rows_become_series_and_loss_keys_alias() {
        let text = r#"{"step": 1, "train/loss": 2.5, "lr": 0.001, "run": "a", "extra": null}
{"step": 2, "train/loss": "nan", "lr": 0.002}

{"step": 2, "eval_loss": 3.0}
{"step": 3.0, "train/loss": 2.25, "lr": 0.003}
"#;
        let t = parse_str(text).unwrap();
        assert_eq!(t.steps, vec![1, 2, 3]);
        let loss = t.lm_loss().unwrap();
        assert!(loss[0] == 2.5 && loss[1].is_nan() && loss[2] == 2.25);
        assert_eq!(t.metric(LR).unwrap(), &[0.001, 0.002, 0.003]);
        assert_eq!(t.config["import"]["sources"][LM_LOSS], "train/loss");
        assert!(t.config["import"]["dropped"]["eval_loss"].is_string());
    }

    #[test]
    fn other_step_keys_are_accepted() {
        let t = parse_str("{\"_step\": 0, \"loss\": 1.0}\n{\"iteration\": 5, \"loss\": 0.5}\n")
            .unwrap();
        assert_eq!(t.steps, vec![0, 5]);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let err =
            parse_str("{\"step\": 1, \"loss\": 1.0}\n{\"step\": 2, \"loss\": \n").unwrap_err();
        assert!(err.to_string().contains("metrics.jsonl: line 2"), "{err}");
        let err = parse_str("{\"loss\": 1.0}\n").unwrap_err();
        assert!(err.to_string().contains("a step key"), "{err}");
        let err = parse_str("[1, 2]\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = parse_str("{\"step\": -3, \"loss\": 1.0}\n").unwrap_err();
        assert!(err.to_string().contains("non-negative integer"), "{err}");
    }

    #[test]
    fn same_metric_twice_at_a_step_is_an_error() {
        let err =
            parse_str("{\"step\": 2, \"loss\": 1.0}\n{\"step\": 2, \"loss\": 0.9}\n").unwrap_err();
        assert!(
            matches!(&err, Error::StepOrder { place, .. } if place == "line 2"),
            "{err}"
        );
    }
}
