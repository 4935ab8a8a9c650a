//! Step alignment and pairing: which steps all traces share, which A trace goes with which B
//! trace, and where non-finite values start.

use crate::error::{Error, Result};
use crate::trace::Trace;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Which steps were compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alignment {
    /// Steps present in every trace of both arms (and the perturbation ensemble).
    pub common: usize,
    /// Steps every A trace has but some B trace lacks.
    pub only_a: Vec<u64>,
    /// Steps every B trace has but some A trace lacks.
    pub only_b: Vec<u64>,
    /// Steps shared by A and B but missing from some perturbation trace (dropped).
    pub missing_in_perturbation: usize,
    /// Leading common steps on which every value is finite (the statistical lane's range).
    pub usable: usize,
}

/// How A and B traces were paired for the exact, tolerance and paired-difference analyses.
///
/// Pairing decides which noise the difference is judged against: runs that share a seed differ
/// only by what changed (their difference curve is the evidence), runs with different seeds also
/// differ by seed-to-seed noise (only an ensemble can measure it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// By the seed each trace records (`seeds["init"]`, or `config.train.seed`).
    RecordedSeed,
    /// By position, because the user said the arms share seeds (`--paired`).
    Position,
    /// One run per arm and no recorded seeds: assumed to share a seed (`--unpaired` drops this).
    AssumedSameSeed,
    /// Not paired: recorded seeds differ, an ensemble without recorded seeds, or `--unpaired`.
    /// Exact and tolerance lanes still walk the traces by position.
    Unpaired,
}

impl Pairing {
    /// Whether A and B runs are matched seed for seed (paired tests apply).
    pub fn is_paired(self) -> bool {
        self != Pairing::Unpaired
    }

    /// One line for humans: how the runs were matched and how to change it.
    pub fn describe(self) -> &'static str {
        match self {
            Pairing::RecordedSeed => "paired by the seeds the traces record",
            Pairing::Position => "paired by position (--paired: the arms share seeds)",
            Pairing::AssumedSameSeed => {
                "no seeds recorded: assuming both runs used the same seed (pass --unpaired if they did not)"
            }
            Pairing::Unpaired => "unpaired: the arms are analysed as independent seeds",
        }
    }
}

/// How the user asked for runs to be paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairingMode {
    /// Pair by recorded seeds; a lone run per arm without seeds is assumed to share its seed.
    #[default]
    Auto,
    /// The arms share seeds: pair by position (`--paired`).
    Paired,
    /// The arms are independent (`--unpaired`).
    Unpaired,
}

/// Largest magnitude treated as a number: beyond it a loss has blown up, and squaring it in a
/// variance would overflow to infinity. Such values count as non-finite (a divergence).
pub const SANE_MAGNITUDE: f64 = 1e30;

/// Returns whether `x` is a usable value: finite and within [`SANE_MAGNITUDE`].
pub(crate) fn sane(x: f64) -> bool {
    x.is_finite() && x.abs() <= SANE_MAGNITUDE
}

/// Where one arm first had a value the other arm did not: NaN, ±inf or beyond
/// [`SANE_MAGNITUDE`]. Reports say "NaN at step 12 in B" from it rather than a distance that
/// cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonFiniteAt {
    /// The common step.
    pub step: u64,
    /// The arm with the value: "A" or "B".
    pub arm: String,
    /// The value as a reader would name it: "NaN", "+inf", "-inf", or "a value beyond ±1e30".
    pub value: String,
}

/// Names a value that is not [`sane`] for a reader.
fn name_insane(x: f64) -> String {
    match x {
        _ if x.is_nan() => "NaN".into(),
        f64::INFINITY => "+inf".into(),
        f64::NEG_INFINITY => "-inf".into(),
        _ => format!("a value beyond ±{SANE_MAGNITUDE:e}"),
    }
}

/// A trace that ends before the others (a crash, an early exit, a timeout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    /// The trace's name.
    pub trace: String,
    /// Which arm it belongs to (`a` or `b`).
    pub arm: String,
    /// Its last step.
    pub last_step: u64,
    /// The step the run should have reached (the other traces' last step, or `train_iters`).
    pub expected_last_step: u64,
}

