//! The bad-input catalog for imported curves (issue #8): malformed and truncated files of every
//! format, odd curves (one step, all NaN, infinities, repeated or decreasing steps, no common
//! steps) and traces from a newer lossdiff, each given to the real binary in a temp dir.
//!
//! Every entry asserts the same contract: no panic, exit code 2 (never a verdict, 0 or 1, that the
//! input cannot justify), and an error line naming the file, the place (line, column, byte, step)
//! and what was expected. Specs and goldens have their own catalogs (`bad_specs.rs`,
//! `bad_goldens.rs`).

mod common;

use common::{assert_refused, jsonl, lossdiff_in, stderr, stdout, write};

/// `lossdiff compare good.jsonl <bad>` in a fresh temp dir where `bad` holds `content`.
fn compare_against(name: &str, content: &[u8]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.jsonl", &jsonl(1..=50));
    std::fs::write(dir.path().join(name), content).unwrap();
    lossdiff_in(dir.path(), &["compare", "good.jsonl", name], &[])
}

#[test]
fn truncated_jsonl_names_the_line_and_what_a_line_must_be() {
    let mut text = jsonl(1..=20);
    text.truncate(text.len() - 9);
    let o = compare_against("cut.jsonl", text.as_bytes());
    assert_refused(&o, &["cut.jsonl: line 20", "expected a JSON object", "EOF"]);
}

#[test]
fn jsonl_line_without_a_step_names_the_accepted_step_keys() {
    let o = compare_against(
        "nostep.jsonl",
        b"{\"step\": 1, \"loss\": 2}\n{\"loss\": 1.9}\n",
    );
    assert_refused(
        &o,
        &["nostep.jsonl: line 2", "a step key (one of step, _step"],
    );
}

#[test]
fn truncated_megatron_golden_values_give_the_json_line_and_column() {
    let text = "{\"lm loss\": {\"start_step\": 1, \"end_step\": 3, \"step_interval\": 1,\n \"values\": {\"1\": 2.0, \"2\": ";
    let o = compare_against("golden_values.json", text.as_bytes());
    assert_refused(
        &o,
        &[
            "golden_values.json: invalid JSON at line 2, column",
            "EOF",
            "expected a lossdiff trace, Megatron-LM golden values",
        ],
    );
}

#[test]
fn megatron_log_with_an_unreadable_loss_names_the_line() {
    let text = " iteration 1/ 10 | lm loss: 1.0E+01 | grad norm: 2 |\n iteration 2/ 10 | lm loss: abc | grad norm: 2 |\n";
    let o = compare_against("train.log", text.as_bytes());
    assert_refused(
        &o,
        &[
            "train.log: line 2",
            "expected a number after the `:`",
            "abc",
        ],
    );
}

#[test]
fn torchtitan_log_with_an_unreadable_loss_names_the_line() {
    let text = "[titan] INFO - step:  1  loss: 12.25  mfu: 3%\n[titan] INFO - step:  2  loss: oops  mfu: 3%\n";
    let o = compare_against("titan.log", text.as_bytes());
    assert_refused(&o, &["titan.log: line 2", "oops"]);
}

#[test]
fn csv_with_a_non_number_names_line_and_column() {
    let o = compare_against("wandb.csv", b"step,loss\n1,2.0\n2,1.9\n3,abc\n");
    assert_refused(
        &o,
        &["wandb.csv: line 4", "a number in loss column `loss`", "abc"],
    );
}

#[test]
fn csv_row_with_extra_fields_names_the_line() {
    let o = compare_against("ragged.csv", b"step,loss\n1,2.0\n2,1.9,7\n");
    assert_refused(
        &o,
        &["ragged.csv: line 3", "expected 2 fields like the header"],
    );
}

#[test]
fn csv_with_only_a_header_has_no_steps() {
    let o = compare_against("header.csv", b"step,loss\n");
    assert_refused(&o, &["header.csv", "no training steps found"]);
}

/// A TFRecord whose first record says 64 bytes of data follow but the file ends after 10.
#[test]
fn truncated_tensorboard_file_names_the_byte_offset() {
    let len = 64u64.to_le_bytes();
    let mut bytes = len.to_vec();
    bytes.extend(masked_crc32c(&len).to_le_bytes());
    bytes.extend([0u8; 10]);
    let o = compare_against("events.out.tfevents.1", &bytes);
    assert_refused(&o, &["events.out.tfevents.1", "byte 0"]);
}

#[test]
fn empty_file_says_it_is_empty() {
    let o = compare_against("empty.jsonl", b"");
    assert_refused(
        &o,
        &["empty.jsonl: no training steps found: the file is empty"],
    );
}

