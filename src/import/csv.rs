//! CSV tables: a step column plus metric columns (e.g. a Weights & Biases export).
//!
//! - **Delimiter**: `,`, or tab when the header has tabs and no commas.
//! - **Step column**: the first of [`STEP_KEYS`] present as a header, case-insensitively
//!   (`Step`, `_step`, `iteration`, …).
//! - **W&B chart exports** name columns `<run> - <metric>` (plus `__MIN`/`__MAX` columns); when
//!   every metric column has that form the run prefix is removed (and recorded in
//!   `config.import.run`). A file holding several runs needs `--run NAME` to pick one; without it
//!   the error lists the runs. The same column name twice is an [`Error::DuplicateKey`].
//! - **Config columns**: `config.<key>` or `config/<key>` columns (W&B's runs API flattened with
//!   pandas) are settings, not metrics: each must hold one value in every row that has one, and
//!   becomes config key `<key>` (`seed` → `seeds["init"]`).
//! - **Loss column**: chosen by the module-wide alias rule on the (prefix-free) column name, best
//!   first: `lm_loss`, `loss`, `train/lm_loss`, `train/loss`, `train_loss`, `training_loss`,
//!   `loss/train`. The others stay series under their sanitised names.
//! - **Cells**: empty means "not logged at this step". A column with any other non-number is not
//!   a metric (a run name, a media path): it is skipped and listed in
//!   `config.import.non_numeric_columns`, except a loss column, where it is an error naming the
//!   line and column.

use super::jsonl::STEP_KEYS;
use super::{parse_number, parse_step, pyvalue, quote, sanitize, Collector, Format, ALIASES};
use crate::error::{Error, Result};
use crate::trace::{Precision, Trace};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// Whether the first line is a delimited header with a step column (for detection).
pub(super) fn looks_like(text: &str) -> bool {
    let Some(header) = text.lines().find(|l| !l.trim().is_empty()) else {
        return false;
    };
    let delim = delimiter(header);
    header.contains(char::from(delim))
        && header
            .split(char::from(delim))
            .any(|cell| is_step_column(cell.trim().trim_matches('"')))
}

fn delimiter(header: &str) -> u8 {
    if header.contains('\t') && !header.contains(',') {
        b'\t'
    } else {
        b','
    }
}

fn is_step_column(name: &str) -> bool {
    STEP_KEYS.contains(&name.to_lowercase().as_str())
}

fn is_loss(name: &str) -> bool {
    ALIASES[0].1.contains(&sanitize(name).as_str())
}

/// Splits a W&B chart column `my-run - train/loss` into its run and metric.
fn wandb_split(column: &str) -> Option<(&str, &str)> {
    column.rsplit_once(" - ")
}

/// Returns the setting a column holds, for `config.<key>` / `config/<key>` columns.
fn config_key(column: &str) -> Option<&str> {
    (column.strip_prefix("config."))
        .or_else(|| column.strip_prefix("config/"))
        .filter(|k| !k.is_empty())
}

