//! Importers: read other training stacks' loss curves (Megatron-LM golden values and logs,
//! torchtitan logs, JSONL, CSV, TensorBoard event files) into a [`Trace`], so lossdiff can compare
//! a run of any stack against a golden of any other.
//!
//! This module owns format detection, the per-format parsers, the mapping of foreign metric names
//! to lossdiff's series names, and the Megatron golden-values export (aligning arms on common steps is the comparison engine's job).
//! It does not judge the curves: statistics live elsewhere.
//!
//! # How a file becomes a trace
//! Every importer collects `(step, value)` points per raw metric name, then one policy turns them
//! into a trace (`collect.rs`):
//! - **Names.** Raw names are sanitised (trimmed, lowercased, spaces and `-` become `_`), then
//!   well-known aliases map to lossdiff's names: `lm loss`, `loss`, `train/loss` → `lm_loss`;
//!   `grad norm`, `grad-norm` → `grad_norm`; `learning rate`, `learning-rate` → `lr`;
//!   `iteration-time` (seconds) → `step_time_s`. When several raw names alias the same series, the
//!   one earliest in the alias list wins and the others keep their sanitised names.
//! - **Grid.** A trace has one step grid. It is the steps at which `lm_loss` was logged (or, with
//!   no loss, the series with the most points). Another metric is kept only if it was logged at
//!   every step of that grid; its points at other steps are discarded and counted. A metric logged
//!   on a different grid is dropped, never padded with NaN: an invented NaN would read as a
//!   divergence downstream. Everything dropped or discarded is listed in the trace's
//!   `config.import` section, with the raw name each series came from.
//! - **Order.** Within a series steps must be strictly increasing; a repeated or earlier step is
//!   an [`Error::StepOrder`] naming the place (a log of a resumed run that re-ran steps must be cut
//!   by hand, because which copy is "the" run is a judgement). The one documented exception is
//!   the leading steps of a Megatron golden file where *every* metric is `"nan"`: they are cut
//!   (listed in `config.import.not_logged_leading_steps`) rather than read as a divergence. The
//!   second half of a checkpoint-resume test (`*_2nd.json`) has them because it did not run
//!   those steps; the cut applies to every golden file, whatever its name, because the schema
//!   cannot tell "not run" from "NaN at every metric".
//!
//! # Formats and their quirks
//! See each importer's file: `megatron_golden.rs`, `megatron_log.rs`, `text.rs` (torchtitan and
//! plain columns), `jsonl.rs`, `csv.rs`, `tensorboard.rs`. Each trace's `config.import` records
//! the format, the grid series, the raw name of every series, and what was dropped and why.

mod collect;
mod csv;
mod dir;
mod hf;
use crate::json::{self, quote};
mod jsonl;
mod megatron_golden;
mod megatron_log;
mod protobuf;
mod pyvalue;
mod ranks;
#[cfg(test)]
mod real_megatron;
mod tensorboard;
mod text;

pub use dir::{read_arms_dir, seed_tag, DirArm, DirRun, REPORT_SUBDIR};
pub use megatron_golden::{megatron_golden_json, to_megatron_golden};

use collect::{sanitize, Collector, ALIASES};

use crate::error::{Error, Result};
// Lives at the bottom layer because traces and goldens read files through it too.
use crate::limits;
use crate::trace::{parse_non_finite, Trace};
use serde_json::Value;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// A file format lossdiff can import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// lossdiff's own trace JSON (read with [`Trace::load`]).
    Lossdiff,
    /// Megatron-LM functional-test golden values: `{metric: {start_step, …, values}}`.
    MegatronGolden,
    /// Megatron-LM training stdout (` iteration 10/ 100 | … | lm loss: … |` lines).
    MegatronLog,
    /// torchtitan's `step: 1  loss: 12.25 …` log lines, or plain whitespace-separated columns.
    TorchtitanText,
    /// One JSON object per line with a step key and metric keys.
    Jsonl,
    /// A table with a step column and metric columns (e.g. a Weights & Biases export).
    Csv,
    /// TensorBoard event files (TFRecord of `Event` protobufs), or a run directory of them.
    TensorBoard,
    /// Hugging Face `Trainer`'s `trainer_state.json` (`log_history`).
    HfTrainerState,
    /// A lossdiff golden (an arm's ensemble): read by `compare` and `show` through
    /// [`crate::golden::Golden::load`], not by [`import`], which returns one trace.
    LossdiffGolden,
}

