//! Imports as a user meets them (issue 15): the real binary on small files written the way each
//! tool writes them, checking what `compare` and `show` make of the config, seeds, cadences,
//! ranks and runs those files record.
// See: issue 15 (imports that carry config, seeds and provenance).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lossdiff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lossdiff"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A decaying loss with a deterministic wiggle.
fn loss(step: u64) -> f64 {
    let x = step as f64;
    3.0 * (-x / 40.0).exp() + 1.0 + 5e-3 * (x * 12.9898).sin()
}

/// A JSONL log as a Python logger writes it: a metadata header (`json.dumps` of the run's
/// settings), then one record per step, an eval loss every 10 steps.
fn jsonl_run(dir: &Path, name: &str, attention_dropout: f64) -> PathBuf {
    let path = dir.join(name);
    let mut text = format!(
        "{{\"format\": \"lossdiff-jsonl/1\", \"config\": {{\"model\": {{\"attention\": \"flash\", \"attention_dropout\": {attention_dropout:?}}}, \"train\": {{\"lr\": 0.001}}}}, \"seed\": 1, \"versions\": {{\"torch\": \"2.5.1\"}}}}\n"
    );
    for step in 1..=60 {
        text += &format!(
            "{{\"step\": {step}, \"loss\": {:.17e}, \"lr\": 0.001}}\n",
            loss(step)
        );
        if step % 10 == 0 {
            text += &format!(
                "{{\"step\": {step}, \"eval_loss\": {:.17e}}}\n",
                loss(step) + 0.1
            );
        }
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn jsonl_headers_differing_only_in_attention_dropout_name_it_as_undeclared() {
    let dir = tempfile::tempdir().unwrap();
    let a = jsonl_run(dir.path(), "naive.jsonl", 0.0);
    let b = jsonl_run(dir.path(), "flash.jsonl", 0.1);
    let o = lossdiff(&["compare", s(&a), s(&b)]);
    let text = out(&o);
    // The same line a native pair prints (`experiments/dropout_confound.toml`).
    assert!(
        text.contains("  undeclared:  model.attention_dropout: 0.0 → 0.1\n"),
        "{text}"
    );
    assert_eq!(text.matches("undeclared:").count(), 1, "{text}");
    assert!(
        text.contains("model.attention_dropout = 0.1 in arm B"),
        "{text}"
    );
    let o = lossdiff(&[
        "compare",
        s(&a),
        s(&b),
        "--declared",
        "model.attention_dropout",
    ]);
    let text = out(&o);
    assert!(
        text.contains("  declared:    model.attention_dropout: 0.0 → 0.1"),
        "{text}"
    );
    assert!(!text.contains("undeclared:"), "{text}");
}

/// Megatron-LM stdout: `_print_args` (rank 0), then `training_log` iteration lines.
fn megatron_log(dir: &Path, name: &str, lr: f64) -> PathBuf {
    let mut text = String::from(
        "using world size: 1\n------------------------ arguments ------------------------\n",
    );
    for (arg, v) in [
        ("attention_dropout", "0.1".to_string()),
        ("lr", format!("{lr}")),
        ("seed", "1234".to_string()),
        ("train_iters", "40".to_string()),
    ] {
        text += &format!("  {arg} {} {v}\n", ".".repeat(48 - arg.len()));
    }
    text += "-------------------- end of arguments ---------------------\n";
    for it in 1..=40u64 {
        text += &format!(
            " [2024-05-01 10:00:00] iteration {it:>8}/      40 | consumed samples: {:>12} | elapsed time per iteration (ms): 1234.5 | learning rate: {:.6E} | global batch size:    32 | lm loss: {:.6E} | loss scale: 1.0 | grad norm: 2.345 | number of skipped iterations:   0 | number of nan iterations:   0 |\n",
            it * 32,
            lr * (it as f64 / 40.0).min(1.0),
            loss(it)
        );
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn arms_from_two_formats_show_provenance_and_one_sided_keys_without_counting_them() {
    let dir = tempfile::tempdir().unwrap();
    let a = jsonl_run(dir.path(), "run.jsonl", 0.0);
    let csv = dir.path().join("run.csv");
    let rows: String = (1..=60)
        .map(|st| format!("{st},{:.17e}\n", loss(st)))
        .collect();
    std::fs::write(&csv, format!("step,loss\n{rows}")).unwrap();
    let o = lossdiff(&["compare", s(&a), s(&csv)]);
    let text = out(&o);
    assert!(
        text.contains("  provenance:  import.format: jsonl → csv"),
        "{text}"
    );
    assert!(
        text.contains("  recorded:    by A only, not compared"),
        "{text}"
    );
    assert!(!text.contains("undeclared:"), "{text}");
    // Labels: the shortest part telling the paths apart (here the extension is all that differs).
    assert!(text.contains("run.csv vs run.jsonl"), "{text}");
}

#[test]
fn megatron_logs_differing_in_lr_name_lr_and_its_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let a = megatron_log(dir.path(), "lr1e-3.log", 1e-3);
    let b = megatron_log(dir.path(), "lr1.5e-3.log", 1.5e-3);
    let o = lossdiff(&["compare", s(&a), s(&b)]);
    let text = out(&o);
    assert!(
        text.contains("  undeclared:  lr: 0.001 → 0.0015\n"),
        "{text}"
    );
    assert!(text.contains("lr differs from step 1"), "{text}");
    assert!(!text.contains("config:      no differences"), "{text}");
    // Seeds recorded in both: paired by seed.
    let o = lossdiff(&["show", s(&a)]);
    let text = out(&o);
    assert!(text.contains("seeds   init=1234"), "{text}");
    assert!(text.contains("  lr = 0.001"), "{text}");
}

#[test]
fn an_eval_loss_at_its_own_cadence_is_compared_and_a_missing_series_lists_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let a = jsonl_run(dir.path(), "a.jsonl", 0.0);
    let b = jsonl_run(dir.path(), "b.jsonl", 0.0);
    let o = lossdiff(&[
        "compare",
        s(&a),
        s(&b),
        "--metric",
        "lm_loss",
        "--metric",
        "eval_loss",
    ]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("(lm_loss): identical"), "{text}");
    assert!(text.contains("(eval_loss): identical"), "{text}");
    assert!(text.contains("alignment:   6 common steps"), "{text}");
    let o = lossdiff(&["compare", s(&a), s(&b), "--metric", "eval_los"]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains(
            "no series `eval_los`; the file has: eval_loss (6 points, own steps), lm_loss, lr"
        ),
        "{text}"
    );
}

#[test]
fn a_wandb_export_of_two_runs_is_read_with_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wandb_export.csv");
    let mut text = String::from("\"Step\",\"flash-1 - train/loss\",\"flash-1 - train/loss__MIN\",\"flash-1 - train/loss__MAX\",\"naive-1 - train/loss\",\"naive-1 - train/loss__MIN\",\"naive-1 - train/loss__MAX\"\n");
    for step in 1..=30 {
        let l = loss(step);
        text += &format!("{step},{l},{l},{l},{l},{l},{l}\n");
    }
    std::fs::write(&path, text).unwrap();
    let o = lossdiff(&["compare", s(&path), s(&path)]);
    assert!(
        out(&o).contains("choose one with --run NAME"),
        "{}",
        out(&o)
    );
    let o = lossdiff(&["compare", s(&path), s(&path), "--run", "naive-1"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
}

#[test]
fn a_torchtitan_log_of_two_ranks_reads_rank_0_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for step in 1..=30 {
        for rank in [0, 1] {
            text += &format!(
                "[rank{rank}]:[titan] 2025-01-01 12:00:00,000 - root - INFO - step: {step:>2}  loss: {:.4}  grad_norm:  1.0000\n",
                loss(step) + rank as f64
            );
        }
    }
    let path = dir.path().join("titan.log");
    std::fs::write(&path, text).unwrap();
    let o = lossdiff(&["compare", s(&path), s(&path)]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("read rank 0, the lowest with metric lines (choose with --rank)"),
        "{text}"
    );
    let o = lossdiff(&["compare", s(&path), s(&path), "--rank", "7"]);
    assert!(
        out(&o).contains("one of the ranks in the file: 0, 1"),
        "{}",
        out(&o)
    );
}

#[test]
fn a_lossdiff_golden_is_an_arm_for_compare_and_shows() {
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<lossdiff::Trace> = (1..=2)
        .map(|k| {
            let p = jsonl_run(dir.path(), &format!("seed{k}.jsonl"), 0.0);
            let mut t = lossdiff::import::import(&p, None).unwrap();
            // Two seeds of one arm are two different runs (a copy would be refused).
            if let Some(s) = t.series.get_mut("lm_loss") {
                s.values
                    .iter_mut()
                    .for_each(|v| *v += 1e-6 * (k - 1) as f64);
            }
            t.seeds.insert("init".into(), k);
            t
        })
        .collect();
    let provenance = lossdiff::golden::Provenance {
        spec_hash: "h".into(),
        spec_path: "spec.toml".into(),
        lossdiff_version: "0.0.0".into(),
        fingerprint: serde_json::json!({}),
        blessed_at_unix: 0,
    };
    let g = lossdiff::golden::Golden::new("e", "default", "naive", provenance, runs, Vec::new());
    let golden = dir.path().join("naive.golden.json");
    std::fs::write(&golden, g.to_json()).unwrap();
    let b = jsonl_run(dir.path(), "b.jsonl", 0.0);
    let o = lossdiff(&["compare", s(&golden), s(&b)]);
    let text = out(&o);
    assert!(!text.contains("pass the format"), "{text}");
    assert!(text.contains("b vs naive.golden"), "{text}");
    let o = lossdiff(&["show", s(&golden)]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("golden  e / default / naive: 2 seed traces"),
        "{text}"
    );
}
