//! One cell of the speed bench: a case (a training step, or attention at one length and dtype),
//! measured in a process of its own. This module owns the in-process measurement the hidden
//! `lossdiff bench cell` subcommand runs, the two child command lines (lossdiff's and the PyTorch
//! script's, built from the same [`CellSpec`] so the sides do the same work), and reading a
//! child's one JSON line. Which cells run in which order is `speed`'s.

use super::stats::Timing;
use crate::attention::{flash_attention, AttentionParams};
use crate::config::{Kernels, RunConfig};
use crate::error::{Error, Result};
use crate::process::{run_limited, Keep, RunError};
use crate::rng::normal;
use crate::train::Trainer;
use candle_core::{DType, Device, Tensor, Var};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Element type of an attention cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchDType {
    /// 32-bit float.
    F32,
    /// bfloat16 (lossdiff's kernel accumulates in f32).
    Bf16,
}

impl BenchDType {
    /// The spelling both command lines use.
    pub fn name(self) -> &'static str {
        match self {
            BenchDType::F32 => "f32",
            BenchDType::Bf16 => "bf16",
        }
    }

    fn candle(self) -> DType {
        match self {
            BenchDType::F32 => DType::F32,
            BenchDType::Bf16 => DType::BF16,
        }
    }
}

/// What one cell measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Case {
    /// One optimiser step of a shipped preset, fused kernels, in a pool of `threads`.
    Step {
        /// `RunConfig::preset` name.
        preset: String,
        /// Threads of the step's pool (and of PyTorch's intra-op pool).
        threads: usize,
    },
    /// Causal attention forward + backward of `sum(out)` at B=1, [`HEADS`] heads, head dim
    /// [`HEAD_DIM`]: lossdiff's flash kernel against PyTorch's SDPA.
    Attention {
        /// Sequence length `T`.
        seq_len: usize,
        /// Element type of q, k, v.
        dtype: BenchDType,
        /// Threads.
        threads: usize,
    },
}

/// Heads of the attention cells (the issue's shape, `lossdiff bench attention`'s default).
pub const HEADS: usize = 4;
/// Head dimension of the attention cells.
pub const HEAD_DIM: usize = 32;
/// Sequence length the attention cells warm up at: thread pools and kernel start-up, not `T`.
const WARMUP_SEQ_LEN: usize = 128;

impl Case {
    /// Threads the cell runs with.
    pub fn threads(&self) -> usize {
        match self {
            Case::Step { threads, .. } | Case::Attention { threads, .. } => *threads,
        }
    }
}

/// A case and how long to time it; both sides get the same numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct CellSpec {
    /// What to measure.
    pub case: Case,
    /// Most timed runs (optimiser steps, or attention fwd+bwd calls).
    pub runs: usize,
    /// Untimed runs first.
    pub warmup: usize,
    /// Timing stops once the timed runs add up to this many seconds (at least one run): a 32k
    /// attention call takes seconds, and a few of them already say what it costs.
    pub budget_secs: f64,
}

impl CellSpec {
    /// Returns the arguments of `lossdiff bench cell` that measure this cell.
    pub fn lossdiff_args(&self) -> Vec<String> {
        let mut args = vec!["bench".to_string(), "cell".to_string()];
        args.extend(self.case_args(true));
        args
    }

    /// Returns the arguments of `pytorch_reference.py` that measure this cell.
    pub fn pytorch_args(&self) -> Vec<String> {
        let mut args = self.case_args(false);
        args.push("--json".into());
        args
    }

    fn case_args(&self, lossdiff: bool) -> Vec<String> {
        let mut args: Vec<String> = match &self.case {
            Case::Step { preset, .. } => vec!["--preset".into(), preset.clone()],
            Case::Attention { seq_len, dtype, .. } => {
                let flag = if lossdiff {
                    "--seq-len"
                } else {
                    "--attention-bench"
                };
                vec![
                    flag.into(),
                    seq_len.to_string(),
                    "--dtype".into(),
                    dtype.name().into(),
                ]
            }
        };
        for (k, v) in [
            ("--threads", self.case.threads().to_string()),
            ("--steps", self.runs.to_string()),
            ("--warmup", self.warmup.to_string()),
        ] {
            args.extend([k.to_string(), v]);
        }
        if self.budget_secs.is_finite() {
            args.extend(["--budget-secs".to_string(), self.budget_secs.to_string()]);
        }
        args
    }
}