#[test]
fn unrecognisable_content_lists_the_formats() {
    let o = compare_against("notes.txt", b"hello world\n");
    assert_refused(
        &o,
        &[
            "notes.txt: cannot tell the format",
            "\"hello world\"",
            "jsonl",
        ],
    );
}

#[test]
fn missing_file_is_named_once_with_the_os_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.jsonl", &jsonl(1..=50));
    let o = lossdiff_in(dir.path(), &["compare", "good.jsonl", "gone.jsonl"], &[]);
    let line = assert_refused(&o, &["gone.jsonl", "No such file or directory"]);
    assert_eq!(line.matches("No such file").count(), 1, "{line}");
}

#[test]
fn one_step_trace_gives_no_verdict() {
    let o = compare_against("one.jsonl", jsonl(1..=1).as_bytes());
    assert_refused(&o, &["share only step 1", "at least 2 common steps"]);
}

#[test]
fn two_all_nan_runs_are_not_identical() {
    let dir = tempfile::tempdir().unwrap();
    let nan: String = (1..=20)
        .map(|s| format!("{{\"step\": {s}, \"loss\": \"nan\"}}\n"))
        .collect();
    write(dir.path(), "a.jsonl", &nan);
    write(dir.path(), "b.jsonl", &nan);
    let o = lossdiff_in(dir.path(), &["compare", "a.jsonl", "b.jsonl"], &[]);
    assert_refused(
        &o,
        &[
            "no common step where `lm_loss` is finite",
            "20 common steps",
        ],
    );
}

/// NaN in one arm only is a finding, not bad input: a divergence at that step (exit 1).
#[test]
fn nan_in_one_arm_is_a_divergence_at_its_step() {
    let mut text = jsonl(1..=29);
    text += "{\"step\": 30, \"loss\": \"nan\"}\n";
    text += &jsonl(31..=50);
    let o = compare_against("blowup.jsonl", text.as_bytes());
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("diverged from step 30"),
        "{}",
        stdout(&o)
    );
}

/// `1e999` is not a float JSON can hold: the file is refused at the number, not misread as inf.
#[test]
fn out_of_range_number_names_line_and_column() {
    let text = format!("{}{{\"step\": 11, \"loss\": 1e999}}\n", jsonl(1..=10));
    let o = compare_against("huge.jsonl", text.as_bytes());
    assert_refused(&o, &["huge.jsonl: line 11", "number out of range"]);
}

/// Infinity written the way lossdiff and Megatron write it is a value: a divergence (exit 1).
#[test]
fn inf_written_as_a_string_is_a_value() {
    let text = format!("{}{{\"step\": 11, \"loss\": \"inf\"}}\n", jsonl(1..=10));
    let o = compare_against("inf.jsonl", text.as_bytes());
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("diverged from step 11"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn duplicate_step_is_refused_naming_line_and_both_steps() {
    let text = format!("{}{}", jsonl(1..=5), jsonl(5..=6));
    let o = compare_against("dup.jsonl", text.as_bytes());
    assert_refused(
        &o,
        &[
            "dup.jsonl: line 6",
            "has step 5 after step 5",
            "strictly increasing",
        ],
    );
}

#[test]
fn decreasing_step_is_refused_naming_line_and_both_steps() {
    let text = format!("{}{}", jsonl(1..=5), jsonl(3..=3));
    let o = compare_against("back.jsonl", text.as_bytes());
    assert_refused(&o, &["back.jsonl: line 6", "has step 3 after step 5"]);
}

/// A Megatron log of a resumed run repeats the steps after the checkpoint. Which copy is "the"
/// run is a judgement, so the importer refuses rather than keeping either (see `import` docs).
#[test]
fn resumed_megatron_log_with_repeated_steps_is_refused() {
    let mut text = String::new();
    for s in [1, 2, 3, 2, 3, 4] {
        text += &format!(" iteration {s}/ 10 | lm loss: {:.6E} |\n", common::loss(s));
    }
    let o = compare_against("resumed.log", text.as_bytes());
    assert_refused(&o, &["resumed.log: line 4", "has step 2 after step 3"]);
}

#[test]
fn arms_with_no_common_step_are_refused() {
    let o = compare_against("later.jsonl", jsonl(100..=150).as_bytes());
    assert_refused(&o, &["`good` and `later` have no step in common"]);
}

#[test]
fn trace_from_a_newer_lossdiff_asks_for_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = serde_json::to_value(common::trace(20, 0.0)).unwrap();
    t["schema_version"] = 99.into();
    t["fingerprint"]["lossdiff_version"] = "9.0.0".into();
    write(dir.path(), "new.json", &t.to_string());
    let o = lossdiff_in(dir.path(), &["show", "new.json"], &[]);
    assert_refused(
        &o,
        &[
            "new.json: trace schema version 99",
            "written by a newer lossdiff (v9.0.0)",
            concat!("this is v", env!("CARGO_PKG_VERSION")),
            "upgrade",
        ],
    );
}

#[test]
fn trace_whose_series_does_not_match_its_steps_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = serde_json::to_value(common::trace(20, 0.0)).unwrap();
    t["steps"] = serde_json::json!((1..=19).collect::<Vec<u64>>());
    write(dir.path(), "short.json", &t.to_string());
    let o = lossdiff_in(dir.path(), &["show", "short.json"], &[]);
    assert_refused(&o, &["short.json: invalid trace", "20 values for 19 steps"]);
}

