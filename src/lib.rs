//! # lossdiff: did numerics change, where, and how sure are we?
//!
//! lossdiff trains a small reference GPT in candle (or runs your own training command), compares
//! loss curves arm against arm and run against *golden* traces, and gives a verdict a reviewer can
//! check: `identical`, `equivalent` (within measured noise), `inconclusive` (with how many more
//! seeds would settle it) or `diverged` (from which step, by how much, how sure).
//!
//! ## Golden traces
//! A golden is a blessed ensemble of traces for one experiment arm (seeds plus last-bit
//! perturbations of the initial weights), stored under `golden/<experiment>/<cell>/<arm>.golden.json`
//! with its provenance. The gate re-runs the arm and compares against it. A golden whose spec
//! changed since blessing is *stale*, which is reported as such, never as a divergence; a changed
//! environment (candle release, CPU, kernels) is exactly what the gate judges.
//!
//! ## In `cargo test`
//! ```no_run
//! #[test]
//! fn flash_attention_matches_its_goldens() {
//!     // Runs experiments/flash_vs_noflash.toml, compares flash against naive and both against
//!     // their goldens, writes a report, and panics with the verdict, onset step, undeclared
//!     // config differences and the figure's path when anything fails.
//!     lossdiff::assert_gate!("experiments/flash_vs_noflash.toml");
//! }
//! ```
//! The same function the macro calls, [`gate::check`], returns the report for your own asserts.
//!
//! ## Updating goldens (as with insta)
//! - `LOSSDIFF_UPDATE=auto` (default): write pending `*.golden.json.new` files for missing, stale
//!   or failing goldens — except on CI (`CI` set), where nothing is ever written.
//! - `LOSSDIFF_UPDATE=new`: always write pending files; `always`: overwrite goldens in place;
//!   `no`: never write.
//! - `lossdiff golden review`, `lossdiff golden accept [FILTER]`, `lossdiff golden reject [FILTER]`
//!   finish the job; `lossdiff golden check` lists goldens no spec uses.
//!
//! Other environment variables: `LOSSDIFF_CACHE` (run cache directory, default
//! `.lossdiff-cache`), `LOSSDIFF_REPORTS` (where gates write reports, default
//! `target/lossdiff-reports`), `LOSSDIFF_MAX_INPUT_BYTES` (input files larger than this are
//! refused, default 512 MiB; see `docs/limits.md`), `RAYON_NUM_THREADS` (candle's threads;
//! results are identical for any value).
//!
//! ## Modules
//! Data flows one way: [`config`]/[`experiment`] (specs) → [`train`] (runs) → [`trace`]
//! (traces) → [`compare`] (comparison) → [`gate`] (verdict) → [`report`] (report). [`import`]
//! reads other stacks' logs into traces, [`golden`] stores blessed ones, [`calibrate`] measures
//! how often the verdicts are right. Everything else is crate-private (see `ARCHITECTURE.md`).
#![warn(missing_docs)]

// The public API: what a `cargo test` gate and a library user need.
pub mod calibrate;
pub mod compare;
pub mod config;
pub mod experiment;
pub mod gate;
pub mod golden;
pub mod import;
pub mod report;
pub mod trace;
pub mod train;

// Not API: handles for the `lossdiff` binary (`cli`, `alloc`, `threads`) and for the tests that
// check crash safety and synthesise curves (`fsutil`, `rng`). They may change without notice.
#[doc(hidden)]
pub mod alloc;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod fsutil;
#[doc(hidden)]
pub mod rng;
#[doc(hidden)]
pub mod threads;

mod attention;
mod clock;
mod data;
mod error;
mod external;
mod faults;
mod fingerprint;
mod json;
mod kernels;
mod limits;
mod model;
mod optim;
mod params;
mod process;
mod runner;
mod schedule;
mod speed;
mod stats;

pub use compare::{compare, CompareSettings, Comparison, Verdict};
pub use config::RunConfig;
pub use error::{Error, ExitReason, Result};
pub use faults::Fault;
pub use gate::{check, ExperimentReport, GateOptions, GateOutcome};
pub use golden::{GoldenStore, UpdateMode};
pub use import::{import, Format};
pub use runner::RunnerOptions;
pub use trace::Trace;

/// Asserts that an experiment passes its gate: every cross-arm comparison meets its expectation
/// and every arm matches its golden. On failure, panics with one line per failure (verdict,
/// onset, undeclared config differences) and the paths of the report and figures.
///
/// `assert_gate!(spec)` uses [`GateOptions::from_env`]; `assert_gate!(spec, options)` takes them.
#[macro_export]
macro_rules! assert_gate {
    ($spec:expr) => {
        $crate::_macro_support::assert_gate(
            ::std::path::Path::new($spec),
            $crate::GateOptions::from_env().expect("LOSSDIFF_UPDATE is valid"),
        )
    };
    ($spec:expr, $opts:expr) => {
        $crate::_macro_support::assert_gate(::std::path::Path::new($spec), $opts)
    };
}

#[doc(hidden)]
pub mod _macro_support {
    use crate::gate::{check, GateOptions};
    use std::path::Path;

    /// Runs the gate and panics with a readable message unless it passes.
    #[track_caller]
    pub fn assert_gate(spec: &Path, opts: GateOptions) {
        let outcome = check(spec, &opts);
        // What the cache could not vouch for is said on every run that reads it (shown by
        // `cargo test` for a failing test, or with `--nocapture`).
        for note in outcome.iter().flat_map(|o| o.report.cache_notes()) {
            eprintln!("lossdiff: {}: {note}", spec.display());
        }
        match outcome {
            Ok(outcome) if outcome.report.passed => {}
            Ok(outcome) => panic!("{}", outcome.failure_message()),
            Err(e) => panic!("lossdiff gate {} could not run: {e}", spec.display()),
        }
    }
}
