//! External-command arms: run another training stack's command (Megatron-LM, torchtitan, a
//! plain PyTorch loop) and read its loss curve through the importers.
//!
//! This module owns the command template (word splitting, placeholders), running the process
//! (timeout, process group, output capture) and turning its trace into a lossdiff [`Trace`] with
//! an `external` config section. It does not parse trace formats (`import`'s job) or cache runs
//! (`runner`'s).
//!
//! # No shell
//! A template is split into words by lossdiff itself, with POSIX-like quoting: whitespace
//! separates words, `'…'` is literal, `"…"` allows `\"` and `\\`, `\` escapes one character
//! outside quotes. Placeholders are substituted *after* splitting, inside a word, so a value with
//! spaces or `;` stays one argument and is never interpreted. Pipes and redirects therefore do not
//! exist; a user who wants a shell writes `sh -c '…'` and owns its quoting (placeholders inside a
//! single-quoted `sh -c` script are not substituted, so pass values as arguments or `env`).
//!
//! # Placeholders
//! `{seed}`, `{out}` (the trace path the runner chose), `{cell}`, `{arm}`, and any config or sweep
//! key by bare or qualified name (`{lr_decay_iters}`, `{train.lr}`), taken from the run's resolved
//! config. `{{` and `}}` are literal braces; text in single quotes is not substituted.

use crate::config::closest;
use crate::error::{Error, ExitReason, Result};
use crate::import::{import, import_bytes, Format};
use crate::process::{run_limited, Captured, Keep, RunError};
use crate::trace::Trace;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Placeholders that name the run rather than a config key.
pub const RUN_PLACEHOLDERS: [&str; 5] = ["seed", "perturb_seed", "out", "cell", "arm"];

/// Default time limit of an external run: ten minutes.
pub const DEFAULT_TIMEOUT_S: f64 = 600.0;

/// Lines of output shown when an external run fails.
const TAIL_LINES: usize = 20;

/// Where an external run's trace is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceSource {
    /// The file at `{out}`.
    File,
    /// The command's standard output.
    Stdout,
}

impl TraceSource {
    /// Returns the spec spelling: `file` or `stdout`.
    pub fn name(self) -> &'static str {
        match self {
            TraceSource::File => "file",
            TraceSource::Stdout => "stdout",
        }
    }
}

/// An arm's external command, as written in its `[[arm]]` table (placeholders unresolved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalSpec {
    /// The command template.
    pub command: String,
    /// Where the trace comes from.
    pub trace: TraceSource,
    /// Forced import format name (`None`: detect from content).
    pub format: Option<String>,
    /// Time limit in seconds.
    pub timeout_s: f64,
    /// Extra environment variables, `(name, value template)`, in spec order.
    pub env: Vec<(String, String)>,
    /// Working directory (absolute, or relative to where lossdiff runs).
    pub workdir: PathBuf,
    /// File patterns (relative to `workdir`) whose content joins the cache key.
    pub inputs: Vec<String>,
    /// A command whose standard output (interpreter and package versions) joins the cache key
    /// and the runs' fingerprints.
    pub probe: Option<String>,
}

/// A piece of a command word.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Placeholder(String),
}

/// Splits a command template into words of text and placeholders (see the module docs).
///
/// # Errors
/// A message for an unclosed quote or brace, or an empty placeholder.
fn split(template: &str) -> std::result::Result<Vec<Vec<Piece>>, String> {
    let mut words: Vec<Vec<Piece>> = Vec::new();
    let mut word: Option<Vec<Piece>> = None;
    let mut chars = template.chars().peekable();
    let push_char = |w: &mut Option<Vec<Piece>>, c: char| {
        let w = w.get_or_insert_with(Vec::new);
        match w.last_mut() {
            Some(Piece::Text(t)) => t.push(c),
            _ => w.push(Piece::Text(c.to_string())),
        }
    };
    let mut in_double = false;
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() && !in_double => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' if !in_double => {
                word.get_or_insert_with(Vec::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => push_char(&mut word, c),
                        None => return Err("unclosed single quote".into()),
                    }
                }
            }
            '"' => {
                word.get_or_insert_with(Vec::new);
                in_double = !in_double;
            }
            '\\' => match chars.next() {
                Some(n) if !in_double || matches!(n, '"' | '\\') => push_char(&mut word, n),
                Some(n) => {
                    push_char(&mut word, '\\');
                    push_char(&mut word, n);
                }
                None => return Err("trailing backslash".into()),
            },
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                push_char(&mut word, '{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                push_char(&mut word, '}');
            }
            '{' => {
                let name = placeholder_name(&mut chars)?;
                word.get_or_insert_with(Vec::new)
                    .push(Piece::Placeholder(name));
            }
            '}' => return Err("unmatched `}`: write `}}` for a literal brace".into()),
            c => push_char(&mut word, c),
        }
    }
    if in_double {
        return Err("unclosed double quote".into());
    }
    words.extend(word);
    Ok(words)
}

