use candle_core::{Device, Tensor};
use lossdiff::{
    config::RunConfig,
    model::{ForwardCtx, Gpt},
    params::ParamStore,
};
fn main() {
    let c = RunConfig::preset("gate").unwrap();
    let store = ParamStore::new(1, 0);
    let m = Gpt::new(&c.model, &store, &Device::Cpu).unwrap();
    let ids: Vec<u32> = (0..8 * 32).map(|i| (i % 64) as u32).collect();
    let x = Tensor::from_vec(ids, (8, 32), &Device::Cpu).unwrap();
    let ctx = ForwardCtx {
        seed: 1,
        step: 0,
        micro: 0,
        train: true,
    };
    for _ in 0..3 {
        let l = m.loss(&x, &x, &ctx).unwrap();
        l.backward().unwrap();
    }
    let n = 20;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let _ = m.loss(&x, &x, &ctx).unwrap();
    }
    let f = t.elapsed().as_secs_f64() / n as f64;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let l = m.loss(&x, &x, &ctx).unwrap();
        l.backward().unwrap();
    }
    let fb = t.elapsed().as_secs_f64() / n as f64;
    println!("fwd {:.1} ms, fwd+bwd {:.1} ms", f * 1e3, fb * 1e3);
}
