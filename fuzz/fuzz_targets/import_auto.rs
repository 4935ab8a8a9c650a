//! Fuzzes the auto-detecting import entry point: detection never panics, and importing without a
//! format gives exactly what importing with the detected format gives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lossdiff::import::{detect, import_bytes};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new(lossdiff_fuzz::PATH);
    let auto = import_bytes(data, path, None);
    if let Ok(trace) = &auto {
        lossdiff_fuzz::check_trace(trace);
    }
    // A byte-order mark is stripped before detection; detect the same bytes the importer saw.
    let body = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    if let Some(format) = detect(body) {
        let forced = import_bytes(data, path, Some(format));
        match (&auto, &forced) {
            (Ok(a), Ok(b)) => lossdiff_fuzz::assert_same(a, b),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!("detected {format} but auto and forced imports disagree"),
        }
    }
});