/// Reads a placeholder's name after its `{`, through the closing `}`.
fn placeholder_name(chars: &mut impl Iterator<Item = char>) -> std::result::Result<String, String> {
    let mut name = String::new();
    let mut closed = false;
    for c in chars.by_ref() {
        if c == '}' {
            closed = true;
            break;
        }
        name.push(c);
    }
    let name = name.trim();
    if !closed || name.is_empty() || name.contains('{') {
        return Err(format!(
            "bad placeholder `{{{name}`: write `{{{{` for a literal brace"
        ));
    }
    Ok(name.to_string())
}

/// Splits `text` as one word (an `env` value): placeholders and `{{`/`}}`, no quoting.
fn split_value(text: &str) -> std::result::Result<Vec<Piece>, String> {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    let mut words = split(&format!("\"{escaped}\""))?;
    Ok(words.pop().unwrap_or_default())
}

impl ExternalSpec {
    /// Returns every placeholder the command and env values use, in order of appearance.
    ///
    /// # Errors
    /// [`Error::CommandSyntax`] naming `origin` for an unclosed quote or brace.
    pub fn placeholders(&self, origin: &str) -> Result<Vec<String>> {
        let syntax = |reason: String| Error::CommandSyntax {
            origin: origin.to_string(),
            reason,
        };
        let mut pieces: Vec<Piece> = split(&self.command)
            .map_err(syntax)?
            .into_iter()
            .flatten()
            .collect();
        for (_, v) in &self.env {
            pieces.extend(split_value(v).map_err(syntax)?);
        }
        let mut out: Vec<String> = Vec::new();
        for p in pieces {
            if let Piece::Placeholder(name) = p {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        Ok(out)
    }

    /// Checks every placeholder at load time: a run placeholder or a key `qualify` accepts.
    ///
    /// # Errors
    /// [`Error::UnknownPlaceholder`] with the closest valid name from `candidates`;
    /// [`Error::CommandSyntax`]; [`Error::InvalidValue`] for a file trace without `{out}`.
    pub fn check(
        &self,
        origin: &str,
        qualify: impl Fn(&str) -> bool,
        candidates: &[String],
    ) -> Result<()> {
        let mut names = self.placeholders(origin)?;
        if let Some(probe) = &self.probe {
            let probe = ExternalSpec {
                command: probe.clone(),
                ..self.clone()
            };
            names.extend(probe.placeholders(&format!("{origin} probe"))?);
        }
        for name in &names {
            if !RUN_PLACEHOLDERS.contains(&name.as_str()) && !qualify(name) {
                return Err(Error::UnknownPlaceholder {
                    origin: origin.to_string(),
                    placeholder: name.clone(),
                    suggestion: closest(
                        name,
                        RUN_PLACEHOLDERS
                            .iter()
                            .copied()
                            .chain(candidates.iter().map(String::as_str)),
                    ),
                });
            }
        }
        if self.trace == TraceSource::File && !names.iter().any(|n| n == "out") {
            return Err(Error::InvalidValue {
                origin: origin.to_string(),
                key: "command".into(),
                expected: "a command that writes its trace to `{out}` (or `trace = \"stdout\"`)"
                    .into(),
                got: self.command.clone(),
            });
        }
        Ok(())
    }

    /// Resolves the template for one run: `vars` maps placeholder names (bare and qualified config
    /// keys, and the run placeholders) to their text.
    ///
    /// # Errors
    /// [`Error::CommandSyntax`]; [`Error::UnknownPlaceholder`] for a name missing from `vars`.
    pub fn resolve(&self, origin: &str, vars: &BTreeMap<String, String>) -> Result<Resolved> {
        let syntax = |reason: String| Error::CommandSyntax {
            origin: origin.to_string(),
            reason,
        };
        let fill = |pieces: Vec<Piece>| -> Result<String> {
            let mut s = String::new();
            for p in pieces {
                match p {
                    Piece::Text(t) => s += &t,
                    Piece::Placeholder(n) => {
                        s += vars.get(&n).ok_or_else(|| Error::UnknownPlaceholder {
                            origin: origin.to_string(),
                            placeholder: n.clone(),
                            suggestion: closest(&n, vars.keys().map(String::as_str)),
                        })?
                    }
                }
            }
            Ok(s)
        };
        let argv = split(&self.command)
            .map_err(syntax)?
            .into_iter()
            .map(fill)
            .collect::<Result<Vec<_>>>()?;
        if argv.is_empty() {
            return Err(syntax("the command is empty".into()));
        }
        let env = self
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), fill(split_value(v).map_err(syntax)?)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Resolved { argv, env })
    }
}