/// Measures a cell in this process, inside a rayon pool of the case's threads.
///
/// The caller (the `lossdiff bench cell` child) has `RAYON_NUM_THREADS` set to the same count, so
/// candle's own loops use it too.
///
/// # Errors
/// [`Error::InvalidValue`] for an unknown preset or zero runs; training and kernel errors.
pub fn measure(spec: &CellSpec) -> Result<Timing> {
    if spec.runs == 0 {
        return Err(Error::InvalidValue {
            origin: "bench cell".into(),
            key: "steps".into(),
            expected: "at least 1 timed run".into(),
            got: "0".into(),
        });
    }
    let pool = crate::threads::pool(spec.case.threads())?;
    let Runs { secs, minor_faults } = pool.install(|| match &spec.case {
        Case::Step { preset, .. } => time_steps(preset, spec),
        Case::Attention { seq_len, dtype, .. } => time_attention(*seq_len, *dtype, spec),
    })?;
    let mut timing = Timing::from_runs(&secs).ok_or_else(|| Error::InvalidValue {
        origin: "bench cell".into(),
        key: "timing".into(),
        expected: "finite run times".into(),
        got: format!("{secs:?}"),
    })?;
    timing.minor_faults_per_run = minor_faults.map(|n| n as f64 / secs.len() as f64);
    Ok(timing)
}

/// What the timed runs of a cell took: their wall times, and the minor page faults all of them
/// caused together (when the OS says).
struct Runs {
    secs: Vec<f64>,
    minor_faults: Option<u64>,
}

/// Counts minor page faults of this process so far; `None` where `getrusage` is unavailable.
fn minor_faults() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes one `rusage` through a valid pointer and reads nothing else.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
        // SAFETY: a zeroed `rusage` is a valid value (plain integers), written over on success.
        let usage = unsafe { usage.assume_init() };
        (rc == 0).then(|| u64::try_from(usage.ru_minflt).unwrap_or(0))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Faults between two readings, when both were taken.
fn faults_between(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?))
}

/// Looks up a shipped preset with fused kernels (the default the README's table reports).
///
/// # Errors
/// [`Error::InvalidValue`] naming the presets there are.
pub fn preset(name: &str) -> Result<RunConfig> {
    let mut cfg = RunConfig::preset(name).ok_or_else(|| Error::InvalidValue {
        origin: "--presets".into(),
        key: "preset".into(),
        expected: "one of gate, small, medium".into(),
        got: name.into(),
    })?;
    cfg.model.kernels = Kernels::Fused;
    Ok(cfg)
}

fn time_steps(name: &str, spec: &CellSpec) -> Result<Runs> {
    let cfg = preset(name)?;
    let mut trainer = Trainer::new(&cfg, name)?;
    let iters = cfg.train.train_iters.max(1);
    let mut runs = Vec::with_capacity(spec.runs);
    let mut faults_before = None;
    for i in 0..(spec.warmup + spec.runs) as u64 {
        if i == spec.warmup as u64 {
            faults_before = minor_faults();
        }
        let start = Instant::now();
        trainer.step(i % iters)?;
        if i >= spec.warmup as u64 {
            runs.push(start.elapsed().as_secs_f64());
        }
        if runs.iter().sum::<f64>() >= spec.budget_secs {
            break;
        }
    }
    Ok(Runs {
        minor_faults: faults_between(faults_before, minor_faults()),
        secs: runs,
    })
}

