//! TensorBoard event files (`events.out.tfevents.*`): scalars by tag.
//!
//! Framing is TFRecord: `u64 length (LE) | u32 masked CRC32C of the length | data | u32 masked
//! CRC32C of the data`. Both checksums are verified; a mismatch is an [`Error::Crc`] with the
//! record's byte offset, because a silently truncated event file would otherwise pass as a
//! shorter run. Each record is an `Event` protobuf (`step` = field 2, `summary` = field 5); a
//! `Summary` holds `Value`s (`tag` = 1, `simple_value` = 2 as written by PyTorch's
//! `SummaryWriter` and Megatron-LM, or `tensor` = 8 as written by TF2's `tf.summary.scalar`). A
//! scalar tensor is read from `tensor_content` or `float_val`/`double_val`/`int_val`/
//! `int64_val`/`half_val` by its dtype; non-scalar and string tensors (histograms, text, images)
//! are skipped.
//!
//! Tags are metric names for the module-wide alias rule (`lm loss`, `loss`, `train/loss` →
//! `lm_loss`; `grad-norm` → `grad_norm`; `learning-rate` → `lr`; `iteration-time` →
//! `step_time_s`). Megatron's `<tag> vs samples` tags repeat the same values with consumed samples
//! as the step, so they are skipped and listed in `config.import.skipped_tags`. A tag logged twice
//! at one step (two runs appended to one file) is an [`Error::StepOrder`].
//!
//! **Config.** Two places: the HParams plugin's `session_start_info` (PyTorch's
//! `SummaryWriter.add_hparams`, Keras' `hp.hparams`), whose hparams become config keys under
//! their names; and text summaries (Megatron-LM's `write_args_to_tensorboard` writes every
//! argument with `add_text(arg, str(value))`, tag `<arg>/text_summary`), each a config key when
//! every copy of the tag holds one value (a tag with several texts, like generated samples, is
//! not a setting: skipped and listed). A `seed` hparam or argument becomes `seeds["init"]`.
//!
//! **Run directories.** A directory is one run: every event file in it (a restarted run writes a
//! new one; they are read in file-name order, which is creation-time order) and in its
//! subdirectories (`add_hparams` writes to one), labelled by the directory's name. A directory
//! without event files of its own but with several run subdirectories is a log directory of
//! several runs: refused, listing them.

use super::protobuf::{masked_crc32c, DecodeError, Fields, Wire};
use super::{pyvalue, quote, Collector, Format};
use crate::error::{Error, Result};
use crate::trace::{Precision, Trace};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Whether the bytes start with a TFRecord header whose length checksum verifies.
pub(super) fn looks_like(bytes: &[u8]) -> bool {
    match (bytes.get(..8), bytes.get(8..12)) {
        (Some(len), Some(crc)) => masked_crc32c(len) == u32::from_le_bytes(arr4(crc)),
        _ => false,
    }
}

fn arr4(b: &[u8]) -> [u8; 4] {
    let mut out = [0u8; 4];
    out.copy_from_slice(b.get(..4).unwrap_or(&[0; 4]));
    out
}

/// Splits TFRecord framing, verifying both CRCs; yields `(record offset, data)`.
fn records<'a>(bytes: &'a [u8], path: &Path) -> Result<Vec<(usize, &'a [u8])>> {
    let truncated = |offset: usize, expected: String| Error::Parse {
        path: path.to_path_buf(),
        place: format!("record at byte {offset}"),
        expected,
        got: format!("{} bytes left in the file", bytes.len() - offset),
    };
    let mut out = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let header = bytes
            .get(offset..offset + 12)
            .ok_or_else(|| truncated(offset, "a 12-byte record header".into()))?;
        let (len_bytes, len_crc) = header.split_at(8);
        check_crc(path, offset, "length", len_bytes, len_crc)?;
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or([0; 8]));
        let data_start = offset + 12;
        let data_end = usize::try_from(len)
            .ok()
            .and_then(|l| data_start.checked_add(l))
            .filter(|&e| e.checked_add(4).is_some_and(|end| end <= bytes.len()));
        let Some(data_end) = data_end else {
            return Err(truncated(
                offset,
                format!("{len} data bytes and a 4-byte checksum"),
            ));
        };
        let data = &bytes[data_start..data_end];
        check_crc(path, offset, "data", data, &bytes[data_end..data_end + 4])?;
        out.push((offset, data));
        offset = data_end + 4;
    }
    Ok(out)
}

