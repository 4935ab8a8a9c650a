//! `lossdiff bench speed`: lossdiff's training step and flash attention timed against the PyTorch
//! CPU reference, interleaved in one invocation, printed as the README's speed tables.
//!
//! Every measurement is a process of its own, so thread counts are clean and both sides start
//! alike: lossdiff's cells re-run this binary (`lossdiff bench cell …`, hidden), PyTorch's run
//! `benches/pytorch_reference.py … --json`. A shared machine's speed drifts by tens of percent
//! within minutes, so the two sides of a case run back to back, round after round (alternating
//! which goes first), and their ratio is the median of the per-round ratios
//! ([`stats::paired_ratio`]). PyTorch is optional: without it the tables keep lossdiff's columns
//! and the header says why PyTorch is absent and how to point the bench at a Python that has it.
//!
//! This module owns the plan and its execution; [`cell`] measures one cell, [`render`] prints the
//! result. The CLI only fills [`SpeedOptions`].

pub mod cell;
mod machine;
pub mod render;
pub mod stats;

use crate::error::{Error, Result};
use crate::process::{run_limited, Finished, Keep, RunError};
use cell::{BenchDType, Case, CellSpec};
use stats::Timing;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What to measure and with which programs.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeedOptions {
    /// Rounds; each runs every case once on both sides.
    pub rounds: usize,
    /// Timed optimiser steps per step cell.
    pub steps: usize,
    /// Untimed steps (or attention calls) first.
    pub warmup: usize,
    /// Presets of the step table.
    pub presets: Vec<String>,
    /// Thread counts of the step table.
    pub step_threads: Vec<usize>,
    /// Sequence lengths of the attention table.
    pub seq_lens: Vec<usize>,
    /// Threads of the attention cells.
    pub attention_threads: usize,
    /// Most timed calls per attention cell.
    pub attention_runs: usize,
    /// Timed calls of an attention cell stop once they add up to this many seconds.
    pub attention_budget_secs: f64,
    /// How long one cell may run before it is killed and the bench stops.
    pub cell_timeout: Duration,
    /// Which tables to measure.
    pub only: Option<Table>,
    /// The lossdiff binary the cells re-run.
    pub lossdiff_exe: PathBuf,
    /// The Python that runs the PyTorch reference.
    pub python: PathBuf,
    /// `benches/pytorch_reference.py`.
    pub script: PathBuf,
    /// The command line, as printed in the header.
    pub command_line: String,
}

/// One of the two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Training step times.
    Step,
    /// Attention forward + backward times.
    Attention,
}

/// Variable naming the Python of the PyTorch reference when `--python` is not given.
pub const PYTHON_VAR: &str = "LOSSDIFF_PYTHON";

/// Returns the Python to run: `--python`, else [`PYTHON_VAR`], else `python3` from `PATH`.
pub fn choose_python(flag: Option<PathBuf>, env: Option<std::ffi::OsString>) -> PathBuf {
    flag.or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Returns the PyTorch script: `--pytorch-script`, else `benches/pytorch_reference.py` of the
/// checkout this binary was built from.
pub fn choose_script(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pytorch_reference.py")
    })
}

/// Whether the PyTorch side can run, and with what.
#[derive(Debug, Clone, PartialEq)]
pub enum PyTorch {
    /// `python` imports torch of this version.
    Present {
        /// The Python.
        python: PathBuf,
        /// `torch.__version__`.
        version: String,
    },
    /// `python` cannot import torch (or cannot start); `reason` is its last error line.
    Absent {
        /// The Python tried.
        python: PathBuf,
        /// Why, in the interpreter's words.
        reason: String,
    },
}

/// How long `import torch` may take before the bench treats PyTorch as absent (a cold import
/// takes seconds; a Python that hangs must not hang the bench).
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// Asks `python` for `torch.__version__`.
pub fn probe_pytorch(python: &Path) -> PyTorch {
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import warnings; warnings.filterwarnings('ignore'); import torch; print(torch.__version__)",
    ])
    .env("PYTHONWARNINGS", "ignore");
    let out = run_limited(&mut cmd, PROBE_TIMEOUT, Keep::Tail);
    let absent = |reason: String| PyTorch::Absent {
        python: python.to_path_buf(),
        reason,
    };
    match out {
        Err(RunError::Spawn(e)) => absent(format!("cannot start it: {e}")),
        Err(RunError::Wait(e)) => absent(format!("cannot wait for it: {e}")),
        Ok(Finished { status: None, .. }) => absent(format!(
            "`import torch` did not finish within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
        Ok(Finished {
            status: Some(status),
            stdout,
            ..
        }) if status.success() => PyTorch::Present {
            python: python.to_path_buf(),
            version: String::from_utf8_lossy(stdout.tail()).trim().to_string(),
        },
        Ok(Finished { stderr, .. }) => {
            let err = String::from_utf8_lossy(stderr.tail());
            let last = err.lines().rev().find(|l| !l.trim().is_empty());
            absent(last.unwrap_or("`import torch` failed").trim().to_string())
        }
    }
}

/// One case's measurements, one per round on each side.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// lossdiff's timing in each round.
    pub lossdiff: Vec<Timing>,
    /// PyTorch's timing in each round (empty when PyTorch is absent).
    pub pytorch: Vec<Timing>,
}

