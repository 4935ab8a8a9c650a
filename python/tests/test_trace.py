"""The trace logger and reader: the lossdiff-jsonl/1 contract, non-finite values, crash safety and
refusals. No lossdiff binary and no torch needed."""

import argparse
import dataclasses
import json
import math
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import lossdiff
from lossdiff import FORMAT, TraceLogger, read_trace
from lossdiff import trace as trace_mod

from conftest import PYTHON_DIR


def lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_first_line_is_the_metadata_record_then_one_object_per_step(tmp_path):
    path = tmp_path / "run.jsonl"
    with TraceLogger(path, config={"lr": 1e-3, "model": {"layers": 2}}, seed=7) as log:
        log.log(1, loss=2.5, lr=1e-3)
        log.log(2, loss=2.25, lr=1e-3)
    meta, *steps = lines(path)
    assert set(meta) == {"format", "config", "seed", "versions"}
    assert meta["format"] == FORMAT == "lossdiff-jsonl/1"
    assert meta["config"] == {"lr": 1e-3, "model": {"layers": 2}}
    assert meta["seed"] == 7
    assert meta["versions"]["python"] == platform.python_version()
    assert meta["versions"]["lossdiff-python"] == lossdiff.__version__
    assert steps == [{"step": 1, "loss": 2.5, "lr": 1e-3}, {"step": 2, "loss": 2.25, "lr": 1e-3}]


def test_non_finite_values_are_strings_and_survive_the_round_trip(tmp_path):
    path = tmp_path / "nan.jsonl"
    with TraceLogger(path, seed=1) as log:
        log.log(loss=2.0)
        log.log(loss=float("nan"), grad_norm=float("inf"))
        log.log(loss=float("-inf"))
    text = path.read_text()
    # Strict JSON: a bare NaN/Infinity would make this raise.
    for line in text.splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} written: {line}"))
    assert '"loss": "nan"' in text and '"grad_norm": "inf"' in text and '"loss": "-inf"' in text
    t = read_trace(path)
    assert t.steps == [1, 2, 3]
    loss = t.series["loss"]
    assert loss[0] == 2.0 and math.isnan(loss[1]) and loss[2] == -math.inf
    assert t.series["grad_norm"] == [None, math.inf, None]


def test_floats_round_trip_bit_for_bit(tmp_path):
    path = tmp_path / "bits.jsonl"
    values = [0.1 + 0.2, 1 / 3, 2.0 ** -1074, 1.7976931348623157e308, 2.718281828459045]
    with TraceLogger(path, seed=1) as log:
        for v in values:
            log.log(loss=v)
    assert read_trace(path).series["loss"] == values


CRASHING_TRAINER = """
import os, sys
sys.path.insert(0, {python_dir!r})
from lossdiff import TraceLogger
log = TraceLogger({path!r}, config={{"lr": 0.1}}, seed=3)
for step in range(1, 4):
    log.log(step, loss=1.0 / step)
os._exit(1)  # dies without closing the file or flushing Python's buffers
"""


