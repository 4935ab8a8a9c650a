//! Counter-based randomness: every random number lossdiff draws is a pure function of a key.
//!
//! candle's CPU RNG cannot be seeded (`Device::Cpu.set_seed` errors and `randn`, `Init` and
//! `ops::dropout` draw from a thread RNG), and a stateful generator would make the value of one
//! element depend on how many were drawn before it — i.e. on tiling, threading and evaluation order.
//! Hashing `(seed, stream, index)` instead gives each element its own number, so the naive and the
//! flash attention paths can draw the *same* dropout mask element by element, and a run is
//! bit-reproducible whatever the thread count.
//!
//! This module owns the hash, uniform and normal draws, and the dropout-mask streams. It does not
//! own what the streams are used for (see `model` and `attention`).

/// Finalises a 64-bit word with SplitMix64's mixer (Steele, Lea & Flood 2014).
///
/// Bijective and avalanching: flipping one input bit flips each output bit with probability ≈ ½,
/// which is what makes a plain counter usable as a random stream.
#[inline(always)]
pub const fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a sequence of words into one key; order matters, so `(1, 2)` and `(2, 1)` differ.
#[inline]
pub fn hash_words(words: &[u64]) -> u64 {
    let mut h = 0x6A09_E667_F3BC_C909_u64;
    for &w in words {
        h = mix64(h ^ w);
    }
    h
}

/// Hashes a string (e.g. a parameter name) so that streams are keyed by meaning, not by position.
pub fn hash_str(s: &str) -> u64 {
    // FNV-1a, then the mixer: enough to separate parameter names, and stable across releases
    // (std's `DefaultHasher` is explicitly not).
    let mut h = 0xCBF2_9CE4_8422_2325_u64;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    mix64(h)
}

/// Maps a hash to a uniform `f32` in `[0, 1)` using its top 24 bits (exactly representable).
#[inline(always)]
pub fn unit_f32(h: u64) -> f32 {
    (h >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// Maps a hash to a uniform `f64` in `(0, 1)` using its top 53 bits; never returns 0.
#[inline(always)]
pub fn unit_open_f64(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// Draws element `index` of a standard-normal stream keyed by `key` (Box–Muller, cosine branch).
pub fn normal(key: u64, index: u64) -> f64 {
    let u1 = unit_open_f64(mix64(key ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93)));
    let u2 = unit_open_f64(mix64(!key ^ index.wrapping_mul(0xA076_1D64_78BD_642F)));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Where in the model a dropout mask is drawn; part of the mask's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum DropoutSite {
    /// Dropout on the attention probabilities, element `(batch, head, query, key)`.
    Attention = 1,
    /// Dropout after the attention output projection, element `(batch, pos, channel)`.
    AttentionResidual = 2,
    /// Dropout after the MLP output projection, element `(batch, pos, channel)`.
    MlpResidual = 3,
    /// Dropout on the summed token and position embeddings, element `(batch, pos, channel)`.
    Embedding = 4,
}

/// Identifies one dropout mask: which run, which optimiser step, which micro batch, which layer.
///
/// Masks depend only on this key and the element's coordinates, never on evaluation order: the
/// naive and flash attention paths call [`DropoutStream::row_key`] and [`keep`] with the same
/// arguments and so drop the same elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropoutStream {
    /// The run's dropout seed.
    pub seed: u64,
    /// Optimiser step (0-based).
    pub step: u64,
    /// Micro-batch index within the step's gradient accumulation.
    pub micro: u64,
    /// Transformer layer (embedding dropout uses `u64::MAX`).
    pub layer: u64,
    /// Which dropout in the layer.
    pub site: DropoutSite,
}

impl DropoutStream {
    /// Returns the key of one mask row, e.g. `(batch, head, query)` for attention dropout.
    #[inline]
    pub fn row_key(&self, row: &[u64]) -> u64 {
        let mut h = hash_words(&[
            self.seed,
            self.step,
            self.micro,
            self.layer,
            self.site as u64,
        ]);
        for &r in row {
            h = mix64(h ^ r);
        }
        h
    }
}

/// Returns whether element `col` of the row keyed by `row_key` survives dropout with probability `p`.
#[inline(always)]
pub fn keep(row_key: u64, col: u64, p: f32) -> bool {
    unit_f32(mix64(row_key ^ col.wrapping_mul(0x9E37_79B9_7F4A_7C15))) >= p
}

/// Fills a row of `n` multiplicative dropout factors: `0` where dropped, `1/(1-p)` where kept.
pub fn dropout_row(row_key: u64, p: f32, out: &mut [f32]) {
    let scale = 1.0 / (1.0 - p);
    for (col, o) in out.iter_mut().enumerate() {
        *o = if keep(row_key, col as u64, p) {
            scale
        } else {
            0.0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_reference_first_outputs() {
        // Reference: SplitMix64 seeded with 0 yields 0xE220A8397B1DCDAF as its first output
        // (Vigna's splitmix64.c: state += golden gamma, then the same mixer).
        assert_eq!(mix64(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn dropout_rate_matches_probability() {
        let stream = DropoutStream {
            seed: 7,
            step: 3,
            micro: 0,
            layer: 1,
            site: DropoutSite::Attention,
        };
        let n = 200_000;
        let kept = (0..n)
            .filter(|&i| keep(stream.row_key(&[i / 1000]), i % 1000, 0.1))
            .count();
        let rate = 1.0 - kept as f64 / n as f64;
        // Binomial sd at n=2e5, p=0.1 is 6.7e-4: 5 sd either side.
        assert!((rate - 0.1).abs() < 0.0034, "drop rate {rate}");
    }

    #[test]
    fn masks_differ_across_steps_layers_and_sites() {
        let base = DropoutStream {
            seed: 1,
            step: 0,
            micro: 0,
            layer: 0,
            site: DropoutSite::Attention,
        };
        let variants = [
            DropoutStream { step: 1, ..base },
            DropoutStream { micro: 1, ..base },
            DropoutStream { layer: 1, ..base },
            DropoutStream {
                site: DropoutSite::MlpResidual,
                ..base
            },
            DropoutStream { seed: 2, ..base },
        ];
        for v in variants {
            assert_ne!(base.row_key(&[0, 0, 0]), v.row_key(&[0, 0, 0]), "{v:?}");
        }
    }

    #[test]
    fn normal_stream_has_unit_moments() {
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|i| normal(42, i)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }
}
