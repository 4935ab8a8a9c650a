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

use super::protobuf::{masked_crc32c, DecodeError, Fields, Wire};
use super::{Collector, Format};
use crate::error::{Error, Result};
use crate::trace::{Precision, Trace};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;

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

/// Parses an event file into a trace.
pub(super) fn parse(bytes: &[u8], path: &Path) -> Result<Trace> {
    let mut c = Collector::new(path);
    let mut skipped_tags = BTreeSet::new();
    for (n, (offset, data)) in records(bytes, path)?.into_iter().enumerate() {
        let place = || format!("record {n} at byte {offset}");
        let malformed = |e: DecodeError| Error::Parse {
            path: path.to_path_buf(),
            place: place(),
            expected: "an Event protobuf".into(),
            got: format!("{} at byte {} of the record", e.what, e.offset),
        };
        let (step, scalars) = event(data).map_err(malformed)?;
        for s in scalars {
            if s.tag.ends_with(" vs samples") {
                skipped_tags.insert(s.tag);
                continue;
            }
            let step = u64::try_from(step).map_err(|_| Error::Parse {
                path: path.to_path_buf(),
                place: place(),
                expected: "a non-negative step".into(),
                got: step.to_string(),
            })?;
            c.push(&s.tag, step, s.value, s.precision, place)?;
        }
    }
    if !skipped_tags.is_empty() {
        c.note("skipped_tags", json!(skipped_tags));
    }
    c.finish(Format::TensorBoard)
}

/// Decodes an `Event`: its step and the scalars of its summary (none for other events).
fn event(data: &[u8]) -> std::result::Result<(i64, Vec<Scalar>), DecodeError> {
    let (mut step, mut scalars) = (0i64, Vec::new());
    for field in Fields::new(data) {
        match field? {
            (2, Wire::Varint(v)) => step = v as i64, // int64 is two's complement on the wire
            (5, Wire::Bytes(summary)) => {
                for value in Fields::new(summary) {
                    if let (1, Wire::Bytes(v)) = value? {
                        scalars.extend(summary_value(v)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok((step, scalars))
}

/// Decodes a `Summary.Value` into a scalar, or `None` if it holds something else.
fn summary_value(data: &[u8]) -> std::result::Result<Option<Scalar>, DecodeError> {
    let (mut tag, mut simple, mut tensor) = (None, None, None);
    for field in Fields::new(data) {
        match field? {
            (1, Wire::Bytes(t)) => tag = Some(String::from_utf8_lossy(t).into_owned()),
            (2, Wire::Fixed32(bits)) => simple = Some(f32::from_bits(bits)),
            (8, Wire::Bytes(t)) => tensor = Some(t),
            _ => {}
        }
    }
    let value = match (simple, tensor) {
        (Some(v), _) => Some((f64::from(v), Precision::F32)),
        (None, Some(t)) => scalar_tensor(t)?,
        (None, None) => None,
    };
    Ok(tag.zip(value).map(|(tag, (value, precision))| Scalar {
        tag,
        value,
        precision,
    }))
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
        assert_eq!(summary_value(&val).unwrap().map(|s| s.value), Some(1.5));
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
}
