//! Config and environment differences between the arms: every resolved config field and every
//! fingerprint field that differs, split into the factors the experiment declared and the ones it
//! did not, plus a warning for any stochastic component (dropout) switched on.

use crate::trace::{flatten_json, Trace};
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
}

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
    }
}
