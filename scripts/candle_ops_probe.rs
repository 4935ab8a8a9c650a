//! Probes, op by op, the candle kernels lossdiff's reference model calls, so that a change in a
//! training run's bits between two candle releases can be attributed to the kernels that moved.
//!
//! Not part of the crate: `scripts/candle-upgrade.sh` copies it into a scratch copy of the
//! sources as an example and builds it once against each candle release (it uses only API both
//! releases have). Every case runs on the gate model's shapes (batch 8, sequence 32, width 64,
//! 4 heads, vocabulary 64) with seeded inputs, forward and, where autograd reaches it, backward.
//!
//! ```text
//! candle_ops_probe --write old.json                 # under the old release: every output's bits
//! candle_ops_probe --against old.json --out t.md    # under the new one: per-op comparison table
//! ```
//!
//! Backward cases take the gradient of `sum(y · g)` for a seeded `g`, so the upstream gradient
//! reaching the op is `g` exactly whatever order `sum` adds in: a differing gradient is the op's
//! own backward, not the reduction that built the scalar.

use candle_core::{DType, Device, Tensor, Var, D};
use std::collections::BTreeMap;

type Outputs = BTreeMap<String, Vec<f32>>;

/// Every case's outputs, and the cases that failed (a candle error or a panic), with why.
#[derive(Default)]
struct Probe {
    outputs: Outputs,
    failures: BTreeMap<String, String>,
}

impl Probe {
    /// Runs one case; a panic inside candle (an op a release cannot run) is recorded, not fatal.
    fn case(&mut self, name: &str, f: impl FnOnce() -> candle_core::Result<Outputs>) {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(Ok(outputs)) => self.outputs.extend(outputs),
            Ok(Err(e)) => {
                // The first line: candle appends a backtrace when RUST_BACKTRACE is set.
                let e = e.to_string();
                let e = e.lines().next().unwrap_or_default();
                self.failures
                    .insert(name.to_string(), format!("error: {e}"));
            }
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.failures
                    .insert(name.to_string(), format!("panicked: {why}"));
            }
        }
    }
}

/// Returns `n` values in [-1, 1) from splitmix64 (candle's own RNG cannot be seeded).
fn seeded(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

fn tensor(seed: u64, dims: &[usize]) -> candle_core::Result<Tensor> {
    let n = dims.iter().product();
    Tensor::from_vec(seeded(seed, n), dims, &Device::Cpu)
}

fn flat(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// Records `f(inputs)` and the gradient of `sum(f · g)` with respect to every input.
fn with_backward(
    probe: &mut Probe,
    name: &str,
    dims: &[&[usize]],
    seed: u64,
    f: impl Fn(&[Tensor]) -> candle_core::Result<Tensor>,
) {
    probe.case(name, || backward_case(name, dims, seed, f));
}

fn backward_case(
    name: &str,
    dims: &[&[usize]],
    seed: u64,
    f: impl Fn(&[Tensor]) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Outputs> {
    let mut out = Outputs::new();
    let vars = dims
        .iter()
        .enumerate()
        .map(|(i, d)| Var::from_tensor(&tensor(seed + i as u64, d)?))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let xs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&xs)?;
    let g = tensor(seed + 100, y.dims())?.to_dtype(y.dtype())?;
    let grads = (&y * &g)?.sum_all()?.backward()?;
    out.insert(format!("{name} forward"), flat(&y)?);
    for (i, v) in vars.iter().enumerate() {
        if let Some(dx) = grads.get(v.as_tensor()) {
            out.insert(format!("{name} backward d{i}"), flat(dx)?);
        }
    }
    Ok(out)
}

/// Records one forward-only output.
fn forward(probe: &mut Probe, name: &str, f: impl FnOnce() -> candle_core::Result<Tensor>) {
    probe.case(name, || {
        Ok(Outputs::from([(name.to_string(), flat(&f()?)?)]))
    });
}

/// LayerNorm as lossdiff's composed kernels write it (`src/model.rs`).
fn layer_norm_composed(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + 1e-5)?.sqrt()?)?
        .broadcast_mul(w)?
        .broadcast_add(b)
}

