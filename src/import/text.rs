//! Plain-text curves: torchtitan log lines, or whitespace-separated columns.
//!
//! torchtitan's metrics logger prints (with ANSI colours, stripped here):
//! ```text
//! [rank0]:[titan] 2025-01-01 12:00:00,123 - root - INFO - step:  1  loss: 12.2541  grad_norm:  3.2500  memory: 45.23GiB(47.61%)  tps: 1,234  tflops: 56.78  mfu: 5.74%
//! ```
//! A metric line has `step: <n>` and `loss: <x>`; other lines are skipped, as are
//! `validate step:` lines (evaluation, another grid). Each `key: value` pair becomes a series;
//! thousands separators are removed and a unit suffix is kept in the name: `memory` in GiB →
//! `memory_gib`, `mfu` in % → `mfu_pct`. A `loss` that is not a number is an error naming the line;
//! another unreadable value (e.g. `mfu: N/A`) is skipped.
//!
//! **Config.** With `--job.print_args`, torchtitan logs its whole job config once as a Python
//! dict: `Running with args: {'job': {...}, 'training': {'seed': 42, ...}}`. Its sections become
//! config keys under their source names (`training.lr`); `training.seed` or `debug.seed` becomes
//! `seeds["init"]`. Logs of several ranks (`[rank0]:`, `[rank1]:`) are split and one rank is read
//! (`--rank N`, default: the lowest with metric lines; `ranks.rs`).
//!
//! A file with no such line is read as columns: an optional header line (`step loss grad_norm`),
//! then rows of numbers, the first column the step. Without a header there must be two columns,
//! `step loss`. Lines starting with `#` are comments.

use super::ranks::Ranked;
use super::{parse_number, parse_step, pyvalue, quote, Collector, Format};
use crate::error::{Error, Result};
use crate::trace::{Precision, Trace};
use std::borrow::Cow;
use std::path::Path;

/// Removes ANSI escape sequences (`ESC [ … final-byte` and two-byte `ESC x`).
fn strip_ansi(line: &str) -> Cow<'_, str> {
    if !line.contains('\u{1b}') {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            // CSI: parameters and intermediates end at a byte in '@'..='~'.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    Cow::Owned(out)
}

/// A torchtitan metric line: its step and the `key: value` tokens after `step:`.
struct StepLine<'a> {
    step: u64,
    pairs: Vec<(&'a str, &'a str)>,
}

fn step_line(line: &str) -> Option<StepLine<'_>> {
    let at = line.match_indices("step:").map(|(i, _)| i).find(|&i| {
        let before = line.get(..i).unwrap_or_default();
        let boundary = !before.ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let word = before.split_whitespace().next_back().unwrap_or_default();
        boundary && !["validate", "validation", "eval"].contains(&word.to_lowercase().as_str())
    })?;
    let mut tokens = line.get(at..)?.split_whitespace();
    tokens.next(); // "step:"
    let step = parse_step(tokens.next()?)?;
    let mut pairs = Vec::new();
    let mut key = None;
    for tok in tokens {
        match (key.take(), tok.strip_suffix(':')) {
            (_, Some(k)) => key = Some(k),
            (Some(k), None) => pairs.push((k, tok)),
            (None, None) => {}
        }
    }
    pairs
        .iter()
        .any(|(k, _)| *k == "loss")
        .then_some(StepLine { step, pairs })
}

/// Whether any line is a torchtitan metric line (for detection).
pub(super) fn looks_like_torchtitan(text: &str) -> bool {
    text.lines().any(|l| step_line(&strip_ansi(l)).is_some())
}

/// Whether the text is a column table of numbers (for detection, tried last).
pub(super) fn looks_like_columns(text: &str) -> bool {
    let mut rows = content_lines(text).map(|(_, l)| l.split_whitespace().collect::<Vec<_>>());
    let numeric = |r: &[&str]| {
        r.len() >= 2
            && r.first().and_then(|s| parse_step(s)).is_some()
            && r.iter().skip(1).all(|s| parse_number(s).is_some())
    };
    match (rows.next(), rows.next()) {
        (Some(first), _) if numeric(&first) => first.len() == 2,
        (Some(header), Some(row)) => numeric(&row) && header.len() == row.len(),
        _ => false,
    }
}

fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Splits `45.23GiB(47.61%)` into `45.23` and the unit `GiB`; removes `,` separators first.
fn number_and_unit(token: &str) -> Option<(f64, String)> {
    let clean = token.replace(',', "");
    if let Some(x) = parse_number(&clean) {
        return Some((x, String::new()));
    }
    let end = clean
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && c == '-')))
        .map_or(clean.len(), |(i, _)| i);
    let x = clean.get(..end)?.parse::<f64>().ok()?;
    let rest = clean.get(end..).unwrap_or_default();
    let unit: String = rest.chars().take_while(|c| *c != '(').collect();
    Some((x, unit))
}