fn time_attention(t: usize, dtype: BenchDType, spec: &CellSpec) -> Result<Runs> {
    let params = AttentionParams {
        softmax_scale: 1.0 / (HEAD_DIM as f32).sqrt(),
        dropout: None,
        max_naive_bytes: 0,
        kernels: Kernels::Fused,
    };
    let run = |qkv: &[Var; 3]| -> Result<()> {
        let [q, k, v] = qkv.each_ref().map(|x| x.as_tensor());
        let out = flash_attention(q, k, v, &params)?;
        out.sum_all()?.backward()?;
        Ok(())
    };
    let warm = inputs(WARMUP_SEQ_LEN, dtype)?;
    for _ in 0..spec.warmup.max(1) {
        run(&warm)?;
    }
    let qkv = inputs(t, dtype)?;
    let mut runs = Vec::with_capacity(spec.runs);
    let faults_before = minor_faults();
    while runs.len() < spec.runs {
        let start = Instant::now();
        crate::threads::in_pool(|| run(&qkv))?;
        runs.push(start.elapsed().as_secs_f64());
        if runs.iter().sum::<f64>() >= spec.budget_secs {
            break;
        }
    }
    Ok(Runs {
        minor_faults: faults_between(faults_before, minor_faults()),
        secs: runs,
    })
}

/// Returns seeded normal `(1, HEADS, t, HEAD_DIM)` q, k, v of `dtype`.
fn inputs(t: usize, dtype: BenchDType) -> Result<[Var; 3]> {
    let n = HEADS * t * HEAD_DIM;
    let one = |salt: u64| -> Result<Var> {
        let data: Vec<f32> = (0..n as u64).map(|i| normal(salt, i) as f32).collect();
        let x = Tensor::from_vec(data, (1, HEADS, t, HEAD_DIM), &Device::Cpu)?;
        Ok(Var::from_tensor(&x.to_dtype(dtype.candle())?)?)
    };
    Ok([one(1)?, one(2)?, one(3)?])
}

/// Runs a child that prints one timing JSON line (its last line on stdout) and reads it.
///
/// # Errors
/// [`Error::BenchCell`] naming the command line and the tail of its stderr when it cannot start,
/// fails, runs past `timeout` (it is then killed, with every process it started), or prints no
/// timing line.
pub fn run_child(mut cmd: Command, timeout: Duration) -> Result<Timing> {
    let shown = describe(&cmd);
    let fail = |reason: String, tail: &[u8]| Error::BenchCell {
        command: shown.clone(),
        reason,
        tail: tail_lines(tail, 12),
    };
    let out = run_limited(&mut cmd, timeout, Keep::Tail).map_err(|e| match e {
        RunError::Spawn(e) => fail(format!("could not start: {e}"), b""),
        RunError::Wait(e) => fail(format!("could not be waited for: {e}"), b""),
    })?;
    let Some(status) = out.status else {
        return Err(fail(
            format!(
                "was killed after running {:.0} s, the cell timeout (`--cell-timeout`)",
                timeout.as_secs_f64()
            ),
            out.stderr.tail(),
        ));
    };
    if !status.success() {
        return Err(fail(format!("failed ({status})"), out.stderr.tail()));
    }
    let stdout = String::from_utf8_lossy(out.stdout.tail());
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
    let parsed = line.and_then(|l| serde_json::from_str::<Timing>(l).ok());
    match parsed {
        Some(t) if t.median_s.is_finite() && t.samples > 0 => Ok(t),
        _ => Err(fail(
            "printed no timing line (`{\"median_s\": …}`) on stdout".into(),
            &[out.stdout.tail(), b"\n", out.stderr.tail()].concat(),
        )),
    }
}

/// Returns a command as a user would type it.
pub fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Returns the last `n` non-empty lines of `bytes`, indented.
fn tail_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    match lines.is_empty() {
        true => "  (no output)".into(),
        false => lines[start..]
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Returns the lossdiff child for `spec`: `exe bench cell …` with `RAYON_NUM_THREADS` set to the
/// cell's threads (its `main` sets the spin limit itself).
pub fn lossdiff_command(exe: &Path, spec: &CellSpec) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(spec.lossdiff_args())
        .env("RAYON_NUM_THREADS", spec.case.threads().to_string());
    cmd
}

