//! Fuzzes the torchtitan importer: any bytes give a trace that satisfies the import invariants, or
//! a typed error; never a panic, a hang or an allocation the input size does not justify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lossdiff::import::Format;

fuzz_target!(|data: &[u8]| {
    lossdiff_fuzz::import_and_check(data, Format::TorchtitanText);
});