/// Everything the tables print.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeedReport {
    /// Commit, CPU, date, command line.
    pub machine: machine::Machine,
    /// The PyTorch side.
    pub pytorch: PyTorch,
    /// Rounds run.
    pub rounds: usize,
    /// Timed steps and warm-up of the step cells.
    pub steps: (usize, usize),
    /// Threads of the attention cells.
    pub attention_threads: usize,
    /// Every case, step cases first, in plan order.
    pub cases: Vec<CaseResult>,
}

impl SpeedOptions {
    /// Returns every cell the options ask for, step cases first.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] for an unknown preset, zero rounds/steps/threads or `T`.
    pub fn plan(&self) -> Result<Vec<CellSpec>> {
        let bad = |key: &str, expected: &str, got: String| Error::InvalidValue {
            origin: "lossdiff bench speed".into(),
            key: key.into(),
            expected: expected.into(),
            got,
        };
        for (flag, n) in [
            ("--rounds", self.rounds),
            ("--steps", self.steps),
            ("--attention-runs", self.attention_runs),
        ] {
            if n == 0 {
                return Err(bad(flag, "at least 1", "0".into()));
            }
        }
        let mut plan = Vec::new();
        if self.only != Some(Table::Attention) {
            for preset in &self.presets {
                cell::preset(preset)?;
                for &threads in &self.step_threads {
                    if threads == 0 {
                        return Err(bad("--threads", "at least 1", "0".into()));
                    }
                    plan.push(CellSpec {
                        case: Case::Step {
                            preset: preset.clone(),
                            threads,
                        },
                        runs: self.steps,
                        warmup: self.warmup,
                        budget_secs: f64::INFINITY,
                    });
                }
            }
        }
        if self.only != Some(Table::Step) {
            for &seq_len in &self.seq_lens {
                if seq_len == 0 {
                    return Err(bad("--seq-len", "a length of at least 1", "0".into()));
                }
                for dtype in [BenchDType::F32, BenchDType::Bf16] {
                    plan.push(CellSpec {
                        case: Case::Attention {
                            seq_len,
                            dtype,
                            threads: self.attention_threads.max(1),
                        },
                        runs: self.attention_runs,
                        warmup: self.warmup,
                        budget_secs: self.attention_budget_secs,
                    });
                }
            }
        }
        Ok(plan)
    }
}

/// Runs the bench: for each round, every case on both sides back to back (lossdiff first in even
/// rounds, PyTorch first in odd ones), each cell a child process. `progress` gets one line per
/// measured cell, after one saying whether PyTorch is there.
///
/// # Errors
/// [`SpeedOptions::plan`]'s; [`Error::BenchCell`] when a child fails (naming its command and
/// stderr); [`Error::InvalidValue`] when PyTorch is present but the script is missing.
pub fn run(opts: &SpeedOptions, progress: &mut dyn FnMut(&str)) -> Result<SpeedReport> {
    let plan = opts.plan()?;
    // Read before measuring: the date is when the bench started.
    let machine = machine::Machine::current(&opts.command_line);
    let pytorch = probe_pytorch(&opts.python);
    progress(&render::pytorch_notice(&pytorch));
    if matches!(pytorch, PyTorch::Present { .. }) && !opts.script.is_file() {
        return Err(Error::InvalidValue {
            origin: "--pytorch-script".into(),
            key: "script".into(),
            expected: "benches/pytorch_reference.py of a lossdiff checkout".into(),
            got: format!("{} (no such file)", opts.script.display()),
        });
    }
    let mut cases: Vec<CaseResult> = plan
        .iter()
        .map(|s| CaseResult {
            case: s.case.clone(),
            lossdiff: Vec::new(),
            pytorch: Vec::new(),
        })
        .collect();
    for round in 0..opts.rounds {
        for (spec, result) in plan.iter().zip(&mut cases) {
            // Alternating who goes first keeps a drifting machine from always favouring one side.
            let torch_first = round % 2 == 1;
            for torch in [torch_first, !torch_first] {
                let Some(line) = run_side(opts, &pytorch, spec, result, torch)? else {
                    continue;
                };
                progress(&format!(
                    "round {}/{} {}: {line}",
                    round + 1,
                    opts.rounds,
                    render::case_label(&spec.case)
                ));
            }
        }
    }
    Ok(SpeedReport {
        machine,
        pytorch,
        rounds: opts.rounds,
        steps: (opts.steps, opts.warmup),
        attention_threads: opts.attention_threads,
        cases,
    })
}

