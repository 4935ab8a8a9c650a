//! Megatron-LM training logs (stdout of `pretrain_gpt.py`).
//!
//! Megatron's `training_log` prints one line per `--log-interval`:
//! ```text
//!  [2024-05-01 10:00:00] iteration       10/     100 | consumed samples:          320 | elapsed time per iteration (ms): 1234.5 | learning rate: 1.500000E-04 | global batch size:    32 | lm loss: 1.085234E+01 | loss scale: 1.0 | grad norm: 2.345 | number of skipped iterations:   0 | number of nan iterations:   0 |
//! ```
//! An iteration line is one whose first `|`-field contains `iteration <n>/<total>`; every other
//! line (arguments dump, checkpoint messages, `validation loss at iteration 100 | …`, memory
//! reports) is noise and skipped. Every `key: value` field of an iteration line is imported:
//! `lm loss` → `lm_loss`, `learning rate` → `lr`, `grad norm` → `grad_norm`,
//! `elapsed time per iteration (ms)` → `step_time_s` (converted to seconds),
//! `number of skipped iterations` → `skipped_iterations`, `number of nan iterations` →
//! `nan_iterations`, the rest sanitised (`loss scale` → `loss_scale`). A field that is not
//! `key: number` makes the line malformed: an error naming the line.
//!
//! Megatron omits `lm loss` (and `grad norm`) on a line whose iterations were all skipped (fp16
//! overflow); such steps are not on the `lm_loss` grid, and the module-wide grid policy applies.
//! A log of a resumed run that re-ran steps has repeated iterations: an [`Error::StepOrder`]
//! naming the line (cut the log at the resume point).
//!
//! **Config.** Megatron prints every argument once at start-up (`_print_args`, rank 0):
//! ```text
//! ------------------------ arguments ------------------------
//!   lr .............................................. 0.00015
//!   seed ............................................ 1234
//! -------------------- end of arguments ---------------------
//! ```
//! Each becomes a top-level config key under its argument name (`lr`, `seed`), its value read as
//! Python prints it (see `pyvalue.rs`); `seed` becomes `seeds["init"]`. An argument twice in the
//! block is an [`Error::DuplicateKey`]. Logs of several ranks (`[rank0]:` prefixes) are split
//! (`ranks.rs`); the arguments are taken from whichever rank printed them.

use super::ranks::{Line, Ranked};
use super::{parse_number, pyvalue, quote, Collector, Format};
use crate::error::{Error, Result};
use crate::trace::{Precision, Trace, STEP_TIME};
use serde_json::Map;
use std::path::Path;

/// Whether any line is a Megatron iteration line (for detection).
pub(super) fn looks_like(text: &str) -> bool {
    text.lines().any(|l| iteration_step(l).is_some())
}

/// Returns the step of an iteration line, or `None` for any other line.
fn iteration_step(line: &str) -> Option<u64> {
    let (head, _) = line.split_once('|')?;
    head.match_indices("iteration").find_map(|(i, word)| {
        let rest = head.get(i + word.len()..)?;
        let rest = rest.strip_prefix(char::is_whitespace)?.trim_start();
        let digits_end = rest.find(|c: char| !c.is_ascii_digit())?;
        let (digits, after) = rest.split_at(digits_end);
        after.trim_start().strip_prefix('/')?;
        digits.parse().ok()
    })
}

/// Maps a field key to the raw series name and the factor that converts it to lossdiff's unit.
fn field_name(key: &str) -> (&str, f64) {
    match key {
        "elapsed time per iteration (ms)" => (STEP_TIME, 1e-3),
        "number of skipped iterations" => ("skipped_iterations", 1.0),
        "number of nan iterations" => ("nan_iterations", 1.0),
        other => (other, 1.0),
    }
}

