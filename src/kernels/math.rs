//! Scalar `exp` and `erf` for f32 that the compiler can vectorise: straight-line polynomial
//! code with no calls and no branches, unlike libm's `expf`/`erff`.
//!
//! Both are deterministic functions of their input alone (plain `+ − × ÷`, no fused
//! multiply-add, no table lookups), so every CPU and every thread count gets the same bits.

/// `exp(x)` for f32, within 2 ulp of the correctly rounded value on `[-87, 88]`; inputs below
/// give 0 (as `expf` underflows there), above give `+∞`, NaN stays NaN.
///
/// Cody–Waite range reduction `x = n·ln 2 + r`, `|r| ≤ ln 2 / 2` (n rounded to nearest), a degree-6 polynomial for
/// `exp(r)` (Cephes' `expf` coefficients), and `2ⁿ` assembled in the exponent bits.
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n · LN2_HI is exact for |n| < 2⁹.
    const LN2_HI: f32 = 0.693_359_375;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.336_55, 88.722_84);
    // Round to nearest by the 1.5·2²³ trick: `floor` and `round` are library calls on baseline
    // x86-64 (no SSE4.1), an add and a subtract vectorise.
    const ROUNDER: f32 = 12_582_912.0;
    let shifted = xc * LOG2E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let e = p * r * r + r + 1.0;
    // 2ⁿ from the integer `shifted` already holds in its low mantissa bits (it sits in
    // [2²³, 2²⁴), where the ulp is 1): `shifted.to_bits() = 0x4B40_0000 + n`. The same number as
    // `n as i32`, but `as` saturates and maps NaN to 0, which compiles to scalar compares and
    // keeps the loop from vectorising; integer adds and shifts vectorise.
    const BIAS: u32 = 127u32.wrapping_sub(0x4B40_0000);
    let scale = f32::from_bits(shifted.to_bits().wrapping_add(BIAS) << 23);
    let y = e * scale;
    if x < -87.336_55 {
        0.0
    } else if x > 88.722_84 {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// [`exp`]'s reduction and polynomial evaluated with fused multiply-adds: the flash attention
/// kernel's exponential, where it runs once per score (twice counting the backward) and its
/// cost rivals the tile products'.
///
/// A fused multiply-add rounds once, so the bits are the same on every CPU: the vector units'
/// FMA instructions inside [`super::slices::wide`] and libm's software `fmaf` elsewhere give one
/// correctly rounded result. Within 2 ulp of the correctly rounded value on `[-87, 88]`, like
/// [`exp`].
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub(crate) fn exp_fused(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_375;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUNDER: f32 = 12_582_912.0;
    const BIAS: u32 = 127u32.wrapping_sub(0x4B40_0000);
    let xc = x.clamp(-87.336_55, 88.722_84);
    let shifted = xc.mul_add(LOG2E, ROUNDER);
    let n = shifted - ROUNDER;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, xc));
    let mut p = 1.987_569_1e-4_f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 5.000_000_1e-1);
    let e = p.mul_add(r * r, r) + 1.0;
    let y = e * f32::from_bits(shifted.to_bits().wrapping_add(BIAS) << 23);
    // The same three-way select as `exp`'s: LLVM turns this shape into vector blends (a
    // two-way one came out as branches in the flash forward's loop, and that stayed scalar).
    if x < -87.336_55 {
        0.0
    } else if x > 88.722_84 {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// `erf(x)` for f32 as a ratio of odd and even polynomials on `[-4, 4]` (Eigen's
/// `generic_fast_erf_float`, also XLA's); outside that range f32 `erf` is ±1 exactly.
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_258_013_06e-10 + 2.770_681_424_959_02e-8;
    p = x2 * p + -2.101_024_020_825_08e-6;
    p = x2 * p + -5.692_506_394_623_46e-5;
    p = x2 * p + -7.349_906_303_268_55e-4;
    p = x2 * p + -2.954_599_808_540_25e-3;
    p = x2 * p + -1.609_603_332_624_15e-2;
    let mut q = x2 * -1.456_607_184_649_96e-5 + -2.133_740_552_789_05e-4;
    q = x2 * q + -1.682_826_974_382_03e-3;
    q = x2 * q + -7.373_329_167_204_68e-3;
    q = x2 * q + -1.426_473_905_141_89e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// The first version of [`exp`], which built `2ⁿ` from `n as i32`. Every golden was blessed
    /// with its bits, so the vectorising rewrite must reproduce them exactly.
    #[allow(clippy::excessive_precision)]
    fn exp_as_blessed(x: f32) -> f32 {
        let xc = x.clamp(-87.336_55, 88.722_84);
        let n = (xc * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
        let r = xc - n * 0.693_359_375 - n * -2.121_944_4e-4;
        let mut p = 1.987_569_1e-4_f32;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 5.000_000_1e-1;
        let e = p * r * r + r + 1.0;
        let y = e * f32::from_bits(((n as i32 + 127) as u32) << 23);
        if x < -87.336_55 {
            0.0
        } else if x > 88.722_84 {
            f32::INFINITY
        } else if x.is_nan() {
            x
        } else {
            y
        }
    }

    #[test]
    fn exp_gives_the_blessed_bits_for_every_input_class() {
        // Every 97th bit pattern: all signs, exponents and NaN payloads, ~44 million inputs.
        for bits in (0..=u32::MAX).step_by(97) {
            let x = f32::from_bits(bits);
            let (got, want) = (exp(x), exp_as_blessed(x));
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "exp({x:e}) = {got:e}, blessed {want:e}"
            );
        }
    }

    #[test]
    fn exp_is_within_two_ulp_of_std_exp() {
        // std's f32::exp is glibc's expf, correctly rounded in practice.
        let mut worst = 0;
        for i in -87_000..=88_000 {
            let x = i as f32 * 1e-3;
            worst = worst.max(ulps(exp(x), x.exp()));
        }
        assert!(worst <= 2, "worst error {worst} ulp");
    }

    #[test]
    fn fused_exp_is_within_two_ulp_of_std_exp_and_saturates_like_it() {
        let mut worst = 0;
        for i in -87_000..=88_000 {
            let x = i as f32 * 1e-3;
            worst = worst.max(ulps(exp_fused(x), x.exp()));
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(exp_fused(-1000.0), 0.0);
        assert_eq!(exp_fused(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_fused(1000.0), f32::INFINITY);
        assert!(exp_fused(f32::NAN).is_nan());
        assert_eq!(exp_fused(0.0), 1.0);
    }

    #[test]
    fn fused_exp_gives_the_same_bits_vectorised_and_not() {
        let xs: Vec<f32> = (0..4096).map(|i| -(i as f32) * 0.0213 + 0.5).collect();
        let mut wide_out = vec![0f32; xs.len()];
        crate::kernels::slices::wide(
            #[inline(always)]
            || {
                for (o, &x) in wide_out.iter_mut().zip(&xs) {
                    *o = exp_fused(x);
                }
            },
        );
        for (&x, o) in xs.iter().zip(&wide_out) {
            assert_eq!(o.to_bits(), exp_fused(x).to_bits(), "exp_fused({x})");
        }
    }

    #[test]
    fn exp_saturates_like_expf() {
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(1000.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_matches_libm_to_a_few_ulp() {
        // libm's erff is within 1 ulp; the approximation's documented error is a few ulp,
        // i.e. under 1e-6 absolute on [-6, 6].
        for i in -6000..=6000 {
            let x = i as f32 * 1e-3;
            let (got, want) = (erf(x), candle_core::cpu::erf::erf_f32(x));
            assert!((got - want).abs() <= 6e-7, "erf({x}) = {got}, libm {want}");
        }
    }
}
