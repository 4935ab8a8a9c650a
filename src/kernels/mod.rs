//! Fused CPU kernels with their own backward passes: the `kernels = "fused"` path.
//!
//! Each op replaces a chain of candle primitives whose autograd allocates and reduces far more
//! than the mathematics needs. Every kernel is bitwise deterministic for any thread count, and
//! its tests diff it against the composed candle ops it replaces.

mod bias;

pub use bias::add_bias;
