//! `lossdiff bench speed` and its hidden per-cell child, `lossdiff bench cell`: flags in, the
//! library's [`crate::speed`] does the rest.

use crate::speed::cell::{BenchDType, Case, CellSpec};
use crate::speed::{self, SpeedOptions, Table};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `lossdiff bench speed`.
#[derive(Args)]
pub struct SpeedArgs {
    /// Rounds: each runs every case on both sides back to back, alternating which goes first.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Timed optimiser steps per step cell (after the warm-up).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps (attention: untimed calls at T=128) before timing.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Presets of the step table.
    #[arg(long, value_delimiter = ',', default_value = "small,medium")]
    presets: Vec<String>,
    /// Thread counts of the step table.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Sequence lengths of the attention table (repeatable or comma-separated).
    #[arg(
        long = "seq-len",
        value_delimiter = ',',
        default_value = "2048,4096,8192,16384,32768"
    )]
    seq_lens: Vec<usize>,
    /// Measure one table only.
    #[arg(long, value_parser = parse_table)]
    only: Option<Table>,
    /// Threads of the attention cells.
    #[arg(long, default_value_t = 2)]
    attention_threads: usize,
    /// Most timed calls per attention cell.
    #[arg(long, default_value_t = 5)]
    attention_runs: usize,
    /// An attention cell stops timing once its calls add up to this many seconds.
    #[arg(long, default_value_t = 6.0)]
    attention_budget: f64,
    /// Seconds a cell may run before it is killed and the bench stops, naming it: a hung Python
    /// would otherwise hang the bench.
    #[arg(long, default_value_t = 900.0, value_parser = parse_timeout)]
    cell_timeout: f64,
    /// The Python that has torch (default: LOSSDIFF_PYTHON, else python3). Without torch the
    /// bench prints lossdiff's columns and says PyTorch is absent.
    #[arg(long)]
    python: Option<PathBuf>,
    /// The PyTorch reference script (default: benches/pytorch_reference.py of this checkout).
    #[arg(long)]
    pytorch_script: Option<PathBuf>,
    /// Also write the tables into this file, between its `<!-- speed:begin -->` and
    /// `<!-- speed:end -->` lines (e.g. `--readme README.md`).
    #[arg(long)]
    readme: Option<PathBuf>,
}

/// Flags of the hidden `lossdiff bench cell`: one measurement, printed as one JSON line.
#[derive(Args)]
pub struct CellArgs {
    /// Time optimiser steps of this preset.
    #[arg(long, conflicts_with = "seq_len", required_unless_present = "seq_len")]
    preset: Option<String>,
    /// Time flash attention fwd+bwd at this sequence length.
    #[arg(long)]
    seq_len: Option<usize>,
    /// Element type of the attention inputs.
    #[arg(long, value_parser = parse_dtype, default_value = "f32")]
    dtype: BenchDType,
    /// Threads (the parent also sets RAYON_NUM_THREADS to this).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Most timed runs.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Stop timing once the runs add up to this many seconds.
    #[arg(long, default_value_t = f64::INFINITY)]
    budget_secs: f64,
}

fn parse_table(s: &str) -> Result<Table, String> {
    match s {
        "step" => Ok(Table::Step),
        "attention" => Ok(Table::Attention),
        _ => Err(format!("expected `step` or `attention`, got `{s}`")),
    }
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs < 1e9 => Ok(secs),
        _ => Err(format!("expected seconds, a positive number, got `{s}`")),
    }
}

fn parse_dtype(s: &str) -> Result<BenchDType, String> {
    match s {
        "f32" => Ok(BenchDType::F32),
        "bf16" => Ok(BenchDType::Bf16),
        _ => Err(format!("expected `f32` or `bf16`, got `{s}`")),
    }
}

/// Runs `lossdiff bench speed`: progress on stderr, the Markdown on stdout (and into `--readme`).
pub fn run(args: SpeedArgs) -> anyhow::Result<ExitCode> {
    for &n in args.threads.iter().chain([&args.attention_threads]) {
        super::check_threads(n)?;
    }
    let opts = SpeedOptions {
        rounds: args.rounds,
        steps: args.steps,
        warmup: args.warmup,
        presets: args.presets,
        step_threads: args.threads,
        seq_lens: args.seq_lens,
        attention_threads: args.attention_threads,
        attention_runs: args.attention_runs,
        attention_budget_secs: args.attention_budget,
        cell_timeout: std::time::Duration::from_secs_f64(args.cell_timeout),
        only: args.only,
        lossdiff_exe: std::env::current_exe()
            .context("cannot find this lossdiff binary to run the bench cells")?,
        python: speed::choose_python(args.python, std::env::var_os(speed::PYTHON_VAR)),
        script: speed::choose_script(args.pytorch_script),
        command_line: command_line(),
    };
    let report = speed::run(&opts, &mut |line| eprintln!("{line}"))?;
    let md = speed::render::markdown(&report);
    print!("{md}");
    if let Some(path) = args.readme {
        let text = crate::limits::read_input_to_string(&path)?;
        let new = speed::render::replace_marked(&text, &md, &path)?;
        crate::fsutil::write_atomic(&path, new.as_bytes())?;
        eprintln!("wrote the tables into {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `lossdiff bench cell` and prints its timing as one JSON line.
pub fn run_cell(args: CellArgs) -> anyhow::Result<ExitCode> {
    let case = match (args.preset, args.seq_len) {
        (Some(preset), _) => Case::Step {
            preset,
            threads: args.threads,
        },
        (None, Some(seq_len)) => Case::Attention {
            seq_len,
            dtype: args.dtype,
            threads: args.threads,
        },
        (None, None) => anyhow::bail!("bench cell: give --preset or --seq-len"),
    };
    let spec = CellSpec {
        case,
        runs: args.steps,
        warmup: args.warmup,
        budget_secs: args.budget_secs,
    };
    let timing = speed::cell::measure(&spec)?;
    println!("{}", serde_json::to_string(&timing)?);
    Ok(ExitCode::SUCCESS)
}

/// Returns this process's command line as typed, program name first (`lossdiff …`).
fn command_line() -> String {
    let mut args = std::env::args_os();
    let program = args
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "lossdiff".into());
    let rest = args.map(|a| {
        let a = a.to_string_lossy().into_owned();
        match a.contains(char::is_whitespace) || a.is_empty() {
            true => format!("'{a}'"),
            false => a,
        }
    });
    std::iter::once(program)
        .chain(rest)
        .collect::<Vec<_>>()
        .join(" ")
}
