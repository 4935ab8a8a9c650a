//! Calibration on curves lossdiff did not train: synthetic loss curves with the noise real runs
//! have (AR(1) step noise, per-seed level offsets), in the shapes users bring — single curves,
//! seed ensembles, paired seeds — with nothing changed (null families: how often a verdict says
//! `diverged` when it must not) and with known changes (detection families: offsets, late ramps
//! after a bitwise-identical prefix, transient bumps that rejoin, runs that stop early).
//!
//! Every family is a pure function of its index, so the table is reproducible bit for bit.
//! Curves follow `shared/notes/verdicts.md`: `1.5 + 2·e^(−t/40)`, 300 steps.

use super::wilson;
use crate::compare::{compare, CompareSettings, Comparison, PairingMode, Verdict};
use crate::error::Result;
use crate::rng::{hash_words, normal};
use crate::trace::{Origin, Series, Trace, LM_LOSS, TRACE_SCHEMA_VERSION};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Steps per synthetic run.
pub const STEPS: usize = 300;

/// Which question a family asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Nothing changed: `diverged` is a false positive.
    Null,
    /// A change beyond the margin: `diverged` is a detection.
    Change,
    /// A change inside the margin: `diverged` is wrong, `equivalent` right.
    Inside,
}

/// One family's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyRow {
    /// What the family is.
    pub family: String,
    /// What the verdict should say.
    pub expect: Expect,
    /// Cases compared.
    pub cases: usize,
    /// Cases called `diverged`.
    pub diverged: usize,
    /// Wilson 95 % interval of the diverged rate.
    pub rate_ci: (f64, f64),
    /// Cases called `equivalent`.
    pub equivalent: usize,
    /// Cases called `inconclusive`.
    pub inconclusive: usize,
    /// The true onset step, when the family has one.
    pub true_onset: Option<u64>,
    /// Onset error (estimated − true) over detections: median, and the 10th and 90th percentiles.
    pub onset_error: Option<(f64, f64, f64)>,
}

/// A run of the synthetic calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticCalibration {
    /// Significance level.
    pub alpha: f64,
    /// One row per family.
    pub rows: Vec<FamilyRow>,
}

fn curve() -> Vec<f64> {
    (0..STEPS)
        .map(|t| 1.5 + 2.0 * (-(t as f64) / 40.0).exp())
        .collect()
}

fn ar1(key: u64, phi: f64, sd: f64) -> Vec<f64> {
    // Started from the stationary distribution, so early steps are as noisy as late ones.
    let mut x = normal(key, 0) / (1.0 - phi * phi).sqrt();
    (0..STEPS as u64)
        .map(|i| {
            if i > 0 {
                x = phi * x + normal(key, i);
            }
            x * sd
        })
        .collect()
}

fn trace(name: &str, seed: Option<u64>, loss: Vec<f64>) -> Trace {
    Trace {
        schema_version: TRACE_SCHEMA_VERSION,
        name: name.into(),
        origin: Origin {
            format: "synthetic".into(),
            path: None,
        },
        config: serde_json::json!({}),
        fingerprint: serde_json::json!({}),
        seeds: seed.map(|s| ("init".to_string(), s)).into_iter().collect(),
        loss_floor: None,
        steps: (1..=loss.len() as u64).collect(),
        series: BTreeMap::from([(LM_LOSS.to_string(), Series::from_f64(loss))]),
    }
}

/// One synthetic seed: the curve, a level offset (sd `level`) and AR(1) noise (φ, sd 0.01).
fn seed_run(key: u64, phi: f64, level: f64) -> Vec<f64> {
    let off = level * normal(hash_words(&[key, 7]), 0);
    curve()
        .iter()
        .zip(ar1(key, phi, 0.01))
        .map(|(c, e)| c + off + e)
        .collect()
}

fn add(x: &[f64], f: impl Fn(usize) -> f64) -> Vec<f64> {
    x.iter().enumerate().map(|(t, v)| v + f(t)).collect()
}

/// One case: arm A, arm B and the settings to compare them with.
type Case = (Vec<Trace>, Vec<Trace>, CompareSettings);

/// A family: a name, what it expects, its true onset, and a case generator.
struct Family {
    name: String,
    expect: Expect,
    true_onset: Option<u64>,
    make: Box<dyn Fn(u64) -> Case>,
}

fn settings(pairing: PairingMode) -> CompareSettings {
    CompareSettings {
        pairing,
        ..CompareSettings::default()
    }
}

fn ensemble(base: u64, k: u64, phi: f64, level: f64, seeded: bool) -> Vec<Trace> {
    (0..k)
        .map(|s| {
            let key = hash_words(&[base, s]);
            trace("s", seeded.then_some(key), seed_run(key, phi, level))
        })
        .collect()
}