/// Traces of both arms (and the perturbation ensemble) restricted to the common steps.
#[derive(Debug, Clone)]
pub(crate) struct Aligned {
    pub steps: Vec<u64>,
    pub a: Vec<Vec<f64>>,
    pub b: Vec<Vec<f64>>,
    pub p: Vec<Vec<f64>>,
    /// For each perturbation trace, the A trace it perturbs (same seed, else the first pair's).
    pub p_ref: Vec<usize>,
    pub pairs: Vec<(usize, usize)>,
    pub pairing: Pairing,
    pub usable: usize,
    pub alignment: Alignment,
    pub notes: Vec<String>,
    /// The earliest-ending trace of either arm, when one stopped before the others.
    pub stopped: Option<Stopped>,
}

/// Returns a trace's initialisation seed: `seeds["init"]`, else `config.train.seed`.
pub(crate) fn seed_key(t: &Trace) -> Option<u64> {
    t.seeds
        .get("init")
        .copied()
        .or_else(|| t.config.pointer("/train/seed").and_then(|v| v.as_u64()))
}

/// The steps at which every trace has `metric` (its own steps for a series at another cadence,
/// such as an eval loss every 50 steps; the trace's steps when it lacks the series, so the
/// missing series is reported by [`values_at`]).
fn step_set(traces: &[&Trace], metric: &str) -> BTreeSet<u64> {
    let steps_of = |t: &&Trace| -> BTreeSet<u64> {
        let steps = t.points(metric).map_or(&t.steps[..], |(s, _)| s);
        steps.iter().copied().collect()
    };
    let mut it = traces.iter();
    let first: BTreeSet<u64> = it.next().map(steps_of).unwrap_or_default();
    it.fold(first, |acc, t| {
        acc.intersection(&steps_of(t)).copied().collect()
    })
}

fn values_at(
    traces: &[&Trace],
    metric: &str,
    arm: &'static str,
    steps: &[u64],
) -> Result<Vec<Vec<f64>>> {
    traces
        .iter()
        .map(|t| {
            let (own, v) = t.points(metric).ok_or_else(|| Error::MissingMetric {
                metric: metric.to_string(),
                trace: t.name.clone(),
                arm,
            })?;
            // Traces built in memory may skip `Trace::validate`; refuse rather than misalign.
            if v.len() != own.len() {
                return Err(Error::InvalidTrace {
                    path: t.name.clone().into(),
                    reason: format!(
                        "series `{metric}` has {} values for {} steps",
                        v.len(),
                        own.len()
                    ),
                });
            }
            let index: BTreeMap<u64, f64> = own.iter().copied().zip(v.iter().copied()).collect();
            steps
                .iter()
                .map(|s| {
                    index.get(s).copied().ok_or_else(|| Error::InvalidTrace {
                        path: t.name.clone().into(),
                        reason: format!("step {s} listed but has no value"),
                    })
                })
                .collect()
        })
        .collect()
}

fn pair(a: &[&Trace], b: &[&Trace], mode: PairingMode) -> (Vec<(usize, usize)>, Pairing) {
    let by_position = || (0..a.len().min(b.len())).map(|i| (i, i)).collect();
    match mode {
        PairingMode::Paired => return (by_position(), Pairing::Position),
        PairingMode::Unpaired => return (by_position(), Pairing::Unpaired),
        PairingMode::Auto => {}
    }
    let ka: Vec<Option<u64>> = a.iter().map(|t| seed_key(t)).collect();
    let kb: Vec<Option<u64>> = b.iter().map(|t| seed_key(t)).collect();
    let unique = |k: &[Option<u64>]| {
        k.iter().all(Option::is_some) && k.iter().collect::<BTreeSet<_>>().len() == k.len()
    };
    if unique(&ka) && unique(&kb) {
        let pairs: Vec<(usize, usize)> = ka
            .iter()
            .enumerate()
            .filter_map(|(i, k)| kb.iter().position(|x| x == k).map(|j| (i, j)))
            .collect();
        if pairs.is_empty() {
            return (by_position(), Pairing::Unpaired);
        }
        return (pairs, Pairing::RecordedSeed);
    }
    if a.len() == 1 && b.len() == 1 {
        return (by_position(), Pairing::AssumedSameSeed);
    }
    (by_position(), Pairing::Unpaired)
}