/// Returns the PyTorch child for `spec`: `python script … --json`, its OpenMP pool sized like
/// lossdiff's and Python's warnings off (they would bury the line the bench reads).
pub fn pytorch_command(python: &Path, script: &Path, spec: &CellSpec) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args(spec.pytorch_args())
        .env("OMP_NUM_THREADS", spec.case.threads().to_string())
        .env("PYTHONWARNINGS", "ignore");
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attention_spec() -> CellSpec {
        CellSpec {
            case: Case::Attention {
                seq_len: 4096,
                dtype: BenchDType::Bf16,
                threads: 2,
            },
            runs: 5,
            warmup: 1,
            budget_secs: 6.0,
        }
    }

    #[test]
    fn both_sides_of_an_attention_cell_get_the_same_length_dtype_threads_and_budget() {
        let s = attention_spec();
        assert_eq!(
            s.lossdiff_args().join(" "),
            "bench cell --seq-len 4096 --dtype bf16 --threads 2 --steps 5 --warmup 1 --budget-secs 6"
        );
        assert_eq!(
            s.pytorch_args().join(" "),
            "--attention-bench 4096 --dtype bf16 --threads 2 --steps 5 --warmup 1 --budget-secs 6 --json"
        );
    }

    #[test]
    fn a_step_cell_runs_its_preset_with_its_threads_in_the_child_environment() {
        let s = CellSpec {
            case: Case::Step {
                preset: "small".into(),
                threads: 2,
            },
            runs: 10,
            warmup: 3,
            budget_secs: f64::INFINITY,
        };
        let cmd = lossdiff_command(Path::new("/bin/lossdiff"), &s);
        assert_eq!(
            describe(&cmd),
            "/bin/lossdiff bench cell --preset small --threads 2 --steps 10 --warmup 3"
        );
        let env: Vec<_> = cmd.get_envs().collect();
        assert_eq!(
            env,
            [(
                std::ffi::OsStr::new("RAYON_NUM_THREADS"),
                Some(std::ffi::OsStr::new("2"))
            )]
        );
    }

    #[test]
    fn measuring_a_tiny_attention_cell_times_each_run() {
        let spec = CellSpec {
            case: Case::Attention {
                seq_len: 64,
                dtype: BenchDType::Bf16,
                threads: 1,
            },
            runs: 3,
            warmup: 1,
            budget_secs: f64::INFINITY,
        };
        let t = measure(&spec).unwrap();
        assert_eq!(t.samples, 3);
        assert!(
            t.q1_s > 0.0 && t.q1_s <= t.median_s && t.median_s <= t.q3_s,
            "{t:?}"
        );
    }

    #[test]
    fn an_unknown_preset_is_refused_naming_the_presets() {
        let err = preset("huge").unwrap_err().to_string();
        assert!(
            err.contains("huge") && err.contains("gate, small, medium"),
            "{err}"
        );
    }

    #[test]
    #[cfg(unix)]
    fn a_failing_child_is_an_error_naming_its_command_and_stderr_tail() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'Traceback: boom' >&2; exit 3"]);
        let err = run_child(cmd, Duration::from_secs(60))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sh -c"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("Traceback: boom"), "{err}");
    }

    #[test]
    #[cfg(unix)]
    fn a_child_that_prints_no_timing_is_an_error_not_a_zero() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo done"]);
        let err = run_child(cmd, Duration::from_secs(60))
            .unwrap_err()
            .to_string();
        assert!(err.contains("printed no timing line"), "{err}");
        assert!(err.contains("done"), "{err}");
        let mut cmd = Command::new("/nonexistent/python");
        cmd.arg("x.py");
        let err = run_child(cmd, Duration::from_secs(60))
            .unwrap_err()
            .to_string();
        assert!(err.contains("could not start"), "{err}");
    }

    #[test]
    #[cfg(unix)]
    fn a_child_past_the_timeout_is_killed_with_what_it_started_and_named() {
        // The shell starts a grandchild that would hold the pipes open for a minute.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'loading torch' >&2; sleep 60 & sleep 60"]);
        let start = Instant::now();
        let err = run_child(cmd, Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the bench waited on"
        );
        assert!(err.contains("sh -c"), "{err}");
        assert!(err.contains("cell timeout"), "{err}");
        assert!(err.contains("loading torch"), "{err}");
    }

    #[test]
    #[cfg(unix)]
    fn a_child_timing_line_is_read_from_the_last_line_of_stdout() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            r#"echo noise; echo '{"median_s": 0.5, "q1_s": 0.4, "q3_s": 0.6, "samples": 3, "torch": "2.15.0"}'"#,
        ]);
        let t = run_child(cmd, Duration::from_secs(60)).unwrap();
        assert_eq!(t.median_s, 0.5);
        assert_eq!(t.torch.as_deref(), Some("2.15.0"));
    }
}