/// Parses a Megatron log into a trace, reading `rank` (or the default rank) of a rank-prefixed log.
pub(super) fn parse(text: &str, path: &Path, rank: Option<u32>) -> Result<Trace> {
    let mut c = Collector::new(path);
    let ranked = Ranked::split(text);
    let chosen = ranked.choose(rank, |l| iteration_step(l).is_some(), path, &mut c)?;
    let mut lines_read = 0usize;
    for (lineno, line) in ranked.lines(chosen) {
        let Some(step) = iteration_step(line) else {
            continue;
        };
        lines_read += 1;
        let place = format!("line {lineno}");
        let fields = line
            .split('|')
            .skip(1)
            .map(str::trim)
            .filter(|f| !f.is_empty());
        for field in fields {
            let malformed = |expected: &str| Error::Parse {
                path: path.to_path_buf(),
                place: place.clone(),
                expected: expected.into(),
                got: quote(field),
            };
            let (key, value) = field
                .split_once(':')
                .ok_or_else(|| malformed("a `key: value` field"))?;
            let x = parse_number(value).ok_or_else(|| malformed("a number after the `:`"))?;
            let (name, factor) = field_name(key.trim());
            c.push(name, step, x * factor, Precision::F64, || place.clone())?;
        }
    }
    c.note("iteration_lines", lines_read.into());
    if lines_read == 0 {
        return Err(Error::EmptyInput {
            path: path.to_path_buf(),
            reason: "no ` iteration <n>/<total> | … |` lines".into(),
        });
    }
    for lines in ranked.config_candidates(chosen) {
        if arguments(&lines, path, &mut c)? {
            break;
        }
    }
    c.finish(Format::MegatronLog)
}

