//! Checking an arm's fresh runs against its golden, and blessing per the update policy.

use super::{ArmTraces, GateCheckInput, GateOptions, GoldenCheck};
use crate::compare::{compare, Verdict};
use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::golden::{update_action, Golden, GoldenOutcome, Provenance, UpdateAction};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Compares an arm's fresh traces with its golden and writes what the update policy says.
pub(super) fn check_golden(
    input: &GateCheckInput<'_>,
    arm: &str,
    fresh: &ArmTraces,
    spec_hash: &str,
    opts: &GateOptions,
) -> Result<GoldenCheck> {
    let GateCheckInput {
        store,
        exp,
        cell,
        settings,
    } = *input;
    let path = store.path(&exp.name, &cell.id, arm);
    let golden = store.load(&exp.name, &cell.id, arm)?;
    let (outcome, comparison) = match &golden {
        None => (GoldenOutcome::Missing, None),
        Some(g) if g.provenance.spec_hash != spec_hash => (GoldenOutcome::Stale, None),
        Some(g) => {
            let c = compare(
                &g.seed_traces,
                &fresh.seeds,
                &g.perturbation_traces,
                &[],
                settings,
            )?;
            // A same-math arm must also stay within rounding of its golden when the golden's
            // perturbations can tell; an environment pair (`expect = "changed"`) only the margin.
            let outcome = match c.verdict {
                Verdict::Identical => GoldenOutcome::Identical,
                Verdict::Diverged { .. } => GoldenOutcome::Failed,
                _ if c.beyond_rounding() && !exp.expect.changed => GoldenOutcome::Failed,
                _ => GoldenOutcome::Passed,
            };
            (outcome, Some(c))
        }
    };
    // The test-only fault switch must never bless what it breaks.
    let action = match opts.inject {
        Some(_) => UpdateAction::NoUpdate,
        None => update_action(opts.update, opts.ci, outcome),
    };
    let written = match action {
        UpdateAction::NoUpdate => None,
        _ => {
            let prov = Provenance {
                spec_hash: spec_hash.to_string(),
                spec_path: exp.path.display().to_string(),
                lossdiff_version: env!("CARGO_PKG_VERSION").to_string(),
                fingerprint: Fingerprint::current().to_json(),
                blessed_at_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            };
            let g = Golden::new(
                &exp.name,
                &cell.id,
                arm,
                prov,
                fresh.seeds.clone(),
                fresh.perturbations.clone(),
            );
            store.write(&g, action)?
        }
    };
    let blessed = action == UpdateAction::InPlace;
    let shown = path.display();
    let pending = written
        .as_ref()
        .filter(|_| !blessed)
        .map(|p| format!("; wrote {}", p.display()))
        .unwrap_or_default();
    let message = match (outcome, blessed) {
        (_, true) => format!("blessed {shown} (before: {})", outcome_words(outcome)),
        (GoldenOutcome::Missing, _) => format!(
            "no golden at {shown}{pending}; bless it with `{}` or `lossdiff golden accept`",
            bless_command(&exp.path)
        ),
        (GoldenOutcome::Stale, _) => format!(
            "golden {shown} is stale: the spec changed since it was blessed (not a divergence){pending}; re-bless with `{}` or `lossdiff golden accept`",
            bless_command(&exp.path)
        ),
        (GoldenOutcome::Failed, _) => format!(
            "{} against golden {shown}{pending}",
            comparison.as_ref().map_or("diverged".into(), |c| match c.rounding() {
                Some(r) if c.beyond_rounding() && !matches!(c.verdict, Verdict::Diverged { .. }) =>
                    format!(
                        "{}, but beyond rounding from step {} ({:.0}× the perturbation spread, p (beyond rounding) = {})",
                        c.verdict.label(),
                        r.onset_step.unwrap_or_default(),
                        r.ratio,
                        crate::compare::format_p(r.p_value)
                    ),
                _ => c.describe(),
            })
        ),
        (GoldenOutcome::Identical, _) => "bitwise identical to the golden".to_string(),
        (GoldenOutcome::Passed, _) => format!(
            "{} to the golden (numerics changed within noise)",
            comparison.as_ref().map_or("equivalent", |c| c.verdict.label())
        ),
    };
    let passed = blessed || matches!(outcome, GoldenOutcome::Identical | GoldenOutcome::Passed);
    // Kept because `store.write` above may just have replaced the file with the fresh runs.
    let compared_golden = golden.filter(|_| comparison.is_some()).map(|g| ArmTraces {
        seeds: g.seed_traces,
        perturbations: g.perturbation_traces,
    });
    Ok(GoldenCheck {
        cell: cell.id.clone(),
        golden_path: path.clone(),
        arm: arm.to_string(),
        outcome,
        comparison,
        written,
        passed,
        message,
        compared_golden,
    })
}

/// Names a golden outcome in words for the "blessed" message.
fn outcome_words(outcome: GoldenOutcome) -> &'static str {
    match outcome {
        GoldenOutcome::Missing => "no golden",
        GoldenOutcome::Stale => "stale",
        GoldenOutcome::Failed => "failed",
        GoldenOutcome::Identical => "identical",
        GoldenOutcome::Passed => "passed",
    }
}

/// Returns the command that re-runs this gate with goldens blessed, for whoever runs it.
fn bless_command(spec: &Path) -> String {
    let program = std::env::args_os().next().map(PathBuf::from);
    bless_command_for(
        std::env::var("LOSSDIFF_BLESS_COMMAND").ok(),
        program.as_deref().and_then(Path::file_stem),
        spec,
    )
}

/// Picks the bless command: the caller's own (`LOSSDIFF_BLESS_COMMAND`, which the Python helper
/// sets to its pytest test), `lossdiff run SPEC` when the program is the CLI, else `cargo test`.
fn bless_command_for(caller: Option<String>, program: Option<&OsStr>, spec: &Path) -> String {
    match caller.filter(|c| !c.trim().is_empty()) {
        Some(c) => c,
        None if program == Some(OsStr::new("lossdiff")) => {
            format!("LOSSDIFF_UPDATE=always lossdiff run {}", spec.display())
        }
        None => "LOSSDIFF_UPDATE=always cargo test".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bless_command_names_the_callers_command() {
        let spec = Path::new("experiments/x.toml");
        let py = "LOSSDIFF_UPDATE=always python3 -m pytest tests/test_gate.py::test_x";
        let cli = Some(OsStr::new("lossdiff"));
        assert_eq!(bless_command_for(Some(py.into()), cli, spec), py);
        assert_eq!(
            bless_command_for(Some(" ".into()), cli, spec),
            "LOSSDIFF_UPDATE=always lossdiff run experiments/x.toml"
        );
        let test_binary = Some(OsStr::new("gates-0123abcd"));
        assert_eq!(
            bless_command_for(None, test_binary, spec),
            "LOSSDIFF_UPDATE=always cargo test"
        );
    }
}
