//! lossdiff builds against a vendored candle-core with three patches (vendor/README.md): autograd
//! stores the first gradient that reaches a node instead of adding it into fresh zeros, the CPU
//! matmul writes into an uninitialised buffer and spreads batches over the threads, and transposed
//! views are copied in blocks of rows. Cargo silently ignores a `[patch]` that stops matching
//! (after a version bump, say), so this checks that the patched autograd is the one in the build,
//! and that the patches still compute the right numbers, with the same bits on either matmul path.

use candle_core::{Device, Tensor, Var};

fn var(values: &[f32]) -> Var {
    Var::from_tensor(&Tensor::new(values, &Device::Cpu).unwrap()).unwrap()
}

#[test]
fn the_first_gradient_reaching_a_node_is_stored_not_added_to_zeros() {
    let (x, y) = (var(&[1.0, 2.0]), var(&[3.0, 4.0]));
    let loss = (x.as_tensor() + y.as_tensor()).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let (gx, gy) = (grads.get(&x).unwrap(), grads.get(&y).unwrap());
    // An add passes one gradient to both of its inputs. Stored as it is, both inputs hold that one
    // tensor; candle 0.11.1 as released adds it into two fresh zero tensors, two ids.
    assert_eq!(
        gx.id(),
        gy.id(),
        "candle-core is not the vendored, patched one: check Cargo.toml's [patch.crates-io]"
    );
}

#[test]
fn gradients_with_fan_in_and_subtraction_are_still_summed_exactly() {
    // loss = Σ (x·y + x − y − y/x): x and y each reach the loss along three paths, one of them
    // subtracting, so the first-gradient store, the later adds and the negated store all run.
    let (x, y) = (var(&[1.0, 2.0, -0.5]), var(&[3.0, -4.0, 0.25]));
    let (xt, yt) = (x.as_tensor(), y.as_tensor());
    let prod = (xt * yt).unwrap();
    let ratio = (yt / xt).unwrap();
    let loss = (((prod + xt).unwrap() - yt).unwrap() - ratio)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let got = |v: &Var| grads.get(v).unwrap().to_vec1::<f32>().unwrap();
    let (xs, ys) = ([1.0f32, 2.0, -0.5], [3.0f32, -4.0, 0.25]);
    // ∂/∂x = y + 1 + y/x², ∂/∂y = x − 1 − 1/x.
    let want_x: Vec<f32> = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| y + 1.0 + y / (x * x))
        .collect();
    let want_y: Vec<f32> = xs.iter().map(|x| x - 1.0 - 1.0 / x).collect();
    for (g, w) in got(&x)
        .iter()
        .zip(&want_x)
        .chain(got(&y).iter().zip(&want_y))
    {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "got {g}, want {w}"
        );
    }
}

/// Returns `(b, m, k)` seeded values in [-1, 1).
fn seeded(b: usize, m: usize, k: usize, salt: u64) -> Tensor {
    let mut s = salt;
    let data: Vec<f32> = (0..b * m * k)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::from_vec(data, (b, m, k), &Device::Cpu).unwrap()
}

#[test]
fn a_matmul_writes_every_element_of_its_uninitialised_output() {
    // Odd sizes and a transposed right operand: gemm's edge tiles and strided packing. Every
    // element is checked against an f64 triple loop, so one gemm left unwritten would show.
    let (b, m, k, n) = (3, 37, 19, 23);
    let lhs = seeded(b, m, k, 1);
    let rhs_t = seeded(b, n, k, 2); // (b, n, k), used as (b, k, n) through a transpose
    let got = lhs
        .matmul(&rhs_t.transpose(1, 2).unwrap())
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    let (l, r) = (
        lhs.to_vec3::<f32>().unwrap(),
        rhs_t.to_vec3::<f32>().unwrap(),
    );
    for (bi, rows) in got.iter().enumerate() {
        for (i, row) in rows.iter().enumerate() {
            for (j, &g) in row.iter().enumerate() {
                let want: f64 = (0..k)
                    .map(|p| f64::from(l[bi][i][p]) * f64::from(r[bi][j][p]))
                    .sum();
                assert!(
                    (f64::from(g) - want).abs() <= 1e-5 * (k as f64),
                    "[{bi}][{i}][{j}]: got {g}, want {want}"
                );
            }
        }
    }
}