/// Refuses an arm that lists the same run twice: a copy adds no information but would count as
/// another seed and inflate significance.
fn refuse_duplicates(traces: &[&Trace], metric: &str, arm: &'static str) -> Result<()> {
    for (i, x) in traces.iter().enumerate() {
        for y in &traces[i + 1..] {
            let same_file = x.origin.path.is_some() && x.origin.path == y.origin.path;
            // A last-bit nudge can vanish in a tiny model, so identical perturbation runs are
            // legitimate; identical *seeds* are a file given twice (or a seed never applied).
            let same_bits = arm != "perturbation"
                && x.steps == y.steps
                && match (x.points(metric), y.points(metric)) {
                    (Some((su, u)), Some((sv, v))) if su == sv => {
                        u.len() == v.len()
                            && u.iter().zip(v).all(|(p, q)| p.to_bits() == q.to_bits())
                    }
                    _ => false,
                };
            if same_file || same_bits {
                return Err(Error::DuplicateTrace {
                    arm,
                    first: x.name.clone(),
                    second: y.name.clone(),
                    why: if same_file {
                        "the same file is given twice".into()
                    } else {
                        format!("their `{metric}` series are bitwise identical")
                    },
                });
            }
        }
    }
    Ok(())
}

/// Returns the last step at which a trace logged `metric`.
fn last_step(t: &Trace, metric: &str) -> u64 {
    t.points(metric)
        .and_then(|(steps, _)| steps.last().copied())
        .unwrap_or(0)
}

/// Finds the trace of either arm that ended earliest, if it ended before the others (or before
/// the `train_iters` its own config asked for).
fn find_stopped(a: &[&Trace], b: &[&Trace], metric: &str) -> Option<Stopped> {
    let all = a.iter().map(|t| (t, "a")).chain(b.iter().map(|t| (t, "b")));
    let expected = a
        .iter()
        .chain(b)
        .map(|t| {
            // A series on its own cadence (eval every N steps) need not land on train_iters.
            let own_cadence = t.series.get(metric).is_some_and(|s| s.steps.is_some());
            let planned = t
                .config
                .pointer("/train/train_iters")
                .and_then(|v| v.as_u64())
                .filter(|_| !own_cadence);
            last_step(t, metric).max(planned.unwrap_or(0))
        })
        .max()?;
    all.filter(|(t, _)| last_step(t, metric) < expected)
        .min_by_key(|(t, _)| last_step(t, metric))
        .map(|(t, arm)| Stopped {
            trace: t.name.clone(),
            arm: arm.into(),
            last_step: last_step(t, metric),
            expected_last_step: expected,
        })
}

/// Lists an ensemble in a canonical order, by `key`, when `key` tells its traces apart.
///
/// The order an arm's seeds are listed in is not information, but every mean over traces is a
/// float sum, and a float sum depends on its order: a reordered arm gave p-values differing in
/// the last bits. When traces share a key (or lack one) they are paired by position, so their
/// order is information and is kept.
fn canonical<K: Ord>(traces: &[Trace], key: impl Fn(&Trace) -> Option<K>) -> Vec<&Trace> {
    let mut out: Vec<&Trace> = traces.iter().collect();
    let keys: Option<Vec<K>> = traces.iter().map(&key).collect();
    if keys.is_some_and(|k| k.iter().collect::<BTreeSet<_>>().len() == k.len()) {
        out.sort_by_cached_key(|t| key(t));
    }
    out
}

