//! Fused CPU kernels with their own backward passes: the `kernels = "fused"` path.
//!
//! Each op replaces a chain of candle primitives whose autograd allocates and reduces far more
//! than the mathematics needs. Every kernel is bitwise deterministic for any thread count (see
//! `slices` for the rule), and its tests diff it, forward and gradients, against the composed
//! candle ops it replaces.

mod bias;
mod causal_softmax;
mod cross_entropy;
mod gelu;
pub(crate) mod gemm;
mod heads;
mod layer_norm;
mod linear;
pub(crate) mod math;
pub(crate) mod slices;
pub(crate) mod unpacked;

pub use bias::add_bias;
pub use causal_softmax::causal_softmax;
pub(crate) use causal_softmax::{softmax_grad_row, softmax_row};
pub use cross_entropy::cross_entropy;
pub use gelu::gelu_erf;
pub use heads::{merge_heads, split_heads, split_qkv_heads};
pub use layer_norm::layer_norm;
pub use linear::matmul_wt;

#[cfg(test)]
pub(crate) mod test_support {
    use candle_core::Tensor;

    /// Returns `n` values in `[-0.5, 0.5)` from a seeded LCG.
    pub fn seeded(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// Returns the gradients of `sum(y · probe)`: a random probe exercises every output's
    /// gradient path at once, so one backward checks the whole Jacobian-vector product.
    pub fn probed_grads(y: Tensor, probe: &Tensor) -> candle_core::backprop::GradStore {
        (y * probe).unwrap().sum_all().unwrap().backward().unwrap()
    }

    /// Asserts `max |a − b| <= tol` (same shape), naming `what` on failure.
    pub fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}: shapes");
        let err: f32 = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(
            err <= tol,
            "{what}: max |fused − composed| = {err:e} > {tol:e}"
        );
    }
}
