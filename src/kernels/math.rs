//! Scalar `exp` and `erf` for f32 that the compiler can vectorise: straight-line polynomial
//! code with no calls and no branches, unlike libm's `expf`/`erff`.
//!
//! All are deterministic functions of their input alone, with no table lookups: `exp` and `erf`
//! use plain `+ − × ÷`, `exp_fused` fused multiply-adds (each rounds once, exactly, on every
//! CPU), so every CPU and every thread count gets the same bits.

// Constants of `exp` and `exp_fused`: Cody–Waite range reduction `x = n·ln 2 + r` and Cephes'
// `expf` polynomial.
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so that `n · LN2_HI` is exact for `|n| < 2⁹`.
#[allow(clippy::excessive_precision)]
const LN2_HI: f32 = 0.693_359_375;
#[allow(clippy::excessive_precision)]
const LN2_LO: f32 = -2.121_944_4e-4;
/// Round to nearest by the 1.5·2²³ trick: `floor` and `round` are library calls on baseline
/// x86-64 (no SSE4.1), an add and a subtract vectorise.
const ROUNDER: f32 = 12_582_912.0;
/// Inputs below give 0 (`expf` underflows there), above give `+∞`.
#[allow(clippy::excessive_precision)]
const EXP_MIN: f32 = -87.336_55;
#[allow(clippy::excessive_precision)]
const EXP_MAX: f32 = 88.722_84;
/// `exp(r) ≈ 1 + r + r²·p(r)`, `p` of degree 5, highest coefficient first.
#[allow(clippy::excessive_precision)]
const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    5.000_000_1e-1,
];

/// `exp(x)` for f32, within 2 ulp of the correctly rounded value on `[-87, 88]`; inputs below
/// give 0 (as `expf` underflows there), above give `+∞`, NaN stays NaN.
///
/// Cody–Waite range reduction `x = n·ln 2 + r`, `|r| ≤ ln 2 / 2` (n rounded to nearest), a
/// degree-6 polynomial for `exp(r)` (Cephes' `expf` coefficients), and `2ⁿ` assembled in the
/// exponent bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let xc = x.clamp(EXP_MIN, EXP_MAX);
    let shifted = xc * LOG2E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = EXP_POLY[1..].iter().fold(EXP_POLY[0], |p, &c| p * r + c);
    let e = p * r * r + r + 1.0;
    scaled_and_saturated(x, e, shifted)
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
pub(crate) fn exp_fused(x: f32) -> f32 {
    let xc = x.clamp(EXP_MIN, EXP_MAX);
    let shifted = xc.mul_add(LOG2E, ROUNDER);
    let n = shifted - ROUNDER;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, xc));
    let p = EXP_POLY[1..]
        .iter()
        .fold(EXP_POLY[0], |p, &c| p.mul_add(r, c));
    let e = p.mul_add(r * r, r) + 1.0;
    scaled_and_saturated(x, e, shifted)
}

/// Returns `e · 2ⁿ` for the reduced `x`, with `expf`'s results outside its range: 0 below, `+∞`
/// above, NaN passed through.
///
/// 2ⁿ comes from the integer `shifted` already holds in its low mantissa bits (it sits in
/// [2²³, 2²⁴), where the ulp is 1): `shifted.to_bits() = 0x4B40_0000 + n`. The same number as
/// `n as i32`, but `as` saturates and maps NaN to 0, which compiles to scalar compares and keeps
/// the loop from vectorising; integer adds and shifts vectorise. The three-way select is the
/// shape LLVM turns into vector blends (a two-way one came out as branches in the flash
/// forward's loop, and that stayed scalar).
#[inline(always)]
fn scaled_and_saturated(x: f32, e: f32, shifted: f32) -> f32 {
    const BIAS: u32 = 127u32.wrapping_sub(0x4B40_0000);
    let y = e * f32::from_bits(shifted.to_bits().wrapping_add(BIAS) << 23);
    if x < EXP_MIN {
        0.0
    } else if x > EXP_MAX {
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

    /// Asserts `f` is within 2 ulp of std's `f32::exp` (glibc's `expf`, correctly rounded in
    /// practice) on a fine grid of [-87, 88].
    fn assert_within_two_ulp_of_std_exp(f: fn(f32) -> f32) {
        let mut worst = 0;
        for i in -87_000..=88_000 {
            let x = i as f32 * 1e-3;
            worst = worst.max(ulps(f(x), x.exp()));
        }
        assert!(worst <= 2, "worst error {worst} ulp");
    }

    /// Asserts `f` under- and overflows, and passes NaN, as `expf` does.
    fn assert_saturates_like_expf(f: fn(f32) -> f32) {
        assert_eq!(f(-1000.0), 0.0);
        assert_eq!(f(f32::NEG_INFINITY), 0.0);
        assert_eq!(f(1000.0), f32::INFINITY);
        assert!(f(f32::NAN).is_nan());
        assert_eq!(f(0.0), 1.0);
    }

    #[test]
    fn exp_is_within_two_ulp_of_std_exp() {
        assert_within_two_ulp_of_std_exp(exp);
    }

    #[test]
    fn fused_exp_is_within_two_ulp_of_std_exp_and_saturates_like_it() {
        assert_within_two_ulp_of_std_exp(exp_fused);
        assert_saturates_like_expf(exp_fused);
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
        assert_saturates_like_expf(exp);
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
