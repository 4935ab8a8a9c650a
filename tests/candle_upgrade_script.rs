//! `scripts/candle-upgrade.sh` builds the same sources against an older candle by pinning the
//! manifest; these check that edit, since a wrong pin would build the wrong candle (or half of
//! one) and the upgrade report would compare a release with itself.
//!
//! The upgrade run itself trains ~250 runs under two builds, so it is a documented command
//! (`docs/upgrading.md`), not part of `cargo test`.

use std::path::Path;
use std::process::Command;

/// Runs `candle-upgrade.sh pin-manifest IN OUT VERSION` and returns its exit code and stderr.
fn pin(input: &Path, output: &Path, version: &str) -> (Option<i32>, String) {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/candle-upgrade.sh"))
        .arg("pin-manifest")
        .arg(input)
        .arg(output)
        .arg(version)
        .output()
        .expect("bash runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn parse(path: &Path) -> toml::Table {
    std::fs::read_to_string(path)
        .expect("manifest readable")
        .parse()
        .expect("manifest is TOML")
}

#[test]
fn pinning_the_projects_manifest_changes_exactly_the_two_candle_requirements() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let pinned = dir.path().join("Cargo.toml");
    let (code, stderr) = pin(&manifest, &pinned, "0.10.2");
    assert_eq!(code, Some(0), "{stderr}");
    let (mut before, mut after) = (parse(&manifest), parse(&pinned));
    let deps = |t: &mut toml::Table| t["dependencies"].as_table_mut().unwrap().clone();
    let (mut dep_before, mut dep_after) = (deps(&mut before), deps(&mut after));
    for name in ["candle-core", "candle-nn"] {
        assert_eq!(dep_after[name].as_str(), Some("=0.10.2"), "{name}");
        dep_before.remove(name);
        dep_after.remove(name);
    }
    // Nothing else moves: the other dependencies, the features (cuda still names both crates),
    // the profiles.
    assert_eq!(dep_before, dep_after);
    before.remove("dependencies");
    after.remove("dependencies");
    assert_eq!(before, after);
}

#[test]
fn pinning_a_table_form_requirement_keeps_its_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.toml");
    std::fs::write(
        &input,
        "[package]\nname = \"x\"\n\n[dependencies]\n\
         candle-core = { version = \"0.11.1\", features = [\"mkl\"] }\n\
         candle-nn = \"0.11.1\"\ncandle-transformers = \"0.11.1\"\n",
    )
    .unwrap();
    let output = dir.path().join("out.toml");
    let (code, stderr) = pin(&input, &output, "0.10.2");
    assert_eq!(code, Some(0), "{stderr}");
    let t = parse(&output);
    let deps = t["dependencies"].as_table().unwrap();
    assert_eq!(deps["candle-core"]["version"].as_str(), Some("=0.10.2"));
    assert_eq!(deps["candle-core"]["features"][0].as_str(), Some("mkl"));
    assert_eq!(deps["candle-nn"].as_str(), Some("=0.10.2"));
    // Only the two crates lossdiff uses are pinned; another candle crate is the user's call.
    assert_eq!(deps["candle-transformers"].as_str(), Some("0.11.1"));
}

#[test]
fn a_manifest_missing_candle_nn_is_refused_by_name_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.toml");
    std::fs::write(&input, "[dependencies]\ncandle-core = \"0.11.1\"\n").unwrap();
    let output = dir.path().join("out.toml");
    let (code, stderr) = pin(&input, &output, "0.10.2");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("candle-nn"), "{stderr}");
    assert!(!output.exists());
}

#[test]
fn a_version_that_is_not_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = dir.path().join("out.toml");
    let (code, stderr) = pin(&manifest, &output, "0.10\"; rm -rf");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("is not a version"), "{stderr}");
    assert!(!output.exists());
}