fn run_cases() -> Probe {
    let mut p = Probe::default();
    let (bt, c, vocab) = (256, 64, 64);
    // --- gemm: the linear layers as the fused kernels call them (one (B·T, d_in) product) ---
    for (i, (d_in, d_out)) in [(c, 3 * c), (c, c), (c, 4 * c), (4 * c, c)]
        .into_iter()
        .enumerate()
    {
        with_backward(
            &mut p,
            &format!("matmul ({bt}x{d_in})·({d_in}x{d_out})"),
            &[&[bt, d_in], &[d_in, d_out]],
            10 + i as u64,
            |x| x[0].matmul(&x[1]),
        );
    }
    // --- the composed kernels' linear layer: a weight broadcast over the batch ---
    with_backward(
        &mut p,
        "broadcast_matmul (8x32x64)·(192x64)ᵀ",
        &[&[8, 32, c], &[3 * c, c]],
        20,
        |x| x[0].broadcast_matmul(&x[1].t()?),
    );
    // Its weight gradient in two parts: the per-sequence products xᵀ·g, then their sum over
    // the batch (what autograd does for a broadcast operand).
    with_backward(
        &mut p,
        "batched matmul xᵀ·g (8x64x32)·(8x32x192)",
        &[&[8, 32, c], &[8, 32, 3 * c]],
        22,
        |x| x[0].t()?.matmul(&x[1]),
    );
    // The broadcast_matmul weight gradient recomputed by hand from the same inputs and upstream
    // gradient (seeds 20 and 120): what autograd should produce, before its final transpose.
    forward(
        &mut p,
        "xᵀ·g summed over the batch, by hand (64x192)",
        || {
            tensor(20, &[8, 32, c])?
                .t()?
                .matmul(&tensor(120, &[8, 32, 3 * c])?)?
                .sum_keepdim(0)
        },
    );
    with_backward(
        &mut p,
        "broadcast_matmul (8x32x64)·(64x192), weight not transposed",
        &[&[8, 32, c], &[c, 3 * c]],
        26,
        |x| x[0].broadcast_matmul(&x[1]),
    );
    forward(&mut p, "sum_keepdim dim 0 (8x64x192)", || {
        tensor(24, &[8, c, 3 * c])?.sum_keepdim(0)
    });
    // --- naive attention's two batched products, (B, nh, T, hs) = (8, 4, 32, 16) ---
    with_backward(
        &mut p,
        "attention q·kᵀ (8x4x32x16)",
        &[&[8, 4, 32, 16], &[8, 4, 32, 16]],
        30,
        |x| x[0].matmul(&x[1].t()?),
    );
    with_backward(
        &mut p,
        "attention p·v (8x4x32x32)·(8x4x32x16)",
        &[&[8, 4, 32, 32], &[8, 4, 32, 16]],
        32,
        |x| x[0].matmul(&x[1]),
    );
    // --- reductions: over the last dim (candle's vec_sum) and over the first (element order) ---
    forward(&mut p, "sum_keepdim last dim (256x64)", || {
        tensor(40, &[bt, c])?.sum_keepdim(D::Minus1)
    });
    forward(&mut p, "sum_keepdim dim 0 (256x64)", || {
        tensor(40, &[bt, c])?.sum_keepdim(0)
    });
    forward(&mut p, "mean_keepdim last dim (256x64)", || {
        tensor(40, &[bt, c])?.mean_keepdim(D::Minus1)
    });
    forward(&mut p, "max_keepdim last dim (256x64)", || {
        tensor(40, &[bt, c])?.max_keepdim(D::Minus1)
    });
    forward(&mut p, "sum_all (256x64)", || {
        tensor(40, &[bt, c])?.sum_all()
    });
    // --- softmax, LayerNorm, GELU, cross-entropy as the composed kernels call them ---
    with_backward(
        &mut p,
        "softmax over last dim (8x4x32x32)",
        &[&[8, 4, 32, 32]],
        50,
        |x| candle_nn::ops::softmax(&x[0], D::Minus1),
    );
    forward(&mut p, "softmax_last_dim (8x4x32x32)", || {
        candle_nn::ops::softmax_last_dim(&tensor(50, &[8, 4, 32, 32])?)
    });
    with_backward(
        &mut p,
        "layer norm, composed (8x32x64)",
        &[&[8, 32, c], &[c], &[c]],
        60,
        |x| layer_norm_composed(&x[0], &x[1], &x[2]),
    );
    with_backward(&mut p, "gelu_erf (256x256)", &[&[bt, 4 * c]], 70, |x| {
        x[0].gelu_erf()
    });
    with_backward(&mut p, "exp (256x64)", &[&[bt, c]], 71, |x| x[0].exp());
    let ids = |seed| {
        let v: Vec<u32> = seeded(seed, bt)
            .iter()
            .map(|v| ((v + 1.0) * 0.5 * vocab as f32) as u32 % vocab as u32)
            .collect();
        Tensor::from_vec(v, bt, &Device::Cpu)
    };
    with_backward(&mut p, "cross_entropy (256x64)", &[&[bt, vocab]], 81, |x| {
        candle_nn::loss::cross_entropy(&x[0], &ids(80)?)
    });
    // --- elementwise with broadcasting (bias add, position add) and its reduced gradient ---
    with_backward(
        &mut p,
        "broadcast_add (8x32x64)+(64)",
        &[&[8, 32, c], &[c]],
        90,
        |x| x[0].broadcast_add(&x[1]),
    );
    with_backward(
        &mut p,
        "broadcast_mul (8x32x64)·(64)",
        &[&[8, 32, c], &[c]],
        92,
        |x| x[0].broadcast_mul(&x[1]),
    );
    // --- embedding lookup (forward a gather, backward an index_add) ---
    with_backward(&mut p, "embedding (64x64)[256]", &[&[vocab, c]], 96, |x| {
        x[0].embedding(&ids(95)?)
    });
    // --- bf16 compute (the env_f32_vs_bf16 experiment's arm B) ---
    let bf16 = |t: &Tensor| t.to_dtype(DType::BF16);
    with_backward(
        &mut p,
        "bf16 matmul (256x64)·(64x192)",
        &[&[bt, c], &[c, 3 * c]],
        110,
        |x| bf16(&x[0])?.matmul(&bf16(&x[1])?),
    );
    with_backward(
        &mut p,
        "bf16 broadcast_add (8x32x64)+(64)",
        &[&[8, 32, c], &[c]],
        112,
        |x| bf16(&x[0])?.broadcast_add(&bf16(&x[1])?),
    );
    with_backward(
        &mut p,
        "bf16 gelu_erf (256x256)",
        &[&[bt, 4 * c]],
        114,
        |x| bf16(&x[0])?.gelu_erf(),
    );
    p
}

