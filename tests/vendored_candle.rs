//! lossdiff builds against a vendored candle-core whose autograd stores the first gradient that
//! reaches a node instead of adding it into fresh zeros (vendor/README.md). Cargo silently ignores
//! a `[patch]` that stops matching (after a version bump, say), so this checks that the patched
//! autograd is the one in the build, and that it still computes the right gradients.

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