#[test]
fn a_matmul_over_an_empty_inner_dimension_is_zeros() {
    let out = seeded(2, 3, 0, 1).matmul(&seeded(2, 0, 4, 2)).unwrap();
    assert_eq!(out.dims(), &[2, 3, 4]);
    assert!(out
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|&x| x == 0.0));
}

#[test]
fn batches_spread_over_threads_give_the_bits_of_one_product_at_a_time() {
    // Six batches: as many as threads or more on machines of up to six cores, so the patched matmul
    // takes its batch-parallel path; each batch alone takes the split-one-product path. Both
    // must give the same bits, as the trainer's any-thread-count guarantee needs.
    let (b, m, k, n) = (6, 64, 32, 48);
    let (lhs, rhs) = (seeded(b, m, k, 3), seeded(b, k, n, 4));
    let batched = lhs.matmul(&rhs).unwrap();
    for i in 0..b {
        let one = lhs.get(i).unwrap().matmul(&rhs.get(i).unwrap()).unwrap();
        let (x, y) = (
            batched
                .get(i)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            one.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        let same = x.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "batch {i}: batched and single products differ in bits"
        );
    }
}

/// Returns the `(a, b, c, d)` tensor whose element `[i][j][k][l]` is its own row-major index.
fn counting(dims: [usize; 4]) -> Tensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|i| i as f32).collect();
    Tensor::from_vec(data, &dims, &Device::Cpu).unwrap()
}

#[test]
fn transposed_views_are_copied_element_for_element() {
    // The third patch copies a view whose last two dims are swapped a block of rows at a time.
    // Each case is checked against the index arithmetic of the layout it comes from: a weight
    // gradient through `t()`, attention's `(B, nh, hs, T)` gradient of `kᵀ` (large enough for the
    // parallel path), a view starting past the buffer's start, and a broadcast batch dimension.
    let four = counting([3, 5, 45, 67]); // 45 225 elements: parallel
    let want4 = |b: usize, h: usize, i: usize, j: usize| (((b * 5 + h) * 45 + j) * 67 + i) as f32;
    let got = four.transpose(2, 3).unwrap().contiguous().unwrap();
    assert_eq!(got.dims(), &[3, 5, 67, 45]);
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut at = 0;
    for b in 0..3 {
        for h in 0..5 {
            for i in 0..67 {
                for j in 0..45 {
                    assert_eq!(got[at], want4(b, h, i, j), "[{b}][{h}][{i}][{j}]");
                    at += 1;
                }
            }
        }
    }

    // A 2-D weight gradient, narrowed so that the view starts at an offset: rows 1..4 of (5, 7)ᵀ.
    let w = counting([1, 1, 5, 7]).reshape((5, 7)).unwrap();
    let view = w.narrow(0, 1, 3).unwrap().t().unwrap(); // (7, 3): [i][j] = w[1 + j][i]
    let got = view.contiguous().unwrap().to_vec2::<f32>().unwrap();
    for (i, row) in got.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            assert_eq!(x, ((1 + j) * 7 + i) as f32, "[{i}][{j}]");
        }
    }

    // A broadcast batch: stride 0 on the first dim, the same transposed block twice.
    let block = counting([1, 1, 4, 6]).reshape((1, 4, 6)).unwrap();
    let got = block
        .broadcast_as((2, 4, 6))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    for rows in &got {
        for (i, row) in rows.iter().enumerate() {
            for (j, &x) in row.iter().enumerate() {
                assert_eq!(x, (j * 6 + i) as f32, "[{i}][{j}]");
            }
        }
    }
}
