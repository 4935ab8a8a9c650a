//! Runs an experiment's training runs: in parallel up to the cores available (each run in a
//! one-thread pool of its own, which is both fastest and steadiest on a shared machine), with a
//! progress bar,
//! and through a content-addressed cache so gates and sweeps reuse finished work and an
//! interrupted sweep resumes where it stopped.
//!
//! Cache key: SHA-256 of the run's resolved config, the environment fingerprint, and the build id
//! (a hash of the running executable, so any code change — committed or not — misses the cache).
//! Entries are written atomically; a corrupt or unreadable entry is a miss, never an error.
//!
//! External-command runs (see `external`) are cached too. Their key is the arm's command spec
//! (template, env, trace source, format, workdir, timeout), the run's resolved config, seed, cell
//! and arm, and the build id (the importer is part of the build). Nothing the command reads is
//! hashed: a changed script, checkpoint or Python package is invisible to the key, so change the
//! command (e.g. a `--version` flag) or run with `--no-cache` after editing the external code.

use crate::error::{Error, Result};
use crate::experiment::{hex, RunRequest};
use crate::external::{self, RunContext};
use crate::fingerprint::Fingerprint;
use crate::trace::Trace;
use crate::train::train;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Runs at once (default: available cores).
    pub jobs: usize,
    /// Cache directory; `None` disables caching.
    pub cache: Option<PathBuf>,
    /// Show a progress bar (hidden anyway on CI and when stderr is not a terminal).
    pub progress: bool,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cache: Some(default_cache_dir()),
            progress: true,
        }
    }
}

/// Returns `$LOSSDIFF_CACHE`, else `.lossdiff-cache` in the working directory.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("LOSSDIFF_CACHE")
        .map_or_else(|| PathBuf::from(".lossdiff-cache"), PathBuf::from)
}

/// What running a batch cost: how many runs trained and how many came from the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Runs trained now.
    pub trained: usize,
    /// Runs read from the cache.
    pub cached: usize,
}

/// Runs every request and returns their traces in request order, plus what it cost.
///
/// Runs on one thread (the default) go in parallel, `jobs` at a time, each in a one-thread rayon
/// pool of its worker; runs whose arm asks for more threads go one at a time afterwards, each in
/// a pool of that many threads. A run's parallel loops stay in its own pool, so `jobs` bounds the
/// cores used and the fingerprint's thread count is the run's. Nothing here touches the process
/// environment (see `threads`).
///
/// External-command runs go through the same workers: `jobs` bounds how many commands run at once.
///
/// # Errors
/// The first failing run's error, with its run id (for an external command: its exit status or
/// timeout and the tail of its output).
pub fn run_all(
    experiment: &str,
    requests: &[RunRequest],
    opts: &RunnerOptions,
) -> Result<(Vec<Trace>, RunStats)> {
    let bar = progress(requests.len() as u64, opts.progress);
    let one_thread: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].threads <= 1)
        .collect();
    let mut results: Vec<Option<(Trace, bool)>> = vec![None; requests.len()];
    let parallel = on_workers(&one_thread, opts.jobs, |i| {
        run_one(experiment, &requests[i], opts, &bar)
    })?;
    for (i, r) in parallel {
        results[i] = Some(r?);
    }
    for i in (0..requests.len()).filter(|&i| requests[i].threads > 1) {
        let pool = crate::threads::pool(requests[i].threads)?;
        results[i] = Some(pool.install(|| run_one(experiment, &requests[i], opts, &bar))?);
    }
    bar.finish_and_clear();
    let mut stats = RunStats::default();
    let traces = results
        .into_iter()
        .map(|r| {
            let (t, cached) = r.expect("every request ran");
            if cached {
                stats.cached += 1
            } else {
                stats.trained += 1
            }
            t
        })
        .collect();
    Ok((traces, stats))
}

/// Calls `work` on every item from `jobs` worker threads, each inside a one-thread rayon pool of
/// its own, and returns the results with their items (in no particular order). A panic in
/// `work` is re-raised here.
///
/// # Errors
/// [`Error::InvalidValue`] when the OS cannot start a worker's pool.
fn on_workers<T: Send>(
    items: &[usize],
    jobs: usize,
    work: impl Fn(usize) -> T + Sync,
) -> Result<Vec<(usize, T)>> {
    let next = AtomicUsize::new(0);
    let worker = || -> Result<Vec<(usize, T)>> {
        let pool = crate::threads::pool(1)?;
        Ok(pool.install(|| {
            let mut out = Vec::new();
            while let Some(&i) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                out.push((i, work(i)));
            }
            out
        }))
    };
    let workers = jobs.clamp(1, items.len().max(1));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(worker)).collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(done) => out.extend(done?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(out)
    })
}

