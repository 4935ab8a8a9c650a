//! The command line: argument parsing and printing, nothing else. Every command calls the same
//! library functions a `cargo test` user would. Exit codes: 0 = match (or success), 1 =
//! divergence, 2 = error.

use crate::config::RunConfig;
use crate::trace::{Trace, GRAD_NORM, LR, STEP_TIME};
use crate::train::{train, StepRecord};
use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lossdiff",
    version,
    about = "Did numerics change, where, and how sure are we?"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the reference GPT from a run spec and write its trace.
    Train {
        /// Run spec (TOML: optional `preset`, then [model], [train], [data]).
        spec: PathBuf,
        /// Where to write the trace (JSON).
        #[arg(long)]
        out: PathBuf,
        /// Override a resolved config field, e.g. `--set attention=flash --set train_iters=50`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Threads for candle's CPU kernels. Default: RAYON_NUM_THREADS if set, else 1 (losses are
        /// bitwise identical for any count; one thread keeps step times stable on shared machines).
        #[arg(long)]
        threads: Option<usize>,
        /// Trace name (default: the spec's file stem).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the injectable faults (`inject = "<name>"` in a spec, or `--set inject=<name>`).
    Faults,
    /// Print a trace's config, fingerprint and a short loss table.
    Show {
        /// Trace file.
        trace: PathBuf,
        /// Rows in the loss table.
        #[arg(long, default_value_t = 12)]
        rows: usize,
    },
}

/// Runs the CLI on `args` (including the program name) and returns the process exit code.
///
/// # Errors
/// Any failure, with context naming the file or flag involved; `main` prints it and exits 2.
pub fn run(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            e.print().context("failed to print usage")?;
            return Ok(ExitCode::from(code));
        }
    };
    match cli.command {
        Command::Train {
            spec,
            out,
            overrides,
            threads,
            name,
        } => {
            set_threads(threads);
            cmd_train(&spec, &out, &overrides, name)
        }
        Command::Show { trace, rows } => cmd_show(&trace, rows),
        Command::Faults => {
            for f in crate::faults::Fault::CATALOG {
                println!("{:<24} {}", f.name(), f.describe());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Sets candle's thread count through `RAYON_NUM_THREADS`, the only knob candle reads.
///
/// Called before any work starts, while the process has a single thread, so changing the
/// environment is race-free.
fn set_threads(threads: Option<usize>) {
    match threads {
        Some(n) => std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string()),
        None if std::env::var_os("RAYON_NUM_THREADS").is_none() => {
            std::env::set_var("RAYON_NUM_THREADS", "1")
        }
        None => {}
    }
}

fn cmd_train(
    spec: &Path,
    out: &Path,
    overrides: &[String],
    name: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut cfg = RunConfig::load(spec)?;
    for o in overrides {
        cfg.apply_override(o)?;
    }
    let name = name.unwrap_or_else(|| {
        spec.file_stem()
            .map_or("run".into(), |s| s.to_string_lossy().into_owned())
    });
    let bar = progress_bar(cfg.train.train_iters);
    let mut on_step = |r: &StepRecord| {
        bar.set_position(r.step);
        bar.set_message(format!("loss {:.4}  lr {:.2e}", r.loss, r.lr));
    };
    let trace = train(&cfg, &name, &mut on_step)
        .with_context(|| format!("training {} failed", spec.display()))?;
    bar.finish_and_clear();
    trace
        .save(out)
        .with_context(|| format!("failed to write trace {}", out.display()))?;
    let loss = trace.lm_loss().unwrap_or_default();
    let total: f64 = trace.metric(STEP_TIME).unwrap_or_default().iter().sum();
    println!(
        "{name}: {} steps in {total:.1} s, loss {:.4} → {:.4}{} — wrote {}",
        loss.len(),
        loss.first().copied().unwrap_or(f64::NAN),
        loss.last().copied().unwrap_or(f64::NAN),
        trace
            .loss_floor
            .map(|f| format!(" (floor {f:.4})"))
            .unwrap_or_default(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(total: u64) -> ProgressBar {
    // Hidden on CI and when stderr is not a terminal (indicatif checks the latter itself).
    let target = match std::env::var_os("CI") {
        Some(_) => ProgressDrawTarget::hidden(),
        None => ProgressDrawTarget::stderr(),
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    let style = ProgressStyle::with_template("{bar:30} step {pos}/{len}  {msg}  ETA {eta}")
        .expect("the template is valid");
    bar.set_style(style);
    bar
}

fn cmd_show(path: &Path, rows: usize) -> anyhow::Result<ExitCode> {
    let trace =
        Trace::load(path).with_context(|| format!("failed to read trace {}", path.display()))?;
    print!("{}", render_show(&trace, rows));
    Ok(ExitCode::SUCCESS)
}

/// Formats a trace for `lossdiff show`.
pub fn render_show(trace: &Trace, rows: usize) -> String {
    let mut s = format!(
        "trace   {}  (schema v{}, from {})\n",
        trace.name, trace.schema_version, trace.origin.format
    );
    s += "\nconfig\n";
    for (k, v) in flatten(&trace.config) {
        s += &format!("  {k} = {v}\n");
    }
    s += "\nfingerprint\n";
    for (k, v) in flatten(&trace.fingerprint) {
        s += &format!("  {k} = {v}\n");
    }
    let seeds: Vec<String> = trace
        .seeds
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    s += &format!("\nseeds   {}\n", seeds.join(" "));
    if let Some(f) = trace.loss_floor {
        s += &format!("floor   {f:.6} nats/token (the best any model can do on this data)\n");
    }
    s += &format!(
        "\n{:>8}  {:>10}  {:>10}  {:>10}  {:>9}\n",
        "step", "lm_loss", "lr", "grad_norm", "time_ms"
    );
    let n = trace.steps.len();
    let pick: Vec<usize> = match n {
        0 => vec![],
        _ if n <= rows => (0..n).collect(),
        _ => {
            let mut v: Vec<usize> = (0..rows).map(|i| i * (n - 1) / (rows - 1).max(1)).collect();
            v.dedup();
            v
        }
    };
    let get = |name: &str, i: usize| trace.metric(name).and_then(|v| v.get(i).copied());
    let fmt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "-".to_string(), f);
    for i in pick {
        s += &format!(
            "{:>8}  {:>10}  {:>10}  {:>10}  {:>9}\n",
            trace.steps[i],
            fmt(
                trace.lm_loss().and_then(|v| v.get(i).copied()),
                &|x| format!("{x:.6}")
            ),
            fmt(get(LR, i), &|x| format!("{x:.3e}")),
            fmt(get(GRAD_NORM, i), &|x| format!("{x:.4}")),
            fmt(get(STEP_TIME, i), &|x| format!("{:.1}", x * 1e3)),
        );
    }
    s
}

/// Flattens a JSON object into sorted `(dotted.key, value)` pairs.
pub fn flatten(v: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.sort();
    out
}
