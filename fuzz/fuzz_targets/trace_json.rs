//! Fuzzes lossdiff's own trace JSON parser: an accepted trace satisfies its invariants and
//! saves and loads back bit for bit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lossdiff::trace::Trace;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(trace) = Trace::from_json(text, Path::new(lossdiff_fuzz::PATH)) {
        trace
            .validate(Path::new(lossdiff_fuzz::PATH))
            .expect("from_json validates");
        let back = Trace::from_json(&trace.to_json(), Path::new(lossdiff_fuzz::PATH))
            .expect("a trace loads back from its own JSON");
        lossdiff_fuzz::assert_same(&trace, &back);
    }
});