/// `show` reads whatever `compare` reads, so a bad JSONL line is reported as such.
#[test]
fn show_reports_a_bad_jsonl_line_not_a_json_document_error() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "m.jsonl",
        "{\"step\": 1, \"loss\": 2}\n{\"step\": 2,\n",
    );
    let o = lossdiff_in(dir.path(), &["show", "m.jsonl"], &[]);
    assert_refused(&o, &["m.jsonl: line 2", "expected a JSON object"]);
    write(dir.path(), "ok.jsonl", &jsonl(1..=3));
    let o = lossdiff_in(dir.path(), &["show", "ok.jsonl"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// TFRecord's masked CRC32C (Castagnoli), as the TensorBoard writer computes it.
fn masked_crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (!(crc & 1)).wrapping_add(1));
        }
    }
    let crc = !crc;
    crc.rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// Files are parsed whole, so one over the limit is refused before it is read, naming its size,
/// the limit and the variable that raises it (the default limit is 512 MiB, docs/limits.md).
#[test]
fn input_over_the_size_limit_is_refused_with_size_limit_and_how_to_raise_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.jsonl", &jsonl(1..=50));
    let size = std::fs::metadata(dir.path().join("good.jsonl"))
        .unwrap()
        .len();
    let limit = (size - 1).to_string();
    let o = lossdiff_in(
        dir.path(),
        &["compare", "good.jsonl", "good.jsonl"],
        &[("LOSSDIFF_MAX_INPUT_BYTES", &limit)],
    );
    assert_refused(
        &o,
        &[
            &format!("good.jsonl: {size} bytes"),
            &format!("over the input limit of {limit} bytes"),
            "LOSSDIFF_MAX_INPUT_BYTES=<bytes>",
        ],
    );
    let o = lossdiff_in(
        dir.path(),
        &["compare", "good.jsonl", "good.jsonl"],
        &[("LOSSDIFF_MAX_INPUT_BYTES", &size.to_string())],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "at the limit it is read: {}",
        stderr(&o)
    );
}

#[test]
fn trace_over_the_size_limit_is_refused_by_show() {
    let dir = tempfile::tempdir().unwrap();
    common::trace(200, 0.0)
        .save(&dir.path().join("t.json"))
        .unwrap();
    let o = lossdiff_in(
        dir.path(),
        &["show", "t.json"],
        &[("LOSSDIFF_MAX_INPUT_BYTES", "1000")],
    );
    assert_refused(&o, &["t.json: ", "over the input limit of 1000 bytes"]);
}

#[test]
fn size_limit_that_is_not_a_number_says_what_it_must_be() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.jsonl", &jsonl(1..=50));
    let o = lossdiff_in(
        dir.path(),
        &["compare", "good.jsonl", "good.jsonl"],
        &[("LOSSDIFF_MAX_INPUT_BYTES", "1GB")],
    );
    assert_refused(
        &o,
        &["`LOSSDIFF_MAX_INPUT_BYTES` = \"1GB\": expected a positive number of bytes"],
    );
}

/// A million-step JSONL (36 MB) is read exactly, in about a second (10 million: docs/limits.md).
#[test]
fn million_step_jsonl_is_read_whole_and_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for s in 1..=1_000_000u64 {
        std::io::Write::write_all(
            &mut f,
            format!("{{\"step\": {s}, \"loss\": {s}.5}}\n").as_bytes(),
        )
        .unwrap();
    }
    drop(f);
    let t = lossdiff::import::import(&path, None).unwrap();
    assert_eq!(t.steps.len(), 1_000_000);
    assert_eq!(t.steps.last(), Some(&1_000_000));
    assert_eq!(t.lm_loss().unwrap()[999_999], 1_000_000.5);
}
