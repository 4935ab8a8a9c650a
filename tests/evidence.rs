//! Claims the README makes about real runs, checked on real runs (or their blessed goldens).

mod common;

use lossdiff::compare::{compare, CompareSettings, Verdict};
use lossdiff::config::{AttentionBackend, RunConfig};
use lossdiff::golden::Golden;
use lossdiff::train::{loss_bits, train};
use std::path::Path;

fn quick(attention: AttentionBackend) -> RunConfig {
    let mut c = RunConfig::preset("gate").unwrap();
    c.train.train_iters = 30;
    c.train.lr_warmup_iters = 3;
    c.model.attention = attention;
    c.model.attention_dropout = 0.1;
    c
}

#[test]
fn two_runs_of_the_same_spec_compare_identical_for_both_kernels() {
    for backend in [AttentionBackend::Naive, AttentionBackend::Flash] {
        let a = train(&quick(backend), "a", &mut |_| {}).unwrap();
        let b = train(&quick(backend), "b", &mut |_| {}).unwrap();
        assert_eq!(
            loss_bits(&a),
            loss_bits(&b),
            "{backend:?} is not bitwise reproducible"
        );
        let c = compare(&[a], &[b], &[], &[], &CompareSettings::default()).unwrap();
        assert_eq!(c.verdict, Verdict::Identical);
    }
}

#[test]
fn the_dropout_confound_names_dropout_before_any_statistics() {
    let dir = Path::new("golden/dropout_confound/default");
    let naive = Golden::load(&dir.join("naive.golden.json")).unwrap();
    let flash = Golden::load(&dir.join("flash.golden.json")).unwrap();
    let c = common::compare_goldens(&naive, &flash, "model.attention");
    let undeclared: Vec<&str> = c.config.undeclared.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        undeclared,
        ["model.attention_dropout", "model.hidden_dropout"]
    );
    assert_eq!(
        c.config.declared.len(),
        1,
        "model.attention is the declared factor"
    );
    assert!(
        !c.config.stochastic.is_empty(),
        "dropout > 0 must raise a stochastic warning"
    );
}

/// Every committed golden belongs to a shipped experiment and was blessed under its current spec;
/// a spec edited without re-blessing fails here, before any training.
#[test]
fn committed_goldens_are_fresh_and_all_used() {
    use lossdiff::experiment::Experiment;
    use lossdiff::golden::GoldenStore;
    let store = GoldenStore::new("golden");
    let mut used = Vec::new();
    for spec in [
        "flash_vs_noflash",
        "kernels_fused_vs_composed",
        "env_f32_vs_bf16",
        "lr_decay_sweep",
        "dropout_confound",
        "external_toy",
        "canary",
        "pytorch_upgrade",
    ] {
        let exp = Experiment::load(Path::new(&format!("experiments/{spec}.toml"))).unwrap();
        for cell in exp.cells() {
            for arm in &exp.arms {
                let g = store
                    .load(&exp.name, &cell.id, &arm.name)
                    .unwrap()
                    .unwrap_or_else(|| panic!("no golden for {spec} {} {}", cell.id, arm.name));
                assert_eq!(
                    g.provenance.spec_hash,
                    exp.spec_hash(&cell, arm).unwrap(),
                    "{spec} [{}] {} is stale",
                    cell.id,
                    arm.name
                );
                used.push((exp.name.clone(), cell.id.clone(), arm.name.clone()));
            }
        }
    }
    assert_eq!(store.unused(&used), Vec::<std::path::PathBuf>::new());
}
