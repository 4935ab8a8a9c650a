//! Tests on the real Megatron-LM golden values in `../shared/realdata/megatron/` (see its
//! NOTES.md). They fail when that folder is absent (e.g. a checkout without `shared/`) unless
//! `LOSSDIFF_SKIP_REALDATA` is set, as `tests/megatron_realdata.rs` does.

use super::{detect, import, megatron_golden_json, to_megatron_golden, Format};
use crate::trace::{Trace, LM_LOSS, STEP_TIME};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/realdata/megatron");
    if d.is_dir() {
        return Some(d);
    }
    let opt_out = std::env::var_os("LOSSDIFF_SKIP_REALDATA").filter(|v| !v.is_empty() && v != "0");
    assert!(
        opt_out.is_some(),
        "{} is absent: the real-data tests need it; set LOSSDIFF_SKIP_REALDATA=1 to skip them knowingly",
        d.display()
    );
    eprintln!(
        "SKIPPED (LOSSDIFF_SKIP_REALDATA set): {} absent",
        d.display()
    );
    None
}

fn load(dir: &Path, test: &str, file: &str) -> (Trace, Value) {
    let path = dir.join(test).join(file);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(detect(&bytes), Some(Format::MegatronGolden), "{file}");
    let trace = import(&path, None).unwrap();
    (trace, serde_json::from_slice(&bytes).unwrap())
}

const PP2: &str = "gpt3_mcore_tp1_pp2";
const RESUME: &str = "gpt3_mcore_tp1_pp2_resume_torch_dist";

fn nan_steps(t: &Trace, metric: &str) -> Vec<u64> {
    let values = t.metric(metric).unwrap();
    t.steps
        .iter()
        .zip(values)
        .filter(|(_, v)| v.is_nan())
        .map(|(s, _)| *s)
        .collect()
}

#[test]
fn pp2_files_import_with_iteration_time_on_its_own_steps() {
    let Some(dir) = dir() else { return };
    for (file, loss_1) in [
        ("golden_values_dev_dgx_h100.json", 10.94919),
        ("golden_values_dev_dgx_gb200.json", 10.90496),
        ("golden_values_lts_dgx_a100.json", 10.93223),
    ] {
        let (t, _) = load(&dir, PP2, file);
        assert_eq!(t.steps, (1..=50).collect::<Vec<_>>(), "{file}");
        assert_eq!(t.lm_loss().unwrap()[0], loss_1, "{file}");
        let names: Vec<&str> = t.series.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "lm_loss",
                "mem_allocated_bytes",
                "mem_max_allocated_bytes",
                "num_zeros",
                "step_time_s"
            ]
        );
        // iteration-time is logged on 2..50 only: kept on its own steps, not NaN-padded.
        let own = t.config["import"]["own_steps"][STEP_TIME].as_str().unwrap();
        assert!(own.contains("49 steps 2..50"), "{own}");
        assert_eq!(t.points(STEP_TIME).unwrap().0.len(), 49);
        assert!(t
            .series
            .values()
            .all(|s| s.values.iter().all(|v| v.is_finite())));
    }
}

#[test]
fn resume_first_half_keeps_megatron_nans() {
    let Some(dir) = dir() else { return };
    let (t, raw) = load(&dir, RESUME, "golden_values_dev_dgx_a100.json");
    assert_eq!(t.steps, (1..=100).collect::<Vec<_>>());
    assert_eq!(t.lm_loss().unwrap()[99], 9.81785);
    assert_eq!(raw["lm loss"]["values"]["100"], 9.81785);
    // The first step has no timing; num-zeros is "nan" on steps 1..15 and 18 (fp16 warm-up).
    assert_eq!(nan_steps(&t, STEP_TIME), [1]);
    let mut want: Vec<u64> = (1..=15).collect();
    want.push(18);
    assert_eq!(nan_steps(&t, "num_zeros"), want);
    assert!(nan_steps(&t, LM_LOSS).is_empty());
}

#[test]
fn resume_second_half_cuts_not_logged_steps() {
    let Some(dir) = dir() else { return };
    for (first, second) in [
        (
            "golden_values_dev_dgx_a100.json",
            "golden_values_dev_dgx_a100_2nd.json",
        ),
        (
            "golden_values_lts_dgx_a100.json",
            "golden_values_lts_dgx_a100_2nd.json",
        ),
    ] {
        let (b, raw) = load(&dir, RESUME, second);
        assert_eq!(b.steps, (51..=100).collect::<Vec<_>>(), "{second}");
        assert_eq!(raw["lm loss"]["values"]["50"], "nan");
        assert_eq!(b.lm_loss().unwrap()[0], raw["lm loss"]["values"]["51"]);
        assert!(b
            .series
            .values()
            .all(|s| s.values.iter().all(|v| v.is_finite())));
        let cut = &b.config["import"]["not_logged_leading_steps"];
        assert_eq!(cut.as_array().unwrap().len(), 50);
        let (a, _) = load(&dir, RESUME, first);
        // The comparison engine aligns the halves on their 50 common steps.
        let settings = crate::compare::CompareSettings::default();
        let c = crate::compare::compare(&[a], &[b], &[], &[], &settings).unwrap();
        assert_eq!(c.alignment.common, 50);
        assert_eq!(c.alignment.only_a, (1..=50).collect::<Vec<u64>>());
        assert!(c.alignment.only_b.is_empty());
        // A finding, not a parser property: the resumed half does not reproduce the first run's
        // steps 51..100 (e.g. dev step 51: 10.43672 before, 10.2013 after resuming).
        assert!(c.exact.first_differing_step.is_some());
    }
}

#[test]
fn real_files_re_export_equal_to_themselves() {
    let Some(dir) = dir() else { return };
    for test in [PP2, RESUME] {
        for entry in std::fs::read_dir(dir.join(test)).unwrap() {
            let file = entry.unwrap().file_name().into_string().unwrap();
            if !file.ends_with(".json") {
                continue;
            }
            let (t, raw) = load(&dir, test, &file);
            let back = to_megatron_golden(&t);
            for (metric, body) in raw.as_object().unwrap() {
                let got = &back[metric];
                for key in ["start_step", "end_step", "step_interval"] {
                    assert_eq!(got[key], body[key], "{file} {metric} {key}");
                }
                let (want, got) = (body["values"].as_object().unwrap(), &got["values"]);
                assert_eq!(
                    got.as_object().unwrap().len(),
                    want.len(),
                    "{file} {metric}"
                );
                for (step, v) in want {
                    // Numbers compare as f64 (`1723.0` and `1723` are one value); "nan" as text.
                    let same = match (v, &got[step]) {
                        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
                        (x, y) => x == y,
                    };
                    assert!(same, "{file} {metric} step {step}: {v} vs {}", got[step]);
                }
            }
        }
    }
}

#[test]
fn real_file_re_exports_line_for_line() {
    let Some(dir) = dir() else { return };
    // Every line must come back (metric order aside).
    let path = dir.join(RESUME).join("golden_values_dev_dgx_a100.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let exported = megatron_golden_json(&import(&path, None).unwrap());
    let lines = |text: &str| {
        let mut v: Vec<String> = text
            .lines()
            .map(|l| l.trim_end().trim_end_matches(',').to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(lines(&exported), lines(&original));
}