impl Format {
    /// Every format, in the order [`detect`] tries them (roughly most to least specific).
    pub const ALL: [Format; 9] = [
        Format::TensorBoard,
        Format::Lossdiff,
        Format::LossdiffGolden,
        Format::HfTrainerState,
        Format::MegatronGolden,
        Format::Jsonl,
        Format::MegatronLog,
        Format::TorchtitanText,
        Format::Csv,
    ];

    /// Returns the name used by `--format` and written to `origin.format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Lossdiff => "lossdiff",
            Format::MegatronGolden => "megatron-golden",
            Format::MegatronLog => "megatron-log",
            Format::TorchtitanText => "torchtitan",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::TensorBoard => "tensorboard",
            Format::HfTrainerState => "hf-trainer-state",
            Format::LossdiffGolden => "lossdiff-golden",
        }
    }

    fn valid_names() -> String {
        Format::ALL.map(Format::name).join(", ")
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;

    /// Parses a `--format` value; `text`, `tb` and `golden` are accepted as short forms.
    fn from_str(s: &str) -> Result<Format> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        let alias = match wanted.as_str() {
            "text" | "txt" => Some(Format::TorchtitanText),
            "tb" | "tfevents" => Some(Format::TensorBoard),
            "golden" => Some(Format::MegatronGolden),
            "hf" | "trainer-state" | "huggingface" => Some(Format::HfTrainerState),
            "json" => Some(Format::Lossdiff),
            _ => None,
        };
        alias
            .or_else(|| Format::ALL.into_iter().find(|f| f.name() == wanted))
            .ok_or_else(|| Error::InvalidValue {
                origin: "--format".into(),
                key: "format".into(),
                expected: format!("one of {}", Format::valid_names()),
                got: format!("{s:?}"),
            })
    }
}

/// Guesses a file's format from its content (never its name, which is often just `log.txt`).
///
/// Returns `None` when no format fits; [`import`] then reports [`Error::UnknownFormat`].
/// Time: `O(n)` in the file size.
pub fn detect(bytes: &[u8]) -> Option<Format> {
    if tensorboard::looks_like(bytes) {
        return Some(Format::TensorBoard);
    }
    let text = String::from_utf8_lossy(bytes);
    let body = text.trim_start_matches('\u{feff}').trim_start();
    if body.starts_with('{') {
        return detect_json(body);
    }
    if megatron_log::looks_like(&text) {
        Some(Format::MegatronLog)
    } else if text::looks_like_torchtitan(&text) {
        Some(Format::TorchtitanText)
    } else if csv::looks_like(&text) {
        Some(Format::Csv)
    } else if text::looks_like_columns(&text) {
        Some(Format::TorchtitanText)
    } else {
        None
    }
}

fn detect_json(body: &str) -> Option<Format> {
    // Only the top-level keys and whether each value is an object with `values` matter; a
    // `serde_json::Value` of a 10-million-step trace would take several times the file's memory.
    // Python writes a NaN as a bare `NaN` (trainer_state.json does): read it as JSON would be.
    let body = json::quote_non_finite(body);
    if let Ok(top) = serde_json::from_str::<std::collections::BTreeMap<String, Shape>>(&body) {
        if top.contains_key("schema_version") && top.contains_key("steps") {
            return Some(Format::Lossdiff);
        }
        if top.contains_key("seed_traces") && top.contains_key("format") {
            return Some(Format::LossdiffGolden);
        }
        if hf::looks_like(&top.keys().map(String::as_str).collect::<Vec<_>>()) {
            return Some(Format::HfTrainerState);
        }
        if megatron_golden::looks_like(&top.values().map(|s| s.0).collect::<Vec<_>>()) {
            return Some(Format::MegatronGolden);
        }
    }
    let first = body.lines().next().unwrap_or_default();
    match serde_json::from_str::<Value>(first) {
        Ok(Value::Object(_)) => Some(Format::Jsonl),
        _ => None,
    }
}

/// A JSON value reduced to one bit: is it an object with a `values` key (a Megatron metric)?
struct Shape(bool);

