//! Where a training step's threads come from, and what they do when idle.
//!
//! A step runs on three kinds of threads: gemm's and the fused kernels' work goes to rayon's pool,
//! and candle's elementwise ops go to candle's own barrier pool. On a two-core machine that is
//! four threads for two cores, and two habits of those pools cost more than the work:
//! - A parallel loop started from outside rayon's pool hands its work to a pool thread and parks
//!   the caller. A step is hundreds of such loops, so it runs inside the pool ([`in_pool`]).
//! - After each op candle's barrier-pool workers spin 25,000 rounds before parking. On two cores
//!   that spinner takes the core rayon's second thread needs: measured on the `small` preset,
//!   two threads were no faster than one (84 vs 81 ms/step); with the spin cut to 1,000 rounds
//!   two threads took 54 ms ([`calm_idle_workers`]).
//!
//! Neither changes a result: which thread computes a row never changes its bits (see
//! `kernels::slices`), and gemm splits its output, not its sums, over threads.

/// Rounds candle's barrier-pool workers spin before parking, unless the user set
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` (candle's default is 25,000).
pub const SPIN_LIMIT: &str = "1000";

/// Runs `f` on a thread of rayon's current pool (the global one outside any pool), so that the
/// parallel loops inside it split among the pool's threads without a hand-off each.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match rayon::current_thread_index() {
        Some(_) => f(),
        // `rayon::scope` runs its body in the pool and waits for it.
        None => rayon::scope(|_| f()),
    }
}

/// Sets candle's barrier-pool spin limit to [`SPIN_LIMIT`] unless the user chose one.
///
/// Candle reads the variable once, when its pool starts (at the first elementwise op of the
/// process), so this is called before a trainer builds its model. Idempotent.
pub fn calm_idle_workers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
        if std::env::var_os(VAR).is_none() {
            // Like the runner's RAYON_NUM_THREADS: the process's own environment, written
            // through std's lock; candle reads it through std too.
            std::env::set_var(VAR, SPIN_LIMIT);
        }
    });
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
}
