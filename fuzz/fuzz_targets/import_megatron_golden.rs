//! Fuzzes the megatron golden importer: any bytes give a trace that satisfies the import
//! invariants, or a typed error; and an accepted file survives lossdiff's export to the same
//! schema: exported and imported again, it gives the same steps and the same values, bit for bit,
//! except one documented loss. The schema cannot tell a NaN from a step that was not run, and the
//! importer reads leading steps that are NaN in every metric as not run (a resumed test's second
//! half). A trace whose first steps are NaN in every *exported* series (the finite metrics that
//! told them apart were dropped for logging on another grid) therefore comes back without them,
//! listed in `config.import.not_logged_leading_steps`. Found by this target; see docs/fuzzing.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lossdiff::import::{import_bytes, megatron_golden_json, Format};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    lossdiff_fuzz::import_and_check(data, Format::MegatronGolden);
    let path = Path::new(lossdiff_fuzz::PATH);
    let Ok(trace) = import_bytes(data, path, Some(Format::MegatronGolden)) else {
        return;
    };
    let exported = megatron_golden_json(&trace);
    let all_nan = |i: usize| trace.series.values().all(|s| s.values[i].is_nan());
    let lost = (0..trace.steps.len()).take_while(|&i| all_nan(i)).count();
    let reimported = import_bytes(exported.as_bytes(), path, None);
    if lost == trace.steps.len() {
        assert!(
            reimported.is_err(),
            "an export that is NaN everywhere is empty"
        );
        return;
    }
    let back =
        reimported.unwrap_or_else(|e| panic!("the export of an accepted golden file imports: {e}"));
    assert_eq!(back.origin.format, Format::MegatronGolden.name());
    let cut: Vec<u64> = back.config["import"]["not_logged_leading_steps"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default();
    let trace_cut: Vec<u64> = trace.config["import"]["not_logged_leading_steps"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default();
    let mut expected_cut = trace_cut;
    expected_cut.extend(&trace.steps[..lost]);
    assert_eq!(cut, expected_cut, "only leading all-NaN steps are cut");
    assert_eq!(back.steps, trace.steps[lost..]);
    assert_eq!(
        back.series.keys().collect::<Vec<_>>(),
        trace.series.keys().collect::<Vec<_>>()
    );
    for (name, s) in &trace.series {
        let bits = |v: &[f64]| {
            v.iter()
                .map(|x| if x.is_nan() { u64::MAX } else { x.to_bits() })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            bits(&back.series[name].values),
            bits(&s.values[lost..]),
            "`{name}`"
        );
    }
});
