//! Hugging Face `Trainer` checkpoints: `trainer_state.json`, with the `config.json` and
//! `training_args.json` beside it when present.
//!
//! `log_history` is a list of objects, each with a `step`: training logs (`loss`, `grad_norm`,
//! `learning_rate`, `epoch`) every `logging_steps`, evaluation logs (`eval_loss`, …) every
//! `eval_steps`, and a last summary entry (`train_runtime`, `train_loss` = the mean over the run).
//! Training and evaluation entries at one step are merged; each metric keeps its own cadence, so
//! `eval_loss` is kept at its steps. The summary entry holds results, not a step's metrics: it is
//! skipped (noted in `config.import.skipped_summary_step`). `NaN` and `Infinity` are read as
//! `json.dumps` writes them; `null` loss is refused like in JSON Lines.
//!
//! Config, under the source file's name: the run settings of `trainer_state.json`
//! (`trainer_state.logging_steps`, `.eval_steps`, `.save_steps`, `.max_steps`,
//! `.num_train_epochs`, `.train_batch_size`), the model's `config.json` (`model.*`) and
//! `training_args.json` (`training_args.*`; its `seed` becomes `seeds["init"]`). The Trainer itself
//! saves its arguments only as `training_args.bin`, a pickle lossdiff does not execute or read;
//! its presence is noted, and `args.to_json_string()` saved as `training_args.json` is read.

use super::{json, parse_step, quote, Collector, Format};
use crate::error::{Error, Result};
use crate::trace::{parse_non_finite, Precision, Trace};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The trainer_state keys that are run settings (the others are results or state).
const SETTINGS: [&str; 6] = [
    "logging_steps",
    "eval_steps",
    "save_steps",
    "max_steps",
    "num_train_epochs",
    "train_batch_size",
];

/// Whether a JSON document's top-level keys are a trainer state's (for detection).
pub(super) fn looks_like(top_keys: &[&str]) -> bool {
    top_keys.contains(&"log_history") && top_keys.contains(&"global_step")
}

/// Parses a `trainer_state.json` and the config files beside it.
pub(super) fn parse(text: &str, path: &Path) -> Result<Trace> {
    let top = json::parse_document(text, path)?;
    let bad = |place: String, expected: &str, got: &Value| Error::Parse {
        path: path.to_path_buf(),
        place,
        expected: expected.into(),
        got: quote(&got.to_string()),
    };
    let history = match top.get("log_history") {
        Some(Value::Array(h)) => h,
        other => {
            let got = other.cloned().unwrap_or(Value::Null);
            return Err(bad(
                "key \"log_history\"".into(),
                "a list of log entries",
                &got,
            ));
        }
    };
    let mut c = Collector::new(path);
    // Training and evaluation entries at one step both carry `epoch`: the same value twice is
    // one point; a different value is a repeated step (refused by the collector).
    let mut last: std::collections::HashMap<String, (u64, u64)> = Default::default();
    for (i, entry) in history.iter().enumerate() {
        let place = format!("log_history[{i}]");
        let Value::Object(entry) = entry else {
            return Err(bad(place, "an object", entry));
        };
        let step = entry
            .get("step")
            .and_then(|s| parse_step(&s.to_string()))
            .ok_or_else(|| {
                bad(
                    place.clone(),
                    "a non-negative integer `step`",
                    &Value::Object(entry.clone()),
                )
            })?;
        if entry.contains_key("train_runtime") {
            c.note("skipped_summary_step", json!(step));
            continue;
        }
        for (key, v) in entry {
            let x = match v {
                _ if key == "step" => continue,
                Value::Number(n) => n.as_f64(),
                Value::String(s) => parse_non_finite(s),
                Value::Null if key == "loss" || key == "eval_loss" => {
                    return Err(bad(
                        format!("{place}, key `{key}`"),
                        "a number (write NaN for a NaN loss)",
                        v,
                    ));
                }
                _ => None,
            };
            if let Some(x) = x {
                if last.insert(key.clone(), (step, x.to_bits())) == Some((step, x.to_bits())) {
                    continue;
                }
                c.push(key, step, x, Precision::F64, || place.clone())?;
            }
        }
    }
    let settings: Map<String, Value> = SETTINGS
        .iter()
        .filter_map(|k| Some((k.to_string(), top.get(*k)?.clone())))
        .filter(|(_, v)| !v.is_null())
        .collect();
    if !settings.is_empty() {
        c.add_config(
            Map::from_iter([("trainer_state".into(), Value::Object(settings))]),
            "trainer_state.json",
        )?;
    }
    siblings(path, &mut c)?;
    c.finish(Format::HfTrainerState)
}

