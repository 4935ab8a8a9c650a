//! Running a command with a time limit: it leads its own process group, its output is read on
//! threads of its own, and the whole group is killed when it ends or runs out of time. The
//! external-arm runner and the speed bench's cells both run their children this way.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bytes of each stream kept for the failure tail: enough for [`TAIL_LINES`] long lines, and
/// a bound on memory however much a command prints (1 GB to stderr must not cost 1 GB).
pub(crate) const TAIL_BYTES: usize = 64 << 10;

/// How long to wait for the output pipes after the command's group is gone. Only a process that
/// left the group (a `setsid` daemon) can still hold them; its output is not waited for.
pub(crate) const PIPE_GRACE: Duration = Duration::from_secs(2);

/// How much of a stream to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Everything, up to this many bytes (then the capture is marked over the limit).
    All(u64),
    /// The last [`TAIL_BYTES`] bytes.
    Tail,
}

/// One stream's bytes as kept, and how many were dropped from the front.
#[derive(Debug, Default, Clone)]
pub(crate) struct Captured {
    /// The bytes kept.
    pub(crate) bytes: Vec<u8>,
    /// Bytes dropped: the front of a tail, or everything past an `All` limit.
    pub(crate) dropped: u64,
    /// Whether an `All` capture went past its limit.
    pub(crate) over_limit: bool,
}

impl Captured {
    pub(crate) fn push(&mut self, chunk: &[u8], keep: Keep) {
        match keep {
            Keep::All(limit) => {
                let room = (limit as usize).saturating_sub(self.bytes.len());
                let take = room.min(chunk.len());
                self.bytes.extend_from_slice(&chunk[..take]);
                if take < chunk.len() {
                    self.over_limit = true;
                    self.dropped += (chunk.len() - take) as u64;
                }
            }
            Keep::Tail => {
                self.bytes.extend_from_slice(chunk);
                // Trim only once twice the tail has piled up: amortised O(1) per byte.
                if self.bytes.len() > 2 * TAIL_BYTES {
                    let cut = self.bytes.len() - TAIL_BYTES;
                    self.bytes.drain(..cut);
                    self.dropped += cut as u64;
                }
            }
        }
    }

    /// Returns the last [`TAIL_BYTES`] bytes kept.
    pub(crate) fn tail(&self) -> &[u8] {
        &self.bytes[self.bytes.len().saturating_sub(TAIL_BYTES)..]
    }
}

/// A stream being read on its own thread; the bytes so far can be taken at any time.
struct Reader {
    captured: std::sync::Arc<std::sync::Mutex<Captured>>,
    done: mpsc::Receiver<()>,
}

impl Reader {
    /// Starts reading `pipe` to its end, keeping what `keep` says.
    fn start(pipe: Option<impl Read + Send + 'static>, keep: Keep) -> Reader {
        let captured = std::sync::Arc::new(std::sync::Mutex::new(Captured::default()));
        let (tx, done) = mpsc::channel();
        let shared = captured.clone();
        std::thread::spawn(move || {
            let mut chunk = vec![0u8; 64 << 10];
            if let Some(mut p) = pipe {
                // A read error ends the capture; what was read so far is still the best tail.
                while let Ok(n @ 1..) = p.read(&mut chunk) {
                    match shared.lock() {
                        Ok(mut c) => c.push(&chunk[..n], keep),
                        Err(_) => break,
                    }
                }
            }
            let _ = tx.send(());
        });
        Reader { captured, done }
    }

    /// Waits until the pipe is closed or `deadline` passes, then returns what was read.
    fn finish(self, deadline: Instant) -> Captured {
        let _ = self
            .done
            .recv_timeout(deadline.saturating_duration_since(Instant::now()));
        // The reader thread may still hold the lock for one chunk; take a copy either way.
        let c = match self.captured.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        c
    }
}

/// How a [`run_limited`] command ended, and what it printed.
pub(crate) struct Finished {
    /// Its exit status; `None` when it was killed at its time limit.
    pub(crate) status: Option<ExitStatus>,
    /// Standard output, as its [`Keep`] said.
    pub(crate) stdout: Captured,
    /// The tail of standard error.
    pub(crate) stderr: Captured,
}

/// Why [`run_limited`] has no [`Finished`] to give.
pub(crate) enum RunError {
    /// The command could not be started.
    Spawn(std::io::Error),
    /// Its status could not be read (the group was killed anyway).
    Wait(std::io::Error),
}

/// Runs `command` (stdin empty, both outputs captured) until it exits or `timeout` passes.
///
/// The command leads its own process group. When it exits — successfully, with an error, or
/// killed at its time limit — the whole group is killed with SIGKILL, so a launcher's children
/// (`torchrun` workers, a stray `sleep &`) neither outlive the run nor keep its pipes open.
/// The pipes are then waited for at most [`PIPE_GRACE`]: never on a descendant that left the
/// group.
pub(crate) fn run_limited(
    command: &mut Command,
    timeout: Duration,
    stdout_keep: Keep,
) -> Result<Finished, RunError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(command, 0);
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    let stdout = Reader::start(child.stdout.take(), stdout_keep);
    let stderr = Reader::start(child.stderr.take(), Keep::Tail);
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() >= timeout => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10).min(timeout)),
            Err(e) => {
                kill_group(&mut child);
                return Err(RunError::Wait(e));
            }
        }
    };
    kill_group(&mut child);
    let deadline = Instant::now() + PIPE_GRACE;
    Ok(Finished {
        status,
        stdout: stdout.finish(deadline),
        stderr: stderr.finish(deadline),
    })
}

/// Kills the child's process group (it leads its own, see [`run_limited`]) and reaps the child.
///
/// Safe after the leader has exited and been reaped: Linux does not reuse a pid while a process
/// group of that id still has members, and an empty group makes `killpg` fail harmlessly.
fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: killpg only sends a signal; the group id is the child's pid (see above).
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