/// Distance in units in the last place between two finite f32s (0 when bitwise equal).
fn ulps(a: f32, b: f32) -> u64 {
    let key = |x: f32| {
        let i = x.to_bits() as i32;
        (if i < 0 { i32::MIN - i } else { i }) as i64
    };
    (key(a) - key(b)).unsigned_abs()
}

/// One release's probe as written by `--write`.
struct Release {
    version: String,
    probe: Probe,
}

/// Renders the per-op comparison of `old` (read from a `--write` file) with `new`.
fn table(old: &Release, new: &Release) -> String {
    let (ov, nv) = (&old.version, &new.version);
    let mut md =
        "| candle op (gate-model shapes) | elements | bitwise equal | max ulps | max \\|Δ\\| |\n\
                  |---|---:|---:|---:|---:|\n"
            .to_string();
    let mut moved = Vec::new();
    let probes = [&old.probe, &new.probe];
    let outputs = probes.iter().flat_map(|p| p.outputs.keys());
    // A failure gets its own row only where neither release has an output of that case.
    let failed = probes
        .iter()
        .flat_map(|p| p.failures.keys())
        .filter(|case| {
            !probes
                .iter()
                .any(|p| p.outputs.keys().any(|k| k.starts_with(case.as_str())))
        });
    let names: std::collections::BTreeSet<&String> = outputs.chain(failed).collect();
    for name in names {
        // A failed case has no outputs: its failure stands for each output the other release
        // produced under the case's name.
        fn cell<'a>(r: &'a Release, name: &str) -> Result<&'a Vec<f32>, String> {
            let failure = r
                .probe
                .failures
                .iter()
                .find(|(case, _)| name.starts_with(*case));
            match (r.probe.outputs.get(name), failure) {
                (Some(v), _) => Ok(v),
                (None, Some((_, why))) => Err(format!("{why} under {}", r.version)),
                (None, None) => Err(format!("not probed under {}", r.version)),
            }
        }
        let (a, b) = match (cell(old, name), cell(new, name)) {
            (Ok(a), Ok(b)) if a.len() == b.len() => (a, b),
            (Ok(a), Ok(b)) => {
                moved.push(name.clone());
                md += &format!(
                    "| {name} | {} vs {} | shapes differ | | |\n",
                    a.len(),
                    b.len()
                );
                continue;
            }
            (a, b) => {
                moved.push(name.clone());
                let why = [a.err(), b.err()].into_iter().flatten().collect::<Vec<_>>();
                md += &format!(
                    "| {name} | | {} | | |\n",
                    why.join("; ").replace('|', "\\|")
                );
                continue;
            }
        };
        let equal = a
            .iter()
            .zip(b)
            .filter(|(x, y)| x.to_bits() == y.to_bits())
            .count();
        let max_ulps = a
            .iter()
            .zip(b)
            .map(|(x, y)| ulps(*x, *y))
            .max()
            .unwrap_or(0);
        let max_abs = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        if equal < a.len() {
            moved.push(name.clone());
        }
        let equal = match equal == a.len() {
            true => "all".to_string(),
            false => format!("{equal}"),
        };
        md += &format!(
            "| {name} | {} | {equal} | {max_ulps} | {max_abs:.3e} |\n",
            a.len()
        );
    }
    let total = md.lines().count() - 2;
    format!(
        "candle {ov} (old) vs {nv} (new): {} of {total} probed outputs differ{}\n\n{md}",
        moved.len(),
        match moved.is_empty() {
            true => String::new(),
            false => format!(": {}", moved.join("; ")),
        }
    )
}

