//! Fuzzes the TensorBoard importer: any bytes give a trace that satisfies the import invariants,
//! or a typed error; never a panic, a hang or an allocation the input size does not justify (a
//! record length field claiming gigabytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lossdiff::import::Format;

fuzz_target!(|data: &[u8]| {
    // As raw bytes: the framing, length fields and checksums.
    lossdiff_fuzz::import_and_check(data, Format::TensorBoard);
    // As payloads framed with valid checksums: the protobuf decoding behind them. Framed
    // records are always TFRecords, so detection must say so.
    let framed = lossdiff_fuzz::tfrecords(data);
    if framed.len() >= 12 {
        assert_eq!(
            lossdiff::import::detect(&framed),
            Some(Format::TensorBoard),
            "valid framing is detected"
        );
    }
    lossdiff_fuzz::import_and_check(&framed, Format::TensorBoard);
});
