"""The logger's files read by the real lossdiff binary: metadata, NaN, config differences, and a
`lossdiff run` arm whose trainer logs with TraceLogger.

These tests need a lossdiff whose JSONL importer reads the metadata record (`lossdiff-jsonl/1`).
They skip, saying so, only when the binary refuses that record at line 1; any other failure
fails."""

import json
import math
import sys

import pytest

from lossdiff import FORMAT, TraceLogger

from conftest import PYTHON_DIR, curve


def log_run(path, losses, seed=1, config=None):
    with TraceLogger(path, config=config or {"lr": 1e-3, "adam_eps": 1e-8}, seed=seed) as log:
        for loss in losses:
            log.log(loss=loss, lr=1e-3)
    return path


@pytest.fixture(scope="module")
def reads_metadata(lossdiff_command, tmp_path_factory):
    """Skips the module if this lossdiff refuses the metadata record; returns nothing otherwise."""
    import subprocess

    path = log_run(tmp_path_factory.mktemp("probe") / "probe.jsonl", [2.0, 1.5, 1.25])
    proc = subprocess.run(lossdiff_command + ["show", str(path)], capture_output=True, text=True)
    if proc.returncode == 2 and "line 1" in proc.stderr:
        pytest.skip(
            f"this lossdiff ({lossdiff_command[0]}) refuses the {FORMAT} metadata record at line 1 "
            f"({proc.stderr.strip()}); these tests enforce the logger's contract once the importer "
            "reads it"
        )
    assert proc.returncode == 0, proc.stderr


def test_show_reports_config_seed_and_versions(reads_metadata, lossdiff, tmp_path):
    path = log_run(tmp_path / "run.jsonl", curve(20), seed=424242, config={"warmup_frac_knob": 0.125})
    proc = lossdiff.run("show", path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "warmup_frac_knob" in out and "0.125" in out, out
    assert "424242" in out, out
    python = json.loads(path.read_text().splitlines()[0])["versions"]["python"]
    assert python in out, out


def test_same_losses_are_identical(reads_metadata, lossdiff, tmp_path):
    a = log_run(tmp_path / "a.jsonl", curve(100))
    b = log_run(tmp_path / "b.jsonl", curve(100))
    assert lossdiff.assert_equivalent(a, b).verdict == "identical"


def test_a_logged_nan_survives_and_diverges_at_its_step(reads_metadata, lossdiff, tmp_path):
    a = log_run(tmp_path / "a.jsonl", curve(100))
    b = log_run(tmp_path / "b.jsonl", curve(100, nan_at=30))
    assert math.isnan(curve(100, nan_at=30)[29])
    with pytest.raises(AssertionError, match="step 30"):
        lossdiff.assert_equivalent(a, b)


def test_a_config_difference_is_reported(reads_metadata, lossdiff, tmp_path):
    a = log_run(tmp_path / "a.jsonl", curve(100), config={"adam_eps": 1e-8})
    b = log_run(tmp_path / "b.jsonl", curve(100), config={"adam_eps": 1e-6})
    r = lossdiff.assert_equivalent(a, b)
    assert "adam_eps" in r.stdout, r.stdout


TRAINER = """\
import argparse, math, random, sys
sys.path.insert(0, {python_dir!r})
from lossdiff import TraceLogger
p = argparse.ArgumentParser()
p.add_argument("--seed", type=int)
p.add_argument("--out")
p.add_argument("--lr", type=float, default=1e-3)
args = p.parse_args()
rng = random.Random(args.seed)
# The output path differs per run: logged, it would be an undeclared config difference.
config = {{k: v for k, v in vars(args).items() if k != "out"}}
with TraceLogger(args.out, config=config, seed=args.seed) as log:
    for step in range(1, 61):
        log.log(step, loss=(2 + 8 * math.exp(-0.05 * step)) * (1 + 0.01 * rng.gauss(0, 1)), lr=args.lr)
"""

SPEC = """\
[experiment]
name = "py_logger"
seeds = 2
declared = ["external.command"]

[[arm]]
name = "a"
command = "{python} {trainer} --seed {{seed}} --out {{out}}"
timeout_s = 60

[[arm]]
name = "b"
command = "{python} {trainer} --out {{out}} --seed {{seed}}"
timeout_s = 60
"""


def test_a_python_trainer_as_an_experiment_arm(reads_metadata, lossdiff, tmp_path):
    trainer = tmp_path / "train.py"
    trainer.write_text(TRAINER.format(python_dir=str(PYTHON_DIR)))
    spec = tmp_path / "py_logger.toml"
    spec.write_text(SPEC.format(python=sys.executable, trainer=trainer))
    kw = dict(cwd=tmp_path, args=["--no-cache"])
    lossdiff.assert_run_passes(spec, env={"CI": "", "LOSSDIFF_UPDATE": "always"}, **kw)
    r = lossdiff.assert_run_passes(spec, env={"CI": ""}, **kw)
    assert "FAIL" not in r.stdout
