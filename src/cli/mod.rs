//! The command line: argument parsing and printing, nothing else. Every command calls the same
//! library functions a `cargo test` user would. Exit codes: 0 = match (or success), 1 =
//! divergence (or a failed gate), 2 = error. Every `--help` of a command that prints verdicts
//! points to `lossdiff glossary`.

mod compare;
mod glossary;
mod report;
mod speed;

use crate::config::RunConfig;
use crate::trace::{Trace, GRAD_NORM, LR, STEP_TIME};
use crate::train::{train, StepRecord};
use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A parsed command line.
#[derive(Parser)]
#[command(
    name = "lossdiff",
    version,
    about = "Did numerics change, where, and how sure are we?",
    after_help = GLOSSARY_HINT
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where every term the outputs use is explained; shown under each output command's `--help`.
const GLOSSARY_HINT: &str = "Every term the output uses (verdict, effect, margin, p (TOST), p (beyond margin), onset, rounding, …) is explained in plain words by `lossdiff glossary [TERM]` (the same text as docs/glossary.md).\nExit codes: 0 = match, 1 = divergence or gate failure, 2 = error.";

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
    /// Run experiment(s) against their goldens; exit 1 if anything fails its expectation.
    ///
    /// Prints one line per comparison: pass/fail, the verdict, the late-window effect against the
    /// margin, the p-value named by its test, and the rounding finding when the experiment has a
    /// perturbation ensemble.
    #[command(alias = "nightly", after_help = GLOSSARY_HINT)]
    Run {
        /// Experiment spec, or a nightly spec with `include = [...]`.
        spec: PathBuf,
        #[command(flatten)]
        flags: RunFlags,
    },
    /// List the cells of a spec with the job-array task that runs each (`task experiment cell`,
    /// one per line): a job array needs one task per line.
    Cells {
        /// Experiment spec, or a nightly spec with `include = [...]`.
        spec: PathBuf,
        /// Number of tasks (default: one per cell).
        #[arg(long)]
        shards: Option<usize>,
    },
    /// Join shard report directories into one report; cells whose task did not finish are
    /// reported missing (exit 2).
    Merge {
        /// Shard report directories (a task's directory may be absent: its cells are missing).
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Output report directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure false-positive and detection rates on null pairs and injected faults.
    Calibrate {
        /// Output directory for calibration.md and calibration.json.
        #[arg(long, default_value = "reports/calibration")]
        out: PathBuf,
        /// The reduced run that fits in CI (100 steps, 2 seeds).
        #[arg(long)]
        reduced: bool,
        /// Runs at once (default: available cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Seeds of the gate model (default: 96 full, 2 reduced).
        #[arg(long)]
        seeds: Option<u64>,
        /// Cases per synthetic family (default: 400 full, 40 reduced; 0 skips them).
        #[arg(long)]
        cases: Option<u64>,
    },
    /// Benchmarks: `speed` times lossdiff against the PyTorch CPU reference, interleaved, and
    /// prints the README's speed tables; `attention` compares naive and flash attention.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Review, accept or reject pending goldens; find unused ones; export to Megatron's format.
    Golden {
        #[command(subcommand)]
        action: GoldenCommand,
        /// Root of the golden store.
        #[arg(long, default_value = "golden", global = true)]
        root: PathBuf,
    },
    /// List the injectable faults (`inject = "<name>"` in a spec, or `--set inject=<name>`).
    Faults,
    /// Compare loss curves of any training stack: arm A (first) against each other arm.
    #[command(after_help = GLOSSARY_HINT)]
    Compare(compare::CompareArgs),
    /// Write a report for a directory and print its verdict table: re-render a `lossdiff run`
    /// report, or compare the arms of a directory of runs and write `<dir>/report/`.
    ///
    /// Arms: each subdirectory is one arm and its files are the arm's seeds (`DIR/flash/seed1.jsonl`);
    /// a file directly in DIR named `<arm>.seed<N>.<ext>` (or `-seed<N>`, `_seed<N>`, `.s<N>`,
    /// `-s<N>`, `_s<N>`) is seed N of arm <arm>; any other file is an arm of its own. Runs are
    /// paired by the seed their traces record, else by the seed number in their names. Every arm
    /// is compared against the reference: the first arm in name order, or `--reference`.
    ///
    /// Exit codes: 0 = no comparison diverged (inconclusive is not a failure), 1 = some comparison
    /// diverged (or, for a `lossdiff run` report, its gate failed), 2 = error.
    #[command(after_help = GLOSSARY_HINT)]
    Report {
        /// The directory.
        dir: PathBuf,
        /// The reference arm (A) every other arm is compared against (default: the first in
        /// name order).
        #[arg(long, value_name = "ARM")]
        reference: Option<String>,
    },
    /// Explain the terms lossdiff prints, in plain words: all of them, or the entries that
    /// mention TERM (e.g. `lossdiff glossary margin`).
    Glossary {
        /// A term, e.g. `TOST`, `onset`, `rounding`.
        term: Option<String>,
    },
    /// Print a trace's config, fingerprint and a short loss table.
    Show {
        /// Trace file (any format `compare` reads, a run directory, or a golden).
        trace: PathBuf,
        /// Rows in the loss table.
        #[arg(long, default_value_t = 12)]
        rows: usize,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Time lossdiff's training step and flash attention against the PyTorch CPU reference,
    /// interleaved in one invocation, and print the README's speed tables with the ratios.
    ///
    /// Each round runs every case on both sides back to back (alternating which goes first),
    /// each cell in a process of its own; a ratio is the median of the per-round ratios with
    /// their range. PyTorch is optional: when the Python (`--python`, else LOSSDIFF_PYTHON, else
    /// python3) cannot `import torch`, the bench says so and prints lossdiff's columns. A full
    /// default run takes several minutes; `--only`, `--presets`, `--seq-len`, `--rounds` and
    /// `--steps` make it shorter. `--readme README.md` rewrites the tables between the README's
    /// `<!-- speed:begin -->` and `<!-- speed:end -->` lines.
    Speed(speed::SpeedArgs),
    /// One cell of `bench speed`, printed as one JSON line (run by `bench speed` itself).
    #[command(hide = true)]
    Cell(speed::CellArgs),
    /// Forward+backward time and peak memory of naive vs flash attention at long sequences.
    Attention {
        /// Sequence lengths (default 1k–32k).
        #[arg(long = "seq-len", value_delimiter = ',')]
        seq_lens: Vec<usize>,
        /// Heads.
        #[arg(long, default_value_t = 4)]
        heads: usize,
        /// Head dimension.
        #[arg(long, default_value_t = 32)]
        head_dim: usize,
        /// Largest naive footprint to attempt, in GiB; longer sequences are reported as refused.
        #[arg(long, default_value_t = 6.0)]
        cap_gib: f64,
    },
}

#[derive(Subcommand)]
enum GoldenCommand {
    /// List pending `.new` goldens with what would change.
    Review,
    /// Bless pending goldens (all, or those whose path contains FILTER).
    Accept {
        /// Substring of the golden paths to accept.
        filter: Option<String>,
    },
    /// Delete pending goldens (all, or those whose path contains FILTER).
    Reject {
        /// Substring of the golden paths to reject.
        filter: Option<String>,
    },
    /// Seal version-1 goldens with a digest, values unchanged (all, or those whose path contains
    /// FILTER). Sealing vouches that each file is as blessed: review its history first.
    Migrate {
        /// Substring of the golden paths to migrate.
        filter: Option<String>,
    },
    /// List goldens that no experiment under `experiments/` produces (exit 1 if any).
    Check {
        /// Directory of experiment specs.
        #[arg(long, default_value = "experiments")]
        experiments: PathBuf,
    },
    /// Write one seed trace of a golden in Megatron-LM's golden-values JSON schema.
    Export {
        /// The golden file.
        golden: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Which seed trace (0-based).
        #[arg(long, default_value_t = 0)]
        seed_index: usize,
    },
}

/// Parses `args` (including the program name). `Err` is the exit code when parsing already
/// said everything: `--help` and `--version` (0), or a usage error (2), printed to the terminal.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, ExitCode> {
    Cli::try_parse_from(args).map_err(|e| {
        let code = if e.use_stderr() { 2 } else { 0 };
        // Nothing more useful to do if the terminal is gone.
        let _ = e.print();
        ExitCode::from(code)
    })
}

