"""Writing and reading lossdiff's JSONL trace format (``lossdiff-jsonl/1``).

The file is JSON Lines. The first line is a metadata record with no ``step`` key::

    {"format": "lossdiff-jsonl/1", "config": {...}, "seed": 1234,
     "versions": {"python": "3.11.7", "torch": "2.5.1", "lossdiff-python": "0.1.0"}}

Every following line is one training step, steps 1-based and strictly increasing::

    {"step": 1, "loss": 2.31, "lr": 0.001}

Non-finite values are written as the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (plain JSON has
no NaN; lossdiff's importer reads these strings). Each line is flushed as it is written, so a run
that crashes keeps every step it logged.

This module owns the format on the Python side; it does not compare anything (see
:mod:`lossdiff.testing`).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import math
import operator
import os
import platform
import sys
from pathlib import Path
from typing import Any, Dict, IO, List, Mapping, Optional, Union

from . import __version__

#: The value of the metadata record's ``format`` key.
FORMAT = "lossdiff-jsonl/1"

#: Keys lossdiff's JSONL importer reads as the step. A metric under one of these names would be
#: taken for (or shadowed by) the step, so the logger refuses them as metric names.
STEP_KEYS = (
    "step",
    "_step",
    "iteration",
    "iter",
    "global_step",
    "trainer/global_step",
    "train/global_step",
    "steps",
)

#: Distributions whose versions are recorded when installed (looked up without importing them).
KNOWN_LIBRARIES = (
    "torch",
    "numpy",
    "jax",
    "jaxlib",
    "transformers",
    "accelerate",
    "deepspeed",
    "megatron-core",
    "triton",
    "flash-attn",
    "apex",
)

PathLike = Union[str, "os.PathLike[str]"]


def encode_float(x: float) -> Union[float, str]:
    """Returns ``x`` unchanged if finite, else its trace spelling ``"nan"``, ``"inf"``, ``"-inf"``."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def decode_value(v: Any) -> Any:
    """Returns the float a trace value stands for: ``"nan"``/``"inf"``/``"-inf"`` become floats."""
    if isinstance(v, str) and v.lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
        return float(v)
    return v


