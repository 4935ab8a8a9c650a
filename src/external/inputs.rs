//! What an external run depends on beyond its spec, for the run cache: the program it starts,
//! the files its command names, the files its `inputs` patterns declare, the environment it sets,
//! and what its `probe` command prints (interpreter and package versions). All of it joins the
//! cache key, so editing a training script or upgrading PyTorch misses the cache instead of
//! passing from it; the probe's report is recorded in the run's fingerprint, so the environment
//! diff names a changed version.
//!
//! What cannot be hashed is said, not assumed: files the command reads without naming them, a
//! named directory, packages when there is no probe. The runner prints these notes whenever it
//! serves an external run from the cache.
//!
//! This module does not run the training command (`external::run`) or store anything (`runner`).

use super::{execute, variables, ExternalSpec, Keep, RunContext};
use crate::error::{Error, Result};
use crate::fingerprint::hex;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Longest a probe may run: it reports versions, it does not train.
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// Most probe output kept: a `pip freeze` of a large environment fits.
const PROBE_BYTES: u64 = 1 << 20;

/// Largest file hashed for the key; a bigger one (a checkpoint) is listed as not hashed.
const MAX_HASHED_FILE: u64 = 1 << 30;

/// An external run's dependencies as far as they can be known before running it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    /// `sha256:<hex>` over everything below; joins the run's cache key.
    pub digest: String,
    /// What is not in the digest, one note each, prefixed with the arm.
    pub unhashed: Vec<String>,
    /// What the run's fingerprint records: `program`, `program_sha256`, `probe`.
    pub environment: Value,
}

/// Probe reports already taken, by resolved probe command, env and working directory.
///
/// One per batch of runs (`runner::run_all`): each probe runs once per batch, however many
/// runs share it, and a later batch (the next `lossdiff run`, the next test) probes afresh.
#[derive(Debug, Default)]
pub struct Probes(Mutex<HashMap<String, String>>);

/// Hashes what an external run of `spec` depends on (see the module docs) and runs its probe
/// (once per `probes`). Programs are hashed once per process per path, size and modification
/// time.
///
/// # Errors
/// [`Error::InvalidValue`] naming the arm for an `inputs` pattern that matches no file;
/// [`Error::CommandSpawn`] / [`Error::CommandFailed`] when the probe cannot run or fails (a probe
/// that cannot report is not silently skipped); [`Error::Io`] for a named file that cannot be read.
pub fn inputs(spec: &ExternalSpec, ctx: &RunContext, probes: &Probes) -> Result<Inputs> {
    let arm = ctx.arm;
    let vars = variables(ctx, Path::new("{out}"), true);
    let resolved = spec.resolve(ctx.id, &vars)?;
    let mut lines: Vec<String> = Vec::new();
    let mut unhashed: Vec<String> = Vec::new();
    let mut environment = Map::new();
    for (k, v) in &resolved.env {
        lines.push(format!("env {k}={v}"));
    }
    match find_program(&resolved.argv[0], &spec.workdir) {
        Some(program) => {
            let sha = hash_program(&program)?;
            lines.push(format!("program {} {sha}", program.display()));
            environment.insert("program".into(), json!(program.display().to_string()));
            environment.insert("program_sha256".into(), json!(sha));
        }
        None => unhashed.push(format!(
            "arm `{arm}`: program `{}` (not found on PATH)",
            resolved.argv[0]
        )),
    }
    for word in resolved.argv[1..].iter().flat_map(|w| candidates(w)) {
        let path = spec.workdir.join(word);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => match hash_file(&path, m.len())? {
                Some(sha) => lines.push(format!("file {word} {sha}")),
                None => unhashed.push(format!(
                    "arm `{arm}`: `{word}` (over {} GiB)",
                    MAX_HASHED_FILE >> 30
                )),
            },
            Ok(m) if m.is_dir() => unhashed.push(format!(
                "arm `{arm}`: directory `{word}` (declare its files in `inputs`)"
            )),
            _ => {}
        }
    }
    for pattern in &spec.inputs {
        let files = glob(&spec.workdir, pattern);
        if files.is_empty() {
            return Err(Error::InvalidValue {
                origin: format!("{} (arm `{arm}`)", ctx.id),
                key: "inputs".into(),
                expected: format!("a pattern matching files under {}", spec.workdir.display()),
                got: format!("{pattern:?}, which matches none"),
            });
        }
        for f in files {
            let len = std::fs::metadata(&f).map_err(|e| Error::io(&f, e))?.len();
            let rel = f.strip_prefix(&spec.workdir).unwrap_or(&f).display();
            match hash_file(&f, len)? {
                Some(sha) => lines.push(format!("input {rel} {sha}")),
                None => unhashed.push(format!(
                    "arm `{arm}`: `{rel}` (over {} GiB)",
                    MAX_HASHED_FILE >> 30
                )),
            }
        }
    }
    if spec.inputs.is_empty() {
        unhashed.push(format!(
            "arm `{arm}`: files the command reads without naming them (no `inputs`)"
        ));
    }
    match &spec.probe {
        Some(probe) => {
            let text = run_probe(spec, probe, ctx, &vars, probes)?;
            lines.push(format!("probe {text}"));
            environment.insert("probe".into(), parse_probe(&text));
        }
        None => unhashed.push(format!("arm `{arm}`: installed packages (no `probe`)")),
    }
    let digest = format!(
        "sha256:{}",
        hex(&Sha256::digest(lines.join("\n").as_bytes()))
    );
    Ok(Inputs {
        digest,
        unhashed,
        environment: Value::Object(environment),
    })
}

