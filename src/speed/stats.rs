//! The numbers a speed table prints: quartiles of one cell's timed runs (the same definition as
//! Python's `statistics.quantiles`, so both sides of a ratio are summarised alike) and the paired
//! ratio of two interleaved series of rounds. No timing happens here.

use serde::{Deserialize, Serialize};

/// One cell's timed runs, summarised: what a child process prints as its one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Median wall time of a run, seconds.
    pub median_s: f64,
    /// First quartile, seconds.
    pub q1_s: f64,
    /// Third quartile, seconds.
    pub q3_s: f64,
    /// Timed runs (after warm-up).
    pub samples: usize,
    /// Minor page faults per timed run, when the cell counted them (lossdiff's do): memory the
    /// run had to map afresh instead of reusing, which a steady training loop should not need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor_faults_per_run: Option<f64>,
    /// PyTorch's version, when the cell is PyTorch's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch: Option<String>,
}

impl Timing {
    /// Summarises timed runs; `None` when there are none or one is not finite.
    ///
    /// Quartiles use the `exclusive` method of Python's `statistics.quantiles(data, n=4)`, which
    /// the PyTorch script uses; one run is its own quartiles.
    ///
    /// Time: `O(n log n)`.
    pub fn from_runs(runs: &[f64]) -> Option<Timing> {
        if runs.is_empty() || runs.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let mut data = runs.to_vec();
        data.sort_by(f64::total_cmp);
        let [q1_s, median_s, q3_s] = match data.len() {
            1 => [data[0]; 3],
            _ => [1, 2, 3].map(|i| exclusive_quartile(&data, i)),
        };
        Some(Timing {
            median_s,
            q1_s,
            q3_s,
            samples: data.len(),
            minor_faults_per_run: None,
            torch: None,
        })
    }
}

/// Returns the `i`-th quartile (1..=3) of sorted `data` (at least 2 values) by Python's
/// `statistics.quantiles(data, n=4, method="exclusive")`.
///
/// ```text
/// m = len + 1;  j = clamp(i·m div 4, 1, len − 1);  δ = i·m − 4j
/// q_i = (data[j−1]·(4 − δ) + data[j]·δ) / 4
/// ```
fn exclusive_quartile(data: &[f64], i: usize) -> f64 {
    let len = data.len();
    let m = len + 1;
    let j = (i * m / 4).clamp(1, len - 1);
    let delta = i as f64 * m as f64 - 4.0 * j as f64;
    (data[j - 1] * (4.0 - delta) + data[j] * delta) / 4.0
}

/// Returns the median of `values` (the mean of the middle two for an even count); `None` when
/// empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The ratio of two interleaved series, one value per round, and how far the rounds spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedRatio {
    /// Median of the per-round ratios.
    pub median: f64,
    /// Smallest per-round ratio.
    pub min: f64,
    /// Largest per-round ratio.
    pub max: f64,
    /// Rounds paired.
    pub rounds: usize,
}

/// Returns the ratio `a / b` of two series measured in the same rounds, as the median of the
/// per-round ratios with their range.
///
/// Pairing by round cancels the machine's slow drift (a shared VM's speed wanders by tens of
/// percent within minutes): each round's two cells ran back to back.
///
/// # Formula
/// ```text
/// r_k = a_k / b_k   (round k);   ratio = median_k r_k,  range = [min_k r_k, max_k r_k]
/// ```
///
/// # Errors
/// `None` when the series are empty, differ in length, or a ratio is not finite (a zero time).
///
/// # Examples
/// ```text
/// paired_ratio(&[50, 48, 60], &[80, 70, 75]) = 0.686 (0.625–0.800), 3 rounds
/// ```
pub fn paired_ratio(a: &[f64], b: &[f64]) -> Option<PairedRatio> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    if ratios.iter().any(|r| !r.is_finite()) {
        return None;
    }
    Some(PairedRatio {
        median: median(&ratios)?,
        min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        rounds: ratios.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn quartiles_match_python_statistics_quantiles() {
        // >>> statistics.quantiles([5, 1, 4, 2, 3], n=4)  ->  [1.5, 3.0, 4.5]
        let t = Timing::from_runs(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_abs_diff_eq!(t.q1_s, 1.5, epsilon = 1e-12);
        assert_abs_diff_eq!(t.median_s, 3.0, epsilon = 1e-12);
        assert_abs_diff_eq!(t.q3_s, 4.5, epsilon = 1e-12);
        assert_eq!(t.samples, 5);
        // >>> statistics.quantiles([1, 2, 3, 10], n=4)  ->  [1.25, 2.5, 8.25]
        let t = Timing::from_runs(&[10.0, 2.0, 3.0, 1.0]).unwrap();
        assert_abs_diff_eq!(t.q1_s, 1.25, epsilon = 1e-12);
        assert_abs_diff_eq!(t.median_s, 2.5, epsilon = 1e-12);
        assert_abs_diff_eq!(t.q3_s, 8.25, epsilon = 1e-12);
        // >>> statistics.quantiles([1, 3], n=4)  ->  [0.5, 2.0, 3.5]
        let t = Timing::from_runs(&[3.0, 1.0]).unwrap();
        assert_abs_diff_eq!(t.q1_s, 0.5, epsilon = 1e-12);
        assert_abs_diff_eq!(t.median_s, 2.0, epsilon = 1e-12);
        assert_abs_diff_eq!(t.q3_s, 3.5, epsilon = 1e-12);
    }

    #[test]
    fn one_run_is_its_own_quartiles_and_no_runs_or_a_nan_is_no_timing() {
        let t = Timing::from_runs(&[0.25]).unwrap();
        assert_eq!((t.q1_s, t.median_s, t.q3_s), (0.25, 0.25, 0.25));
        assert_eq!(Timing::from_runs(&[]), None);
        assert_eq!(Timing::from_runs(&[0.1, f64::NAN]), None);
    }

    #[test]
    fn paired_ratio_is_the_median_of_per_round_ratios_with_their_range() {
        // Rounds: 50/80 = 0.625, 48/70 = 0.6857, 60/75 = 0.8. The ratio of the medians
        // (50/75 = 0.667) would mix rounds; the paired median does not.
        let r = paired_ratio(&[50.0, 48.0, 60.0], &[80.0, 70.0, 75.0]).unwrap();
        assert_abs_diff_eq!(r.median, 48.0 / 70.0, epsilon = 1e-12);
        assert_abs_diff_eq!(r.min, 0.625, epsilon = 1e-12);
        assert_abs_diff_eq!(r.max, 0.8, epsilon = 1e-12);
        assert_eq!(r.rounds, 3);
        // An even count takes the mean of the middle two ratios: 0.5 and 1.0.
        let r = paired_ratio(&[1.0, 2.0, 3.0, 8.0], &[4.0, 4.0, 3.0, 4.0]).unwrap();
        assert_abs_diff_eq!(r.median, 0.75, epsilon = 1e-12);
        assert_abs_diff_eq!(r.min, 0.25, epsilon = 1e-12);
        assert_abs_diff_eq!(r.max, 2.0, epsilon = 1e-12);
    }

    #[test]
    fn unpaired_empty_or_zero_time_series_have_no_ratio() {
        assert_eq!(paired_ratio(&[], &[]), None);
        assert_eq!(paired_ratio(&[1.0, 2.0], &[1.0]), None);
        assert_eq!(paired_ratio(&[1.0], &[0.0]), None);
    }
}