def library_versions(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Returns the versions to record: Python, this package, installed known libraries, CUDA.

    Libraries are looked up in the installed distributions' metadata, so nothing is imported;
    CUDA and cuDNN versions are added only when ``torch`` is already imported. ``extra`` entries
    are added last and win.
    """
    from importlib import metadata

    versions = {"python": platform.python_version(), "lossdiff-python": __version__}
    for name in KNOWN_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    torch = sys.modules.get("torch")
    if torch is not None:
        versions["torch"] = str(getattr(torch, "__version__", versions.get("torch", "unknown")))
        cuda = getattr(getattr(torch, "version", None), "cuda", None)
        if cuda:
            versions["cuda"] = str(cuda)
        try:
            cudnn = torch.backends.cudnn.version()
        except Exception:  # noqa: BLE001 - no cuDNN build or no backend: nothing to record
            cudnn = None
        if cudnn:
            versions["cudnn"] = str(cudnn)
    for k, v in (extra or {}).items():
        versions[str(k)] = str(v)
    return versions


def _plain(value: Any) -> Any:
    """Converts a config value to plain JSON data (non-finite floats as strings)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, argparse.Namespace):
        return _plain(vars(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_plain(v) for v in items]
    if hasattr(value, "item") and callable(value.item):
        try:  # numpy / torch scalars
            return _plain(value.item())
        except (TypeError, ValueError, RuntimeError):
            pass
    # Paths, dtypes, devices and anything else: their text is what a reader wants to diff.
    return str(value)


def _config_dict(config: Any) -> Dict[str, Any]:
    if config is None:
        return {}
    plain = _plain(config)
    if not isinstance(plain, dict):
        raise TypeError(
            f"config must be a mapping, an argparse.Namespace or a dataclass, got {type(config).__name__}"
        )
    return plain


class TraceLogger:
    """Writes a training run's metrics as a lossdiff JSONL trace, one flushed line per step.

    Use it as a context manager (or call :meth:`close`)::

        with TraceLogger("run.jsonl", config=vars(args), seed=args.seed) as log:
            for step in range(1, args.steps + 1):
                loss = train_step()
                log.log(step, loss=loss.item(), lr=sched.get_last_lr()[0])

    ``config`` is recorded under its own keys (a mapping, ``argparse.Namespace`` or dataclass;
    values that are not JSON become their text). ``seed`` is required: it is what tells two runs of
    one config apart. ``versions`` adds to (and overrides) the detected library versions.

    Metric values may be Python numbers or anything ``float()`` accepts (a 0-d tensor, a numpy
    scalar); NaN and infinities are written as ``"nan"``, ``"inf"``, ``"-inf"``. Steps are 1-based
    and must increase; ``log()`` without a step logs the step after the last one.

    ``fsync=True`` also asks the OS to put every line on disk (survives a machine crash, not only a
    process crash; slower).

    Raises ``TypeError``/``ValueError`` naming the file, step and key for anything lossdiff could
    not read back, before writing it.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        config: Any = None,
        seed: int,
        versions: Optional[Mapping[str, str]] = None,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        try:
            self.seed = operator.index(seed)
        except TypeError:
            raise TypeError(f"{self.path}: seed must be an integer, got {seed!r}") from None
        if isinstance(seed, bool):
            raise TypeError(f"{self.path}: seed must be an integer, got {seed!r}")
        if not 0 <= self.seed < 2**64:
            raise ValueError(
                f"{self.path}: seed {seed} is out of range: lossdiff reads seeds as integers "
                "in 0..2**64-1"
            )
        self.config = _config_dict(config)
        self.versions = library_versions(versions)
        self.last_step = 0
        self._fsync = fsync
        self._file: Optional[IO[str]] = open(self.path, "w", encoding="utf-8")
        self._write(
            {"format": FORMAT, "config": self.config, "seed": self.seed, "versions": self.versions}
        )

    def log(self, step: Optional[int] = None, **metrics: Any) -> int:
        """Writes one step's metrics and returns the step written.

        Raises ``ValueError`` if the logger is closed, the step does not increase, a metric is
        named like a step key, or there is no metric; ``TypeError`` for a value that is not a
        number.
        """
        if self._file is None:
            raise ValueError(f"{self.path}: log() after close()")
        step = self._check_step(self.last_step + 1 if step is None else step)
        if not metrics:
            raise ValueError(f"{self.path}: step {step}: no metric given (e.g. log({step}, loss=x))")
        row: Dict[str, Any] = {"step": step}
        for key, value in metrics.items():
            row[key] = self._metric(step, key, value)
        self._write(row)
        self.last_step = step
        return step

    def _check_step(self, step: Any) -> int:
        try:
            s = operator.index(step)
        except TypeError:
            raise TypeError(f"{self.path}: step must be an integer, got {step!r}") from None
        if isinstance(step, bool) or s < 1:
            raise ValueError(f"{self.path}: step {step!r}: steps are 1-based integers")
        if s <= self.last_step:
            raise ValueError(
                f"{self.path}: step {s} after step {self.last_step}: steps must increase"
            )
        return s

    def _metric(self, step: int, key: str, value: Any) -> Union[float, str]:
        if key in STEP_KEYS:
            raise ValueError(
                f"{self.path}: step {step}: metric name {key!r} is read as the step by lossdiff; "
                "rename it"
            )
        if isinstance(value, (str, bytes)) or value is None:
            raise TypeError(f"{self.path}: step {step}: {key} = {value!r} is not a number")
        try:
            x = float(value)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{self.path}: step {step}: {key} = {value!r} is not a number"
                " (a tensor must hold one element)"
            ) from None
        return encode_float(x)

    def _write(self, record: Dict[str, Any]) -> None:
        assert self._file is not None, "callers check that the file is open"
        # allow_nan=False: any non-finite value that slipped past encoding fails loudly here
        # instead of writing a bare NaN some readers refuse.
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Closes the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "TraceLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclasses.dataclass
class Trace:
    """A trace read back from a ``lossdiff-jsonl/1`` file."""

    #: The metadata record (``format``, ``config``, ``seed``, ``versions``).
    meta: Dict[str, Any]
    #: Steps, in file order.
    steps: List[int]
    #: Each metric's values, aligned with ``steps`` (``None`` where a step did not log it).
    series: Dict[str, List[Optional[float]]]


def read_trace(path: PathLike) -> Trace:
    """Reads a ``lossdiff-jsonl/1`` file; ``"nan"``/``"inf"``/``"-inf"`` come back as floats.

    Raises ``ValueError`` naming the file and line for a missing or foreign metadata record, a
    line that is not a JSON object, a missing or non-increasing step, or a non-numeric metric.
    """
    path = Path(path)
    meta: Optional[Dict[str, Any]] = None
    steps: List[int] = []
    rows: List[Dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {n}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: expected a JSON object ({e.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {line.strip()[:60]}")
            if meta is None:
                if record.get("format") != FORMAT:
                    raise ValueError(
                        f"{where}: expected the metadata record {{\"format\": \"{FORMAT}\", ...}}"
                    )
                meta = record
                continue
            step = record.get("step")
            if isinstance(step, bool) or not isinstance(step, int):
                raise ValueError(f"{where}: expected an integer `step`, got {step!r}")
            if steps and step <= steps[-1]:
                raise ValueError(f"{where}: step {step} after step {steps[-1]}: steps must increase")
            row = {}
            for k, v in record.items():
                if k == "step":
                    continue
                x = decode_value(v)
                if isinstance(x, bool) or not isinstance(x, (int, float)):
                    raise ValueError(f"{where}: `{k}` = {v!r} is not a number")
                row[k] = float(x)
            steps.append(step)
            rows.append(row)
    if meta is None:
        raise ValueError(f"{path}: empty file; expected the metadata record first")
    keys: List[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    series = {k: [row.get(k) for row in rows] for k in keys}
    return Trace(meta=meta, steps=steps, series=series)