/// A command with its placeholders filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

impl Resolved {
    /// Returns the command line as a shell would need it typed (words quoted where needed).
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Quotes a word for display in single quotes unless it is made only of safe characters.
fn shell_quote(w: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%{}".contains(c);
    if !w.is_empty() && w.chars().all(safe) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// What a finished process printed.
struct Output {
    stdout: Captured,
    stderr: Captured,
}

impl Output {
    /// Returns the last [`TAIL_LINES`] lines of each non-empty stream, labelled.
    fn tail(&self) -> String {
        let mut s = String::new();
        for (name, c) in [("stderr", &self.stderr), ("stdout", &self.stdout)] {
            let text = String::from_utf8_lossy(c.tail());
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                continue;
            }
            let from = lines.len().saturating_sub(TAIL_LINES);
            s += &format!("--- last {} lines of {name}", lines.len() - from);
            if c.dropped > 0 {
                s += &format!(" ({} bytes in all)", c.bytes.len() as u64 + c.dropped);
            }
            s += " ---\n";
            for l in &lines[from..] {
                s += l;
                s += "\n";
            }
        }
        if s.is_empty() {
            s = "(no output)".into();
        }
        s.trim_end().to_string()
    }
}

/// Runs `cmd` in `workdir` with a time limit and returns its output: see
/// [`crate::process::run_limited`] for what happens to the command's process group and pipes.
///
/// # Errors
/// [`Error::CommandSpawn`] when it cannot start; [`Error::CommandFailed`] with the exit status,
/// signal or timeout and the output's tail.
fn execute(
    run: &str,
    cmd: &Resolved,
    workdir: &Path,
    timeout: Duration,
    stdout_keep: Keep,
) -> Result<Output> {
    let mut command = Command::new(&cmd.argv[0]);
    command
        .args(&cmd.argv[1..])
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .current_dir(workdir);
    let finished = run_limited(&mut command, timeout, stdout_keep).map_err(|e| match e {
        RunError::Spawn(source) => Error::CommandSpawn {
            run: run.to_string(),
            command: cmd.display(),
            workdir: workdir.to_path_buf(),
            source,
        },
        RunError::Wait(e) => Error::io(workdir, e),
    })?;
    let (status, output) = (
        finished.status,
        Output {
            stdout: finished.stdout,
            stderr: finished.stderr,
        },
    );
    let reason = match status {
        None => ExitReason::TimedOut(timeout),
        Some(s) if s.success() => return Ok(output),
        Some(s) => match (s.code(), signal(&s)) {
            (Some(c), _) => ExitReason::Code(c),
            (None, Some(sig)) => ExitReason::Signal(sig),
            (None, None) => ExitReason::Code(-1),
        },
    };
    Err(Error::CommandFailed {
        run: run.to_string(),
        command: cmd.display(),
        reason,
        tail: output.tail(),
    })
}

/// Returns the signal that ended a process (Unix only).
fn signal(status: &std::process::ExitStatus) -> Option<i32> {
    #[cfg(unix)]
    return std::os::unix::process::ExitStatusExt::signal(status);
    #[cfg(not(unix))]
    return None;
}

/// A fresh directory for one run's `{out}` file; removed when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Result<WorkDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "lossdiff-external-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The per-run facts an external run needs besides its spec.
#[derive(Debug, Clone)]
pub struct RunContext<'a> {
    /// Readable run id, for errors and the trace's name.
    pub id: &'a str,
    /// Cell id.
    pub cell: &'a str,
    /// Arm name.
    pub arm: &'a str,
    /// The run's seed (for a perturbation member: the seed it perturbs).
    pub seed: u64,
    /// The perturbation seed: 0 for a seed run, else the member's nudge of the initial weights.
    pub perturb_seed: u64,
    /// The run's resolved config as JSON sections (`RunConfig::to_json`).
    pub config: &'a Value,
}