/// Parses a CSV table into a trace, reading run `run` of a multi-run export.
pub(super) fn parse(bytes: &[u8], path: &Path, run: Option<&str>) -> Result<Trace> {
    let first_line =
        String::from_utf8_lossy(bytes.split(|&b| b == b'\n').next().unwrap_or(b"")).into_owned();
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(delimiter(&first_line))
        .from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(path, &e))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let step_col = STEP_KEYS
        .iter()
        .find_map(|k| header.iter().position(|h| h.to_lowercase() == *k))
        .ok_or_else(|| Error::Parse {
            path: path.to_path_buf(),
            place: "line 1 (header)".into(),
            expected: format!("a step column, one of {}", STEP_KEYS.join(", ")),
            got: quote(&header.join(",")),
        })?;
    let mut seen = BTreeSet::new();
    if let Some(dup) = header
        .iter()
        .find(|h| !h.is_empty() && !seen.insert(h.as_str()))
    {
        return Err(Error::DuplicateKey {
            path: path.to_path_buf(),
            place: "line 1 (header)".into(),
            key: quote(dup),
        });
    }
    let mut c = Collector::new(path);
    let configs: Vec<(usize, &str)> = (header.iter().enumerate())
        .filter_map(|(i, h)| Some((i, config_key(h)?)))
        .collect();
    let metric_header: Vec<String> = (header.iter().enumerate())
        .map(|(i, h)| match configs.iter().any(|(c, _)| *c == i) {
            true => String::new(),
            false => h.clone(),
        })
        .collect();
    let names = metric_names(&metric_header, step_col, path, run, &mut c)?;
    let mut rows = Vec::new();
    for record in reader.records() {
        rows.push(record.map_err(|e| csv_error(path, &e))?);
    }
    config_columns(&rows, &configs, path, &mut c)?;
    let mut non_numeric = BTreeSet::new();
    for row in &rows {
        for (col, cell) in row.iter().enumerate() {
            let cell = cell.trim();
            let metric = names.iter().any(|(c, _)| *c == col);
            if metric && !cell.is_empty() && parse_number(cell).is_none() {
                non_numeric.insert(col);
            }
        }
    }
    for row in &rows {
        let line = row.position().map_or(0, |p| p.line());
        let place = format!("line {line}");
        let bad = |expected: String, got: &str| Error::Parse {
            path: path.to_path_buf(),
            place: place.clone(),
            expected,
            got: quote(got),
        };
        let step_cell = row.get(step_col).unwrap_or_default();
        let step = parse_step(step_cell).ok_or_else(|| {
            bad(
                format!("a step in column `{}`", header[step_col]),
                step_cell,
            )
        })?;
        for (col, name) in &names {
            let cell = row.get(*col).unwrap_or_default().trim();
            if cell.is_empty() {
                continue;
            }
            match parse_number(cell) {
                Some(x) if !non_numeric.contains(col) => {
                    c.push(name, step, x, Precision::F64, || place.clone())?;
                }
                None if is_loss(name) => {
                    return Err(bad(
                        format!("a number in loss column `{}`", header[*col]),
                        cell,
                    ));
                }
                _ => {}
            }
        }
    }
    let skipped: Vec<&String> = non_numeric
        .iter()
        .filter_map(|&col| names.iter().find(|(c, _)| *c == col).map(|(_, n)| n))
        .filter(|n| !is_loss(n))
        .collect();
    if !skipped.is_empty() {
        c.note("non_numeric_columns", json!(skipped));
    }
    c.finish(Format::Csv)
}

/// Reads the `config.*` columns: one value per column over the rows that have one.
fn config_columns(
    rows: &[::csv::StringRecord],
    configs: &[(usize, &str)],
    path: &Path,
    c: &mut Collector<'_>,
) -> Result<()> {
    let mut settings = Map::new();
    for &(col, key) in configs {
        let mut value: Option<(u64, &str)> = None;
        for row in rows {
            let cell = row.get(col).unwrap_or_default().trim();
            let line = row.position().map_or(0, |p| p.line());
            match value {
                _ if cell.is_empty() => {}
                None => value = Some((line, cell)),
                Some((_, v)) if v == cell => {}
                Some((first, v)) => {
                    return Err(Error::Parse {
                        path: path.to_path_buf(),
                        place: format!("line {line}, column `config.{key}`"),
                        expected: format!(
                            "the value {} of line {first} (a setting holds for the whole run)",
                            quote(v)
                        ),
                        got: quote(cell),
                    })
                }
            }
        }
        if let Some((_, v)) = value {
            let v = match v {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                other => pyvalue::scalar(other),
            };
            settings.insert(key.to_string(), v);
        }
    }
    if !settings.is_empty() {
        c.add_config(settings, "the config columns")?;
    }
    Ok(())
}