/// Aligns the arms on their common steps and pairs them.
pub(crate) fn align(
    a: &[Trace],
    b: &[Trace],
    p: &[Trace],
    metric: &str,
    mode: PairingMode,
    common_steps_only: bool,
) -> Result<Aligned> {
    if a.is_empty() {
        return Err(Error::EmptyArm { arm: "a" });
    }
    if b.is_empty() {
        return Err(Error::EmptyArm { arm: "b" });
    }
    let (a, b) = (canonical(a, seed_key), canonical(b, seed_key));
    // Perturbations of one seed share it; their full seed maps (`perturb`) tell them apart.
    let p = canonical(p, |t| seed_key(t).map(|k| (k, t.seeds.clone())));
    let (a, b, p) = (&a[..], &b[..], &p[..]);
    refuse_duplicates(a, metric, "a")?;
    refuse_duplicates(b, metric, "b")?;
    refuse_duplicates(p, metric, "perturbation")?;
    let arms_end = a
        .iter()
        .chain(b)
        .map(|t| last_step(t, metric))
        .max()
        .unwrap_or(0);
    if !common_steps_only {
        if let Some(short) = p.iter().find(|t| last_step(t, metric) < arms_end) {
            return Err(Error::ShortYardstick {
                trace: short.name.clone(),
                last_step: last_step(short, metric),
                arms_last_step: arms_end,
            });
        }
    }
    let (sa, sb) = (step_set(a, metric), step_set(b, metric));
    let ab: BTreeSet<u64> = sa.intersection(&sb).copied().collect();
    let common: Vec<u64> = if p.is_empty() {
        ab.iter().copied().collect()
    } else {
        ab.intersection(&step_set(p, metric)).copied().collect()
    };
    if common.is_empty() {
        let other = if ab.is_empty() { &b[0] } else { &p[0] };
        return Err(Error::ArmsShareNoStep {
            a: a[0].name.clone(),
            b: other.name.clone(),
        });
    }
    if let [step] = common[..] {
        return Err(Error::SingleCommonStep {
            a: a[0].name.clone(),
            b: b[0].name.clone(),
            step,
        });
    }
    let (va, vb, vp) = (
        values_at(a, metric, "a", &common)?,
        values_at(b, metric, "b", &common)?,
        values_at(p, metric, "perturbation", &common)?,
    );
    let (pairs, pairing) = pair(a, b, mode);
    let p_ref = p
        .iter()
        .map(|t| {
            let k = seed_key(t);
            a.iter()
                .position(|x| k.is_some() && seed_key(x) == k)
                .unwrap_or(pairs[0].0)
        })
        .collect();
    let usable = (0..common.len())
        .find(|&s| va.iter().chain(&vb).chain(&vp).any(|v| !sane(v[s])))
        .unwrap_or(common.len());
    let mut notes = Vec::new();
    if usable < common.len() {
        notes.push(format!(
            "non-finite (or beyond ±{SANE_MAGNITUDE:e}) value at step {}: the statistical lane uses the {usable} steps before it",
            common[usable]
        ));
    }
    let stopped = if common_steps_only {
        if find_stopped(a, b, metric).is_some() {
            notes.push(format!(
                "--common-steps: the arms end at different steps; only the {} common steps are compared",
                common.len()
            ));
        }
        None
    } else {
        find_stopped(a, b, metric)
    };
    let alignment = Alignment {
        common: common.len(),
        only_a: sa.difference(&sb).copied().collect(),
        only_b: sb.difference(&sa).copied().collect(),
        missing_in_perturbation: ab.len() - common.len(),
        usable,
    };
    Ok(Aligned {
        steps: common,
        a: va,
        b: vb,
        p: vp,
        p_ref,
        pairs,
        pairing,
        usable,
        alignment,
        notes,
        stopped,
    })
}

impl Aligned {
    /// Returns whether some common step has a finite value in every trace of both arms.
    pub fn any_finite_step(&self) -> bool {
        (0..self.steps.len()).any(|s| self.a.iter().chain(&self.b).all(|v| sane(v[s])))
    }

    /// Returns where one arm first has a non-finite value and the other none: the common step,
    /// the arm and the value.
    pub fn one_sided_non_finite(&self) -> Option<NonFiniteAt> {
        let finite = |arm: &[Vec<f64>], s: usize| arm.iter().all(|v| sane(v[s]));
        let s = (0..self.steps.len()).find(|&s| finite(&self.a, s) != finite(&self.b, s))?;
        let (arm, traces) = if finite(&self.a, s) {
            ("B", &self.b)
        } else {
            ("A", &self.a)
        };
        let value = traces.iter().map(|v| v[s]).find(|&x| !sane(x))?;
        Some(NonFiniteAt {
            step: self.steps[s],
            arm: arm.into(),
            value: name_insane(value),
        })
    }
}
