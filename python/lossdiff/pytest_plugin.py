"""pytest fixtures for lossdiff: ``lossdiff`` (the helpers, writing under the test's ``tmp_path``)
and ``lossdiff_command`` (the binary, found once per session).

Installed with ``pip install ./python`` the plugin is registered automatically (entry point
``pytest11``); in a checkout without installing, add ``pytest_plugins = ["lossdiff.pytest_plugin"]``
to ``conftest.py``. A test then reads::

    def test_my_kernel_matches(lossdiff, tmp_path):
        train(out=tmp_path / "ref.jsonl", kernel="reference")
        train(out=tmp_path / "new.jsonl", kernel="fused")
        lossdiff.assert_equivalent(tmp_path / "ref.jsonl", tmp_path / "new.jsonl")
"""

from __future__ import annotations

from typing import List

import pytest

from . import testing
from .testing import Lossdiff, find_lossdiff


def pytest_configure(config) -> None:
    """Records the rootdir, so bless hints name the test relative to where pytest was started."""
    testing._pytest_rootdir = config.rootpath


@pytest.fixture(scope="session")
def lossdiff_command() -> List[str]:
    """The command that runs lossdiff (``$LOSSDIFF_BIN``, ``PATH``, then ``cargo run``)."""
    return find_lossdiff()


@pytest.fixture
def lossdiff(lossdiff_command: List[str], tmp_path) -> Lossdiff:
    """lossdiff's assert helpers bound to the session's binary and this test's ``tmp_path``."""
    return Lossdiff(lossdiff_command, tmp_path)