def test_a_crash_keeps_every_logged_step(tmp_path):
    path = tmp_path / "crash.jsonl"
    script = CRASHING_TRAINER.format(python_dir=str(PYTHON_DIR), path=str(path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    t = read_trace(path)
    assert t.steps == [1, 2, 3]
    assert t.series["loss"] == [1.0, 0.5, 1.0 / 3]


@dataclasses.dataclass
class Opt:
    name: str = "adamw"
    betas: tuple = (0.9, 0.95)


def test_config_is_recorded_under_its_own_keys_as_plain_json(tmp_path):
    args = argparse.Namespace(lr=3e-4, out=Path("/tmp/x"), eps=float("inf"), opt=Opt(), tags={"b", "a"})
    path = tmp_path / "cfg.jsonl"
    TraceLogger(path, config=args, seed=11).close()
    config = lines(path)[0]["config"]
    assert config == {
        "lr": 3e-4,
        "out": "/tmp/x",
        "eps": "inf",
        "opt": {"name": "adamw", "betas": [0.9, 0.95]},
        "tags": ["a", "b"],
    }


def test_versions_come_from_installed_distributions(tmp_path, monkeypatch):
    monkeypatch.setattr(trace_mod, "KNOWN_LIBRARIES", ("pytest", "surely-not-installed-dist"))
    path = tmp_path / "v.jsonl"
    TraceLogger(path, seed=1, versions={"cuda_driver": "550.54"}).close()
    versions = lines(path)[0]["versions"]
    assert versions["pytest"] == pytest.__version__
    assert "surely-not-installed-dist" not in versions
    assert versions["cuda_driver"] == "550.54"


def test_torch_version_and_tensor_values(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is optional; its version capture is tested only where it is installed")
    path = tmp_path / "torch.jsonl"
    with TraceLogger(path, seed=1) as log:
        log.log(loss=torch.tensor(2.5), lr=torch.tensor([1e-3]))
        log.log(loss=torch.tensor(float("nan")))
    meta = lines(path)[0]
    assert meta["versions"]["torch"] == str(torch.__version__)
    t = read_trace(path)
    assert t.series["loss"][0] == 2.5 and math.isnan(t.series["loss"][1])
    with TraceLogger(tmp_path / "t2.jsonl", seed=1) as log:
        with pytest.raises(TypeError, match="one element"):
            log.log(loss=torch.ones(3))


class NotAScalar:
    def __float__(self):
        raise TypeError("only one element tensors can be converted to Python scalars")


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda log: log.log(0, loss=1.0), ValueError, "step 0: steps are 1-based"),
        (lambda log: (log.log(5, loss=1.0), log.log(5, loss=1.0)), ValueError, "step 5 after step 5: steps must increase"),
        (lambda log: log.log(1.5, loss=1.0), TypeError, "step must be an integer, got 1.5"),
        (lambda log: log.log(1, iteration=3.0), ValueError, "metric name 'iteration' is read as the step"),
        (lambda log: log.log(1, loss="2.3"), TypeError, "step 1: loss = '2.3' is not a number"),
        (lambda log: log.log(1, loss=None), TypeError, "step 1: loss = None is not a number"),
        (lambda log: log.log(1, loss=NotAScalar()), TypeError, "one element"),
        (lambda log: log.log(1), ValueError, "step 1: no metric given"),
        (lambda log: (log.close(), log.log(1, loss=1.0)), ValueError, "log\\(\\) after close\\(\\)"),
    ],
)
def test_bad_values_are_refused_naming_file_step_and_key(tmp_path, call, error, message):
    path = tmp_path / "bad.jsonl"
    log = TraceLogger(path, seed=1)
    with pytest.raises(error, match=message) as e:
        call(log)
    assert str(path) in str(e.value)
    log.close()


def test_seed_must_be_an_integer(tmp_path):
    for seed in (None, 1.5, "3", True):
        with pytest.raises(TypeError, match="seed must be an integer"):
            TraceLogger(tmp_path / "s.jsonl", seed=seed)
    for seed in (-1, 2**64):
        with pytest.raises(ValueError, match=f"seed {seed} is out of range"):
            TraceLogger(tmp_path / "s.jsonl", seed=seed)
    TraceLogger(tmp_path / "s.jsonl", seed=2**64 - 1).close()


def test_a_refused_value_writes_nothing(tmp_path):
    path = tmp_path / "partial.jsonl"
    with TraceLogger(path, seed=1) as log:
        log.log(1, loss=1.0)
        with pytest.raises(TypeError):
            log.log(2, loss=0.5, lr="high")
        log.log(2, loss=0.5)
    assert read_trace(path).steps == [1, 2]


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"step": 1, "loss": 1.0}\n', "line 1: expected the metadata record"),
        ("", "empty file"),
        ('{"format": "lossdiff-jsonl/1"}\n{"step": 1, "loss": 1.0\n', "line 2: expected a JSON object"),
        ('{"format": "lossdiff-jsonl/1"}\n{"loss": 1.0}\n', "line 2: expected an integer `step`"),
        ('{"format": "lossdiff-jsonl/1"}\n{"step": 2, "loss": 1}\n{"step": 1, "loss": 1}\n', "line 3: step 1 after step 2"),
        ('{"format": "lossdiff-jsonl/1"}\n{"step": 1, "loss": "low"}\n', "line 2: `loss` = 'low' is not a number"),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "t.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as e:
        read_trace(path)
    assert str(path) in str(e.value)
