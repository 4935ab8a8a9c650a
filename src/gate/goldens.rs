//! Checking an arm's fresh runs against its golden, and blessing per the update policy.

use super::{ArmTraces, GateCheckInput, GateOptions, GoldenCheck};
use crate::compare::{compare, named_p, Verdict, P_BEYOND_ROUNDING};
use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::golden::{update_action, Golden, GoldenOutcome, Provenance, UpdateAction};

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
    let bless = opts.bless_hint.command(&exp.path);
    // `golden accept` only helps when this run wrote a pending golden to accept.
    let accept = match written.is_some() && !blessed {
        true => " or `lossdiff golden accept`",
        false => "",
    };
    let message = match (outcome, blessed) {
        (_, true) => format!("blessed {shown} (it was {})", outcome.label()),
        (GoldenOutcome::Missing, _) => {
            format!("no golden at {shown}{pending}; bless it with `{bless}`{accept}")
        }
        (GoldenOutcome::Stale, _) => format!(
            "golden {shown} is stale: the spec changed since it was blessed (not a divergence){pending}; re-bless with `{bless}`{accept}"
        ),
        (GoldenOutcome::Failed, _) => format!(
            "{} against golden {shown}{pending}; if the change is intended, bless it with `{bless}`{accept}",
            comparison.as_ref().map_or("diverged".into(), |c| match c.rounding() {
                Some(r) if c.beyond_rounding() && !matches!(c.verdict, Verdict::Diverged { .. }) =>
                    format!(
                        "{}, but beyond rounding from step {} ({:.0}× the perturbation spread, {})",
                        c.verdict.label(),
                        r.onset_step.unwrap_or_default(),
                        r.ratio,
                        named_p(P_BEYOND_ROUNDING, r.p_value)
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

#[cfg(test)]
mod tests {
    use crate::golden::BlessHint;
    use std::path::Path;

    #[test]
    fn bless_hint_names_the_callers_command() {
        let spec = Path::new("experiments/x.toml");
        assert_eq!(
            BlessHint::CargoTest.command(spec),
            "LOSSDIFF_UPDATE=always cargo test"
        );
        assert_eq!(
            BlessHint::Cli.command(spec),
            "lossdiff run experiments/x.toml --bless"
        );
        let py = "LOSSDIFF_UPDATE=always python3 -m pytest tests/test_gate.py::test_x";
        let wrapped = BlessHint::from_wrapper(Some(py.into()), BlessHint::Cli);
        assert_eq!(wrapped.command(spec), py);
        // A blank variable is unset: the CLI's own command.
        assert_eq!(
            BlessHint::from_wrapper(Some(" ".into()), BlessHint::Cli),
            BlessHint::Cli
        );
    }
}