impl Cli {
    /// Returns the thread count candle should use for this command, for the binary to set in
    /// `RAYON_NUM_THREADS` before anything starts: `--threads`, else `RAYON_NUM_THREADS` if set,
    /// else 1 (steady step times on shared machines) for commands that train; `None` for the
    /// others, which leave candle its default.
    pub fn threads(&self) -> Option<usize> {
        let from_env = || {
            std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
                .unwrap_or(1)
        };
        match &self.command {
            Command::Train {
                threads: Some(n), ..
            } => Some((*n).max(1)),
            Command::Train { .. } | Command::Run { .. } | Command::Calibrate { .. } => {
                Some(from_env())
            }
            Command::Bench {
                what: BenchCommand::Cell(args),
            } => Some(args.threads.max(1)),
            _ => None,
        }
    }

    /// Whether this command trains one model at a time (`train`, a bench cell), so that its
    /// threads may share one malloc arena (`alloc::share_one_arena`); `run` and `calibrate`
    /// train several at once.
    pub fn trains_one_model_at_a_time(&self) -> bool {
        matches!(
            &self.command,
            Command::Train { .. }
                | Command::Bench {
                    what: BenchCommand::Cell(_)
                }
        )
    }
}

/// Runs a parsed command line and returns the process exit code.
///
/// # Errors
/// Any failure, with context naming the file or flag involved; `main` prints it and exits 2.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let threads = cli.threads().unwrap_or(1);
    match cli.command {
        Command::Train {
            spec,
            out,
            overrides,
            threads: requested,
            name,
        } => {
            if let Some(n) = requested {
                check_threads(n)?;
            }
            cmd_train(&spec, &out, &overrides, name, threads)
        }
        Command::Show { trace, rows } => cmd_show(&trace, rows),
        Command::Compare(args) => compare::run(args),
        Command::Report { dir, reference } => report::run(&dir, reference.as_deref()),
        Command::Glossary { term } => glossary::run(term.as_deref()),
        Command::Golden { action, root } => cmd_golden(action, &root),
        Command::Bench {
            what: BenchCommand::Speed(args),
        } => speed::run(args),
        Command::Bench {
            what: BenchCommand::Cell(args),
        } => speed::run_cell(args),
        Command::Bench {
            what:
                BenchCommand::Attention {
                    seq_lens,
                    heads,
                    head_dim,
                    cap_gib,
                },
        } => {
            use crate::attention::bench::{bench_attention, bench_markdown, AttentionBenchConfig};
            let mut cfg = AttentionBenchConfig {
                heads,
                head_dim,
                ..AttentionBenchConfig::default()
            };
            cfg.naive_cap_bytes = (cap_gib * (1u64 << 30) as f64) as u64;
            if !seq_lens.is_empty() {
                cfg.seq_lens = seq_lens;
            }
            let rows = bench_attention(&cfg)?;
            print!("{}", bench_markdown(&cfg, &rows));
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { spec, flags } => cmd_run(&spec, flags),
        Command::Cells { spec, shards } => cmd_cells(&spec, shards),
        Command::Merge { shards, out } => cmd_merge(&shards, &out),
        Command::Calibrate {
            out,
            reduced,
            jobs,
            seeds,
            cases,
        } => {
            let mut opts = match reduced {
                true => crate::calibrate::CalibrationOptions::reduced(),
                false => crate::calibrate::CalibrationOptions::full(),
            };
            if let Some(j) = jobs {
                opts.runner.jobs = j;
            }
            if let Some(n) = seeds {
                opts.seeds = (101..101 + n).collect();
            }
            if let Some(n) = cases {
                opts.synthetic_cases = n;
            }
            let c = crate::calibrate::calibrate(&opts)?;
            let md = crate::calibrate::to_markdown(&c);
            crate::fsutil::write_atomic(&out.join("calibration.md"), md.as_bytes())?;
            crate::fsutil::write_atomic(
                &out.join("calibration.json"),
                serde_json::to_string_pretty(&c)?.as_bytes(),
            )?;
            print!("{md}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Faults => {
            for f in crate::faults::Fault::CATALOG {
                println!("{:<24} {}", f.name(), f.describe());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Formats an error and its causes as one line, `context: error: cause`, like anyhow's `{:#}`
/// but without repeating a cause whose text the message already holds (the library's I/O
/// errors print their OS error and also expose it as their source).
pub fn error_message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out += ": ";
        }
        out += &text;
    }
    out
}

/// Refuses a thread count far above this machine's cores. Losses are identical for any count, so
/// extra threads only contend: `--threads 1000` on two cores practically stalled (issue 21). Up
/// to four per core is allowed, so a command written on a bigger machine (`--threads 2`) still
/// runs on a one-core runner.
fn check_threads(n: usize) -> crate::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let max = MAX_THREADS_PER_CORE * cores;
    match (1..=max).contains(&n) {
        true => Ok(()),
        false => Err(crate::Error::InvalidValue {
            origin: "--threads".into(),
            key: "threads".into(),
            expected: format!(
                "1..={max} ({MAX_THREADS_PER_CORE} per core of this machine's {cores}; losses are bitwise identical for any count)"
            ),
            got: n.to_string(),
        }),
    }
}

/// Threads per core `--threads` may ask for.
const MAX_THREADS_PER_CORE: usize = 4;

fn cmd_train(
    spec: &Path,
    out: &Path,
    overrides: &[String],
    name: Option<String>,
    threads: usize,
) -> anyhow::Result<ExitCode> {
    let mut cfg = RunConfig::load(spec)?;
    cfg.apply_overrides(overrides)?;
    // Refuse an unwritable --out before training, not after it.
    crate::fsutil::check_writable(out)?;
    let name = name.unwrap_or_else(|| {
        spec.file_stem()
            .map_or("run".into(), |s| s.to_string_lossy().into_owned())
    });
    let bar = progress_bar(cfg.train.train_iters);
    let mut on_step = |r: &StepRecord| {
        bar.set_position(r.step);
        bar.set_message(format!("loss {:.4}  lr {:.2e}", r.loss, r.lr));
    };
    // The run's parallel loops go to a pool of `--threads` threads, as the runner does per run.
    let pool = crate::threads::pool(threads)?;
    let trace = pool
        .install(|| train(&cfg, &name, &mut on_step))
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
    if compare::is_golden(path) {
        let g = crate::golden::Golden::load(path)
            .with_context(|| format!("failed to read golden {}", path.display()))?;
        println!(
            "golden  {} / {} / {}: {} seed traces, {} perturbations, blessed by lossdiff {}",
            g.experiment,
            g.cell,
            g.arm,
            g.seed_traces.len(),
            g.perturbation_traces.len(),
            g.provenance.lossdiff_version
        );
        let first = g
            .seed_traces
            .first()
            .context("the golden holds no seed trace")?;
        println!("showing its first seed trace:\n");
        print!("{}", render_show(first, rows));
        return Ok(ExitCode::SUCCESS);
    }
    // Any format `compare` reads can be shown: the importer detects it from the content.
    let trace = crate::import::import(path, None)
        .with_context(|| format!("failed to read trace {}", path.display()))?;
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
    for (k, v) in crate::trace::flatten_json(&trace.config) {
        s += &format!("  {k} = {v}\n");
    }
    s += "\nfingerprint\n";
    for (k, v) in crate::trace::flatten_json(&trace.fingerprint) {
        s += &format!("  {k} = {v}\n");
    }
    let seeds: Vec<String> = trace
        .seeds
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    s += &format!("\nseeds   {}\n", seeds.join(" "));
    s += &format!("series  {}\n", trace.describe_series());
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

fn cmd_golden(action: GoldenCommand, root: &Path) -> anyhow::Result<ExitCode> {
    use crate::golden::{Golden, GoldenStore};
    let store = GoldenStore::new(root);
    match action {
        GoldenCommand::Review => {
            let pending = store.pending();
            if pending.is_empty() {
                println!("no pending goldens under {}", root.display());
            }
            for p in pending {
                let new = Golden::load(&p)
                    .with_context(|| format!("failed to read pending golden {}", p.display()))?;
                let target = PathBuf::from(p.to_string_lossy().trim_end_matches(".new"));
                println!("{}", p.display());
                let describe = |g: &Golden| {
                    format!(
                        "{} seeds + {} perturbations, {} steps, late loss {:.6} ± {:.2e}, blessed by lossdiff {} on {}",
                        g.summary.seeds, g.summary.perturbations, g.summary.steps, g.summary.late_loss_mean,
                        g.summary.late_loss_sd, g.provenance.lossdiff_version,
                        g.provenance.fingerprint["cpu_model"].as_str().unwrap_or("?")
                    )
                };
                match Golden::load(&target) {
                    Ok(old) => {
                        println!("  old: {}", describe(&old));
                        if old.provenance.spec_hash != new.provenance.spec_hash {
                            println!("       (spec changed since the old golden was blessed)");
                        }
                    }
                    Err(_) => println!("  old: none"),
                }
                println!("  new: {}", describe(&new));
            }
            println!("accept with `lossdiff golden accept [FILTER]`, reject with `lossdiff golden reject [FILTER]`");
            Ok(ExitCode::SUCCESS)
        }
        GoldenCommand::Accept { filter } => {
            let done = store.accept(filter.as_deref())?;
            for p in &done {
                println!("accepted {}", p.display());
            }
            if done.is_empty() {
                println!("nothing pending to accept");
            }
            Ok(ExitCode::SUCCESS)
        }
        GoldenCommand::Reject { filter } => {
            for p in store.reject(filter.as_deref())? {
                println!("rejected {}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        GoldenCommand::Migrate { filter } => {
            let done = store.migrate(filter.as_deref())?;
            for (p, m) in &done {
                match m {
                    crate::golden::Migration::Sealed => println!("sealed {}", p.display()),
                    crate::golden::Migration::Current => {
                        println!("already sealed and intact: {}", p.display())
                    }
                }
            }
            if done.is_empty() {
                println!("no goldens under {}", root.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        GoldenCommand::Check { experiments } => {
            let used = used_goldens(&experiments)?;
            for p in crate::fsutil::remove_stale_temp_files(root)? {
                println!(
                    "removed {} (temp file of an interrupted write; goldens are unaffected)",
                    p.display()
                );
            }
            let unused = store.unused(&used);
            for p in &unused {
                println!(
                    "unused golden: {} (no spec in {} produces it)",
                    p.display(),
                    experiments.display()
                );
            }
            if unused.is_empty() {
                println!("every golden under {} is used", root.display());
                return Ok(ExitCode::SUCCESS);
            }
            Ok(ExitCode::from(1))
        }
        GoldenCommand::Export {
            golden,
            out,
            seed_index,
        } => {
            let g = Golden::load(&golden)
                .with_context(|| format!("failed to read golden {}", golden.display()))?;
            let trace = g.seed_traces.get(seed_index).with_context(|| {
                format!(
                    "{} has {} seed traces; --seed-index {seed_index} is out of range",
                    golden.display(),
                    g.seed_traces.len()
                )
            })?;
            crate::fsutil::write_atomic(
                &out,
                crate::import::megatron_golden_json(trace).as_bytes(),
            )?;
            println!("wrote {} (Megatron-LM golden-values schema)", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Returns every `(experiment, cell, arm)` the experiment specs in `dir` produce.
fn used_goldens(dir: &Path) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut used = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("failed to list experiments in {}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    for p in paths {
        let text = crate::limits::read_input_to_string(&p)?;
        // Run specs (no [experiment] table) produce no goldens.
        if !text.contains("[experiment]") {
            continue;
        }
        let exp = crate::experiment::Experiment::load(&p)?;
        for cell in exp.cells() {
            for arm in &exp.arms {
                used.push((exp.name.clone(), cell.id.clone(), arm.name.clone()));
            }
        }
    }
    Ok(used)
}

/// Parses `--kernels` through the config's own spelling (`fused`, `composed`).
fn parse_kernels(s: &str) -> Result<crate::config::Kernels, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("expected `fused` or `composed`, got `{s}`"))
}

/// The flags of `lossdiff run`.
#[derive(Debug, clap::Args)]
struct RunFlags {
    /// Report directory (default: reports/<spec name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these cells (repeatable), e.g. `--cell lr_decay_iters=20`.
    #[arg(long = "cell")]
    cells: Vec<String>,
    /// Run this task's share of the cells: `i/N` (0-based), e.g. from a Slurm job array.
    #[arg(long)]
    shard: Option<String>,
    /// Runs at once (default: available cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Do not read or write the run cache.
    #[arg(long)]
    no_cache: bool,
    /// Train every arm with these kernels (`fused` or `composed`), judging that environment
    /// against goldens blessed with the spec's; goldens do not go stale under it.
    #[arg(long, value_parser = parse_kernels)]
    kernels: Option<crate::config::Kernels>,
    /// Bless: write every arm's fresh runs as its golden (the same as LOSSDIFF_UPDATE=always).
    /// Refused on CI, where goldens are never written.
    #[arg(long)]
    bless: bool,
}

fn cmd_run(spec: &Path, flags: RunFlags) -> anyhow::Result<ExitCode> {
    let RunFlags {
        out,
        cells,
        shard,
        jobs,
        no_cache,
        kernels,
        bless,
    } = flags;
    let mut opts = crate::gate::GateOptions::from_env()?;
    opts.kernels = kernels;
    // Hints name `lossdiff run … --bless`, unless a wrapper (the Python helper) names its own.
    opts.bless_hint = crate::golden::BlessHint::from_wrapper(
        std::env::var(crate::golden::BlessHint::ENV).ok(),
        crate::golden::BlessHint::Cli,
    );
    if bless {
        anyhow::ensure!(
            !opts.ci,
            "--bless: CI is set, and goldens are never written on CI; bless on a developer machine and commit the goldens"
        );
        opts.update = crate::golden::UpdateMode::Always;
    }
    if !cells.is_empty() {
        opts.cells = Some(cells);
    }
    opts.shard = shard.as_deref().map(crate::gate::parse_shard).transpose()?;
    if let Some(j) = jobs {
        opts.runner.jobs = j;
    }
    if no_cache {
        opts.runner.cache = None;
    }
    let out = out.unwrap_or_else(|| {
        PathBuf::from("reports").join(
            spec.file_stem()
                .map_or("run".into(), |s| s.to_string_lossy().into_owned()),
        )
    });
    // Before training: an unwritable report directory must not cost the whole run.
    crate::report::check_report_dir(&out)?;
    let plan = match opts.shard {
        Some((k, n)) => {
            crate::gate::clear_shard_plan(&out)?;
            Some(crate::gate::shard_plan(spec, k, n)?)
        }
        None => None,
    };
    let started = std::time::Instant::now();
    let results = crate::gate::run_all_experiments(spec, &opts)?;
    crate::gate::write_report_dir(&out, &results)?;
    if let Some(plan) = &plan {
        crate::gate::write_shard_plan(&out, plan)?;
    }
    let written = out.join("index.md");
    let reports: Vec<&crate::gate::ExperimentReport> = results.iter().map(|(r, _)| r).collect();
    print!("{}", crate::gate::render_summary(&reports));
    let (trained, cached) = reports
        .iter()
        .fold((0, 0), |(t, c), r| (t + r.trained, c + r.cached));
    for note in reports.iter().flat_map(|r| r.cache_notes()) {
        match note.starts_with("warning: ") {
            true => eprintln!("lossdiff: {note}"),
            false => println!("{note}"),
        }
    }
    println!(
        "{trained} runs trained, {cached} from cache, {:.1} s; report: {}",
        started.elapsed().as_secs_f64(),
        written.display()
    );
    Ok(ExitCode::from(if reports.iter().all(|r| r.passed) {
        0
    } else {
        1
    }))
}

fn cmd_cells(spec: &Path, shards: Option<usize>) -> anyhow::Result<ExitCode> {
    let count = match shards {
        Some(n) => n,
        None => crate::gate::plan_cells(spec, 1)?.len().max(1),
    };
    for c in crate::gate::plan_cells(spec, count)? {
        println!("{}\t{}\t{}", c.task, c.experiment, c.cell);
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_merge(shards: &[PathBuf], out: &Path) -> anyhow::Result<ExitCode> {
    let merged = crate::gate::merge_shard_dirs(shards)?;
    for (dir, why) in &merged.unfinished {
        eprintln!(
            "lossdiff: warning: {}: {why}; its cells count as missing",
            dir.display()
        );
    }
    crate::report::check_report_dir(out)?;
    let missing = merged.missing_tasks();
    let finished = shards.len() - merged.unfinished.len();
    let results: Vec<_> = merged
        .reports
        .into_iter()
        .map(|r| (r, Vec::new()))
        .collect();
    crate::gate::write_report_dir_reusing(out, &results, shards)?;
    let reports: Vec<&crate::gate::ExperimentReport> = results.iter().map(|(r, _)| r).collect();
    print!("{}", crate::gate::render_summary(&reports));
    println!(
        "merged {finished} of {} shard directories into {}",
        shards.len(),
        out.display()
    );
    if !missing.is_empty() {
        let cells: usize = reports.iter().map(|r| r.missing.len()).sum();
        let tasks: Vec<String> = missing.iter().map(usize::to_string).collect();
        eprintln!(
            "lossdiff: incomplete: {cells} cell(s) missing because task(s) {} of {} did not finish; re-run those tasks into their directories and merge again",
            tasks.join(","),
            merged.count.unwrap_or(0)
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::from(if reports.iter().all(|r| r.passed) {
        0
    } else {
        1
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("lossdiff").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn only_commands_that_train_one_model_at_a_time_share_one_malloc_arena() {
        assert!(cli(&["train", "s.toml", "--out", "t.json"]).trains_one_model_at_a_time());
        assert!(cli(&["bench", "cell", "--preset", "small"]).trains_one_model_at_a_time());
        // Several trainings at once would contend for the arena's lock.
        assert!(!cli(&["run", "e.toml"]).trains_one_model_at_a_time());
        assert!(!cli(&["calibrate"]).trains_one_model_at_a_time());
        assert!(!cli(&["compare", "a.csv", "b.csv"]).trains_one_model_at_a_time());
    }
}