impl<'de> serde::Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Shape, D::Error> {
        d.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> serde::de::Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut m: A,
    ) -> std::result::Result<Shape, A::Error> {
        let mut has_values = false;
        while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            has_values |= k == "values";
            m.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(Shape(has_values))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut s: A,
    ) -> std::result::Result<Shape, A::Error> {
        while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Shape(false))
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Shape, E> {
        Ok(Shape(false))
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Shape, E> {
        Ok(Shape(false))
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Shape, E> {
        Ok(Shape(false))
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Shape, E> {
        Ok(Shape(false))
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Shape, E> {
        Ok(Shape(false))
    }
    fn visit_unit<E>(self) -> std::result::Result<Shape, E> {
        Ok(Shape(false))
    }
}

/// What to read from an input, beyond the file itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// The format (default: detected from the content).
    pub format: Option<Format>,
    /// Which rank of a rank-prefixed log (`[rank1]:`) to read (default: the lowest with metric
    /// lines).
    pub rank: Option<u32>,
    /// Which run of a multi-run export (a W&B CSV) to read; required when there are several.
    pub run: Option<String>,
}

/// Reads a training curve from `path` in `format`, or in the format [`detect`] finds.
///
/// # Errors
/// As [`import_with`].
pub fn import(path: &Path, format: Option<Format>) -> Result<Trace> {
    import_with(
        path,
        &ImportOptions {
            format,
            ..ImportOptions::default()
        },
    )
}

/// Reads a training curve from a file or a run directory (a TensorBoard run, or a Hugging Face
/// checkpoint holding `trainer_state.json`).
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::InputTooLarge`] for a file over
/// [`limits::max_input_bytes`]; [`Error::EmptyInput`] for an empty file or one with no
/// steps; [`Error::UnknownFormat`] when detection fails; otherwise the format's parse errors
/// ([`Error::Parse`], [`Error::StepOrder`], [`Error::DuplicateKey`], [`Error::Crc`], …), each
/// naming the file and place.
pub fn import_with(path: &Path, opts: &ImportOptions) -> Result<Trace> {
    if path.is_dir() {
        let state = path.join("trainer_state.json");
        if state.is_file() && opts.format.is_none_or(|f| f == Format::HfTrainerState) {
            return import_with(&state, opts);
        }
        return tensorboard::parse_dir(path);
    }
    let bytes = limits::read_input(path)?;
    import_bytes_with(&bytes, path, opts)
}

/// Parses a training curve already in memory; `path` names it in errors and in `origin.path`.
///
/// # Errors
/// As [`import`], without the I/O errors.
pub fn import_bytes(bytes: &[u8], path: &Path, format: Option<Format>) -> Result<Trace> {
    let opts = ImportOptions {
        format,
        ..ImportOptions::default()
    };
    import_bytes_with(bytes, path, &opts)
}

/// Parses a training curve already in memory with [`ImportOptions`].
///
/// # Errors
/// As [`import_with`], without the I/O errors.
pub fn import_bytes_with(bytes: &[u8], path: &Path, opts: &ImportOptions) -> Result<Trace> {
    // Spreadsheet exports often start with a UTF-8 byte-order mark; it is not content.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::EmptyInput {
            path: path.to_path_buf(),
            reason: "the file is empty".into(),
        });
    }
    let format = match opts.format.or_else(|| detect(bytes)) {
        Some(f) => f,
        None if looks_like_broken_json(bytes) => return Err(json_error(bytes, path)),
        None => {
            return Err(Error::UnknownFormat {
                path: path.to_path_buf(),
                hint: describe_content(bytes),
                valid: Format::valid_names(),
            })
        }
    };
    let rank = opts.rank;
    match format {
        Format::Lossdiff => Trace::from_json(utf8(bytes, path)?, path),
        Format::MegatronGolden => megatron_golden::parse(utf8(bytes, path)?, path),
        Format::MegatronLog => megatron_log::parse(&String::from_utf8_lossy(bytes), path, rank),
        Format::TorchtitanText => text::parse(&String::from_utf8_lossy(bytes), path, rank),
        Format::Jsonl => jsonl::parse(utf8(bytes, path)?, path),
        Format::Csv => csv::parse(bytes, path, opts.run.as_deref()),
        Format::TensorBoard => tensorboard::parse(bytes, path),
        Format::HfTrainerState => hf::parse(utf8(bytes, path)?, path),
        Format::LossdiffGolden => Err(Error::Parse {
            path: path.to_path_buf(),
            place: "the top level".into(),
            expected: "one trace (a golden holds an arm's ensemble: `lossdiff compare` and `lossdiff show` read it as such, `lossdiff golden export` writes one of its traces)".into(),
            got: "a lossdiff golden".into(),
        }),
    }
}

/// Checks that a trace has `metric` (at any cadence), naming the series it has when not.
///
/// # Errors
/// [`Error::NoSuchSeries`] naming the trace's file, the metric and the series present.
pub fn require_series(trace: &Trace, metric: &str) -> Result<()> {
    match trace.points(metric) {
        Some(_) => Ok(()),
        None => Err(Error::NoSuchSeries {
            path: trace
                .origin
                .path
                .clone()
                .unwrap_or_else(|| trace.name.clone())
                .into(),
            metric: metric.to_string(),
            available: trace.describe_series(),
        }),
    }
}

/// A file that opens like a JSON document but parses neither whole nor as JSON lines: most
/// likely a truncated or hand-edited trace or golden-values file, whose parse error (line and
/// column) says more than "unknown format".
fn looks_like_broken_json(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('{')
}

fn json_error(bytes: &[u8], path: &Path) -> Error {
    let text = String::from_utf8_lossy(bytes);
    match serde_json::from_str::<Value>(&text) {
        Err(e) => Error::Json {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: format!(
                "{e}; expected a lossdiff trace, Megatron-LM golden values or one JSON object per line"
            ),
        },
        Ok(_) => Error::UnknownFormat {
            path: path.to_path_buf(),
            hint: "a JSON document that is neither a lossdiff trace nor Megatron-LM golden values"
                .into(),
            valid: Format::valid_names(),
        },
    }
}

fn utf8<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| limits::invalid_utf8(path, e))
}

fn describe_content(bytes: &[u8]) -> String {
    let first = String::from_utf8_lossy(bytes);
    let first = first.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    format!("first line {}", quote(first))
}

/// Parses a decimal number or one of the non-finite spellings (`nan`, `inf`, `-inf`).
fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    s.parse::<f64>().ok().or_else(|| parse_non_finite(s))
}

/// Parses a step: a non-negative integer, also written as an integral float (`10.0`).
fn parse_step(s: &str) -> Option<u64> {
    let s = s.trim();
    s.parse::<u64>().ok().or_else(|| {
        let x = s.parse::<f64>().ok()?;
        // 2^53: beyond it floats no longer hold every integer, so the step would be a guess.
        (x >= 0.0 && x.fract() == 0.0 && x <= 9_007_199_254_740_992.0).then_some(x as u64)
    })
}

/// Describes a step set for messages: `50 steps 1..50`, `20 steps 5..100 every 5`.
fn describe_steps(steps: &[u64]) -> String {
    match steps.len() {
        0 => "no steps".into(),
        1 => format!("1 step ({})", span(steps)),
        n => format!("{n} steps {}", span(steps)),
    }
}

/// Describes where a step set lies: `7`, `1..50`, `5..100 every 5`, `1..97, irregular`.
fn span(steps: &[u64]) -> String {
    match steps {
        [] => String::new(),
        [only] => only.to_string(),
        [first, .., last] => {
            let d = steps.get(1).map_or(0, |second| second - first);
            if steps.windows(2).all(|w| w[1] - w[0] == d) {
                if d == 1 {
                    format!("{first}..{last}")
                } else {
                    format!("{first}..{last} every {d}")
                }
            } else {
                format!("{first}..{last}, irregular")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Series, LM_LOSS};

    #[test]
    fn format_names_round_trip_and_bad_name_lists_valid_ones() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
        }
        assert_eq!("TB".parse::<Format>().unwrap(), Format::TensorBoard);
        assert_eq!(
            "megatron_golden".parse::<Format>().unwrap(),
            Format::MegatronGolden
        );
        let err = "parquet".parse::<Format>().unwrap_err().to_string();
        assert!(err.contains("\"parquet\"") && err.contains("megatron-log, torchtitan"));
    }

    #[test]
    fn detect_tells_formats_apart_by_content() {
        let cases: [(&str, Option<Format>); 8] = [
            (
                r#"{"schema_version": 1, "steps": []}"#,
                Some(Format::Lossdiff),
            ),
            (
                r#"{"lm loss": {"start_step": 1, "end_step": 1, "step_interval": 1, "values": {"1": 2.0}}}"#,
                Some(Format::MegatronGolden),
            ),
            (
                "{\"step\": 1, \"loss\": 2}\n{\"step\": 2, \"loss\": 1}\n",
                Some(Format::Jsonl),
            ),
            (
                "noise\n [2024] iteration       10/     100 | lm loss: 1.0E+01 |\n",
                Some(Format::MegatronLog),
            ),
            (
                "[titan] INFO - step:  1  loss: 12.2541  memory: 1.0GiB\n",
                Some(Format::TorchtitanText),
            ),
            ("Step,train/loss\n1,2.5\n", Some(Format::Csv)),
            ("1 2.5\n2 2.4\n", Some(Format::TorchtitanText)),
            ("hello world\n", None),
        ];
        for (text, want) in cases {
            assert_eq!(detect(text.as_bytes()), want, "{text}");
        }
    }

    #[test]
    fn empty_and_unknown_inputs_are_clear_errors() {
        let err = import_bytes(b"  \n", Path::new("e.log"), None).unwrap_err();
        assert!(matches!(err, Error::EmptyInput { .. }), "{err}");
        let err = import_bytes(b"hello\n", Path::new("u.log"), None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("u.log") && msg.contains("\"hello\"") && msg.contains("csv"),
            "{msg}"
        );
    }

    #[test]
    fn steps_are_described_compactly() {
        assert_eq!(describe_steps(&[]), "no steps");
        assert_eq!(describe_steps(&[1, 2, 3]), "3 steps 1..3");
        assert_eq!(describe_steps(&[5, 10, 15]), "3 steps 5..15 every 5");
        assert_eq!(describe_steps(&[1, 2, 7]), "3 steps 1..7, irregular");
        assert_eq!(parse_step("10.0"), Some(10));
        assert_eq!(parse_step("-1"), None);
        assert_eq!(parse_step("1.5"), None);
    }

    #[test]
    fn files_are_read_from_disk_with_and_without_override() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.txt");
        std::fs::write(&path, "{\"step\": 1, \"loss\": 2.5}\n").unwrap();
        let t = import(&path, None).unwrap();
        assert_eq!(
            (t.origin.format.as_str(), t.name.as_str()),
            ("jsonl", "log")
        );
        assert_eq!(
            t.origin.path.as_deref(),
            Some(path.display().to_string().as_str())
        );
        // A wrong override is an error about the content, not a silent misread.
        let err = import(&path, Some(Format::Csv)).unwrap_err();
        assert!(err.to_string().contains("a step column"), "{err}");
        let err = import(&dir.path().join("missing.log"), None).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn lossdiff_traces_go_through_trace_load() {
        let mut t = import_bytes(b"1 2.5\n2 2.0\n", Path::new("a.txt"), None).unwrap();
        t.series
            .insert(LM_LOSS.into(), Series::from_f32(&[2.5, f32::NAN]));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        t.save(&path).unwrap();
        let back = import(&path, None).unwrap();
        assert_eq!(back.origin.format, "torchtitan");
        assert!(back.lm_loss().unwrap()[1].is_nan());
        assert_eq!(
            detect(&std::fs::read(&path).unwrap()),
            Some(Format::Lossdiff)
        );
    }

    /// Deterministic garbage: every format must return `Ok` or `Err` on it, never panic.
    #[test]
    fn no_input_makes_any_importer_panic() {
        let seeds: [&[u8]; 9] = [
            b"{\"lm loss\": {\"values\": {\"1\": 1.0, \"2\": \"nan\"}}}",
            b" iteration 1/ 10 | lm loss: 1.0 | grad norm: 2 |\n",
            b"step: 1  loss: 2.0  mfu: 3%\nstep,loss\n1,2\n",
            b"{\"step\": 1, \"loss\": 2}\n",
            &[8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0x08, 0x01],
            b"{\"global_step\": 2, \"log_history\": [{\"loss\": NaN, \"step\": 1}, {\"loss\": -Infinity, \"step\": 2}]}",
            b"{\"config\": {\"a\": {\"b\": 1}}, \"seed\": 3, \"versions\": {\"t\": \"1\"}}\n{\"step\": 1, \"loss\": NaN}\n",
            b"[rank1]:x Running with args: {'training': {'seed': 4, 'lr': [1, (2,)]}}\n[rank0]:step: 1  loss: 2\n[rank1]:step: 1  loss: 3\n",
            b"---- arguments ----\n  lr ..... 0.1\n  seed ... 2\n---- end of arguments ----\n iteration 1/ 10 | lm loss: 1.0 |\n",
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in seeds {
            for _ in 0..200 {
                let mut bytes = seed.to_vec();
                for _ in 0..(next() % 4) {
                    let i = (next() as usize) % bytes.len().max(1);
                    if let Some(b) = bytes.get_mut(i) {
                        *b = next() as u8;
                    }
                }
                bytes.truncate((next() as usize) % (bytes.len() + 1));
                for f in Format::ALL.into_iter().map(Some).chain([None]) {
                    let _ = import_bytes(&bytes, Path::new("fuzz"), f);
                }
            }
        }
    }
}
