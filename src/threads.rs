//! Where a training step's threads come from, and what they do when idle.
//!
//! Who sets what: lossdiff's own parallel work (the fused kernels, and gemm's tiles when candle
//! asks for them) runs in an explicit rayon pool ([`pool`]) built by whoever schedules the run —
//! the runner, one pool per run, sized by the arm's `threads`; `lossdiff train` from its
//! `--threads`. Candle's own thread counts are process-wide and read from the environment
//! (`RAYON_NUM_THREADS`, [`SPIN_LIMIT_VAR`]), so only the owner of the process sets them, once,
//! before any thread starts: the `lossdiff` binary in `main.rs`, and for `cargo test`/`cargo run`
//! the `[env]` table of `.cargo/config.toml`. The library never writes the environment: another
//! thread (a parallel test, say) may be reading it.
//!
//! A step runs on three kinds of threads: gemm's and the fused kernels' work goes to rayon's pool,
//! and candle's elementwise ops go to candle's own barrier pool. On a two-core machine that is
//! four threads for two cores, and two habits of those pools cost more than the work:
//! - A parallel loop started from outside rayon's pool hands its work to a pool thread and parks
//!   the caller. A step is hundreds of such loops, so it runs inside the pool ([`in_pool`]).
//! - After each op candle's barrier-pool workers spin 25,000 rounds before parking. On two cores
//!   that spinner takes the core rayon's second thread needs: measured on the `small` preset,
//!   two threads were no faster than one (84 vs 81 ms/step); with the spin cut to 1,000 rounds
//!   two threads took 54 ms ([`SPIN_LIMIT`]).
//!
//! Neither changes a result: which thread computes a row never changes its bits (see
//! `kernels::slices`), and gemm splits its output, not its sums, over threads.

use crate::error::{Error, Result};

/// The variable candle reads, once when its barrier pool starts, for how many rounds its idle
/// workers spin before parking (candle's default is 25,000).
pub const SPIN_LIMIT_VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

/// The spin limit the process owner sets in [`SPIN_LIMIT_VAR`] unless the user chose one.
pub const SPIN_LIMIT: &str = "1000";

/// Builds a rayon pool of `threads` threads (at least one) for one run's parallel work.
///
/// # Errors
/// [`Error::InvalidValue`] when the OS cannot start the threads.
pub fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| Error::InvalidValue {
            origin: "thread pool".into(),
            key: "threads".into(),
            expected: "a thread count the OS can provide".into(),
            got: format!("{threads} ({e})"),
        })
}

/// Runs `f` on a thread of rayon's current pool (the global one outside any pool), so that the
/// parallel loops inside it split among the pool's threads without a hand-off each.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match rayon::current_thread_index() {
        Some(_) => f(),
        // `rayon::scope` runs its body in the pool and waits for it.
        None => rayon::scope(|_| f()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_pool_runs_its_body_on_a_rayon_thread_and_returns_its_value() {
        // The test harness's threads are not rayon's.
        assert_eq!(rayon::current_thread_index(), None);
        let (inside, value) = in_pool(|| (rayon::current_thread_index(), 42));
        assert!(inside.is_some(), "the body ran outside rayon's pool");
        assert_eq!(value, 42);
    }

    #[test]
    fn in_pool_called_from_a_pool_thread_stays_on_it() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let (outer, inner) = pool.install(|| {
            let outer = rayon::current_thread_index();
            (outer, in_pool(rayon::current_thread_index))
        });
        assert_eq!(outer, inner);
    }

    #[test]
    fn a_pool_has_the_threads_asked_for_and_never_none() {
        assert_eq!(pool(2).unwrap().install(rayon::current_num_threads), 2);
        assert_eq!(pool(0).unwrap().install(rayon::current_num_threads), 1);
    }
}