fn check_crc(
    path: &Path,
    offset: usize,
    what: &'static str,
    data: &[u8],
    crc: &[u8],
) -> Result<()> {
    let stored = u32::from_le_bytes(arr4(crc));
    let computed = masked_crc32c(data);
    if stored == computed {
        Ok(())
    } else {
        Err(Error::Crc {
            path: path.to_path_buf(),
            offset: offset as u64,
            what,
            stored,
            computed,
        })
    }
}

/// One scalar read from a `Summary.Value`.
struct Scalar {
    tag: String,
    value: f64,
    precision: Precision,
}

/// What a `Summary.Value` holds, of what lossdiff reads.
enum Item {
    Scalar(Scalar),
    /// The HParams plugin's hyperparameters of a session.
    Hparams(Vec<(String, Value)>),
    /// A text summary (its tag without `/text_summary`).
    Text(String, String),
}

/// What the event files of one run say besides scalars.
#[derive(Default)]
struct Extras {
    skipped_tags: BTreeSet<String>,
    hparams: Map<String, Value>,
    /// Every text seen per tag.
    texts: BTreeMap<String, BTreeSet<String>>,
}

/// Parses an event file into a trace.
pub(super) fn parse(bytes: &[u8], path: &Path) -> Result<Trace> {
    let mut c = Collector::new(path);
    let mut extras = Extras::default();
    read_into(bytes, path, &mut c, &mut extras)?;
    finish(c, extras)
}

/// Parses every event file of a run directory into one trace named after the directory.
///
/// # Errors
/// [`Error::EmptyInput`] for a directory without event files; [`Error::Parse`] for a log
/// directory of several runs, listing them; otherwise as [`parse`], naming the event file.
pub(super) fn parse_dir(dir: &Path) -> Result<Trace> {
    let files = run_files(dir)?;
    let mut c = Collector::new(dir);
    if let Some(name) = dir.file_name() {
        c.set_name(name.to_string_lossy().into_owned());
    }
    let mut extras = Extras::default();
    for f in &files {
        let bytes = super::limits::read_input(f)?;
        read_into(&bytes, f, &mut c, &mut extras)?;
    }
    let names: Vec<String> = (files.iter())
        .map(|f| f.strip_prefix(dir).unwrap_or(f).display().to_string())
        .collect();
    c.note("event_files", json!(names));
    finish(c, extras)
}

fn is_event_file(p: &Path) -> bool {
    p.is_file()
        && p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains("tfevents"))
}

/// Lists a directory's entries sorted by name (symlinks not followed into directories).
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    out.sort();
    Ok(out)
}

fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// Event files of a directory and its subdirectories, up to `depth` levels down.
fn event_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    for p in entries(dir)? {
        if is_event_file(&p) {
            out.push(p);
        } else if depth > 0 && is_real_dir(&p) {
            event_files(&p, depth - 1, out)?;
        }
    }
    Ok(())
}