fn families() -> Vec<Family> {
    let mut f = Vec::new();
    for phi in [0.6, 0.9, 0.97] {
        f.push(Family {
            name: format!("single curves, seeds not recorded (same seed assumed), AR(1) φ {phi}"),
            expect: Expect::Null,
            true_onset: None,
            make: Box::new(move |r| {
                let a = trace("a", None, seed_run(hash_words(&[r, 1]), phi, 0.0));
                let b = trace("b", None, seed_run(hash_words(&[r, 2]), phi, 0.0));
                (vec![a], vec![b], CompareSettings::default())
            }),
        });
    }
    f.push(Family {
        name: "single curves, different seeds recorded, level offsets, φ 0.9".into(),
        expect: Expect::Null,
        true_onset: None,
        make: Box::new(|r| {
            let a = trace("a", Some(1), seed_run(hash_words(&[r, 1]), 0.9, 0.01));
            let b = trace("b", Some(2), seed_run(hash_words(&[r, 2]), 0.9, 0.01));
            (vec![a], vec![b], CompareSettings::default())
        }),
    });
    for phi in [0.6, 0.9, 0.97] {
        for level in [0.0, 0.01] {
            f.push(Family {
                name: format!(
                    "seed ensembles 3 v 3, independent, φ {phi}{}",
                    if level > 0.0 { ", level offsets" } else { "" }
                ),
                expect: Expect::Null,
                true_onset: None,
                make: Box::new(move |r| {
                    (
                        ensemble(hash_words(&[r, 1]), 3, phi, level, true),
                        ensemble(hash_words(&[r, 2]), 3, phi, level, true),
                        CompareSettings::default(),
                    )
                }),
            });
        }
    }
    // Paired seeds: B_i is A_i plus its own small noise (what rounding chaos adds).
    let paired = |r: u64, shift: &dyn Fn(usize) -> f64| {
        let a = ensemble(hash_words(&[r, 1]), 3, 0.9, 0.01, true);
        let b: Vec<Trace> = a
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let e = ar1(hash_words(&[r, 3, i as u64]), 0.9, 0.001);
                let l = add(&t.series[LM_LOSS].values, |s| e[s] + shift(s));
                trace("b", t.seeds.get("init").copied(), l)
            })
            .collect();
        (a, b, CompareSettings::default())
    };
    f.push(Family {
        name: "paired seeds 3 v 3, level offsets, no change".into(),
        expect: Expect::Null,
        true_onset: None,
        make: Box::new(move |r| paired(r, &|_| 0.0)),
    });
    f.push(Family {
        name: "paired seeds 3 v 3, offset +2 % from step 1".into(),
        expect: Expect::Change,
        true_onset: Some(1),
        make: Box::new(move |r| paired(r, &|_| 0.02 * 1.5)),
    });
    f.push(Family {
        name: "paired seeds 3 v 3, offset +0.013 % (inside the margin)".into(),
        expect: Expect::Inside,
        true_onset: None,
        make: Box::new(move |r| paired(r, &|_| 1.3e-4 * 1.5)),
    });
    f.push(Family {
        name: "unpaired files (no seeds) told --paired, offset +2 %".into(),
        expect: Expect::Change,
        true_onset: Some(1),
        make: Box::new(move |r| {
            let (a, b, _) = paired(r, &|_| 0.02 * 1.5);
            let strip = |v: Vec<Trace>| {
                v.into_iter()
                    .map(|mut t| {
                        t.seeds.clear();
                        t
                    })
                    .collect::<Vec<_>>()
            };
            (strip(a), strip(b), settings(PairingMode::Paired))
        }),
    });
    // A late ramp after a bitwise-identical prefix (a bug acting from step 153).
    let ramp = |t: usize| {
        if t >= 152 {
            0.015 * 1.5 * (t - 151) as f64 / (STEPS - 152) as f64
        } else {
            0.0
        }
    };
    f.push(Family {
        name: "single curve, identical to step 152, then a ramp to +1.5 %".into(),
        expect: Expect::Change,
        true_onset: Some(153),
        make: Box::new(move |r| {
            let a = seed_run(hash_words(&[r, 1]), 0.9, 0.0);
            let b = add(&a, ramp);
            (
                vec![trace("a", Some(1), a)],
                vec![trace("b", Some(1), b)],
                CompareSettings::default(),
            )
        }),
    });
    f.push(Family {
        name: "paired seeds 3 v 3 with chaos noise, ramp to +1.5 % from step 153".into(),
        expect: Expect::Change,
        true_onset: Some(153),
        make: Box::new(move |r| paired(r, &ramp)),
    });
    f.push(Family {
        name: "single curve, transient bump −0.3 over steps 11–70, then rejoins".into(),
        expect: Expect::Change,
        true_onset: Some(11),
        make: Box::new(|r| {
            let a = seed_run(hash_words(&[r, 1]), 0.9, 0.0);
            let e = ar1(hash_words(&[r, 4]), 0.9, 0.001);
            let b = add(&a, |t| {
                e[t] + if (10..70).contains(&t) {
                    -0.3 * (std::f64::consts::PI * (t - 10) as f64 / 60.0).sin()
                } else {
                    0.0
                }
            });
            (
                vec![trace("a", Some(1), a)],
                vec![trace("b", Some(1), b)],
                CompareSettings::default(),
            )
        }),
    });
    f.push(Family {
        name: "single curve, B stopped at step 150 of 300".into(),
        expect: Expect::Change,
        true_onset: Some(151),
        make: Box::new(|r| {
            let a = seed_run(hash_words(&[r, 1]), 0.9, 0.0);
            let b = a[..150].to_vec();
            (
                vec![trace("a", Some(1), a)],
                vec![trace("b", Some(1), b)],
                CompareSettings::default(),
            )
        }),
    });
    f
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn row(f: &Family, cs: &[Comparison]) -> FamilyRow {
    let count = |p: &dyn Fn(&Verdict) -> bool| cs.iter().filter(|c| p(&c.verdict)).count();
    let diverged = count(&|v| matches!(v, Verdict::Diverged { .. }));
    let mut errors: Vec<f64> = cs
        .iter()
        .filter_map(|c| match (&c.verdict, f.true_onset) {
            (Verdict::Diverged { onset_step, .. }, Some(t)) => Some(*onset_step as f64 - t as f64),
            _ => None,
        })
        .collect();
    errors.sort_by(f64::total_cmp);
    FamilyRow {
        family: f.name.clone(),
        expect: f.expect,
        cases: cs.len(),
        diverged,
        rate_ci: wilson(diverged, cs.len()),
        equivalent: count(&|v| matches!(v, Verdict::Equivalent)),
        inconclusive: count(&|v| matches!(v, Verdict::Inconclusive { .. })),
        true_onset: f.true_onset,
        onset_error: (!errors.is_empty()).then(|| {
            (
                quantile(&errors, 0.5),
                quantile(&errors, 0.1),
                quantile(&errors, 0.9),
            )
        }),
    }
}