fn unit_suffix(unit: &str) -> String {
    match unit {
        "" => String::new(),
        "%" => "_pct".into(),
        u => format!("_{}", u.to_lowercase()),
    }
}

/// Parses torchtitan lines or, when there are none, a column table.
pub(super) fn parse(text: &str, path: &Path, rank: Option<u32>) -> Result<Trace> {
    if looks_like_torchtitan(text) {
        parse_torchtitan(text, path, rank)
    } else {
        parse_columns(text, path)
    }
}

/// The line torchtitan logs its job config on (`--job.print_args`).
const JOB_CONFIG: &str = "Running with args: ";

fn parse_torchtitan(text: &str, path: &Path, rank: Option<u32>) -> Result<Trace> {
    let mut c = Collector::new(path);
    let ranked = Ranked::split(text);
    let is_metric = |l: &str| step_line(&strip_ansi(l)).is_some();
    let chosen = ranked.choose(rank, is_metric, path, &mut c)?;
    for (lineno, raw) in ranked.lines(chosen) {
        let line = strip_ansi(raw);
        let Some(parsed) = step_line(&line) else {
            continue;
        };
        let place = format!("line {lineno}");
        for (key, value) in parsed.pairs {
            let Some((x, unit)) = number_and_unit(value) else {
                if key == "loss" {
                    return Err(Error::Parse {
                        path: path.to_path_buf(),
                        place,
                        expected: "a number after `loss:`".into(),
                        got: quote(value),
                    });
                }
                continue;
            };
            let name = format!("{key}{}", unit_suffix(&unit));
            c.push(&name, parsed.step, x, Precision::F64, || place.clone())?;
        }
    }
    'ranks: for lines in ranked.config_candidates(chosen) {
        for (lineno, raw) in lines {
            let Some(at) = raw.find(JOB_CONFIG) else {
                continue;
            };
            let printed = raw.get(at + JOB_CONFIG.len()..).unwrap_or_default();
            let config = pyvalue::dict(&strip_ansi(printed)).ok_or_else(|| Error::Parse {
                path: path.to_path_buf(),
                place: format!("line {lineno}"),
                expected: "a printed dict after `Running with args:`".into(),
                got: quote(printed),
            })?;
            c.add_config(config, &format!("line {lineno}"))?;
            break 'ranks;
        }
    }
    c.finish(Format::TorchtitanText)
}

