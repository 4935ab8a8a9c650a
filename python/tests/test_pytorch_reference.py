"""benches/pytorch_reference.py --json: the one line `lossdiff bench speed` reads from each PyTorch
cell. Runs the script as the bench does (a child process, tiny sizes) and checks the contract:
one JSON line on stdout and nothing else, median within its quartiles, the run count, the torch
version. Skipped where torch is not installed (the bench then reports PyTorch as absent, which
tests/bench_speed.rs covers)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

torch = pytest.importorskip("torch", reason="torch is optional; the PyTorch reference needs it")

SCRIPT = REPO / "benches" / "pytorch_reference.py"


def run_json(*args):
    """Runs the script with `--json` and returns its stdout lines."""
    out = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return out.stdout.splitlines()


def check_record(lines, samples):
    assert len(lines) == 1, f"expected one JSON line, got {lines!r}"
    record = json.loads(lines[0])
    assert set(record) == {"median_s", "q1_s", "q3_s", "samples", "torch"}
    assert 0 < record["q1_s"] <= record["median_s"] <= record["q3_s"]
    assert record["samples"] == samples
    assert record["torch"] == torch.__version__
    return record


def test_a_step_cell_prints_one_json_line_with_median_quartiles_and_torch_version():
    lines = run_json("--preset", "gate", "--threads", "1", "--steps", "3", "--warmup", "1")
    check_record(lines, samples=3)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_an_attention_cell_times_sdpa_forward_and_backward_at_the_given_length(dtype):
    lines = run_json(
        "--attention-bench", "64", "--dtype", dtype, "--threads", "1", "--steps", "3", "--warmup", "1"
    )
    check_record(lines, samples=3)


def test_an_attention_cell_stops_timing_once_its_budget_is_spent_but_times_once():
    # A zero budget is spent by the first timed call: one run, its own quartiles.
    lines = run_json("--attention-bench", "64", "--steps", "5", "--budget-secs", "0")
    record = check_record(lines, samples=1)
    assert record["q1_s"] == record["median_s"] == record["q3_s"]
