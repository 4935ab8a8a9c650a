//! JSON Lines metric logs: one object per line, `{"step": 1, "loss": 2.3, "lr": 1e-4}`.
//!
//! **Metric records.** The step is the first key present of [`STEP_KEYS`], as a non-negative
//! integer. Every other key with a number (or `NaN`, `Infinity`, `-Infinity` bare as Python's
//! `json.dumps` writes them, or the strings `"nan"`, `"inf"`, `"-inf"`) becomes a series; `loss`,
//! `lm_loss` and `train/loss` map to `lm_loss` by the module-wide alias rule. Text, lists and
//! nested objects are not metrics and are skipped; `null` means "not logged at this step", except
//! for the loss, where it is an error naming the line (JavaScript writes a NaN as `null`, so a
//! null loss may be a divergence; lossdiff does not guess). Rows that log different metrics at
//! the same step are merged; the same metric twice at a step, or a step going backwards, is an
//! [`Error::StepOrder`]; a key twice in one line is an [`Error::DuplicateKey`].
//!
//! **Metadata records.** A line that is an object without any step key describes the run, first
//! line or later (a logger may write it when the run starts or resumes). Its keys:
//! - `format` (string): the writer's name, kept in `config.import.source_format`;
//! - `config` (object): settings under their source names, merged into the trace's config;
//! - `seed` (integer): the initialisation seed, `seeds["init"]` (pairs runs in comparisons);
//! - `seeds` (object of integers): seeds by role;
//! - `versions` (object of strings): library versions, into the trace's fingerprint (compared
//!   as environment, not config);
//! - any other key is a setting too, as if it were inside `config` (a bare `{"lr": 1e-3}` header).
//!
//! One exception: a line with a numeric loss key but no step is a metric line that lost its
//! step (a logger bug), not a header; it is an error naming the line.
//!
//! A setting given twice with different values is an error naming both lines.

use super::{json, parse_step, quote, Collector, Format, ALIASES};
use crate::error::{Error, Result};
use crate::trace::{parse_non_finite, Precision, Trace};
use serde_json::{Map, Value};
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
    let mut metadata_lines = 0usize;
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
        let Value::Object(row) = json::parse_line(line, path, &place)? else {
            return Err(bad("a JSON object".into()));
        };
        let Some(step_key) = STEP_KEYS.iter().find(|k| row.contains_key(**k)) else {
            // A numeric loss without a step is a metric line that lost its step, not a header.
            if row
                .iter()
                .any(|(k, v)| is_loss(k) && (v.is_number() || v.is_null()))
            {
                return Err(bad(format!(
                    "a step key (one of {}) on a line with a loss",
                    STEP_KEYS.join(", ")
                )));
            }
            metadata(&mut c, row, path, &place)?;
            metadata_lines += 1;
            continue;
        };
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
                Value::Null if is_loss(key) => {
                    return Err(bad(format!(
                        "a number for `{key}` (null is refused: write NaN for a NaN loss, or leave the key out when it was not logged)"
                    )))
                }
                _ => None,
            };
            if let Some(x) = x {
                c.push(key, step, x, Precision::F64, || place.clone())?;
            }
        }
    }
    if metadata_lines > 0 {
        c.note("metadata_lines", metadata_lines.into());
    }
    c.finish(Format::Jsonl).map_err(|e| match e {
        Error::EmptyInput { path, .. } if metadata_lines > 0 => Error::EmptyInput {
            path,
            reason: format!(
                "{metadata_lines} metadata line(s) but no line with a step key (one of {})",
                STEP_KEYS.join(", ")
            ),
        },
        other => other,
    })
}

fn is_loss(key: &str) -> bool {
    ALIASES[0].1.contains(&super::sanitize(key).as_str())
}

