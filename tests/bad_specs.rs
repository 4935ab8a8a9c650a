//! The bad-input catalog for specs (issue #8): malformed TOML, a misspelled key in every section
//! of run specs and experiment specs (refused with the closest valid key), values of the wrong
//! kind, and `--set` overrides. All are refused before anything trains, with exit code 2 and a
//! message naming the file, the key and what was expected.

mod common;

use common::{assert_refused, lossdiff_in, stdout, write};

/// `lossdiff train spec.toml` on a run spec holding `text` (with a tiny step count).
fn train(text: &str, extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "spec.toml", text);
    let mut args = vec![
        "train",
        "spec.toml",
        "--out",
        "t.json",
        "--set",
        "train_iters=2",
    ];
    args.extend_from_slice(extra);
    lossdiff_in(dir.path(), &args, &[])
}

/// `lossdiff run exp.toml` on an experiment spec holding `text`.
fn run(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "exp.toml", text);
    lossdiff_in(dir.path(), &["run", "exp.toml", "--out", "report"], &[])
}

/// The tiny experiment with `from` replaced by `to` (which must occur).
fn experiment_with(from: &str, to: &str) -> String {
    let spec = common::tiny_experiment("x");
    assert!(spec.contains(from), "{from:?} not in the spec");
    spec.replacen(from, to, 1)
}

#[test]
fn malformed_toml_names_line_and_column() {
    let o = train("[train\ntrain_iters = 5\n", &[]);
    assert_refused(&o, &["spec.toml: invalid TOML", "line 1, column 7"]);
}

#[test]
fn misspelled_top_level_key_suggests_the_valid_one() {
    let o = train("presett = \"gate\"\n", &[]);
    assert_refused(
        &o,
        &["spec.toml: unknown key `presett` (did you mean `preset`?)"],
    );
}

#[test]
fn misspelled_section_suggests_the_valid_one() {
    let o = train("[modle]\nhidden_size = 8\n", &[]);
    assert_refused(
        &o,
        &["spec.toml: unknown key `modle` (did you mean `model`?)"],
    );
}

#[test]
fn misspelled_model_key_suggests_the_valid_one() {
    let o = train("[model]\nhiden_size = 8\n", &[]);
    assert_refused(&o, &["(did you mean `model.hidden_size`?)"]);
}

#[test]
fn misspelled_train_key_suggests_the_valid_one() {
    let o = train("[train]\ntrain_iter = 5\n", &[]);
    assert_refused(
        &o,
        &["unknown key `train.train_iter` (did you mean `train.train_iters`?)"],
    );
}

#[test]
fn misspelled_data_key_suggests_the_valid_one() {
    let o = train("[data]\nsorce = \"file\"\n", &[]);
    assert_refused(
        &o,
        &["unknown key `data.sorce` (did you mean `data.source`?)"],
    );
}

#[test]
fn misspelled_field_outside_its_section_suggests_the_qualified_key() {
    let o = train("train_iter = 5\n", &[]);
    assert_refused(
        &o,
        &["unknown key `train_iter` (did you mean `train.train_iters`?)"],
    );
}

#[test]
fn value_of_the_wrong_kind_says_what_was_expected() {
    let o = train("[train]\ntrain_iters = \"five\"\n", &[]);
    assert_refused(
        &o,
        &["spec.toml: `train.train_iters` = \"five\": expected u64"],
    );
}

#[test]
fn unknown_preset_lists_the_presets() {
    let o = train("preset = \"huge\"\n", &[]);
    assert_refused(
        &o,
        &["`preset` = \"huge\": expected one of gate, small, medium"],
    );
}

#[test]
fn misspelled_override_suggests_the_valid_key() {
    let o = train("preset = \"gate\"\n", &["--set", "lr_decay_iter=3"]);
    assert_refused(
        &o,
        &["unknown key `lr_decay_iter` (did you mean `lr_decay_iters`?)"],
    );
}

#[test]
fn misspelled_experiment_key_suggests_the_valid_one() {
    let o = run(&experiment_with("seeds = 1", "seds = 1"));
    assert_refused(
        &o,
        &["exp.toml: unknown key `experiment.seds` (did you mean `experiment.seeds`?)"],
    );
}

#[test]
fn misspelled_experiment_table_suggests_the_valid_one() {
    let o = run(&experiment_with("[base]", "[bsae]"));
    assert_refused(&o, &["exp.toml: unknown key `bsae` (did you mean `base`?)"]);
}