/// Runs every synthetic family with `cases` cases each.
///
/// # Errors
/// A comparison error (none is expected on these curves: it would be a bug).
pub fn calibrate_synthetic(cases: u64) -> Result<SyntheticCalibration> {
    let alpha = CompareSettings::default().alpha;
    let rows = families()
        .iter()
        .map(|f| {
            let cs = (0..cases)
                .map(|r| {
                    let (a, b, s) = (f.make)(hash_words(&[r, 0x5EED]));
                    compare(&a, &b, &[], &[], &s)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(row(f, &cs))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SyntheticCalibration { alpha, rows })
}

/// Renders the synthetic families as a Markdown table.
pub fn to_markdown(c: &SyntheticCalibration) -> String {
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let mut s = format!(
        "Synthetic curves, {STEPS} steps, alpha = {}. Null rows: `diverged` is a false positive; change rows: a detection; inside-margin rows: `diverged` is wrong.\n\n",
        c.alpha
    );
    s += "| family | expect | cases | diverged (95% CI) | equivalent / inconclusive | onset error: median [10th, 90th pct] |\n|---|---|---|---|---|---|\n";
    for r in &c.rows {
        let onset = match (r.onset_error, r.true_onset) {
            (Some((m, lo, hi)), Some(t)) => format!("{m:+.0} [{lo:+.0}, {hi:+.0}] (true {t})"),
            _ => "–".into(),
        };
        s += &format!(
            "| {} | {} | {} | {} ({}–{}) | {} / {} | {} |\n",
            r.family,
            match r.expect {
                Expect::Null => "null",
                Expect::Change => "change",
                Expect::Inside => "inside margin",
            },
            r.cases,
            r.diverged,
            pct(r.rate_ci.0),
            pct(r.rate_ci.1),
            r.equivalent,
            r.inconclusive,
            onset
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reduced run CI affords: every null family within its bound, every change caught.
    #[test]
    fn null_families_hold_alpha_and_changes_are_caught() {
        let c = calibrate_synthetic(40).unwrap();
        for r in &c.rows {
            match r.expect {
                // The Wilson interval must reach down to alpha.
                Expect::Null | Expect::Inside => assert!(r.rate_ci.0 <= c.alpha, "{r:?}"),
                Expect::Change => assert!(r.diverged >= 36, "{r:?}"),
            }
        }
    }
}