/// The event files of one run: see the module docs.
fn run_files(dir: &Path) -> Result<Vec<PathBuf>> {
    const DEPTH: usize = 3;
    let own: Vec<PathBuf> = entries(dir)?
        .into_iter()
        .filter(|p| is_event_file(p))
        .collect();
    if own.is_empty() {
        let mut runs = Vec::new();
        for sub in entries(dir)?.into_iter().filter(|p| is_real_dir(p)) {
            let mut files = Vec::new();
            event_files(&sub, DEPTH, &mut files)?;
            if !files.is_empty() {
                runs.push(sub);
            }
        }
        if runs.len() > 1 {
            let names: Vec<String> = (runs.iter())
                .filter_map(|r| r.file_name().map(|n| quote(&n.to_string_lossy())))
                .collect();
            return Err(Error::Parse {
                path: dir.to_path_buf(),
                place: "the directory".into(),
                expected: "one run's event files; pass one run directory".into(),
                got: format!("{} runs: {}", runs.len(), names.join(", ")),
            });
        }
    }
    let mut files = Vec::new();
    event_files(dir, DEPTH, &mut files)?;
    // Own files first (in name order: creation time), then the subdirectories'.
    files.sort_by_key(|f| (f.parent() != Some(dir), f.clone()));
    if files.is_empty() {
        return Err(Error::EmptyInput {
            path: dir.to_path_buf(),
            reason: "a directory without TensorBoard event files (events.out.tfevents.*) or trainer_state.json".into(),
        });
    }
    Ok(files)
}

/// Reads one event file's scalars into `c` and its hparams and texts into `extras`.
fn read_into(bytes: &[u8], path: &Path, c: &mut Collector<'_>, extras: &mut Extras) -> Result<()> {
    for (n, (offset, data)) in records(bytes, path)?.into_iter().enumerate() {
        let place = || format!("{}: record {n} at byte {offset}", path.display());
        let malformed = |e: DecodeError| Error::Parse {
            path: path.to_path_buf(),
            place: format!("record {n} at byte {offset}"),
            expected: "an Event protobuf".into(),
            got: format!("{} at byte {} of the record", e.what, e.offset),
        };
        let (step, items) = event(data).map_err(malformed)?;
        for item in items {
            let s = match item {
                Item::Scalar(s) => s,
                Item::Hparams(h) => {
                    extras.hparams.extend(h);
                    continue;
                }
                Item::Text(tag, text) => {
                    extras.texts.entry(tag).or_default().insert(text);
                    continue;
                }
            };
            if s.tag.ends_with(" vs samples") {
                extras.skipped_tags.insert(s.tag);
                continue;
            }
            let step = u64::try_from(step).map_err(|_| Error::Parse {
                path: path.to_path_buf(),
                place: format!("record {n} at byte {offset}"),
                expected: "a non-negative step".into(),
                got: step.to_string(),
            })?;
            c.push(&s.tag, step, s.value, s.precision, place)?;
        }
    }
    Ok(())
}

fn finish(mut c: Collector<'_>, mut extras: Extras) -> Result<Trace> {
    let mut settings = std::mem::take(&mut extras.hparams);
    for (tag, texts) in extras.texts {
        match (texts.len(), texts.first()) {
            (1, Some(text)) => {
                settings.entry(tag).or_insert_with(|| pyvalue::scalar(text));
            }
            _ => {
                extras.skipped_tags.insert(format!("{tag} (text)"));
            }
        }
    }
    if !settings.is_empty() {
        c.add_config(settings, "hparams and text summaries")?;
    }
    if !extras.skipped_tags.is_empty() {
        c.note("skipped_tags", json!(extras.skipped_tags));
    }
    c.finish(Format::TensorBoard)
}