#[test]
fn misspelled_base_key_suggests_the_valid_one() {
    let o = run(&experiment_with("train_iters = 12", "train_iter = 12"));
    assert_refused(
        &o,
        &["exp.toml [base]: unknown key `train.train_iter` (did you mean `train.train_iters`?)"],
    );
}

#[test]
fn misspelled_arm_key_suggests_the_valid_one() {
    let o = run(&experiment_with(
        "name = \"b\"",
        "name = \"b\"\natention = \"flash\"",
    ));
    assert_refused(
        &o,
        &["exp.toml [[arm]] b: unknown key `atention` (did you mean `attention`?)"],
    );
}

#[test]
fn misspelled_compare_key_suggests_the_valid_one() {
    let o = run(&format!(
        "{}[compare]\nalpah = 0.05\n",
        common::tiny_experiment("x")
    ));
    assert_refused(
        &o,
        &["exp.toml: unknown key `compare.alpah` (did you mean `compare.alpha`?)"],
    );
}

#[test]
fn misspelled_sweep_key_suggests_the_valid_one() {
    let o = run(&format!(
        "{}[sweep]\nlr_decay_iter = [5, 8]\n",
        common::tiny_experiment("x")
    ));
    assert_refused(
        &o,
        &["exp.toml [sweep]: unknown key `lr_decay_iter` (did you mean `lr_decay_iters`?)"],
    );
}

#[test]
fn experiment_with_one_arm_says_two_are_needed() {
    let spec = common::tiny_experiment("x");
    let one_arm = &spec[..spec.rfind("[[arm]]").unwrap()];
    let o = run(one_arm);
    assert_refused(
        &o,
        &["exp.toml: `arm` = 1: expected two or more [[arm]] tables"],
    );
}

#[test]
fn bad_update_mode_lists_the_modes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "exp.toml", &common::tiny_experiment("x"));
    let o = lossdiff_in(
        dir.path(),
        &["run", "exp.toml"],
        &[("LOSSDIFF_UPDATE", "sometimes")],
    );
    assert_refused(
        &o,
        &["`LOSSDIFF_UPDATE` = sometimes: expected auto, new, always or no"],
    );
}

#[test]
fn nightly_including_a_missing_spec_names_the_nightly_and_the_include() {
    let o = run("[experiment]\nname = \"nightly\"\ninclude = [\"gone.toml\"]\n");
    assert_refused(
        &o,
        &["exp.toml: `include` = gone.toml (no such file): expected paths of experiment specs"],
    );
}

#[test]
fn trace_output_under_a_regular_file_names_that_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "spec.toml",
        "preset = \"gate\"\n[train]\nlr_warmup_iters = 1\n",
    );
    write(dir.path(), "taken", "a regular file");
    let o = lossdiff_in(
        dir.path(),
        &[
            "train",
            "spec.toml",
            "--out",
            "taken/t.json",
            "--set",
            "train_iters=2",
        ],
        &[],
    );
    // Refused before training (a real run would train for minutes first), naming the file in
    // the way.
    assert_refused(
        &o,
        &["taken/t.json: cannot create the directory: taken is a regular file"],
    );
    assert!(
        !stdout(&o).contains("steps in"),
        "trained first: {}",
        stdout(&o)
    );
}

#[test]
fn misspelled_external_arm_key_suggests_the_valid_one() {
    let o = run(&experiment_with(
        "name = \"b\"",
        "name = \"b\"\ncommand = \"python3 t.py --out {out}\"\ntimout = 5",
    ));
    assert_refused(
        &o,
        &["exp.toml [[arm]] b: unknown key `timout` (did you mean `timeout_s`?)"],
    );
}

/// `[compare]` is parsed with the rest of the spec, so a bad value is refused before any run
/// trains: it used to train every run and then fail without naming the file or the key.
// See: issue 17 ("`[compare]` is checked after training")
#[test]
fn compare_alpha_out_of_range_is_refused_before_anything_trains() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("{}[compare]\nalpha = 0.7\n", common::tiny_experiment("x"));
    write(dir.path(), "exp.toml", &spec);
    let o = lossdiff_in(dir.path(), &["run", "exp.toml", "--out", "report"], &[]);
    assert_refused(
        &o,
        &["exp.toml: `compare.alpha` = 0.7: expected a level in (0, 0.5)"],
    );
    // The runner's cache is where every trained run lands; nothing may be there.
    assert!(
        !dir.path().join(".cache").exists(),
        "runs were trained before the refusal"
    );
}