fn run_one(
    experiment: &str,
    req: &RunRequest,
    opts: &RunnerOptions,
    bar: &ProgressBar,
) -> Result<(Trace, bool)> {
    let id = req.id(experiment);
    let key = cache_key(req);
    let path = opts.cache.as_ref().map(|dir| entry_path(dir, &key));
    if let Some(t) = path.as_deref().and_then(|p| Trace::load(p).ok()) {
        bar.inc(1);
        return Ok((Trace { name: id, ..t }, true));
    }
    let trace = match &req.command {
        Some(spec) => external::run(
            spec,
            &RunContext {
                id: &id,
                cell: &req.cell,
                arm: &req.arm,
                seed: req.seed,
                config: &req.config.to_json(),
            },
        )?,
        None => train_builtin(req, &id)?,
    };
    if let Some(p) = &path {
        // A failed cache write costs a re-run later, nothing more.
        let _ = trace.save(p);
    }
    bar.inc(1);
    bar.set_message(id);
    Ok((trace, false))
}

fn train_builtin(req: &RunRequest, id: &str) -> Result<Trace> {
    train(&req.config, id, &mut |_| {}).map_err(|e| match e {
        Error::InvalidValue {
            key, expected, got, ..
        } => Error::InvalidValue {
            origin: id.to_string(),
            key,
            expected,
            got,
        },
        other => other,
    })
}

/// Returns the cache key of a run: config + fingerprint (with the run's thread count) + build;
/// for an external run also its command spec, seed, cell and arm (see the module docs).
pub fn cache_key(req: &RunRequest) -> String {
    let mut fp = Fingerprint::current();
    fp.threads = req.threads;
    let mut h = Sha256::new();
    if let Some(spec) = &req.command {
        h.update(format!(
            "external:{spec:?};seed={};cell={};arm={};",
            req.seed, req.cell, req.arm
        ));
    }
    h.update(req.config.to_json().to_string());
    h.update(fp.to_json().to_string());
    h.update(build_id());
    hex(&h.finalize())
}

fn entry_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(&key[..2]).join(format!("{key}.trace.json"))
}

/// Returns a hash of the running executable, computed once per process.
fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        std::env::current_exe()
            .and_then(std::fs::read)
            .map(|bytes| hex(&Sha256::digest(bytes)))
            // Without a readable executable, the git revision in the fingerprint still separates builds.
            .unwrap_or_else(|_| "unknown-build".into())
    })
}

fn progress(total: u64, show: bool) -> ProgressBar {
    let target = if show && std::env::var_os("CI").is_none() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} runs  {elapsed} (ETA {eta})  {msg}")
            .expect("the template is valid"),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Experiment;

    fn experiment(dir: &Path) -> Experiment {
        let spec = dir.join("e.toml");
        std::fs::write(
            &spec,
            r#"
            [experiment]
            name = "tiny"
            seeds = 2
            [base]
            preset = "gate"
            [base.train]
            train_iters = 8
            lr_warmup_iters = 2
            [[arm]]
            name = "a"
            lr = 0.003
            [[arm]]
            name = "b"
            lr = 0.002
            "#,
        )
        .unwrap();
        Experiment::load(&spec).unwrap()
    }

    #[test]
    fn second_run_comes_from_the_cache_with_the_same_bits() {
        let dir = tempfile::tempdir().unwrap();
        let e = experiment(dir.path());
        let opts = RunnerOptions {
            jobs: 2,
            cache: Some(dir.path().join("cache")),
            progress: false,
        };
        let reqs = e.runs(None).unwrap();
        let (first, s1) = run_all(&e.name, &reqs, &opts).unwrap();
        let (second, s2) = run_all(&e.name, &reqs, &opts).unwrap();
        assert_eq!(
            s1,
            RunStats {
                trained: 4,
                cached: 0
            }
        );
        assert_eq!(
            s2,
            RunStats {
                trained: 0,
                cached: 4
            }
        );
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a.series, b.series);
            assert_eq!(a.name, b.name);
        }
    }

    #[test]
    fn parallel_and_serial_runs_agree() {
        let dir = tempfile::tempdir().unwrap();
        let e = experiment(dir.path());
        let reqs = e.runs(None).unwrap();
        let par = run_all(
            &e.name,
            &reqs,
            &RunnerOptions {
                jobs: 2,
                cache: None,
                progress: false,
            },
        )
        .unwrap()
        .0;
        let ser = run_all(
            &e.name,
            &reqs,
            &RunnerOptions {
                jobs: 1,
                cache: None,
                progress: false,
            },
        )
        .unwrap()
        .0;
        let numbers = |ts: &[Trace]| -> Vec<(Vec<f64>, Vec<f64>)> {
            ts.iter()
                .map(|t| {
                    (
                        t.lm_loss().unwrap().to_vec(),
                        t.metric("grad_norm").unwrap().to_vec(),
                    )
                })
                .collect()
        };
        assert_eq!(numbers(&par), numbers(&ser));
    }

    #[test]
    fn a_corrupt_cache_entry_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let e = experiment(dir.path());
        let cache = dir.path().join("cache");
        let reqs = e.runs(None).unwrap();
        let p = entry_path(&cache, &cache_key(&reqs[0]));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "{ truncated").unwrap();
        let opts = RunnerOptions {
            jobs: 1,
            cache: Some(cache),
            progress: false,
        };
        let (_, stats) = run_all(&e.name, &reqs[..1], &opts).unwrap();
        assert_eq!(stats.trained, 1);
    }
}
