//! The `lossdiff` binary: parses arguments, sets the process's thread environment once, and hands
//! over to the library's CLI layer.

use std::process::ExitCode;

// Counts heap bytes so `lossdiff bench attention` can report peak memory per kernel.
#[global_allocator]
static ALLOC: lossdiff::alloc::CountingAlloc = lossdiff::alloc::CountingAlloc;

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = match lossdiff::cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // Before any other thread exists: glibc fixes its arena limit when a second thread allocates.
    if cli.trains_one_model_at_a_time() {
        lossdiff::alloc::share_one_arena();
    }
    set_thread_environment(cli.threads());
    match lossdiff::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lossdiff: {}", lossdiff::cli::error_message(&err));
            ExitCode::from(2)
        }
    }
}

/// Sets the thread knobs candle reads from the environment. Only the process's owner may write
/// the environment, and only before other threads exist (they may read it concurrently), so the
/// binary does it here, first thing, and the library never does.
fn set_thread_environment(threads: Option<usize>) {
    if let Some(n) = threads {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    // Candle's idle workers spin 25,000 rounds by default, taking the core a second rayon
    // thread needs on small machines (see `lossdiff::threads`).
    if std::env::var_os(lossdiff::threads::SPIN_LIMIT_VAR).is_none() {
        std::env::set_var(
            lossdiff::threads::SPIN_LIMIT_VAR,
            lossdiff::threads::SPIN_LIMIT,
        );
    }
}

/// `lossdiff compare a b | head -1` closes the pipe early. Rust ignores SIGPIPE, so the next
/// `println!` would panic with "failed printing to stdout"; like `cat`, lossdiff instead ends
/// quietly when nobody reads its output any more.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