fn parse_columns(text: &str, path: &Path) -> Result<Trace> {
    let mut lines = content_lines(text).peekable();
    let header: Vec<String> = match lines.peek() {
        Some((_, l)) if l.split_whitespace().next().and_then(parse_step).is_none() => {
            let names = l.split_whitespace().map(str::to_string).collect();
            lines.next();
            names
        }
        _ => vec!["step".into(), "loss".into()],
    };
    let mut c = Collector::new(path);
    for (lineno, line) in lines {
        let place = format!("line {lineno}");
        let bad = |expected: String| Error::Parse {
            path: path.to_path_buf(),
            place: place.clone(),
            expected,
            got: quote(line),
        };
        let cells: Vec<&str> = line.split_whitespace().collect();
        if cells.len() != header.len() {
            return Err(bad(format!(
                "{} columns ({})",
                header.len(),
                header.join(" ")
            )));
        }
        let step = cells
            .first()
            .and_then(|s| parse_step(s))
            .ok_or_else(|| bad("a step (non-negative integer) in the first column".into()))?;
        for (name, cell) in header.iter().zip(&cells).skip(1) {
            let x =
                parse_number(cell).ok_or_else(|| bad(format!("a number in column `{name}`")))?;
            c.push(name, step, x, Precision::F64, || place.clone())?;
        }
    }
    c.finish(Format::TorchtitanText)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{GRAD_NORM, LM_LOSS};

    fn parse_str(text: &str) -> Result<Trace> {
        parse(text, Path::new("titan.log"), None)
    }

    #[test]
    fn job_config_and_two_interleaved_ranks() {
        // torchrun --tee 3 prefixes each rank's lines; train.py logs the config with print_args.
        let log = "[rank0]:[titan] 2025-01-01 12:00:00,001 - root - INFO - Running with args: {'job': {'description': 'llama3 debug'}, 'training': {'lr': 0.0008, 'seed': 42, 'steps': 2}}\n\
            [rank1]:[titan] 2025-01-01 12:00:00,001 - root - INFO - Running with args: {'job': {'description': 'llama3 debug'}, 'training': {'lr': 0.0008, 'seed': 42, 'steps': 2}}\n\
            [rank0]:[titan] 2025-01-01 12:00:01,123 - root - INFO - step:  1  loss: 12.2541  grad_norm:  3.2500\n\
            [rank1]:[titan] 2025-01-01 12:00:01,124 - root - INFO - step:  1  loss: 12.2541  grad_norm:  3.2500\n\
            [rank1]:[titan] 2025-01-01 12:00:02,124 - root - INFO - step:  2  loss: 11.0  grad_norm:  2.0\n\
            [rank0]:[titan] 2025-01-01 12:00:02,123 - root - INFO - step:  2  loss: 11.5  grad_norm:  2.0\n";
        let t = parse_str(log).unwrap();
        assert_eq!(t.lm_loss().unwrap(), &[12.2541, 11.5]);
        assert_eq!(t.config["training"]["lr"], serde_json::json!(0.0008));
        assert_eq!(t.seeds["init"], 42);
        assert_eq!(t.config["import"]["rank"], 0);
        assert_eq!(t.config["import"]["ranks"], serde_json::json!([0, 1]));
        let t = parse(log, Path::new("titan.log"), Some(1)).unwrap();
        assert_eq!(t.lm_loss().unwrap(), &[12.2541, 11.0]);
        assert!(t.config["import"].get("rank_choice").is_none());
    }

    #[test]
    fn torchtitan_lines_with_colours_are_read() {
        // The f-string of torchtitan's MetricsProcessor.log, with its Color codes.
        let log = "[rank0]:[titan] 2025-01-01 12:00:00,001 - root - INFO - Training starts at step 1\n\
            [rank0]:[titan] 2025-01-01 12:00:01,123 - root - INFO - \u{1b}[31mstep:  1  \u{1b}[32mloss: 12.2541  \u{1b}[38;2;255;165;0mgrad_norm:  3.2500  \u{1b}[36mmemory: 45.23GiB(47.61%)  \u{1b}[34mtps: 1,234  \u{1b}[36mtflops: 56.78  \u{1b}[35mmfu: 5.74%\u{1b}[39m\n\
            [rank0]:[titan] 2025-01-01 12:00:02,000 - root - INFO - validate step: 1  loss: 13.0\n\
            [rank0]:[titan] 2025-01-01 12:00:02,123 - root - INFO - step:  2  loss: 11.5000  grad_norm:  2.0000  memory: 45.23GiB(47.61%)  tps: 12,345  tflops: 56.78  mfu: N/A\n";
        let t = parse_str(log).unwrap();
        assert_eq!(t.steps, vec![1, 2]);
        assert_eq!(t.lm_loss().unwrap(), &[12.2541, 11.5]);
        assert_eq!(t.metric(GRAD_NORM).unwrap(), &[3.25, 2.0]);
        assert_eq!(t.metric("memory_gib").unwrap(), &[45.23, 45.23]);
        assert_eq!(t.metric("tps").unwrap(), &[1234.0, 12345.0]);
        // mfu is missing at step 2 (N/A): it keeps its own steps, never padded with NaN.
        assert_eq!(t.points("mfu_pct").unwrap().0, &[1]);
        assert!(t.metric("mfu_pct").is_none());
    }

    #[test]
    fn bad_torchtitan_loss_names_the_line() {
        let err = parse_str("x\nstep: 1  loss: 1.0\nstep: 2  loss: ???\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("titan.log: line 3") && msg.contains("???"),
            "{msg}"
        );
    }

    #[test]
    fn two_columns_without_header_are_step_and_loss() {
        let t = parse_str("# run 1\n1 2.5\n2 nan\n\n3 2.25\n").unwrap();
        assert_eq!(t.steps, vec![1, 2, 3]);
        let loss = t.lm_loss().unwrap();
        assert!(loss[1].is_nan() && loss[2] == 2.25);
    }

    #[test]
    fn header_names_the_columns_and_bad_rows_name_the_line() {
        let t = parse_str("step loss grad_norm\n1 2.5 1.0\n2 2.4 0.9\n").unwrap();
        assert_eq!(t.metric(GRAD_NORM).unwrap(), &[1.0, 0.9]);
        let err = parse_str("step loss\n1 2.5\n2 x\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = parse_str("1 2.5\n2 2.4 7\n").unwrap_err();
        assert!(err.to_string().contains("2 columns"), "{err}");
        let err = parse_str("1 2.5\n1 2.4\n").unwrap_err();
        assert!(matches!(err, Error::StepOrder { .. }), "{err}");
        assert!(parse_str("step loss\n").is_err());
        assert!(t.series.contains_key(LM_LOSS));
    }
}
