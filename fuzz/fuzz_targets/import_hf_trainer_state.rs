//! Fuzzes the Hugging Face `trainer_state.json` importer (and the strict JSON reader under it:
//! bare NaN/Infinity, duplicate keys): any bytes give a trace that satisfies the import
//! invariants, or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lossdiff::import::Format;

fuzz_target!(|data: &[u8]| {
    lossdiff_fuzz::import_and_check(data, Format::HfTrainerState);
});
