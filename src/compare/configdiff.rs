//! Config and environment differences between the arms: every resolved config field and every
//! fingerprint field that differs, split into the factors the experiment declared and the ones it
//! did not, plus a warning for any stochastic component (dropout) switched on.
//!
//! Not counted as differences, but shown: the importer's provenance (`import.*`: file format,
//! raw series names — two formats always differ there), and keys only one arm records (a
//! Megatron log records `lr`, a TensorBoard file may record nothing: absence is not a value).
//! A recorded schedule series (`lr`) that differs is a config difference in all but name, and
//! is reported beside them with the first step it differs at.

use crate::trace::{flatten_json, Trace, LR};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Which arm a finding concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArmId {
    /// Arm A (reference).
    A,
    /// Arm B.
    B,
}

/// One field whose value differs between the arms (constant within each arm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDiff {
    /// Dotted key, e.g. `model.attention_dropout`.
    pub key: String,
    /// A's value (None when A lacks the field).
    pub a: Option<Value>,
    /// B's value (None when B lacks the field).
    pub b: Option<Value>,
}

/// A stochastic component switched on in some trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StochasticWarning {
    /// The config key (ending in `dropout`).
    pub key: String,
    /// The arm.
    pub arm: ArmId,
    /// Its value.
    pub value: f64,
}

/// Differences between the arms' resolved configs and environment fingerprints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigDiff {
    /// Config fields that differ and are declared factors (or lie under one).
    pub declared: Vec<FieldDiff>,
    /// Config fields that differ but were not declared: confounds.
    pub undeclared: Vec<FieldDiff>,
    /// Declared factors whose value is the same in both arms.
    pub declared_but_equal: Vec<String>,
    /// Fingerprint (environment) fields that differ: CPU, versions, threads, …
    pub environment: Vec<FieldDiff>,
    /// Fields that vary within an arm (seeds across an ensemble, …); not compared across arms.
    pub varies_within_arm: Vec<String>,
    /// Dropout (or other `*dropout`) keys with a value > 0.
    pub stochastic: Vec<StochasticWarning>,
    /// Importer provenance (`import.*`) that differs: shown, never a config difference.
    #[serde(default)]
    pub provenance: Vec<FieldDiff>,
    /// Config keys recorded by one arm only (the other records nothing there): shown, not counted.
    #[serde(default)]
    pub one_arm_only: Vec<FieldDiff>,
    /// Recorded schedule series (`lr`) that differ between the arms.
    #[serde(default)]
    pub schedules: Vec<ScheduleDiff>,
}

/// A schedule series recorded by both arms that differs: the config behind it differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleDiff {
    /// The series (`lr`).
    pub series: String,
    /// The first common step at which it differs.
    pub from_step: u64,
    /// A's value there.
    pub a: f64,
    /// B's value there.
    pub b: f64,
    /// Whether a declared factor names the series (`--declared lr`).
    pub declared: bool,
}

/// Series set by the config alone, so a difference in them is a config difference.
pub const SCHEDULE_SERIES: [&str; 1] = [LR];

/// Relative difference below which two schedule values are the same setting: logs print the lr
/// with 4–7 significant digits (Megatron `1.500000E-04`), and the same schedule computed in f32
/// and f64 differs in the 8th.
pub const SCHEDULE_RTOL: f64 = 1e-5;

/// Returns the first common step at which `a` and `b` differ beyond [`SCHEDULE_RTOL`].
fn first_schedule_difference(a: (&[u64], &[f64]), b: (&[u64], &[f64])) -> Option<(u64, f64, f64)> {
    let index: BTreeMap<u64, f64> = b.0.iter().copied().zip(b.1.iter().copied()).collect();
    a.0.iter().zip(a.1).find_map(|(step, &x)| {
        let y = *index.get(step)?;
        let same = x == y || (x - y).abs() <= SCHEDULE_RTOL * x.abs().max(y.abs());
        let both_nan = x.is_nan() && y.is_nan();
        (!(same || both_nan)).then_some((*step, x, y))
    })
}

/// Compares each schedule series of the arms' first traces (a schedule does not vary by seed).
fn schedule_diffs(a: &[Trace], b: &[Trace], factors: &[String]) -> Vec<ScheduleDiff> {
    let (Some(ta), Some(tb)) = (a.first(), b.first()) else {
        return Vec::new();
    };
    SCHEDULE_SERIES
        .iter()
        .filter_map(|name| {
            let (from_step, x, y) = first_schedule_difference(ta.points(name)?, tb.points(name)?)?;
            Some(ScheduleDiff {
                series: name.to_string(),
                from_step,
                a: x,
                b: y,
                declared: (factors.iter())
                    .any(|f| f.as_str() == *name || f.rsplit('.').next() == Some(*name)),
            })
        })
        .collect()
}

/// The importer's own section of an imported trace's config.
const PROVENANCE: &str = "import";

/// Per key, the distinct values an arm takes (`None` = missing in some trace).
fn values_by_key(
    traces: &[Trace],
    field: fn(&Trace) -> &Value,
) -> BTreeMap<String, BTreeSet<Option<String>>> {
    let flat: Vec<BTreeMap<String, Value>> =
        traces.iter().map(|t| flatten_json(field(t))).collect();
    let keys: BTreeSet<&String> = flat.iter().flat_map(|f| f.keys()).collect();
    keys.into_iter()
        .map(|k| {
            let vals = flat
                .iter()
                .map(|f| f.get(k).map(Value::to_string))
                .collect();
            (k.clone(), vals)
        })
        .collect()
}

fn parse(v: &Option<String>) -> Option<Value> {
    v.as_ref().and_then(|s| serde_json::from_str(s).ok())
}

