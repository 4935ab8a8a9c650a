//! One optimiser step of the `small` config (842,496 parameters, d_model 128, 4 layers, seq 128,
//! batch 8, f32), the model PyTorch's CPU reference numbers were measured on.
//!
//! Where we stand: PyTorch 2.x CPU eager trains this model at about 84 ms/step on one core of this
//! kind of machine (48 ms on two). candle 0.11 with lossdiff's composed ops measured ~250-300 ms
//! per step on one thread when this bench was written — roughly 3-3.5x slower; the fused-kernel
//! work (issue "Training speed") is measured against this bench.
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

criterion_group!(benches, bench_step);
criterion_main!(benches);