/// Reads every `arguments` block of `lines` into the config; returns whether there was one.
fn arguments(lines: &[Line<'_>], path: &Path, c: &mut Collector<'_>) -> Result<bool> {
    let mut found = false;
    let mut block: Option<(usize, Map<String, serde_json::Value>)> = None;
    for &(lineno, line) in lines {
        let t = line.trim();
        let rule = |title: &str| {
            t.starts_with("---") && t.ends_with("---") && t.trim_matches('-').trim() == title
        };
        if rule("arguments") {
            block = Some((lineno, Map::new()));
            continue;
        }
        let Some((start, args)) = block.as_mut() else {
            continue;
        };
        if rule("end of arguments") {
            let args = std::mem::take(args);
            c.add_config(args, &format!("the arguments block at line {start}"))?;
            block = None;
            found = true;
            continue;
        }
        // `  name ....... value`: other lines inside the block (a warning) are not arguments.
        let Some((name, rest)) = t.split_once(' ') else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix('.') else {
            continue;
        };
        let value = pyvalue::scalar(value.trim_start_matches('.'));
        if args.insert(name.to_string(), value).is_some() {
            return Err(Error::DuplicateKey {
                path: path.to_path_buf(),
                place: format!("line {lineno} (arguments block)"),
                key: quote(name),
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{GRAD_NORM, LM_LOSS, LR};
    use approx::assert_relative_eq;

    const LINE_10: &str = " [2024-05-01 10:00:00] iteration       10/     100 | consumed samples:          320 | elapsed time per iteration (ms): 1234.5 | learning rate: 1.500000E-04 | global batch size:    32 | lm loss: 1.085234E+01 | loss scale: 1.0 | grad norm: 2.345 | number of skipped iterations:   0 | number of nan iterations:   0 |";

    fn parse_str(text: &str) -> Result<Trace> {
        parse(text, Path::new("train.log"), None)
    }

    /// The start of a Megatron-LM log: `_print_args` on rank 0, then iteration lines.
    fn log(lr: &str, seed: u64, prefix: &str) -> String {
        let mut s =
            format!("{prefix}------------------------ arguments ------------------------\n");
        for (arg, v) in [
            ("adam_beta2", "0.95".to_string()),
            ("lr", lr.to_string()),
            ("lr_decay_style", "cosine".to_string()),
            ("seed", seed.to_string()),
            ("use_flash_attn", "False".to_string()),
        ] {
            s += &format!("{prefix}  {arg} {} {v}\n", ".".repeat(48 - arg.len()));
        }
        s += &format!("{prefix}-------------------- end of arguments ---------------------\n");
        s += &format!("{prefix}{LINE_10}\n");
        s
    }

    #[test]
    fn the_arguments_block_is_the_config_and_seed() {
        let t = parse_str(&log("0.00015", 1234, "")).unwrap();
        assert_eq!(t.config["lr"], serde_json::json!(0.00015));
        assert_eq!(t.config["lr_decay_style"], "cosine");
        assert_eq!(t.config["use_flash_attn"], false);
        assert_eq!(t.seeds["init"], 1234);
    }

    #[test]
    fn an_argument_twice_is_refused() {
        let text = log("0.00015", 1, "").replace("  seed", "  lr ...... 1\n  seed");
        let err = parse_str(&text).unwrap_err();
        assert!(
            matches!(&err, Error::DuplicateKey { key, .. } if key == "\"lr\""),
            "{err}"
        );
    }

    #[test]
    fn ranks_are_split_and_the_arguments_come_from_rank_0() {
        // Pipeline parallel: rank 0 prints the arguments, the last rank (1) the iterations.
        let args = log("0.00015", 1, "[rank0]:");
        let args: String = args
            .lines()
            .filter(|l| !l.contains("iteration"))
            .map(|l| format!("{l}\n"))
            .collect();
        let text = format!("{args}[rank1]:{LINE_10}\n");
        let t = parse_str(&text).unwrap();
        assert_eq!(t.steps, vec![10]);
        assert_eq!(t.config["lr"], serde_json::json!(0.00015));
        assert_eq!(t.config["import"]["rank"], 1);
        assert!(t.config["import"]["rank_choice"]
            .as_str()
            .unwrap()
            .contains("--rank"));
        let err = parse(&text, Path::new("train.log"), Some(5)).unwrap_err();
        assert!(
            err.to_string()
                .contains("one of the ranks in the file: 0, 1"),
            "{err}"
        );
    }

    #[test]
    fn iteration_lines_are_read_and_noise_skipped() {
        let line_20 = LINE_10
            .replace("      10/", "      20/")
            .replace("1.085234E+01", "9.5")
            .replace("grad norm: 2.345", "grad norm: nan")
            .replace("nan iterations:   0", "nan iterations:   1");
        let log = format!(
            "using world size: 8\n saving checkpoint at iteration      10 to /ckpt\n\
             {LINE_10}\n[Rank 0] (after 10 iterations) memory (MB) | allocated: 1.0 |\n\
             {line_20}\n validation loss at iteration 20 | lm loss value: 9.0E+00 |\n"
        );
        let t = parse_str(&log).unwrap();
        assert_eq!(t.steps, vec![10, 20]);
        assert_relative_eq!(t.lm_loss().unwrap()[0], 10.85234, epsilon = 1e-12);
        assert_relative_eq!(t.metric(LR).unwrap()[0], 1.5e-4, epsilon = 1e-18);
        assert_relative_eq!(t.metric(STEP_TIME).unwrap()[0], 1.2345, epsilon = 1e-12);
        assert!(t.metric(GRAD_NORM).unwrap()[1].is_nan());
        assert_eq!(t.metric("nan_iterations").unwrap(), &[0.0, 1.0]);
        assert_eq!(t.metric("skipped_iterations").unwrap(), &[0.0, 0.0]);
        assert_eq!(t.metric("consumed_samples").unwrap(), &[320.0, 320.0]);
        assert_eq!(t.config["import"]["iteration_lines"], 2);
    }

    #[test]
    fn skipped_iteration_without_loss_is_off_the_loss_grid() {
        // Megatron prints no `lm loss` when every iteration of the interval was skipped.
        let skipped = " iteration        2/     100 | learning rate: 1.0E-04 | loss scale: 2.0 | number of skipped iterations:   1 | number of nan iterations:   0 |";
        let first = LINE_10.replace("      10/", "       1/");
        let t = parse_str(&format!("{first}\n{skipped}\n{LINE_10}\n")).unwrap();
        assert_eq!(t.steps, vec![1, 10]);
        assert_eq!(t.points(LR).unwrap().0, &[1, 2, 10]);
        assert!(t.series.contains_key(LM_LOSS));
    }

    #[test]
    fn malformed_iteration_line_names_the_line() {
        let bad = LINE_10.replace("lm loss: 1.085234E+01", "lm loss: 1.08x");
        let err = parse_str(&format!("noise\n{bad}\n")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("train.log: line 2") && msg.contains("lm loss: 1.08x"),
            "{msg}"
        );
        let bad = LINE_10.replace("| loss scale: 1.0 |", "| loss scale 1.0 |");
        let err = parse_str(&bad).unwrap_err();
        assert!(err.to_string().contains("`key: value`"), "{err}");
    }

    #[test]
    fn repeated_iterations_of_a_resumed_run_are_an_error() {
        let err = parse_str(&format!("{LINE_10}\n{LINE_10}\n")).unwrap_err();
        assert!(
            matches!(&err, Error::StepOrder { place, step: 10, previous: 10, .. } if place == "line 2"),
            "{err}"
        );
    }

    #[test]
    fn a_log_without_iterations_is_empty() {
        let err = parse_str("hello\nworld\n").unwrap_err();
        assert!(matches!(err, Error::EmptyInput { .. }), "{err}");
    }
}