/// Reads a metadata record (an object without a step key) into the collector.
fn metadata(
    c: &mut Collector<'_>,
    row: Map<String, Value>,
    path: &Path,
    place: &str,
) -> Result<()> {
    let bad = |key: &str, expected: &str, got: &Value| Error::Parse {
        path: path.to_path_buf(),
        place: format!("{place}, key `{key}`"),
        expected: expected.into(),
        got: quote(&got.to_string()),
    };
    let mut settings = Map::new();
    for (key, v) in row {
        match key.as_str() {
            "format" => match v {
                Value::String(f) => c.note("source_format", Value::String(f)),
                other => return Err(bad("format", "a string", &other)),
            },
            "config" => match v {
                Value::Object(cfg) => c.add_config(cfg, place)?,
                other => return Err(bad("config", "an object of settings", &other)),
            },
            "seed" => {
                let seed = v
                    .as_u64()
                    .ok_or_else(|| bad("seed", "a non-negative integer", &v))?;
                c.add_seed("init", seed, place)?;
            }
            "seeds" => {
                let Value::Object(seeds) = v else {
                    return Err(bad("seeds", "an object of integer seeds", &v));
                };
                for (role, v) in seeds {
                    let seed = (v.as_u64()).ok_or_else(|| {
                        bad(&format!("seeds.{role}"), "a non-negative integer", &v)
                    })?;
                    c.add_seed(&role, seed, place)?;
                }
            }
            "versions" => {
                let Value::Object(versions) = v else {
                    return Err(bad("versions", "an object of version strings", &v));
                };
                for (lib, v) in versions {
                    let Value::String(version) = v else {
                        return Err(bad(&format!("versions.{lib}"), "a version string", &v));
                    };
                    c.add_fingerprint("versions", &lib, Value::String(version));
                }
            }
            _ => {
                settings.insert(key, v);
            }
        }
    }
    if !settings.is_empty() {
        c.add_config(settings, place)?;
    }
    Ok(())
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
        assert_eq!(t.points("eval_loss").unwrap().0, &[2]);
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
        assert!(err.to_string().contains("a step key (one of step"), "{err}");
        let err = parse_str("{\"run\": \"a\"}\n").unwrap_err();
        assert!(err.to_string().contains("no line with a step key"), "{err}");
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

#[cfg(test)]
mod metadata_tests {
    use super::*;
    use serde_json::json;

    fn parse_str(text: &str) -> Result<Trace> {
        parse(text, Path::new("metrics.jsonl"))
    }

    #[test]
    fn metadata_records_become_config_seeds_and_versions() {
        // The records a Python logger writes: a header, then steps, then a header again on resume.
        let text = r#"{"format": "lossdiff-jsonl/1", "config": {"model": {"attention_dropout": 0.1}, "lr": 0.001}, "seed": 1234, "seeds": {"data": 7}, "versions": {"torch": "2.5.1"}}
{"step": 1, "loss": 2.5}
{"step": 2, "loss": NaN, "grad_norm": Infinity}
{"config": {"lr": 0.001}, "run_name": "flash-a"}
{"step": 3, "loss": 2.25, "grad_norm": -Infinity}
"#;
        let t = parse_str(text).unwrap();
        assert_eq!(t.steps, vec![1, 2, 3]);
        assert!(t.lm_loss().unwrap()[1].is_nan());
        assert_eq!(
            t.points("grad_norm").unwrap().1,
            &[f64::INFINITY, f64::NEG_INFINITY]
        );
        assert_eq!(t.config["model"]["attention_dropout"], json!(0.1));
        assert_eq!(t.config["lr"], json!(0.001));
        // Unknown keys of a metadata record are settings too.
        assert_eq!(t.config["run_name"], json!("flash-a"));
        assert_eq!(t.config["import"]["source_format"], "lossdiff-jsonl/1");
        assert_eq!(t.config["import"]["metadata_lines"], 2);
        assert_eq!((t.seeds["init"], t.seeds["data"]), (1234, 7));
        assert_eq!(t.fingerprint["versions"]["torch"], "2.5.1");
    }

    #[test]
    fn a_setting_changed_by_a_later_record_is_an_error_naming_both_lines() {
        let text = "{\"config\": {\"lr\": 0.001}}\n{\"step\": 1, \"loss\": 2}\n{\"lr\": 0.002}\n";
        let err = parse_str(text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("line 3") && msg.contains("`lr`") && msg.contains("line 1"),
            "{msg}"
        );
    }

    #[test]
    fn badly_typed_metadata_names_the_key() {
        let err = parse_str("{\"seed\": \"abc\"}\n{\"step\": 1, \"loss\": 2}\n").unwrap_err();
        assert!(err.to_string().contains("line 1, key `seed`"), "{err}");
        let err = parse_str("{\"config\": [1]}\n").unwrap_err();
        assert!(err.to_string().contains("an object of settings"), "{err}");
    }

    /// See: issue 21 item 7 — `"loss"` twice in one line kept the last value.
    #[test]
    fn issue_21_loss_twice_in_a_line_is_refused() {
        let err = parse_str("{\"step\": 1, \"loss\": 2.5, \"loss\": 9.1}\n").unwrap_err();
        assert!(
            matches!(&err, Error::DuplicateKey { place, key, .. } if place == "line 1" && key == "\"loss\""),
            "{err}"
        );
    }

    /// See: issue 21 item 7 — `"loss": null` silently dropped the step.
    #[test]
    fn issue_21_null_loss_is_refused_naming_the_line() {
        let err =
            parse_str("{\"step\": 1, \"loss\": 2.5}\n{\"step\": 2, \"loss\": null}\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("metrics.jsonl: line 2") && msg.contains("null is refused"),
            "{msg}"
        );
        // A null in another metric means "not logged there": that series keeps its own steps.
        let t = parse_str(
            "{\"step\": 1, \"loss\": 2, \"gn\": 1}\n{\"step\": 2, \"loss\": 1, \"gn\": null}\n",
        )
        .unwrap();
        assert_eq!(t.points("gn").unwrap().0, &[1]);
    }

    /// See: issue 21 item 7 — the same step twice in JSONL.
    #[test]
    fn issue_21_duplicate_step_is_refused() {
        let err =
            parse_str("{\"step\": 5, \"loss\": 1}\n{\"step\": 5, \"loss\": 2}\n").unwrap_err();
        assert!(
            matches!(
                err,
                Error::StepOrder {
                    step: 5,
                    previous: 5,
                    ..
                }
            ),
            "{err}"
        );
    }
}