/// Measures one side of one cell in a child and records it; returns the progress line, or `None`
/// for the PyTorch side when PyTorch is absent.
fn run_side(
    opts: &SpeedOptions,
    pytorch: &PyTorch,
    spec: &CellSpec,
    result: &mut CaseResult,
    torch: bool,
) -> Result<Option<String>> {
    let (cmd, name, into) = match (torch, pytorch) {
        (true, PyTorch::Absent { .. }) => return Ok(None),
        (true, PyTorch::Present { python, .. }) => (
            cell::pytorch_command(python, &opts.script, spec),
            "PyTorch",
            &mut result.pytorch,
        ),
        (false, _) => (
            cell::lossdiff_command(&opts.lossdiff_exe, spec),
            "lossdiff",
            &mut result.lossdiff,
        ),
    };
    let t = cell::run_child(cmd, opts.cell_timeout)?;
    let line = format!("{name} {}", render::seconds(t.median_s));
    into.push(t);
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> SpeedOptions {
        SpeedOptions {
            rounds: 1,
            steps: 2,
            warmup: 1,
            presets: vec!["gate".into()],
            step_threads: vec![1, 2],
            seq_lens: vec![64],
            attention_threads: 2,
            attention_runs: 2,
            attention_budget_secs: 1.0,
            cell_timeout: Duration::from_secs(60),
            only: None,
            lossdiff_exe: PathBuf::from("lossdiff"),
            python: PathBuf::from("/nonexistent/python"),
            script: PathBuf::from("/nonexistent/script.py"),
            command_line: "lossdiff bench speed".into(),
        }
    }

    #[test]
    fn the_plan_is_presets_by_threads_then_lengths_by_dtype() {
        let plan = options().plan().unwrap();
        let labels: Vec<String> = plan.iter().map(|s| render::case_label(&s.case)).collect();
        assert_eq!(
            labels,
            [
                "`gate` step, 1 thread",
                "`gate` step, 2 threads",
                "attention T=64 f32, 2 threads",
                "attention T=64 bf16, 2 threads"
            ]
        );
        let only_steps = SpeedOptions {
            only: Some(Table::Step),
            ..options()
        };
        assert_eq!(only_steps.plan().unwrap().len(), 2);
    }

    #[test]
    fn an_unknown_preset_or_zero_rounds_is_refused_before_anything_runs() {
        let bad = SpeedOptions {
            presets: vec!["huge".into()],
            ..options()
        };
        assert!(bad.plan().unwrap_err().to_string().contains("huge"));
        let zero = SpeedOptions {
            rounds: 0,
            ..options()
        };
        assert!(zero.plan().is_err());
    }

    #[test]
    fn python_is_the_flag_then_the_variable_then_python3() {
        let flag = Some(PathBuf::from("/opt/py"));
        let var = Some(std::ffi::OsString::from("/venv/bin/python"));
        assert_eq!(choose_python(flag, var.clone()), PathBuf::from("/opt/py"));
        assert_eq!(choose_python(None, var), PathBuf::from("/venv/bin/python"));
        assert_eq!(choose_python(None, None), PathBuf::from("python3"));
        assert_eq!(
            choose_python(None, Some("".into())),
            PathBuf::from("python3")
        );
    }

    #[test]
    fn a_python_that_cannot_start_makes_pytorch_absent_with_the_reason() {
        match probe_pytorch(Path::new("/nonexistent/python")) {
            PyTorch::Absent { python, reason } => {
                assert_eq!(python, PathBuf::from("/nonexistent/python"));
                assert!(reason.contains("cannot start"), "{reason}");
            }
            other => panic!("expected absent, got {other:?}"),
        }
    }
}
