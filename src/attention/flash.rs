//! Fused flash attention (placeholder until the kernel lands).

use super::AttentionParams;
use crate::error::Result;
use candle_core::Tensor;

/// Computes causal attention with the fused kernel.
///
/// # Errors
/// Always, for now: the fused kernel is not built yet.
pub fn flash_attention(
    _q: &Tensor,
    _k: &Tensor,
    _v: &Tensor,
    _params: &AttentionParams,
) -> Result<Tensor> {
    Err(
        candle_core::Error::Msg("attention = \"flash\" is not available in this build yet".into())
            .into(),
    )
}
