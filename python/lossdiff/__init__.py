"""lossdiff from Python: log a training run as a lossdiff trace, and gate tests on its verdicts.

- :class:`TraceLogger` writes lossdiff's JSONL (config, seed, library versions, one flushed line
  per step, NaN kept) from a PyTorch (or any) training loop; :func:`read_trace` reads it back.
- :func:`assert_equivalent` runs ``lossdiff compare`` and :func:`assert_run_passes` runs
  ``lossdiff run``; both fail with the verdict and the figure path. The ``lossdiff`` pytest fixture
  (:mod:`lossdiff.pytest_plugin`) binds them to the test's temporary directory.

Pure Python, standard library only; torch is optional.
"""

__version__ = "0.1.0"

from .trace import FORMAT, Trace, TraceLogger, read_trace  # noqa: E402
from .testing import (  # noqa: E402
    CompareResult,
    LossdiffError,
    LossdiffInputError,
    RunResult,
    assert_equivalent,
    assert_run_passes,
    find_lossdiff,
)

__all__ = [
    "FORMAT",
    "Trace",
    "TraceLogger",
    "read_trace",
    "CompareResult",
    "LossdiffError",
    "LossdiffInputError",
    "RunResult",
    "assert_equivalent",
    "assert_run_passes",
    "find_lossdiff",
]
