"""The helpers' own logic against a fake lossdiff: where the binary is looked for, and how exit
codes and verdicts become passes, assertion failures and errors. No real binary needed."""

import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from lossdiff import (
    LossdiffError,
    LossdiffInputError,
    assert_equivalent,
    assert_run_passes,
    find_lossdiff,
)
from lossdiff import testing

from conftest import REPO

FAKE = """\
#!{python}
# A stand-in for lossdiff: prints what FAKE_STDOUT says, writes the --json comparison with
# verdict FAKE_VERDICT, and exits with FAKE_EXIT.
import json, os, sys
args = sys.argv[1:]
if "--json" in args:
    with open(args[args.index("--json") + 1], "w") as f:
        json.dump([{{"a": [], "b": [], "comparison": {{"verdict": {{"kind": os.environ.get("FAKE_VERDICT", "equivalent")}}}}}}], f)
sys.stdout.write(os.environ.get("FAKE_STDOUT", ""))
sys.stdout.write("LOSSDIFF_BLESS_COMMAND=%s\\n" % os.environ.get("LOSSDIFF_BLESS_COMMAND"))
sys.stderr.write(os.environ.get("FAKE_STDERR", ""))
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


def make_executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def fake(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    return make_executable(d / "lossdiff", FAKE.format(python=sys.executable))


def test_lossdiff_bin_comes_first(fake, monkeypatch):
    monkeypatch.setenv("LOSSDIFF_BIN", str(fake))
    assert find_lossdiff() == [str(fake.resolve())]
    # An explicit argument wins over the variable.
    assert find_lossdiff(["x", "y"]) == ["x", "y"]


def test_a_bad_lossdiff_bin_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSDIFF_BIN", str(tmp_path / "nope"))
    with pytest.raises(LossdiffError, match=r"LOSSDIFF_BIN = '.*nope' is not an executable file"):
        find_lossdiff()


def test_then_path(fake, monkeypatch):
    monkeypatch.delenv("LOSSDIFF_BIN", raising=False)
    monkeypatch.setenv("PATH", str(fake.parent))
    assert find_lossdiff() == [str(fake)]


def test_then_cargo_run_in_the_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("LOSSDIFF_BIN", raising=False)
    cargo = make_executable(tmp_path / "cargo", "#!/bin/sh\nexit 0\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    cmd = find_lossdiff()
    assert cmd == [str(cargo), "run", "--quiet", "--manifest-path", str(REPO / "Cargo.toml"),
                   "--bin", "lossdiff", "--"]


def test_nothing_found_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("LOSSDIFF_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LossdiffError, match="set LOSSDIFF_BIN"):
        find_lossdiff()


def test_exit_0_passes_and_returns_the_verdict(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_STDOUT", "b.jsonl vs a.jsonl (lm_loss): equivalent\n  exact: ...\nfigure: f.png\n")
    r = assert_equivalent("a.jsonl", "b.jsonl", lossdiff=str(fake), png=tmp_path / "f.png")
    assert r.verdict == "equivalent"
    assert r.verdict_line == "b.jsonl vs a.jsonl (lm_loss): equivalent"
    assert r.figure == (tmp_path / "f.png").resolve()
    assert r.command[1:6] == ["compare", "a.jsonl", "b.jsonl", "--png", str(r.figure)]


def test_exit_1_fails_with_the_verdict_line_and_the_figure(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_EXIT", "1")
    monkeypatch.setenv("FAKE_VERDICT", "diverged")
    monkeypatch.setenv("FAKE_STDOUT", "b.jsonl vs a.jsonl (lm_loss): diverged from step 19\n")
    with pytest.raises(AssertionError) as e:
        assert_equivalent("a.jsonl", "b.jsonl", lossdiff=str(fake), png=tmp_path / "f.png")
    msg = str(e.value)
    assert "B diverged from A" in msg
    assert "b.jsonl vs a.jsonl (lm_loss): diverged from step 19" in msg
    assert f"figure: {(tmp_path / 'f.png').resolve()}" in msg


def test_inconclusive_passes_unless_refused(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VERDICT", "inconclusive")
    r = assert_equivalent("a.jsonl", "b.jsonl", lossdiff=str(fake), png=tmp_path / "f.png")
    assert r.verdict == "inconclusive"
    with pytest.raises(AssertionError, match="the verdict is inconclusive"):
        assert_equivalent("a.jsonl", "b.jsonl", lossdiff=str(fake), png=tmp_path / "f.png",
                          allow_inconclusive=False)


def test_exit_2_is_an_input_error_with_lossdiffs_message(fake, monkeypatch):
    monkeypatch.setenv("FAKE_EXIT", "2")
    monkeypatch.setenv("FAKE_STDERR", "lossdiff: cannot import b.jsonl: line 3: expected a JSON object\n")
    with pytest.raises(LossdiffInputError, match="cannot import b.jsonl: line 3"):
        assert_equivalent("a.jsonl", "b.jsonl", lossdiff=str(fake))


def test_other_exit_codes_are_errors(fake, monkeypatch):
    monkeypatch.setenv("FAKE_EXIT", "101")
    monkeypatch.setenv("FAKE_STDERR", "thread 'main' panicked\n")
    with pytest.raises(LossdiffError, match="exited with code 101") as e:
        assert_equivalent("a.jsonl", "b.jsonl", lossdiff=str(fake))
    assert not isinstance(e.value, LossdiffInputError)


def test_seed_lists_and_options_become_flags(fake, tmp_path):
    r = assert_equivalent(["a1.jsonl", "a2.jsonl"], ["b1.jsonl"], perturb=["p1.jsonl", "p2.jsonl"],
                          declared=["attention"], margin=0.002, alpha=0.01, metric="loss",
                          format="jsonl", args=["--rtol", "0.1"], lossdiff=str(fake),
                          png=tmp_path / "f.png")
    cmd = r.command
    assert cmd[2:4] == ["a1.jsonl,a2.jsonl", "b1.jsonl"]
    for flag, value in [("--perturb", "p1.jsonl,p2.jsonl"), ("--declared", "attention"),
                        ("--margin", "0.002"), ("--alpha", "0.01"), ("--metric", "loss"),
                        ("--format", "jsonl"), ("--rtol", "0.1")]:
        assert cmd[cmd.index(flag) + 1] == value
    with pytest.raises(ValueError, match="contains a comma"):
        assert_equivalent("a,1.jsonl", "b.jsonl", lossdiff=str(fake))


def test_bless_command_names_the_current_test():
    env = {"PYTEST_CURRENT_TEST": "tests/test_x.py::test_gate[a b] (call)"}
    assert testing.bless_command(env, rootdir=Path.cwd()) == "LOSSDIFF_UPDATE=always python3 -m pytest 'tests/test_x.py::test_gate[a b]'"
    assert testing.bless_command({}) is None


def test_bless_command_is_relative_to_where_pytest_started(tmp_path, monkeypatch):
    env = {"PYTEST_CURRENT_TEST": "tests/test_x.py::test_gate (call)"}
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "python"
    assert testing.bless_command(env, rootdir=root) == (
        "LOSSDIFF_UPDATE=always python3 -m pytest python/tests/test_x.py::test_gate"
    )
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert testing.bless_command(env, rootdir=root).endswith(
        f"pytest {root / 'tests/test_x.py'}::test_gate"
    )


def test_run_failure_lists_fail_lines_figures_and_the_bless_command(fake, tmp_path, monkeypatch):
    report = tmp_path / "report"
    report.mkdir()
    (report / "summary.json").write_text(
        '{"entries": [{"name": "exp [c] a vs b", "passed": false, "figure_path": "figures/x.png"},'
        ' {"name": "ok one", "passed": true, "figure_path": "figures/y.png"}]}'
    )
    monkeypatch.setenv("FAKE_EXIT", "1")
    monkeypatch.setenv("FAKE_STDOUT", textwrap.dedent("""\
        FAIL exp
          FAIL [c] a vs b: diverged from step 4
          FAIL [c] a vs golden: no golden at golden/exp/c/a.golden.json; bless it with `lossdiff golden accept`
    """))
    with pytest.raises(AssertionError) as e:
        assert_run_passes("spec.toml", out=report, lossdiff=str(fake))
    msg = str(e.value)
    assert "FAIL [c] a vs b: diverged from step 4" in msg
    assert f"figure (exp [c] a vs b): {report / 'figures/x.png'}" in msg
    assert "y.png" not in msg
    assert "LOSSDIFF_UPDATE=always python3 -m pytest" in msg
    assert "test_run_failure_lists_fail_lines_figures_and_the_bless_command" in msg
    # lossdiff itself is told the command, so its own hint names it too.
    assert f"LOSSDIFF_BLESS_COMMAND={testing.bless_command()}" in msg
