//! Fuzzes the experiment-spec parser. Parsing reads no file and runs nothing (external arms'
//! commands are only checked); an accepted spec expands into the runs it promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lossdiff::experiment::Experiment;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(exp) = Experiment::parse(text, Path::new("experiments/fuzz.toml")) else {
        return;
    };
    let cells = exp.cells();
    assert!(!cells.is_empty(), "a spec has at least the default cell");
    if let Ok(runs) = exp.runs(None) {
        let per_arm = exp.seeds.len() + exp.perturbations.len();
        assert_eq!(runs.len(), cells.len() * exp.arms.len() * per_arm);
    }
    for cell in &cells {
        for arm in &exp.arms {
            let _ = exp.spec_hash(cell, arm);
        }
    }
});
