"""Shared fixtures for the Python package's tests.

The package is imported from this checkout (not an installed copy), and the binary comes from
`find_lossdiff`: CI sets LOSSDIFF_BIN to the `target/debug/lossdiff` its `cargo test` built.
"""

import json
import math
import sys
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]
REPO = PYTHON_DIR.parent
sys.path.insert(0, str(PYTHON_DIR))

pytest_plugins = ["lossdiff.pytest_plugin"]


def curve(steps=100, seed=1, drift=0.0, nan_at=None):
    """Returns a toy loss curve: noisy exponential decay, optional relative drift per step."""
    import random

    rng = random.Random(seed)
    out = []
    for s in range(1, steps + 1):
        loss = (2.0 + 8.0 * math.exp(-0.05 * s)) * (1.0 + 0.01 * rng.gauss(0.0, 1.0))
        loss *= 1.0 + drift * s
        out.append(float("nan") if s == nan_at else loss)
    return out


def write_plain_jsonl(path, losses):
    """Writes `{"step", "loss"}` lines without a metadata record (what every importer reads)."""
    with open(path, "w") as f:
        for s, loss in enumerate(losses, start=1):
            f.write(json.dumps({"step": s, "loss": "nan" if math.isnan(loss) else loss}) + "\n")
    return path


@pytest.fixture
def toy_curve():
    return curve


@pytest.fixture
def plain_jsonl():
    return write_plain_jsonl
