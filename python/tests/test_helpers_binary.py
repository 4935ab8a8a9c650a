"""The helpers against the real lossdiff binary, on plain JSONL (no metadata record), which every
lossdiff version reads: compare verdicts, figures, bad input, and a `lossdiff run` gate with
goldens. The binary comes from LOSSDIFF_BIN, PATH, or `cargo run` (see lossdiff.testing)."""

import pytest

from lossdiff import LossdiffInputError, testing

from conftest import REPO, curve, write_plain_jsonl

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def arms(tmp_path, name, drift=0.0, seeds=(1, 2, 3), nan_at=None):
    return [write_plain_jsonl(tmp_path / f"{name}{s}.jsonl", curve(200, s, drift, nan_at)) for s in seeds]


def test_identical_curves_pass_and_write_the_figure(lossdiff, tmp_path):
    a = arms(tmp_path, "a")
    b = arms(tmp_path, "b")
    r = lossdiff.assert_equivalent(a, b)
    assert r.verdict == "identical"
    assert r.returncode == 0
    assert " vs " in r.verdict_line and "identical" in r.verdict_line, r.verdict_line
    assert r.figure.read_bytes().startswith(PNG_MAGIC)


def test_a_drift_fails_with_the_verdict_line_and_the_figure(lossdiff, tmp_path):
    a = arms(tmp_path, "a")
    b = arms(tmp_path, "bug", drift=2e-4)
    with pytest.raises(AssertionError) as e:
        lossdiff.assert_equivalent(a, b)
    msg = str(e.value)
    assert "B diverged from A" in msg
    verdict = msg.splitlines()[1]  # the verdict line comes right after the headline
    assert " vs " in verdict and "diverged" in verdict, msg
    figure = next(line.split("figure: ", 1)[1] for line in msg.splitlines() if "figure: " in line)
    assert open(figure, "rb").read().startswith(PNG_MAGIC)


def test_a_nan_in_one_arm_fails_at_its_step(lossdiff, tmp_path):
    a = write_plain_jsonl(tmp_path / "a.jsonl", curve(100, 1))
    b = write_plain_jsonl(tmp_path / "b.jsonl", curve(100, 1, nan_at=40))
    with pytest.raises(AssertionError, match="step 40"):
        lossdiff.assert_equivalent(a, b)


def test_a_malformed_file_is_an_input_error_naming_it(lossdiff, tmp_path):
    a = write_plain_jsonl(tmp_path / "a.jsonl", curve(50, 1))
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": \n')
    with pytest.raises(LossdiffInputError) as e:
        lossdiff.assert_equivalent(a, bad)
    assert str(bad) in str(e.value) and "line 2" in str(e.value)
    with pytest.raises(LossdiffInputError, match="missing.jsonl"):
        lossdiff.assert_equivalent(a, tmp_path / "missing.jsonl")


SPEC = """\
[experiment]
name = "py_helper"
seeds = 3
declared = ["external.command"]

[[arm]]
name = "clean"
command = "python3 TOY --seed {seed} --steps 100 --out {out}"
timeout_s = 60

[[arm]]
name = "other"
command = "python3 TOY --out {out} --seed {seed} --steps 100 BUG"
timeout_s = 60
"""


def spec(tmp_path, bug):
    text = SPEC.replace("TOY", str(REPO / "scripts" / "toy_train.py"))
    path = tmp_path / "py_helper.toml"
    path.write_text(text.replace("BUG", "--bug" if bug else ""))
    return path


def test_run_gate_blesses_passes_and_fails_with_figures(lossdiff, tmp_path):
    local = {"CI": ""}  # goldens are written only off CI; the test's own tmp_path is the store
    s = spec(tmp_path, bug=False)
    kw = dict(cwd=tmp_path, args=["--no-cache"])
    with pytest.raises(AssertionError) as e:
        lossdiff.assert_run_passes(s, env=local, **kw)
    assert "no golden at" in str(e.value)
    # lossdiff's own hint names this test (the helper passes LOSSDIFF_BLESS_COMMAND).
    assert f"bless it with `{testing.bless_command()}`" in str(e.value)
    assert "test_helpers_binary.py::test_run_gate_blesses_passes_and_fails_with_figures`" in str(e.value)

    lossdiff.assert_run_passes(s, env={**local, "LOSSDIFF_UPDATE": "always"}, **kw)
    r = lossdiff.assert_run_passes(s, env=local, **kw)
    assert (r.report / "summary.json").is_file()
    assert "FAIL" not in r.stdout

    s = spec(tmp_path, bug=True)
    with pytest.raises(AssertionError) as e:
        lossdiff.assert_run_passes(s, env=local, **kw)
    msg = str(e.value)
    assert "clean vs other: diverged" in msg, msg
    figures = [line.split("): ", 1)[1] for line in msg.splitlines() if line.strip().startswith("figure (")]
    assert figures, msg
    assert all(open(f, "rb").read().startswith(PNG_MAGIC) for f in figures)


TWO_ARMS = """\
[experiment]
name = "py_bless"
seeds = 2

declared = ["external.command"]

[[arm]]
name = "clean"
command = "python3 WRAP --seed {seed} --steps 100 --out {out}"
timeout_s = 60

[[arm]]
name = "twin"
command = "python3 TWIN --seed {seed} --steps 100 --out {out}"
timeout_s = 60
"""


def write_wrapper(path, bug):
    toy = REPO / "scripts" / "toy_train.py"
    extra = " + ['--bug']" if bug else ""
    path.write_text(f"import os, sys\nos.execvp('python3', ['python3', {str(toy)!r}] + sys.argv[1:]{extra})\n")


def test_a_failing_golden_names_this_tests_bless_command_not_cargo_test(lossdiff, tmp_path):
    # See: issue #19 — a failing gate told Python users to run `LOSSDIFF_UPDATE=always cargo test`.
    local = {"CI": ""}
    wrapper = tmp_path / "train.py"
    twin = tmp_path / "twin.py"
    write_wrapper(wrapper, bug=False)
    write_wrapper(twin, bug=False)
    s = tmp_path / "py_bless.toml"
    s.write_text(TWO_ARMS.replace("WRAP", str(wrapper)).replace("TWIN", str(twin)))
    kw = dict(cwd=tmp_path, args=["--no-cache"])
    lossdiff.assert_run_passes(s, env={**local, "LOSSDIFF_UPDATE": "always"}, **kw)
    # The script changes, the spec does not: the golden check fails (not stale).
    write_wrapper(wrapper, bug=True)
    with pytest.raises(AssertionError) as e:
        lossdiff.assert_run_passes(s, env=local, **kw)
    msg = str(e.value)
    assert "clean vs golden" in msg and "diverged" in msg, msg
    assert f"if the change is intended, bless it with `{testing.bless_command()}`" in msg, msg
    assert "cargo test" not in msg, msg
    assert "late-window effect" in msg and "vs margin" in msg, msg


def test_outside_pytest_the_bless_command_reruns_the_script(tmp_path):
    script = tmp_path / "check_numerics.py"
    script.write_text("")
    got = testing.bless_command(environ={}, argv=[str(script), "--fast"])
    assert got == f"LOSSDIFF_UPDATE=always python3 {script} --fast"
    # An interactive session has no command to name: lossdiff's own hint stands.
    assert testing.bless_command(environ={}, argv=[""]) is None
    assert testing.bless_command(environ={}, argv=["-c"]) is None
