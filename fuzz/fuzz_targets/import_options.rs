//! Fuzzes what `--rank` and `--run` select: the first input line names the rank (a number) and
//! the run (the rest of the line); the other lines are read as a Megatron log, a torchtitan log
//! and a CSV export with those choices. Whatever is accepted satisfies the import invariants and
//! records the rank or run it read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lossdiff::import::{import_bytes_with, Format, ImportOptions};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (head, body) = data.split_at(split);
    let head = String::from_utf8_lossy(head);
    let (rank, run) = head.split_once(' ').unwrap_or((&head, ""));
    for format in [Format::MegatronLog, Format::TorchtitanText, Format::Csv] {
        let opts = ImportOptions {
            format: Some(format),
            rank: rank.trim().parse().ok(),
            run: (!run.is_empty()).then(|| run.to_string()),
        };
        if let Ok(trace) = import_bytes_with(body, Path::new(lossdiff_fuzz::PATH), &opts) {
            lossdiff_fuzz::check_trace(&trace);
            if let (Some(r), Some(read)) = (opts.rank, trace.config.pointer("/import/rank")) {
                assert_eq!(read.as_u64(), Some(u64::from(r)), "read the rank asked for");
            }
        }
    }
});