/// Builds the placeholder table for a run: every config key by qualified and (unambiguous) bare
/// name, plus the run placeholders. `run_values = false` leaves `{seed}`, `{perturb_seed}`,
/// `{out}`, `{cell}` and `{arm}` as written (the form recorded in the trace, constant across an
/// arm's seeds and perturbations).
fn variables(ctx: &RunContext, out: &Path, run_values: bool) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let mut bare: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in crate::trace::flatten_json(ctx.config) {
        let text = match v {
            Value::String(s) => s,
            // An unset option has no text; an empty argument is visible in the recorded command.
            Value::Null => String::new(),
            other => other.to_string(),
        };
        if let Some(leaf) = k.rsplit('.').next() {
            bare.entry(leaf.to_string()).or_default().push(text.clone());
        }
        vars.insert(k, text);
    }
    for (leaf, values) in bare {
        if let [one] = values.as_slice() {
            vars.entry(leaf).or_insert_with(|| one.clone());
        }
    }
    let run = [
        ("seed", ctx.seed.to_string()),
        ("perturb_seed", ctx.perturb_seed.to_string()),
        ("out", out.display().to_string()),
        ("cell", ctx.cell.to_string()),
        ("arm", ctx.arm.to_string()),
    ];
    for (name, value) in run {
        let v = if run_values {
            value
        } else {
            format!("{{{name}}}")
        };
        vars.insert(name.to_string(), v);
    }
    vars
}

/// Returns what a run of `spec` records as `config.external.command` and `.env`: config
/// placeholders filled, run placeholders as written.
///
/// # Errors
/// [`Error::CommandSyntax`], [`Error::UnknownPlaceholder`].
pub fn recorded(spec: &ExternalSpec, ctx: &RunContext) -> Result<(String, Map<String, Value>)> {
    let r = spec.resolve(ctx.id, &variables(ctx, Path::new("{out}"), false))?;
    let env = r
        .env
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Ok((r.display(), env))
}

/// Runs one external run and returns its trace, with `config.external` recording the command
/// (config placeholders filled, run placeholders as written), its `env` and the format read,
/// `seeds.seed` the seed (and `seeds.perturb` a non-zero perturbation seed), and
/// `fingerprint.external` what `inputs` found of its environment (program, probe output).
///
/// # Errors
/// [`Error::CommandSpawn`], [`Error::CommandFailed`] (status or timeout, and output tail),
/// [`Error::ExternalTrace`] when the trace cannot be imported (or its stdout is over the input
/// limit), [`Error::UnknownPlaceholder`].
pub fn run(spec: &ExternalSpec, ctx: &RunContext, inputs: &Inputs) -> Result<Trace> {
    let dir = WorkDir::new()?;
    let out = dir.0.join("trace.out");
    let resolved = spec.resolve(ctx.id, &variables(ctx, &out, true))?;
    let format = spec
        .format
        .as_deref()
        .map(str::parse::<Format>)
        .transpose()?;
    let timeout = Duration::from_secs_f64(spec.timeout_s);
    let stdout_keep = match spec.trace {
        TraceSource::Stdout => Keep::All(crate::limits::max_input_bytes()?),
        TraceSource::File => Keep::Tail,
    };
    let output = execute(ctx.id, &resolved, &spec.workdir, timeout, stdout_keep)?;
    let stdout_name = PathBuf::from(format!("stdout of {}", ctx.id));
    let imported = match (spec.trace, &output.stdout) {
        (TraceSource::File, _) => import(&out, format),
        (TraceSource::Stdout, c) if c.over_limit => Err(Error::InputTooLarge {
            path: stdout_name,
            size: c.bytes.len() as u64 + c.dropped,
            limit: c.bytes.len() as u64,
        }),
        (TraceSource::Stdout, c) => import_bytes(&c.bytes, &stdout_name, format),
    };
    let mut trace = imported.map_err(|e| Error::ExternalTrace {
        run: ctx.id.to_string(),
        command: resolved.display(),
        source: Box::new(e),
        tail: output.tail(),
    })?;
    let (command, env) = recorded(spec, ctx)?;
    let section = json!({
        "command": command,
        "env": env,
        "format": trace.origin.format,
        "trace": spec.trace.name(),
    });
    insert(&mut trace.config, "external", section);
    insert(
        &mut trace.fingerprint,
        "external",
        inputs.environment.clone(),
    );
    trace.name = ctx.id.to_string();
    if spec.trace == TraceSource::File {
        // The temporary file is gone after this run; the command says where it came from.
        trace.origin.path = None;
    }
    trace.seeds.insert("seed".into(), ctx.seed);
    if ctx.perturb_seed != 0 {
        trace.seeds.insert("perturb".into(), ctx.perturb_seed);
    }
    Ok(trace)
}

/// Sets `obj[key] = value`, making `obj` an object first if it is not one.
fn insert(obj: &mut Value, key: &str, value: Value) {
    if !obj.is_object() {
        *obj = json!({});
    }
    if let Some(map) = obj.as_object_mut() {
        map.insert(key.into(), value);
    }
}

mod inputs;
pub use inputs::{inputs, Inputs, Probes};

// The tests run `sh`, `sleep` and read `/proc`.
#[cfg(all(test, target_os = "linux"))]
mod tests;
