//! Checks shared by the fuzz targets: what every successful parse must satisfy beyond "did not
//! panic". Each target calls one of these on whatever the library accepted.

use lossdiff::import::{import_bytes, Format};
use lossdiff::trace::{Precision, Trace};
use std::path::Path;

/// The name every fuzz input is parsed under (it only appears in messages).
pub const PATH: &str = "fuzz-input";

/// Imports `data` as `format` and, when the importer accepts it, checks the trace invariants.
pub fn import_and_check(data: &[u8], format: Format) {
    if let Ok(trace) = import_bytes(data, Path::new(PATH), Some(format)) {
        assert_eq!(
            trace.origin.format,
            format.name(),
            "origin names the format"
        );
        check_trace(&trace);
        for (name, s) in &trace.series {
            // An importer gives a series its own steps only when they differ from the grid.
            assert_ne!(s.steps.as_ref(), Some(&trace.steps), "`{name}` own steps equal the grid");
        }
    }
}

/// What the importers promise of a trace they return (`src/import/mod.rs`): at least one step,
/// steps strictly increasing, one value per step in every series, `f32` series holding exact
/// widenings of `f32`, and a trace that saves and loads back bit for bit.
pub fn check_trace(trace: &Trace) {
    assert!(!trace.steps.is_empty(), "an accepted trace has steps");
    assert!(!trace.series.is_empty(), "an accepted trace has a series");
    trace
        .validate(Path::new(PATH))
        .expect("an accepted trace satisfies Trace::validate");
    for (name, s) in &trace.series {
        if s.precision == Precision::F32 {
            for v in s.values.iter().filter(|v| v.is_finite()) {
                assert_eq!(f64::from(*v as f32), *v, "`{name}` is f32 but holds {v:e}");
            }
        }
    }
    let back = Trace::from_json(&trace.to_json(), Path::new(PATH))
        .expect("a trace lossdiff accepted loads back from its own JSON");
    assert_same(trace, &back);
}

/// Asserts two traces are equal, comparing values by their bits (NaN equals NaN).
pub fn assert_same(a: &Trace, b: &Trace) {
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.config, b.config);
    assert_eq!(a.origin, b.origin);
    assert_eq!(a.seeds, b.seeds);
    assert_eq!(
        a.series.keys().collect::<Vec<_>>(),
        b.series.keys().collect::<Vec<_>>()
    );
    for (name, s) in &a.series {
        let t = &b.series[name];
        assert_eq!(s.precision, t.precision, "`{name}` precision");
        assert_eq!(s.steps, t.steps, "`{name}` own steps");
        let bits = |v: &[f64]| v.iter().map(|x| canonical_bits(*x)).collect::<Vec<_>>();
        assert_eq!(bits(&s.values), bits(&t.values), "`{name}` values");
    }
}

/// A value's bits, with every NaN mapped to one pattern: a trace stores "nan", not a payload.
fn canonical_bits(x: f64) -> u64 {
    if x.is_nan() {
        f64::NAN.to_bits()
    } else {
        x.to_bits()
    }
}

/// Frames `data` as TFRecords with valid checksums: `data` is a sequence of payloads, each
/// preceded by its length as a little-endian `u16` (the last one cut to what is left).
///
/// Random mutations of an event file almost always break a CRC, which the importer rightly
/// refuses first; framing the fuzzer's bytes lets it reach the `Event`/`Summary`/`TensorProto`
/// decoding behind the checksums.
pub fn tfrecords(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (len, rest) = match data {
            [lo, hi, rest @ ..] => (usize::from(u16::from_le_bytes([*lo, *hi])), rest),
            rest => (rest.len(), &[][..]),
        };
        let (payload, tail) = rest.split_at(len.min(rest.len()));
        let header = (payload.len() as u64).to_le_bytes();
        out.extend_from_slice(&header);
        out.extend_from_slice(&masked_crc32c(&header).to_le_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(&masked_crc32c(payload).to_le_bytes());
        data = tail;
    }
    out
}

/// TFRecord's masked CRC32C, written out again here so the fuzz crate checks the library's
/// framing against an independent implementation.
fn masked_crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    (!crc).rotate_right(15).wrapping_add(0xa282_ead8)
}
