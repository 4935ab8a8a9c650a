//! Runs an experiment's training runs: in parallel up to the cores available (each run in a
//! one-thread pool of its own, which is both fastest and steadiest on a shared machine), with a
//! progress bar,
//! and through a content-addressed cache so gates and sweeps reuse finished work and an
//! interrupted sweep resumes where it stopped.
//!
//! Cache key: SHA-256 of the run's resolved config, the environment fingerprint, and the build id
//! (a hash of the running executable, so any code change — committed or not — misses the cache).
//!
//! External-command runs (see `external`) are cached too. Their key is the arm's command spec
//! (template, env, trace source, format, workdir, timeout, inputs, probe), the run's resolved
//! config, seed, perturbation seed, cell and arm, the build id (the importer is part of the
//! build), and what `external::inputs` hashes of what the command runs: the program, the files
//! its command names, its declared `inputs`, its probe's output. What that cannot cover is
//! returned in [`RunStats::unhashed`] for every run served from the cache, to be printed.
//!
//! An entry is trusted only if it proves it belongs to the run asking: it records the key it was
//! written for and the digest of its trace, and the trace's own config and seeds (for an external
//! run: its recorded command, env and seeds) must be the request's. Anything else — an entry
//! copied over another's, a hand edit, a truncated file — is a miss that is reported in
//! [`RunStats::rejected`], never a cached pass and never an error. Entries are written atomically.

use crate::error::{Error, Result};
use crate::experiment::{hex, RunRequest};
use crate::external::{self, Inputs, Probes, RunContext};
use crate::fingerprint::Fingerprint;
use crate::trace::Trace;
use crate::train::train;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
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

/// What running a batch cost (runs trained, runs read from the cache), and what the cache could
/// not vouch for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Runs trained now.
    pub trained: usize,
    /// Runs read from the cache.
    pub cached: usize,
    /// Cache entries found but not used, `<path>: <why>`; each of those runs was run again.
    pub rejected: Vec<String>,
    /// What the keys of external runs served from the cache do not cover, one note each (sorted,
    /// no repeats).
    pub unhashed: Vec<String>,
}

/// How one run was served.
#[derive(Debug, Clone, Default)]
struct Served {
    cached: bool,
    rejected: Option<String>,
    unhashed: Vec<String>,
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
    let probes = Probes::default();
    let mut results: Vec<Option<(Trace, Served)>> = vec![None; requests.len()];
    let parallel = on_workers(&one_thread, opts.jobs, |i| {
        run_one(experiment, &requests[i], opts, &bar, &probes)
    })?;
    for (i, r) in parallel {
        results[i] = Some(r?);
    }
    for i in (0..requests.len()).filter(|&i| requests[i].threads > 1) {
        let pool = crate::threads::pool(requests[i].threads)?;
        results[i] = Some(pool.install(|| run_one(experiment, &requests[i], opts, &bar, &probes))?);
    }
    bar.finish_and_clear();
    let mut stats = RunStats::default();
    let mut unhashed = std::collections::BTreeSet::new();
    let traces = results
        .into_iter()
        .map(|r| {
            let (t, served) = r.expect("every request ran");
            if served.cached {
                stats.cached += 1
            } else {
                stats.trained += 1
            }
            stats.rejected.extend(served.rejected);
            unhashed.extend(served.unhashed);
            t
        })
        .collect();
    stats.unhashed = unhashed.into_iter().collect();
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
    probes: &Probes,
) -> Result<(Trace, Served)> {
    let id = req.id(experiment);
    let config = req.config.to_json();
    let ctx = RunContext {
        id: &id,
        cell: &req.cell,
        arm: &req.arm,
        seed: req.config.train.seed,
        perturb_seed: req.config.train.perturb_seed,
        config: &config,
    };
    let inputs = match &req.command {
        Some(spec) => Some(external::inputs(spec, &ctx, probes)?),
        None => None,
    };
    let key = cache_key(req, inputs.as_ref());
    let path = opts.cache.as_ref().map(|dir| entry_path(dir, &key));
    let mut served = Served::default();
    if let Some(p) = &path {
        match read_entry(p, &key, req, &ctx) {
            Ok(None) => {}
            Ok(Some(t)) => {
                bar.inc(1);
                served.cached = true;
                served.unhashed = inputs.map(|i| i.unhashed).unwrap_or_default();
                return Ok((Trace { name: id, ..t }, served));
            }
            Err(why) => served.rejected = Some(format!("{}: {why}", p.display())),
        }
    }
    let trace = match (&req.command, &inputs) {
        (Some(spec), Some(inputs)) => external::run(spec, &ctx, inputs)?,
        _ => train_builtin(req, &id)?,
    };
    if let Some(p) = &path {
        // A failed cache write costs a re-run later, nothing more.
        let _ = write_entry(p, &key, &trace);
    }
    bar.inc(1);
    bar.set_message(id);
    Ok((trace, served))
}