/// Splits keys into cross-arm differences and keys varying within an arm.
fn differences(
    a: &[Trace],
    b: &[Trace],
    field: fn(&Trace) -> &Value,
    varies: &mut BTreeSet<String>,
) -> Vec<FieldDiff> {
    let (va, vb) = (values_by_key(a, field), values_by_key(b, field));
    let keys: BTreeSet<&String> = va.keys().chain(vb.keys()).collect();
    let missing = BTreeSet::from([None]);
    let mut out = Vec::new();
    for k in keys {
        let (sa, sb) = (va.get(k).unwrap_or(&missing), vb.get(k).unwrap_or(&missing));
        if sa.len() > 1 || sb.len() > 1 {
            varies.insert(k.clone());
        } else if sa != sb {
            let first = |s: &BTreeSet<Option<String>>| s.iter().next().and_then(parse);
            out.push(FieldDiff {
                key: k.clone(),
                a: first(sa),
                b: first(sb),
            });
        }
    }
    out
}

fn is_declared(key: &str, factors: &[String]) -> bool {
    factors.iter().any(|f| {
        key == f
            || key
                .strip_prefix(f.as_str())
                .is_some_and(|r| r.starts_with('.'))
    })
}

/// Diffs the resolved configs and fingerprints of two arms.
///
/// A key is compared across arms only when it is constant within each arm; keys that vary within
/// an arm (typically seeds) are listed in `varies_within_arm`. A config key is *declared* when it
/// equals a factor or lies under one (`model` declares `model.attention`).
pub fn diff_configs(a: &[Trace], b: &[Trace], factors: &[String]) -> ConfigDiff {
    let mut varies = BTreeSet::new();
    let config = differences(a, b, |t| &t.config, &mut varies);
    let environment = differences(a, b, |t| &t.fingerprint, &mut varies);
    let (provenance, config): (Vec<FieldDiff>, Vec<FieldDiff>) =
        (config.into_iter()).partition(|d| is_declared(&d.key, &[PROVENANCE.to_string()]));
    // Varying within an arm is about seeds; provenance (file paths) always varies.
    varies.retain(|k| !is_declared(k, &[PROVENANCE.to_string()]));
    let (one_arm_only, config): (Vec<FieldDiff>, Vec<FieldDiff>) = (config.into_iter())
        .partition(|d| (d.a.is_none() || d.b.is_none()) && !is_declared(&d.key, factors));
    let (declared, undeclared): (Vec<FieldDiff>, Vec<FieldDiff>) = config
        .into_iter()
        .partition(|d| is_declared(&d.key, factors));
    let declared_but_equal = factors
        .iter()
        .filter(|f| {
            !declared
                .iter()
                .any(|d| is_declared(&d.key, std::slice::from_ref(f)))
        })
        .cloned()
        .collect();
    let mut stochastic = Vec::new();
    for (arm, traces) in [(ArmId::A, a), (ArmId::B, b)] {
        let mut seen = BTreeSet::new();
        for t in traces {
            for (k, v) in flatten_json(&t.config) {
                let value = v.as_f64().unwrap_or(0.0);
                if k.ends_with("dropout") && value > 0.0 && seen.insert(k.clone()) {
                    stochastic.push(StochasticWarning { key: k, arm, value });
                }
            }
        }
    }
    ConfigDiff {
        declared,
        undeclared,
        declared_but_equal,
        environment,
        varies_within_arm: varies.into_iter().collect(),
        stochastic,
        provenance,
        one_arm_only,
        schedules: schedule_diffs(a, b, factors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Origin, Series, TRACE_SCHEMA_VERSION};
    use serde_json::json;

    fn trace(config: Value, lr: Vec<f64>) -> Trace {
        let steps: Vec<u64> = (1..=lr.len() as u64).collect();
        Trace {
            schema_version: TRACE_SCHEMA_VERSION,
            name: "t".into(),
            origin: Origin {
                format: "jsonl".into(),
                path: None,
            },
            config,
            fingerprint: json!({}),
            seeds: BTreeMap::new(),
            loss_floor: None,
            steps,
            series: BTreeMap::from([(LR.to_string(), Series::from_f64(lr))]),
        }
    }

    #[test]
    fn provenance_and_one_arm_keys_are_shown_not_counted() {
        let a = trace(
            json!({"import": {"format": "jsonl"}, "lr": 0.001, "only_a": 1}),
            vec![0.1; 3],
        );
        let b = trace(
            json!({"import": {"format": "csv"}, "lr": 0.0015}),
            vec![0.1; 3],
        );
        let d = diff_configs(&[a], &[b], &[]);
        let keys = |v: &[FieldDiff]| v.iter().map(|f| f.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&d.undeclared), ["lr"]);
        assert_eq!(keys(&d.provenance), ["import.format"]);
        assert_eq!(keys(&d.one_arm_only), ["only_a"]);
        assert!(d.schedules.is_empty());
    }

    #[test]
    fn a_differing_lr_series_is_reported_from_its_first_differing_step() {
        let a = trace(json!({}), vec![1e-3, 2e-3, 3e-3, 3e-3]);
        // Rounding-level differences (a schedule printed with 7 digits) are the same setting.
        let b = trace(json!({}), vec![1e-3 * (1.0 + 1e-7), 2e-3, 4.5e-3, 4.5e-3]);
        let d = diff_configs(std::slice::from_ref(&a), std::slice::from_ref(&b), &[]);
        assert_eq!(
            d.schedules,
            [ScheduleDiff {
                series: LR.into(),
                from_step: 3,
                a: 3e-3,
                b: 4.5e-3,
                declared: false
            }]
        );
        let d = diff_configs(&[a], &[b], &["train.lr".into()]);
        assert!(d.schedules[0].declared);
    }
}