fn write(release: &Release, path: &str) -> Result<(), Box<dyn std::error::Error>> {
    // Bits, not floats: a NaN must survive the round trip as the NaN it was.
    let bits: BTreeMap<&String, Vec<u32>> = release
        .probe
        .outputs
        .iter()
        .map(|(k, v)| (k, v.iter().map(|x| x.to_bits()).collect()))
        .collect();
    let doc = serde_json::json!({
        "candle_version": release.version,
        "outputs": bits,
        "failures": release.probe.failures,
    });
    Ok(std::fs::write(path, serde_json::to_vec(&doc)?)?)
}

fn read(path: &str) -> Result<Release, Box<dyn std::error::Error>> {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let bits: BTreeMap<String, Vec<u32>> = serde_json::from_value(doc["outputs"].clone())?;
    Ok(Release {
        version: doc["candle_version"]
            .as_str()
            .unwrap_or("unknown")
            .to_string(),
        probe: Probe {
            outputs: bits
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().map(f32::from_bits).collect()))
                .collect(),
            failures: serde_json::from_value(doc["failures"].clone())?,
        },
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // A case that panics is recorded as such; the default hook would also print each panic.
    std::panic::set_hook(Box::new(|_| {}));
    let release = Release {
        // Set by lossdiff's build script from Cargo.lock, for every target of the package.
        version: env!("LOSSDIFF_CANDLE_VERSION").to_string(),
        probe: run_cases(),
    };
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--write", path] => {
            write(&release, path)?;
            println!(
                "wrote {} op outputs ({} cases failed) under candle {} to {path}",
                release.probe.outputs.len(),
                release.probe.failures.len(),
                release.version
            );
        }
        ["--against", path, "--out", md_path] => {
            let md = table(&read(path)?, &release);
            std::fs::write(md_path, &md)?;
            print!("{md}");
        }
        _ => {
            return Err(
                "usage: candle_ops_probe --write FILE | --against FILE --out TABLE.md".into(),
            )
        }
    }
    Ok(())
}