/// Returns `(column, raw name)` for each metric column, with a W&B run prefix removed: the only
/// run's, or `run`'s when the file holds several. Columns with an empty name are skipped.
fn metric_names(
    header: &[String],
    step_col: usize,
    path: &Path,
    run: Option<&str>,
    c: &mut Collector<'_>,
) -> Result<Vec<(usize, String)>> {
    let metrics: Vec<(usize, &String)> = header
        .iter()
        .enumerate()
        .filter(|(i, h)| *i != step_col && !h.is_empty())
        .collect();
    let runs: BTreeSet<&str> = metrics
        .iter()
        .filter_map(|(_, h)| wandb_split(h).map(|(run, _)| run))
        .collect();
    let all_prefixed = !metrics.is_empty() && metrics.iter().all(|(_, h)| wandb_split(h).is_some());
    if !all_prefixed {
        return Ok(metrics.into_iter().map(|(i, h)| (i, h.clone())).collect());
    }
    let list = runs.iter().map(|r| quote(r)).collect::<Vec<_>>().join(", ");
    let chosen = match (run, runs.len()) {
        (Some(r), _) if runs.contains(r) => r,
        (Some(r), _) => {
            return Err(Error::InvalidValue {
                origin: format!("{} (--run)", path.display()),
                key: "run".into(),
                expected: format!("one of the runs in the file: {list}"),
                got: quote(r),
            })
        }
        (None, 1) => runs.first().copied().unwrap_or_default(),
        (None, _) => {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                place: "line 1 (header)".into(),
                expected: "columns of one run; choose one with --run NAME".into(),
                got: format!("runs {list}"),
            })
        }
    };
    c.note("run", json!(chosen));
    if runs.len() > 1 {
        c.note("runs", json!(runs));
    }
    Ok(metrics
        .into_iter()
        .filter_map(|(i, h)| match wandb_split(h) {
            Some((r, m)) if r == chosen => Some((i, m.to_string())),
            _ => None,
        })
        .collect())
}

