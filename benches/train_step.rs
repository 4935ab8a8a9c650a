//! One optimiser step of the shipped configs, fused kernels against composed candle ops, in the
//! same process so that their ratio survives a noisy machine.
//!
//! `small` (842,496 parameters, d_model 128, 4 layers, seq 128, batch 8, f32) is the model the
//! PyTorch CPU reference times (`benches/pytorch_reference.py`, the same model and optimiser; run
//! it in the same session, the machine is shared); `gate` is the tiny model the test gates
//! train; `medium` (d_model 256, 6 layers, seq 256) is the larger config. The README's speed
//! table comes from this bench and that script.
//!
//! Run: `RAYON_NUM_THREADS=1 cargo bench --bench train_step` (and `=2` for two threads; candle
//! reads the variable on every op). Filter with a trailing argument, e.g. `-- small`.

use criterion::{criterion_group, criterion_main, Criterion};
use lossdiff::config::{Kernels, RunConfig};
use lossdiff::train::Trainer;
use std::time::Duration;

fn bench_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    for preset in ["gate", "small", "medium"] {
        // Few samples for the big config: a step takes about a second there.
        group.sample_size(if preset == "medium" { 10 } else { 20 });
        group.measurement_time(Duration::from_secs(if preset == "gate" { 5 } else { 15 }));
        for kernels in [Kernels::Composed, Kernels::Fused] {
            let mut cfg = RunConfig::preset(preset).expect("shipped preset");
            cfg.model.kernels = kernels;
            let mut trainer = Trainer::new(&cfg, preset).expect("preset trains");
            let mut step = 0u64;
            let id = format!("{preset}/{}", format!("{kernels:?}").to_lowercase());
            group.bench_function(id, |b| {
                b.iter(|| {
                    let r = trainer
                        .step(step % cfg.train.train_iters)
                        .expect("step runs");
                    step += 1;
                    r.loss
                })
            });
        }
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