/// Reads `config.json` and `training_args.json` from the checkpoint directory, if there.
fn siblings(path: &Path, c: &mut Collector<'_>) -> Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let mut read = Vec::new();
    for (file, section) in [
        ("config.json", "model"),
        ("training_args.json", "training_args"),
    ] {
        let p = dir.join(file);
        if !p.is_file() {
            continue;
        }
        let text = super::limits::read_input_to_string(&p)?;
        let Value::Object(cfg) = json::parse_document(&text, &p)? else {
            return Err(Error::Parse {
                path: p,
                place: "the top level".into(),
                expected: "an object of settings".into(),
                got: "another JSON value".into(),
            });
        };
        c.add_config(
            Map::from_iter([(section.to_string(), Value::Object(cfg))]),
            file,
        )?;
        read.push(file);
    }
    if !read.is_empty() {
        c.note("config_files", json!(read));
    }
    if dir.join("training_args.bin").is_file() && !read.contains(&"training_args.json") {
        c.note(
            "training_args_bin",
            json!("present but not read (a pickle); save args.to_json_string() as training_args.json beside it"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{detect, import};
    use crate::trace::{GRAD_NORM, LM_LOSS, LR};

    /// A trainer_state.json as transformers' `TrainerState.save_to_json` writes it (indent 2,
    /// sorted keys), logging every 10 steps and evaluating every 20, with a NaN grad norm.
    const STATE: &str = r#"{
  "best_metric": null,
  "best_model_checkpoint": null,
  "epoch": 1.0,
  "eval_steps": 20,
  "global_step": 40,
  "is_hyper_param_search": false,
  "is_local_process_zero": true,
  "is_world_process_zero": true,
  "log_history": [
    {"epoch": 0.25, "grad_norm": 1.5, "learning_rate": 4.5e-05, "loss": 2.75, "step": 10},
    {"epoch": 0.5, "grad_norm": NaN, "learning_rate": 4e-05, "loss": 2.5, "step": 20},
    {"epoch": 0.5, "eval_loss": 2.6, "eval_runtime": 0.5, "step": 20},
    {"epoch": 0.75, "grad_norm": 1.25, "learning_rate": 3.5e-05, "loss": 2.25, "step": 30},
    {"epoch": 1.0, "grad_norm": 1.0, "learning_rate": 3e-05, "loss": 2.0, "step": 40},
    {"epoch": 1.0, "eval_loss": 2.4, "eval_runtime": 0.5, "step": 40},
    {"epoch": 1.0, "step": 40, "total_flos": 1.0, "train_loss": 2.375, "train_runtime": 9.5}
  ],
  "logging_steps": 10,
  "max_steps": 40,
  "num_train_epochs": 1,
  "save_steps": 500,
  "total_flos": 1.0,
  "train_batch_size": 8,
  "trial_name": null,
  "trial_params": null
}
"#;

    #[test]
    fn trainer_state_with_config_files_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trainer_state.json");
        std::fs::write(&path, STATE).unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"model_type": "gpt2", "n_layer": 2, "attn_pdrop": 0.1}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("training_args.json"),
            r#"{"learning_rate": 5e-05, "seed": 42}"#,
        )
        .unwrap();
        assert_eq!(detect(STATE.as_bytes()), Some(Format::HfTrainerState));
        let t = import(&path, None).unwrap();
        assert_eq!(t.steps, vec![10, 20, 30, 40]);
        assert_eq!(t.lm_loss().unwrap(), &[2.75, 2.5, 2.25, 2.0]);
        assert!(t.metric(GRAD_NORM).unwrap()[1].is_nan());
        assert_eq!(t.metric(LR).unwrap()[0], 4.5e-5);
        // Evaluation every 20 steps keeps its cadence.
        assert_eq!(
            t.points("eval_loss"),
            Some((&[20u64, 40][..], &[2.6, 2.4][..]))
        );
        assert_eq!(t.config["import"]["skipped_summary_step"], 40);
        assert_eq!(t.config["trainer_state"]["logging_steps"], 10);
        assert_eq!(t.config["model"]["attn_pdrop"], 0.1);
        assert_eq!(t.config["training_args"]["learning_rate"], 5e-5);
        assert_eq!(t.seeds["init"], 42);
        assert_eq!(t.config["import"]["sources"][LM_LOSS], "loss");
    }

    #[test]
    fn a_pickled_training_args_is_noted_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trainer_state.json");
        std::fs::write(&path, STATE).unwrap();
        std::fs::write(dir.path().join("training_args.bin"), b"\x80\x04PK").unwrap();
        let t = import(&path, None).unwrap();
        assert!(t.config["import"]["training_args_bin"]
            .as_str()
            .unwrap()
            .contains("not read"));
        assert!(t.seeds.is_empty());
    }

    #[test]
    fn broken_history_names_the_entry() {
        let text = STATE.replace(
            r#""loss": 2.25, "step": 30"#,
            r#""loss": 2.25, "step": "x""#,
        );
        let err = parse(&text, Path::new("trainer_state.json")).unwrap_err();
        assert!(err.to_string().contains("log_history[3]"), "{err}");
        let text = STATE.replace(r#""loss": 2.25"#, r#""loss": null"#);
        let err = parse(&text, Path::new("trainer_state.json")).unwrap_err();
        assert!(
            err.to_string().contains("log_history[3], key `loss`"),
            "{err}"
        );
    }
}