/// Returns the parts of a command word that may name a file: the word, or the value of a
/// `--flag=value` word. Words holding `{out}` are the run's output, not an input.
fn candidates(word: &str) -> Vec<&str> {
    if word.is_empty() || word.contains("{out}") {
        return vec![];
    }
    match word.split_once('=') {
        Some((flag, value)) if flag.starts_with('-') && !value.is_empty() => vec![value],
        _ if word.starts_with('-') => vec![],
        _ => vec![word],
    }
}

/// Resolves the program as `execve` would: a path with a `/` relative to the working directory,
/// else the first executable file of that name on `PATH`. Symlinks are followed, so the hash is
/// of the interpreter itself (`python3` → `python3.12`).
fn find_program(name: &str, workdir: &Path) -> Option<PathBuf> {
    let found = if name.contains('/') {
        Some(workdir.join(name))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    found.and_then(|p| std::fs::canonicalize(p).ok())
}

/// Returns the SHA-256 of a program, once per process per (path, size, modification time).
fn hash_program(path: &Path) -> Result<String> {
    type Memo = Mutex<HashMap<(PathBuf, u64, Option<std::time::SystemTime>), String>>;
    static MEMO: OnceLock<Memo> = OnceLock::new();
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    let memo = MEMO.get_or_init(Default::default);
    if let Some(h) = memo.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(h);
    }
    let h = hash_file(path, meta.len())?.unwrap_or_else(|| format!("size {}", meta.len()));
    if let Ok(mut m) = memo.lock() {
        m.insert(key, h.clone());
    }
    Ok(h)
}

/// Returns the SHA-256 of a file, streamed; `None` for one over [`MAX_HASHED_FILE`].
fn hash_file(path: &Path, len: u64) -> Result<Option<String>> {
    if len > MAX_HASHED_FILE {
        return Ok(None);
    }
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(Some(hex(&h.finalize())))
}

/// Runs the probe (once per `probes` per resolved command, workdir and env) and returns its
/// trimmed standard output.
fn run_probe(
    spec: &ExternalSpec,
    probe: &str,
    ctx: &RunContext,
    vars: &std::collections::BTreeMap<String, String>,
    probes: &Probes,
) -> Result<String> {
    let probe_spec = ExternalSpec {
        command: probe.to_string(),
        ..spec.clone()
    };
    let origin = format!("probe of arm `{}`", ctx.arm);
    let cmd = probe_spec.resolve(&origin, vars)?;
    let key = format!("{:?} {:?} {}", cmd.argv, cmd.env, spec.workdir.display());
    // Held while probing: parallel runs of one arm wait for its one probe instead of all running it.
    let mut memo = probes.0.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(text) = memo.get(&key) {
        return Ok(text.clone());
    }
    let timeout = PROBE_TIMEOUT.min(Duration::from_secs_f64(spec.timeout_s));
    let out = execute(
        &origin,
        &cmd,
        &spec.workdir,
        timeout,
        Keep::All(PROBE_BYTES),
    )?;
    let text = String::from_utf8_lossy(&out.stdout.bytes)
        .trim()
        .to_string();
    memo.insert(key, text.clone());
    Ok(text)
}

/// Reads a probe's output as `name version` pairs (`torch 2.4.0`, `torch==2.4.0`,
/// `torch: 2.4.0`, one per line) so the environment diff names each package; anything else is
/// kept as one string.
fn parse_probe(text: &str) -> Value {
    let mut map = Map::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let pair = line
            .split_once("==")
            .or_else(|| line.split_once(": "))
            .or_else(|| line.split_once(' '))
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, v)| {
                !k.is_empty() && !v.is_empty() && !k.contains(' ') && !v.contains(' ')
            });
        match pair {
            Some((k, v)) => {
                map.insert(k.to_string(), json!(v));
            }
            None => return json!(text),
        }
    }
    match map.is_empty() {
        true => json!(text),
        false => Value::Object(map),
    }
}

/// Returns the files under `root` matching `pattern`, sorted: `/`-separated components where
/// `*` and `?` match within one component and `**` matches any number of directories. Symlinked
/// directories are not descended by `**` (no cycles); hidden files match only explicit dots.
pub(super) fn glob(root: &Path, pattern: &str) -> Vec<PathBuf> {
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    let start = match pattern.starts_with('/') {
        true => PathBuf::from("/"),
        false => root.to_path_buf(),
    };
    let mut out = Vec::new();
    walk(&start, &parts, &mut out);
    out.sort();
    out.dedup();
    out
}

fn walk(dir: &Path, parts: &[&str], out: &mut Vec<PathBuf>) {
    let Some((&first, rest)) = parts.split_first() else {
        if dir.is_file() {
            out.push(dir.to_path_buf());
        }
        return;
    };
    if first == "**" {
        walk(dir, rest, out);
        for sub in entries(dir).into_iter().filter(|p| is_real_dir(p)) {
            walk(&sub, parts, out);
        }
    } else if !first.contains(['*', '?']) {
        walk(&dir.join(first), rest, out);
    } else {
        for entry in entries(dir) {
            let name = entry.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| wildcard(first, &n)) {
                walk(&entry, rest, out);
            }
        }
    }
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// Matches one path component against `*` / `?` wildcards; a leading dot must be matched by a dot.
fn wildcard(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}