/// Format name of a cache entry file.
const ENTRY_FORMAT: &str = "lossdiff-cache-entry";
/// Version of the cache entry format.
const ENTRY_VERSION: u32 = 1;

/// A cache entry: the trace with the key it was written for and its digest.
#[derive(Serialize, Deserialize)]
struct Entry {
    format: String,
    version: u32,
    key: String,
    /// `sha256:<hex>` of the trace's compact JSON.
    digest: String,
    trace: Trace,
}

fn trace_digest(t: &Trace) -> String {
    let bytes = serde_json::to_vec(t).expect("traces serialise");
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn write_entry(path: &Path, key: &str, trace: &Trace) -> Result<()> {
    let entry = Entry {
        format: ENTRY_FORMAT.into(),
        version: ENTRY_VERSION,
        key: key.into(),
        digest: trace_digest(trace),
        trace: trace.clone(),
    };
    let json = serde_json::to_vec(&entry).expect("cache entries serialise");
    crate::fsutil::write_atomic(path, &json)
}

/// Reads the entry at `path` for `req`: `Ok(None)` when there is none, `Err(why)` when there is
/// one that must not be used (see the module docs).
fn read_entry(
    path: &Path,
    key: &str,
    req: &RunRequest,
    ctx: &RunContext,
) -> std::result::Result<Option<Trace>, String> {
    let text = match crate::limits::read_input_to_string(path) {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => return Err(format!("unreadable ({e})")),
        Ok(t) => t,
    };
    let entry: Entry = serde_json::from_str(&text)
        .map_err(|e| format!("not a lossdiff {ENTRY_VERSION} cache entry ({e})"))?;
    if entry.format != ENTRY_FORMAT || entry.version != ENTRY_VERSION {
        return Err(format!(
            "format {} version {}, expected {ENTRY_FORMAT} version {ENTRY_VERSION}",
            entry.format, entry.version
        ));
    }
    if entry.key != key {
        return Err(format!(
            "written for key {}, not this run's (copied from another entry?)",
            entry.key
        ));
    }
    let computed = trace_digest(&entry.trace);
    if entry.digest != computed {
        return Err(format!(
            "its trace does not match its digest (stored {}, content {computed})",
            entry.digest
        ));
    }
    entry.trace.validate(path).map_err(|e| e.to_string())?;
    serves(req, ctx, &entry.trace)?;
    Ok(Some(entry.trace))
}

/// Checks that a cached trace's own config and seeds are the request's.
fn serves(req: &RunRequest, ctx: &RunContext, t: &Trace) -> std::result::Result<(), String> {
    let c = &req.config.train;
    let seeds: BTreeMap<String, u64> = match &req.command {
        Some(spec) => {
            let (command, env) = external::recorded(spec, ctx).map_err(|e| e.to_string())?;
            let ext = &t.config["external"];
            if ext["command"] != Value::String(command.clone()) {
                return Err(format!("its trace ran {}, not `{command}`", ext["command"]));
            }
            if ext["env"] != Value::Object(env) {
                return Err(format!("its trace ran with env {}", ext["env"]));
            }
            let mut s = BTreeMap::from([("seed".to_string(), c.seed)]);
            if c.perturb_seed != 0 {
                s.insert("perturb".into(), c.perturb_seed);
            }
            s
        }
        None => {
            let want = req.config.to_json();
            if t.config != want {
                return Err(format!(
                    "its trace's config is another run's (`{}` differs)",
                    first_difference(&t.config, &want, "")
                ));
            }
            BTreeMap::from([
                ("init".to_string(), c.seed),
                ("dropout".to_string(), c.seed),
                ("data".to_string(), c.data_seed.unwrap_or(c.seed)),
                ("perturb".to_string(), c.perturb_seed),
            ])
        }
    };
    // An external trace may also carry the seeds its script recorded (an importer reads them,
    // e.g. `seeds.init`); the runner vouches only for the ones it set.
    let recorded: BTreeMap<String, u64> = match &req.command {
        Some(_) => (t.seeds.iter())
            .filter(|(k, _)| matches!(k.as_str(), "seed" | "perturb"))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        None => t.seeds.clone(),
    };
    match recorded == seeds {
        true => Ok(()),
        false => Err(format!(
            "its trace's seeds are {:?}, this run's {seeds:?}",
            t.seeds
        )),
    }
}

/// Returns the dotted key of the first place two JSON values differ.
fn first_difference(a: &Value, b: &Value, at: &str) -> String {
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for k in keys {
            let (u, v) = (x.get(k), y.get(k));
            if u != v {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                return match (u, v) {
                    (Some(u), Some(v)) => first_difference(u, v, &path),
                    _ => path,
                };
            }
        }
    }
    at.to_string()
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
/// for an external run also its command spec, seed, cell, arm and what `inputs` hashed of what
/// it runs (see the module docs).
pub fn cache_key(req: &RunRequest, inputs: Option<&Inputs>) -> String {
    let mut fp = Fingerprint::current();
    fp.threads = req.threads;
    let mut h = Sha256::new();
    if let Some(spec) = &req.command {
        h.update(format!(
            "external:{spec:?};seed={};cell={};arm={};inputs={};",
            req.seed,
            req.cell,
            req.arm,
            inputs.map_or("", |i| i.digest.as_str())
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
                ..RunStats::default()
            }
        );
        assert_eq!(
            s2,
            RunStats {
                cached: 4,
                ..RunStats::default()
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
        let p = entry_path(&cache, &cache_key(&reqs[0], None));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "{ truncated").unwrap();
        let opts = RunnerOptions {
            jobs: 1,
            cache: Some(cache),
            progress: false,
        };
        let (_, stats) = run_all(&e.name, &reqs[..1], &opts).unwrap();
        assert_eq!(stats.trained, 1);
        assert_eq!(stats.rejected.len(), 1, "a corrupt entry is reported");
        assert!(stats.rejected[0].starts_with(&format!("{}: ", p.display())));
    }

    // Issue 21 item 1: copying the cache entry of flash/seed-1 over naive/seed-1 passed the gate
    // with nothing trained. Here arm `a`'s entry is copied over arm `b`'s (they differ in lr).
    #[test]
    fn an_entry_copied_over_another_runs_is_a_reported_miss() {
        let dir = tempfile::tempdir().unwrap();
        let e = experiment(dir.path());
        let cache = dir.path().join("cache");
        let reqs = e.runs(None).unwrap();
        let (a1, b1) = (&reqs[0], &reqs[2]);
        assert_eq!(
            (a1.arm.as_str(), b1.arm.as_str(), a1.seed),
            ("a", "b", b1.seed)
        );
        let opts = RunnerOptions {
            jobs: 2,
            cache: Some(cache.clone()),
            progress: false,
        };
        let (fresh, _) = run_all(&e.name, &reqs, &opts).unwrap();
        let (from_a, to_b) = (
            entry_path(&cache, &cache_key(a1, None)),
            entry_path(&cache, &cache_key(b1, None)),
        );
        std::fs::copy(&from_a, &to_b).unwrap();
        let (again, stats) = run_all(&e.name, &reqs, &opts).unwrap();
        assert_eq!((stats.trained, stats.cached), (1, 3));
        assert!(
            stats.rejected[0].contains("written for key"),
            "{:?}",
            stats.rejected
        );
        assert_eq!(again[2].lm_loss(), fresh[2].lm_loss(), "b's own numbers");

        // The copy with its key rewritten to b's still carries a's config.
        let mut entry: Value =
            serde_json::from_str(&std::fs::read_to_string(&from_a).unwrap()).unwrap();
        entry["key"] = Value::String(cache_key(b1, None));
        std::fs::write(&to_b, entry.to_string()).unwrap();
        let (_, stats) = run_all(&e.name, &reqs, &opts).unwrap();
        assert_eq!(stats.trained, 1);
        assert!(
            stats.rejected[0].ends_with("its trace's config is another run's (`train.lr` differs)"),
            "{:?}",
            stats.rejected
        );
    }

    #[test]
    fn an_entry_whose_loss_was_edited_is_a_reported_miss() {
        let dir = tempfile::tempdir().unwrap();
        let e = experiment(dir.path());
        let cache = dir.path().join("cache");
        let reqs = e.runs(None).unwrap();
        let opts = RunnerOptions {
            jobs: 1,
            cache: Some(cache.clone()),
            progress: false,
        };
        run_all(&e.name, &reqs[..1], &opts).unwrap();
        let p = entry_path(&cache, &cache_key(&reqs[0], None));
        let mut entry: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        entry["trace"]["series"]["lm_loss"]["values"][3] = serde_json::json!(0.5);
        std::fs::write(&p, entry.to_string()).unwrap();
        let (_, stats) = run_all(&e.name, &reqs[..1], &opts).unwrap();
        assert_eq!(stats.trained, 1);
        assert!(
            stats.rejected[0].contains("does not match its digest"),
            "{:?}",
            stats.rejected
        );
    }
}
