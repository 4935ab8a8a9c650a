//! One optimiser step of the `small` config (842,496 parameters, d_model 128, 4 layers, seq 128,
//! batch 8, f32), the model PyTorch's CPU reference numbers were measured on.
//!
//! Where we stand (measured 2026-11-22 on this 2-core machine, release build, criterion median):
//!
//! | config | 1 thread | 2 threads | PyTorch 2.x CPU eager (1 / 2 threads) |
//! |---|---|---|---|
//! | `gate`  | 12.5 ms | 15.8 ms | — |
//! | `small` | 251 ms  | 239 ms  | 84 ms / 48 ms |
//!
//! lossdiff's composed candle ops are ~3.0× slower than PyTorch on one thread and ~5× on two (a
//! second thread barely helps: small per-op work, allocation churn). The fused-kernel work
//! (issue "Training speed") is measured against this bench.
//!
//! Run: `RAYON_NUM_THREADS=1 cargo bench --bench train_step` (and `=2` for two threads). The
//! `gate` step runs in the same session as a baseline, so ratios survive a noisy machine.

use criterion::{criterion_group, criterion_main, Criterion};
use lossdiff::config::RunConfig;
use lossdiff::train::Trainer;

fn bench_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group.sample_size(20);
    for preset in ["gate", "small"] {
        let cfg = RunConfig::preset(preset).expect("shipped preset");
        let mut trainer = Trainer::new(&cfg, preset).expect("preset trains");
        let mut step = 0u64;
        group.bench_function(preset, |b| {
            b.iter(|| {
                let r = trainer
                    .step(step % cfg.train.train_iters)
                    .expect("step runs");
                step += 1;
                r.loss
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Criterion's plots need system fonts (plotters' default font stack); the numbers are what
    // matter here, so plots are off and the bench runs on a bare machine.
    config = Criterion::default().without_plots();
    targets = bench_step
}
criterion_main!(benches);