fn csv_error(path: &Path, e: &::csv::Error) -> Error {
    let place = e
        .position()
        .map_or_else(|| "header".to_string(), |p| format!("line {}", p.line()));
    let expected = match e.kind() {
        ::csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            return Error::Parse {
                path: path.to_path_buf(),
                place,
                expected: format!("{expected_len} fields like the header"),
                got: format!("{len} fields"),
            }
        }
        ::csv::ErrorKind::Utf8 { .. } => "UTF-8 text",
        _ => "a CSV record",
    };
    Error::Parse {
        path: path.to_path_buf(),
        place,
        expected: expected.into(),
        got: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{GRAD_NORM, LM_LOSS};

    fn parse_str(text: &str) -> Result<Trace> {
        parse(text.as_bytes(), Path::new("run.csv"), None)
    }

    #[test]
    fn wandb_export_of_two_runs_needs_run_and_reads_the_one_named() {
        let text = "\"Step\",\"flash-1 - train/loss\",\"flash-1 - train/loss__MIN\",\"naive-1 - train/loss\",\"naive-1 - train/loss__MIN\"\n\
                    1,2.5,2.5,2.75,2.75\n2,2.25,2.25,,\n3,2.0,2.0,2.5,2.5\n";
        let err = parse_str(text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--run") && msg.contains("\"flash-1\", \"naive-1\""),
            "{msg}"
        );
        let t = parse(text.as_bytes(), Path::new("run.csv"), Some("naive-1")).unwrap();
        assert_eq!(t.steps, vec![1, 3]);
        assert_eq!(t.lm_loss().unwrap(), &[2.75, 2.5]);
        assert_eq!(t.config["import"]["run"], "naive-1");
        let err = parse(text.as_bytes(), Path::new("run.csv"), Some("x")).unwrap_err();
        assert!(err.to_string().contains("one of the runs"), "{err}");
    }

    #[test]
    fn config_columns_are_settings_and_must_not_change() {
        // pandas.json_normalize of W&B's runs API: history columns plus config.* columns.
        let text = "_step,loss,config.lr,config.seed,config.model.attention_dropout\n\
                    0,3.0,0.001,7,0.1\n1,2.5,0.001,7,0.1\n";
        let t = parse_str(text).unwrap();
        assert_eq!(t.config["lr"], json!(0.001));
        assert_eq!(t.config["model.attention_dropout"], json!(0.1));
        assert_eq!(t.seeds["init"], 7);
        assert!(t.metric("config.lr").is_none());
        let err = parse_str("_step,loss,config.lr\n0,3.0,0.001\n1,2.5,0.002\n").unwrap_err();
        assert!(
            err.to_string().contains("line 3, column `config.lr`"),
            "{err}"
        );
    }

    /// See: issue 21 item 7 — duplicate keys refused in every format.
    #[test]
    fn issue_21_a_column_twice_is_refused() {
        let err = parse_str("step,loss,loss\n1,2.0,9.0\n").unwrap_err();
        assert!(
            matches!(&err, Error::DuplicateKey { key, .. } if key == "\"loss\""),
            "{err}"
        );
    }

    #[test]
    fn wandb_chart_export_drops_prefix_and_keeps_min_max() {
        // The shape of a W&B panel "Export CSV": Step, then <run> - <metric>[__MIN|__MAX].
        let text = "\"Step\",\"lucky-run-7 - train/loss\",\"lucky-run-7 - train/loss__MIN\",\"lucky-run-7 - train/loss__MAX\"\n\
                    1,2.5,2.5,2.5\n2,2.25,2.25,2.25\n";
        let t = parse_str(text).unwrap();
        assert_eq!(t.steps, vec![1, 2]);
        assert_eq!(t.lm_loss().unwrap(), &[2.5, 2.25]);
        assert!(t.metric("train/loss__min").is_some());
        assert_eq!(t.config["import"]["run"], "lucky-run-7");
    }

    #[test]
    fn history_export_with_empty_cells_and_text_columns() {
        let text = "_step,loss,grad_norm,eval/loss,run_name\n\
                    0,3.0,1.5,,a\n1,2.5,1.25,,a\n2,2.0,1.0,2.2,a\n";
        let t = parse_str(text).unwrap();
        assert_eq!(t.steps, vec![0, 1, 2]);
        assert_eq!(t.metric(GRAD_NORM).unwrap(), &[1.5, 1.25, 1.0]);
        let import = &t.config["import"];
        assert_eq!(import["own_steps"]["eval/loss"], "1 step (2)", "{import}");
        assert_eq!(import["non_numeric_columns"], json!(["run_name"]));
        assert_eq!(import["sources"][LM_LOSS], "loss");
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let bytes = b"\xEF\xBB\xBFstep,loss\n1,2.0\n";
        let t = crate::import::import_bytes(bytes, Path::new("bom.csv"), None).unwrap();
        assert_eq!(t.lm_loss().unwrap(), &[2.0]);
    }

    #[test]
    fn loss_column_priority_prefers_lm_loss() {
        let t = parse_str("iteration\ttrain/loss\tlm_loss\n1\t9\t2\n").unwrap();
        assert_eq!(t.lm_loss().unwrap(), &[2.0]);
        assert_eq!(t.metric("train/loss").unwrap(), &[9.0]);
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = parse_str("step,loss\n1,2.0\n2,oops\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("run.csv: line 3") && msg.contains("`loss`"),
            "{msg}"
        );
        let err = parse_str("step,loss\n1,2.0\n2\n").unwrap_err();
        assert!(
            err.to_string().contains("2 fields like the header"),
            "{err}"
        );
        let err = parse_str("time,loss\n1,2.0\n").unwrap_err();
        assert!(err.to_string().contains("a step column"), "{err}");
        let err = parse_str("step,loss\n1.5,2.0\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = parse_str("Step,a - loss,b - loss\n1,2,3\n").unwrap_err();
        assert!(err.to_string().contains("one run"), "{err}");
    }
}