/// Decodes an `Event`: its step and the items of its summary (none for other events).
fn event(data: &[u8]) -> std::result::Result<(i64, Vec<Item>), DecodeError> {
    let (mut step, mut items) = (0i64, Vec::new());
    for field in Fields::new(data) {
        match field? {
            (2, Wire::Varint(v)) => step = v as i64, // int64 is two's complement on the wire
            (5, Wire::Bytes(summary)) => {
                for value in Fields::new(summary) {
                    if let (1, Wire::Bytes(v)) = value? {
                        items.extend(summary_value(v)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok((step, items))
}

/// Decodes a `Summary.Value` into what lossdiff reads of it, or `None`.
fn summary_value(data: &[u8]) -> std::result::Result<Option<Item>, DecodeError> {
    let (mut tag, mut simple, mut tensor, mut plugin) = (None, None, None, None);
    for field in Fields::new(data) {
        match field? {
            (1, Wire::Bytes(t)) => tag = Some(String::from_utf8_lossy(t).into_owned()),
            (2, Wire::Fixed32(bits)) => simple = Some(f32::from_bits(bits)),
            (8, Wire::Bytes(t)) => tensor = Some(t),
            (9, Wire::Bytes(m)) => plugin = plugin_data(m)?,
            _ => {}
        }
    }
    let Some(tag) = tag else { return Ok(None) };
    match plugin {
        Some(("hparams", content)) => return Ok(hparams(content)?.map(Item::Hparams)),
        Some(("text", _)) => {
            let text = tensor.map(string_val).transpose()?.flatten();
            let tag = tag
                .strip_suffix("/text_summary")
                .unwrap_or(&tag)
                .to_string();
            return Ok(text.map(|t| Item::Text(tag, t)));
        }
        _ => {}
    }
    let value = match (simple, tensor) {
        (Some(v), _) => Some((f64::from(v), Precision::F32)),
        (None, Some(t)) => scalar_tensor(t)?,
        (None, None) => None,
    };
    Ok(value.map(|(value, precision)| {
        Item::Scalar(Scalar {
            tag,
            value,
            precision,
        })
    }))
}

/// Decodes `SummaryMetadata.plugin_data`: the plugin's name and content.
fn plugin_data(meta: &[u8]) -> std::result::Result<Option<(&'static str, &[u8])>, DecodeError> {
    for field in Fields::new(meta) {
        if let (1, Wire::Bytes(pd)) = field? {
            let (mut name, mut content): (&[u8], &[u8]) = (b"", b"");
            for f in Fields::new(pd) {
                match f? {
                    (1, Wire::Bytes(n)) => name = n,
                    (2, Wire::Bytes(c)) => content = c,
                    _ => {}
                }
            }
            let known = match name {
                b"hparams" => "hparams",
                b"text" => "text",
                _ => return Ok(None),
            };
            return Ok(Some((known, content)));
        }
    }
    Ok(None)
}

/// Decodes `HParamsPluginData.session_start_info.hparams` (a map of `google.protobuf.Value`).
fn hparams(content: &[u8]) -> std::result::Result<Option<Vec<(String, Value)>>, DecodeError> {
    for field in Fields::new(content) {
        if let (3, Wire::Bytes(start)) = field? {
            let mut out = Vec::new();
            for f in Fields::new(start) {
                if let (1, Wire::Bytes(entry)) = f? {
                    let (mut key, mut value) = (None, Value::Null);
                    for e in Fields::new(entry) {
                        match e? {
                            (1, Wire::Bytes(k)) => {
                                key = Some(String::from_utf8_lossy(k).into_owned())
                            }
                            (2, Wire::Bytes(v)) => value = proto_value(v)?,
                            _ => {}
                        }
                    }
                    out.extend(key.map(|k| (k, value)));
                }
            }
            return Ok(Some(out));
        }
    }
    Ok(None)
}

/// Decodes a scalar `google.protobuf.Value` (number, string, bool; lists and structs as null).
fn proto_value(v: &[u8]) -> std::result::Result<Value, DecodeError> {
    let mut out = Value::Null;
    for f in Fields::new(v) {
        out = match f? {
            (2, Wire::Fixed64(bits)) => {
                let x = f64::from_bits(bits);
                match serde_json::Number::from_f64(x) {
                    Some(n) => Value::Number(n),
                    None if x.is_nan() => Value::String("nan".into()),
                    None if x > 0.0 => Value::String("inf".into()),
                    None => Value::String("-inf".into()),
                }
            }
            (3, Wire::Bytes(s)) => Value::String(String::from_utf8_lossy(s).into_owned()),
            (4, Wire::Varint(b)) => Value::Bool(b != 0),
            _ => continue,
        };
    }
    Ok(out)
}

/// Returns the first `string_val` of a string `TensorProto`.
fn string_val(t: &[u8]) -> std::result::Result<Option<String>, DecodeError> {
    for f in Fields::new(t) {
        if let (8, Wire::Bytes(s)) = f? {
            return Ok(Some(String::from_utf8_lossy(s).into_owned()));
        }
    }
    Ok(None)
}

// TensorFlow `DataType` values (tensorflow/core/framework/types.proto).
const DT_FLOAT: u64 = 1;
const DT_DOUBLE: u64 = 2;
const DT_INT32: u64 = 3;
const DT_INT64: u64 = 9;
const DT_BFLOAT16: u64 = 14;
const DT_HALF: u64 = 19;

/// Decodes a one-element numeric `TensorProto`.
fn scalar_tensor(data: &[u8]) -> std::result::Result<Option<(f64, Precision)>, DecodeError> {
    let (mut dtype, mut elements, mut content, mut first) = (0, 1u64, None, None);
    for field in Fields::new(data) {
        match field? {
            (1, Wire::Varint(d)) => dtype = d,
            (2, Wire::Bytes(shape)) => elements = shape_elements(shape)?,
            (4, Wire::Bytes(c)) => content = Some(c),
            // float_val, double_val, int_val, int64_val, half_val: packed or not; keep the first.
            (n @ (5 | 6 | 7 | 10 | 13), w) if first.is_none() => first = first_value(n, w)?,
            _ => {}
        }
    }
    if elements != 1 {
        return Ok(None);
    }
    let from_content = |c: &[u8]| -> Option<f64> {
        Some(match dtype {
            DT_FLOAT => f64::from(f32::from_le_bytes(c.try_into().ok()?)),
            DT_DOUBLE => f64::from_le_bytes(c.try_into().ok()?),
            DT_INT32 => f64::from(i32::from_le_bytes(c.try_into().ok()?)),
            DT_INT64 => i64::from_le_bytes(c.try_into().ok()?) as f64,
            DT_HALF => half::f16::from_le_bytes(c.try_into().ok()?).to_f64(),
            DT_BFLOAT16 => half::bf16::from_le_bytes(c.try_into().ok()?).to_f64(),
            _ => return None,
        })
    };
    // The precision follows the field the value was read from, not the dtype: a writer may put
    // a double in `double_val` of a tensor whose dtype says half, and an f64 labelled f32 would
    // be rounded when the trace is saved (a fuzzed 1e-322 came back as 0).
    let (f32_, f64_) = (Precision::F32, Precision::F64);
    Ok(match content {
        Some(c) if !c.is_empty() => from_content(c).map(|v| match dtype {
            DT_FLOAT | DT_HALF | DT_BFLOAT16 => (v, f32_),
            _ => (v, f64_),
        }),
        _ => first.map(|(field, raw)| match (field, dtype) {
            (5, _) => (f64::from(f32::from_bits(raw as u32)), f32_),
            (6, _) => (f64::from_bits(raw), f64_),
            (13, DT_BFLOAT16) => (half::bf16::from_bits(raw as u16).to_f64(), f32_),
            (13, _) => (half::f16::from_bits(raw as u16).to_f64(), f32_),
            _ => (raw as i64 as f64, f64_),
        }),
    })
}

/// Returns `(field, raw bits)` of the first element of a repeated numeric field.
fn first_value(field: u32, wire: Wire<'_>) -> std::result::Result<Option<(u32, u64)>, DecodeError> {
    Ok(match wire {
        Wire::Varint(v) | Wire::Fixed64(v) => Some((field, v)),
        Wire::Fixed32(v) => Some((field, u64::from(v))),
        Wire::Bytes(packed) => match field {
            5 => packed
                .get(..4)
                .map(|b| (field, u64::from(u32::from_le_bytes(arr4(b))))),
            6 => packed
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(|b| (field, u64::from_le_bytes(b))),
            _ if packed.is_empty() => None,
            _ => Some((field, super::protobuf::varint(packed, &mut 0)?)),
        },
    })
}

/// Number of elements of a `TensorShapeProto` (product of `dim.size`; 1 for a scalar).
fn shape_elements(shape: &[u8]) -> std::result::Result<u64, DecodeError> {
    let mut n = 1u64;
    for field in Fields::new(shape) {
        if let (2, Wire::Bytes(dim)) = field? {
            for f in Fields::new(dim) {
                if let (1, Wire::Varint(size)) = f? {
                    n = n.saturating_mul(size);
                }
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{detect, import_bytes};
    use crate::trace::{GRAD_NORM, LM_LOSS};

    // A minimal event-file writer, mirroring TensorFlow's `RecordWriter` and the protos.
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn bytes_field(field: u64, data: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }
    fn record(data: &[u8]) -> Vec<u8> {
        let len = (data.len() as u64).to_le_bytes();
        let mut out = len.to_vec();
        out.extend(masked_crc32c(&len).to_le_bytes());
        out.extend_from_slice(data);
        out.extend(masked_crc32c(data).to_le_bytes());
        out
    }
    fn event(step: u64, value: &[u8]) -> Vec<u8> {
        let mut ev = vec![0x09]; // wall_time, field 1 double
        ev.extend(1.7e9f64.to_le_bytes());
        varint(2 << 3, &mut ev);
        varint(step, &mut ev);
        let mut summary = Vec::new();
        bytes_field(1, value, &mut summary);
        bytes_field(5, &summary, &mut ev);
        record(&ev)
    }
    fn simple(tag: &str, v: f32) -> Vec<u8> {
        let mut val = Vec::new();
        bytes_field(1, tag.as_bytes(), &mut val);
        val.push(2 << 3 | 5);
        val.extend(v.to_le_bytes());
        val
    }
    fn tensor(tag: &str, dtype: u64, content: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        varint(1 << 3, &mut t);
        varint(dtype, &mut t);
        bytes_field(2, &[], &mut t); // scalar shape: no dims
        bytes_field(4, content, &mut t);
        let mut val = Vec::new();
        bytes_field(1, tag.as_bytes(), &mut val);
        bytes_field(8, &t, &mut val);
        val
    }
    fn file() -> Vec<u8> {
        let mut version = vec![];
        bytes_field(3, b"brain.Event:2", &mut version);
        let mut f = record(&version);
        for step in 1..=3u64 {
            f.extend(event(step, &simple("lm loss", 10.0 - step as f32)));
            f.extend(event(
                step * 32,
                &simple("lm loss vs samples", 10.0 - step as f32),
            ));
            f.extend(event(
                step,
                &tensor("grad-norm", DT_DOUBLE, &(0.5 * step as f64).to_le_bytes()),
            ));
        }
        f
    }

    #[test]
    fn scalars_from_simple_values_and_tensors() {
        let bytes = file();
        assert_eq!(detect(&bytes), Some(Format::TensorBoard));
        let t = import_bytes(&bytes, Path::new("events.out.tfevents.1"), None).unwrap();
        assert_eq!(t.steps, vec![1, 2, 3]);
        assert_eq!(t.lm_loss().unwrap(), &[9.0, 8.0, 7.0]);
        assert_eq!(t.series[LM_LOSS].precision, Precision::F32);
        assert_eq!(t.metric(GRAD_NORM).unwrap(), &[0.5, 1.0, 1.5]);
        assert_eq!(
            t.config["import"]["skipped_tags"],
            json!(["lm loss vs samples"])
        );
    }

    #[test]
    fn float_val_and_half_tensors_are_scalars() {
        let mut t = Vec::new();
        varint(1 << 3, &mut t);
        varint(DT_FLOAT, &mut t);
        bytes_field(5, &2.5f32.to_le_bytes(), &mut t); // packed float_val
        assert_eq!(scalar_tensor(&t).unwrap(), Some((2.5, Precision::F32)));
        let h = half::f16::from_f32(1.5).to_le_bytes();
        let val = tensor("x", DT_HALF, &h);
        let value = match summary_value(&val).unwrap() {
            Some(Item::Scalar(s)) => Some(s.value),
            _ => None,
        };
        assert_eq!(value, Some(1.5));
        // A [2]-shaped tensor is a histogram-like payload, not a scalar.
        let mut t = Vec::new();
        let mut dim = Vec::new();
        varint(1 << 3, &mut dim);
        varint(2, &mut dim);
        let mut shape = Vec::new();
        bytes_field(2, &dim, &mut shape);
        bytes_field(2, &shape, &mut t);
        assert_eq!(scalar_tensor(&t).unwrap(), None);
    }

    #[test]
    fn corrupted_crcs_are_rejected_with_the_offset() {
        let good = file();
        let first_len = 12 + 4 + good[0] as usize; // version record
        let mut bad = good.clone();
        bad[first_len + 20] ^= 0x01; // a data byte of the second record
        let err = import_bytes(&bad, Path::new("ev"), Some(Format::TensorBoard)).unwrap_err();
        assert!(
            matches!(&err, Error::Crc { what: "data", offset, .. } if *offset == first_len as u64),
            "{err}"
        );
        assert!(err.to_string().contains("corrupted"), "{err}");
        let mut bad = good.clone();
        bad[first_len] ^= 0x01; // the second record's length
        let err = import_bytes(&bad, Path::new("ev"), Some(Format::TensorBoard)).unwrap_err();
        assert!(matches!(err, Error::Crc { what: "length", .. }), "{err}");
    }

    #[test]
    fn truncated_files_are_errors_not_panics() {
        let good = file();
        for cut in [5, 13, good.len() - 1, good.len() - 30] {
            let err = import_bytes(&good[..cut], Path::new("ev"), Some(Format::TensorBoard));
            assert!(err.is_err(), "cut at {cut}");
        }
        // A record whose CRCs verify but whose payload is not a protobuf.
        let err = import_bytes(&record(&[0xff; 4]), Path::new("ev"), None).unwrap_err();
        assert!(err.to_string().contains("an Event protobuf"), "{err}");
    }

    #[test]
    fn a_double_in_a_half_tensor_stays_a_double() {
        // cargo fuzz (import_tensorboard), minimised: tag "lr", dtype DT_HALF, no content, and
        // double_val = f64::from_bits(20) = 1e-322. Labelled f32, it was saved as 0. (The
        // fuzzer's bytes also held a field numbered 0, now refused as not protobuf; it is
        // dropped here and the lengths shortened.)
        let payload = [
            0x2a, 0x0e, 0x0a, 0x0c, 0x0a, 0x02, b'l', b'r', 0x42, 0x06, 0x08, 0x13, 0x12, 0x00,
            0x30, 0x14,
        ];
        let t = import_bytes(&record(&payload), Path::new("ev"), None).unwrap();
        assert_eq!(t.series["lr"].precision, Precision::F64);
        assert_eq!(t.metric("lr").unwrap(), &[f64::from_bits(20)]);
        let back = Trace::from_json(&t.to_json(), Path::new("ev")).unwrap();
        assert_eq!(back.metric("lr").unwrap(), &[f64::from_bits(20)]);
    }

    #[test]
    fn a_tag_logged_as_f32_then_f64_is_an_f64_series() {
        let mut f = event(1, &simple("loss", 1.0));
        f.extend(event(2, &tensor("loss", DT_DOUBLE, &0.1f64.to_le_bytes())));
        let t = import_bytes(&f, Path::new("ev"), None).unwrap();
        assert_eq!(t.series[LM_LOSS].precision, Precision::F64);
        let back = Trace::from_json(&t.to_json(), Path::new("ev")).unwrap();
        assert_eq!(back.lm_loss().unwrap(), &[1.0, 0.1]);
    }

    #[test]
    fn duplicate_step_for_a_tag_is_an_error() {
        let mut f = event(1, &simple("loss", 1.0));
        f.extend(event(1, &simple("loss", 2.0)));
        let err = import_bytes(&f, Path::new("ev"), None).unwrap_err();
        assert!(matches!(err, Error::StepOrder { step: 1, .. }), "{err}");
    }

    /// A `Summary.Value` as PyTorch's `hparams()` writes `session_start_info`.
    fn hparams_value(pairs: &[(&str, Option<f64>, Option<&str>)]) -> Vec<u8> {
        let mut start = Vec::new();
        for (k, num, text) in pairs {
            let mut v = Vec::new();
            if let Some(x) = num {
                v.push(2 << 3 | 1);
                v.extend(x.to_le_bytes());
            }
            if let Some(t) = text {
                bytes_field(3, t.as_bytes(), &mut v);
            }
            let mut entry = Vec::new();
            bytes_field(1, k.as_bytes(), &mut entry);
            bytes_field(2, &v, &mut entry);
            bytes_field(1, &entry, &mut start);
        }
        let mut content = Vec::new();
        varint(1 << 3, &mut content);
        varint(0, &mut content);
        bytes_field(3, &start, &mut content);
        plugin_value("_hparams_/session_start_info", "hparams", &content, None)
    }

    fn plugin_value(tag: &str, plugin: &str, content: &[u8], tensor: Option<&[u8]>) -> Vec<u8> {
        let mut pd = Vec::new();
        bytes_field(1, plugin.as_bytes(), &mut pd);
        bytes_field(2, content, &mut pd);
        let mut meta = Vec::new();
        bytes_field(1, &pd, &mut meta);
        let mut val = Vec::new();
        bytes_field(1, tag.as_bytes(), &mut val);
        if let Some(t) = tensor {
            bytes_field(8, t, &mut val);
        }
        bytes_field(9, &meta, &mut val);
        val
    }

    /// A text summary as `SummaryWriter.add_text(arg, str(value))` writes it (Megatron's args).
    fn text_value(tag: &str, text: &str) -> Vec<u8> {
        let mut t = Vec::new();
        varint(1 << 3, &mut t);
        varint(7, &mut t); // DT_STRING
        bytes_field(8, text.as_bytes(), &mut t);
        plugin_value(&format!("{tag}/text_summary"), "text", b"", Some(&t))
    }

    #[test]
    fn a_run_directory_reads_every_event_file_hparams_and_texts() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("flash");
        std::fs::create_dir_all(run.join("1712345678.5")).unwrap();
        // Two event files of a restarted run, then add_hparams' subdirectory.
        let mut first = event(1, &simple("lm loss", 3.0));
        first.extend(event(0, &text_value("lr", "0.00015")));
        first.extend(event(0, &text_value("seed", "1234")));
        std::fs::write(run.join("events.out.tfevents.1712345600.vm.1.0"), first).unwrap();
        let mut second = event(2, &simple("lm loss", 2.5));
        second.extend(event(2, &text_value("sample", "once upon")));
        second.extend(event(3, &text_value("sample", "a time")));
        std::fs::write(run.join("events.out.tfevents.1712345700.vm.2.0"), second).unwrap();
        let hp = hparams_value(&[
            ("attention_dropout", Some(0.1), None),
            ("attention", None, Some("flash")),
        ]);
        std::fs::write(
            run.join("1712345678.5/events.out.tfevents.1712345678.vm.1.1"),
            event(0, &hp),
        )
        .unwrap();
        let t = crate::import::import(&run, None).unwrap();
        assert_eq!(t.name, "flash");
        assert_eq!(t.steps, vec![1, 2]);
        assert_eq!(t.lm_loss().unwrap(), &[3.0, 2.5]);
        assert_eq!(t.config["lr"], json!(0.00015));
        assert_eq!(t.config["attention_dropout"], json!(0.1));
        assert_eq!(t.config["attention"], json!("flash"));
        assert_eq!(t.seeds["init"], 1234);
        assert_eq!(t.config["import"]["skipped_tags"], json!(["sample (text)"]));
        assert_eq!(
            t.config["import"]["event_files"].as_array().unwrap().len(),
            3
        );
        // A log directory holding two runs is refused, naming them.
        std::fs::create_dir_all(dir.path().join("naive")).unwrap();
        std::fs::write(
            dir.path().join("naive/events.out.tfevents.1.vm.1.0"),
            event(1, &simple("loss", 1.0)),
        )
        .unwrap();
        let err = crate::import::import(dir.path(), None).unwrap_err();
        assert!(
            err.to_string().contains("2 runs: \"flash\", \"naive\""),
            "{err}"
        );
    }
}
