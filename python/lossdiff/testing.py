"""Test helpers: run ``lossdiff compare`` / ``lossdiff run`` and turn their verdicts into asserts.

A divergence (exit code 1) raises ``AssertionError`` with the verdict line and the figure path; bad
input (exit code 2) raises :class:`LossdiffInputError` with lossdiff's message, which names the
file; anything else that goes wrong running lossdiff raises :class:`LossdiffError`. No pytest
import here: the helpers work under any test runner (see :mod:`lossdiff.pytest_plugin` for the
fixture).

The binary is found by :func:`find_lossdiff`, in this order:

1. the ``lossdiff`` argument of a helper (a path, or a command list);
2. the ``LOSSDIFF_BIN`` environment variable (a path to the binary);
3. ``lossdiff`` on ``PATH``;
4. ``cargo run`` in the lossdiff checkout holding this package or the current directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]
#: One arm: a trace file, or several files that are seeds of one arm.
Arm = Union[PathLike, Sequence[PathLike]]


class LossdiffError(Exception):
    """lossdiff could not be found or run, or ended in an unexpected way."""


class LossdiffInputError(LossdiffError):
    """lossdiff refused its input (exit code 2); the message names the file and what was wrong."""


def _is_lossdiff_checkout(directory: Path) -> bool:
    toml = directory / "Cargo.toml"
    if not toml.is_file():
        return False
    text = toml.read_text(encoding="utf-8", errors="replace")
    return re.search(r'^\s*name\s*=\s*"lossdiff"\s*$', text, re.MULTILINE) is not None


def _find_checkout() -> Optional[Path]:
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for d in (start, *start.parents):
            if _is_lossdiff_checkout(d):
                return d
    return None


def find_lossdiff(lossdiff: Union[None, PathLike, Sequence[str]] = None) -> List[str]:
    """Returns the command that runs lossdiff, as a list to which arguments are appended.

    Order: ``lossdiff`` (a path or a command list), ``$LOSSDIFF_BIN``, ``lossdiff`` on ``PATH``,
    then ``cargo run --quiet --manifest-path <checkout>/Cargo.toml --bin lossdiff --`` in the
    lossdiff checkout that holds this package (or the current directory).

    Raises :class:`LossdiffError` if a given path is not an executable file, or nothing is found.
    """
    if lossdiff is not None and not isinstance(lossdiff, (str, os.PathLike)):
        cmd = [str(part) for part in lossdiff]
        if not cmd:
            raise LossdiffError("lossdiff command is an empty list")
        return cmd
    for origin, value in (("lossdiff argument", lossdiff), ("LOSSDIFF_BIN", os.environ.get("LOSSDIFF_BIN"))):
        if value is None or str(value) == "":
            continue
        path = Path(value)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LossdiffError(f"{origin} = {str(value)!r} is not an executable file")
        return [str(path.resolve())]
    on_path = shutil.which("lossdiff")
    if on_path:
        return [on_path]
    checkout = _find_checkout()
    cargo = shutil.which("cargo")
    if checkout is not None and cargo:
        return [cargo, "run", "--quiet", "--manifest-path", str(checkout / "Cargo.toml"),
                "--bin", "lossdiff", "--"]
    raise LossdiffError(
        "cannot find lossdiff: set LOSSDIFF_BIN to the binary, put `lossdiff` on PATH "
        "(`cargo install --path .` in the repository), or run from a lossdiff checkout with cargo "
        f"installed (checkout: {checkout or 'none found'}, cargo: {cargo or 'not on PATH'})"
    )


def _arm_arg(arm: Arm, what: str) -> str:
    files = [arm] if isinstance(arm, (str, os.PathLike)) else list(arm)
    if not files:
        raise ValueError(f"{what} names no file")
    for f in files:
        if "," in os.fspath(f):
            raise ValueError(f"{what}: {os.fspath(f)!r} contains a comma, which lossdiff reads "
                             "as a separator between seed files; rename the file")
    return ",".join(os.fspath(f) for f in files)


def _stem(arm_arg: str) -> str:
    return Path(arm_arg.split(",")[0]).stem or "arm"


def _absolute(path: PathLike, cwd: Optional[PathLike]) -> Path:
    """Resolves `path` against the directory lossdiff will run in."""
    return (Path(cwd or ".") / path).resolve()


def _run(cmd: List[str], cwd: Optional[PathLike], env: Optional[Mapping[str, str]],
         timeout: Optional[float]) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                              timeout=timeout)
    except FileNotFoundError as e:
        raise LossdiffError(f"cannot run {cmd[0]}: {e.strerror}") from None
    except subprocess.TimeoutExpired:
        raise LossdiffError(f"`{shlex.join(cmd)}` did not finish within {timeout} s") from None


def _check_exit(proc: subprocess.CompletedProcess, cmd: List[str]) -> None:
    """Raises for exit codes other than 0 (match) and 1 (divergence)."""
    if proc.returncode in (0, 1):
        return
    stderr = proc.stderr.strip() or "(no message on stderr)"
    if proc.returncode == 2:
        raise LossdiffInputError(f"{stderr}\n  command: {shlex.join(cmd)}")
    raise LossdiffError(
        f"lossdiff exited with code {proc.returncode} (expected 0 = match, 1 = divergence, "
        f"2 = bad input)\n{stderr}\n  command: {shlex.join(cmd)}"
    )


def _indent(text: str) -> str:
    return "".join("    " + line + "\n" for line in text.rstrip().splitlines())


@dataclasses.dataclass
class CompareResult:
    """What ``lossdiff compare`` said about arm B against arm A."""

    #: ``identical``, ``equivalent``, ``inconclusive`` or ``diverged``.
    verdict: str
    #: The verdict line as printed (``b.jsonl vs a.jsonl (lm_loss): …``).
    verdict_line: str
    #: The figure written by ``--png``.
    figure: Path
    #: The comparison as JSON (``--json``).
    json: Path
    #: The process exit code (0 or 1).
    returncode: int
    #: Everything lossdiff printed.
    stdout: str
    #: The command that was run.
    command: List[str]


def assert_equivalent(
    a: Arm,
    b: Arm,
    *,
    perturb: Optional[Arm] = None,
    declared: Sequence[str] = (),
    metric: Optional[str] = None,
    margin: Optional[float] = None,
    alpha: Optional[float] = None,
    format: Optional[str] = None,
    png: Optional[PathLike] = None,
    allow_inconclusive: bool = True,
    args: Sequence[str] = (),
    lossdiff: Union[None, PathLike, Sequence[str]] = None,
    cwd: Optional[PathLike] = None,
    env: Optional[Mapping[str, str]] = None,
    timeout: Optional[float] = None,
) -> CompareResult:
    """Runs ``lossdiff compare A B`` and raises ``AssertionError`` if B diverged from A.

    ``a`` and ``b`` are trace files, or lists of files that are seeds of one arm. ``perturb`` is A's
    perturbation ensemble (the rounding yardstick). ``declared`` lists the config keys the arms are
    meant to differ in; ``metric``, ``margin`` (relative), ``alpha`` and ``format`` are passed as
    the flags of the same names, and ``args`` verbatim.

    The figure is always written (``png``, default: a new temporary directory) and its path is in
    the failure message; the comparison JSON goes next to it (same name, ``.json``). An ``inconclusive`` verdict passes, as it does for ``lossdiff compare``
    and the gate (exit code 0), unless ``allow_inconclusive=False``.

    Returns the :class:`CompareResult` when the arms match. Raises :class:`LossdiffInputError`
    when lossdiff refuses an input file (the message names it), :class:`LossdiffError` when it
    cannot be run.
    """
    a_arg, b_arg = _arm_arg(a, "arm A"), _arm_arg(b, "arm B")
    if png is None:
        outdir = Path(tempfile.mkdtemp(prefix="lossdiff-compare-"))
        png = outdir / f"{_stem(b_arg)}_vs_{_stem(a_arg)}.png"
    png = _absolute(png, cwd)
    json_path = png.with_suffix(".json")
    cmd = find_lossdiff(lossdiff) + ["compare", a_arg, b_arg, "--png", str(png), "--json", str(json_path)]
    if perturb is not None:
        cmd += ["--perturb", _arm_arg(perturb, "perturb")]
    for key in declared:
        cmd += ["--declared", key]
    for flag, value in (("--metric", metric), ("--margin", margin), ("--alpha", alpha),
                        ("--format", format)):
        if value is not None:
            cmd += [flag, str(value)]
    cmd += [str(x) for x in args]
    proc = _run(cmd, cwd, env, timeout)
    _check_exit(proc, cmd)
    verdict = _verdict_kind(json_path, cmd)
    line = _verdict_line(proc.stdout)
    result = CompareResult(verdict, line, png, json_path, proc.returncode, proc.stdout, cmd)
    if proc.returncode == 1 or (verdict == "inconclusive" and not allow_inconclusive):
        why = "B diverged from A" if proc.returncode == 1 else "the verdict is inconclusive"
        raise AssertionError(
            f"lossdiff compare: {why}\n  {line}\n  figure: {png}\n"
            f"  command: {shlex.join(cmd)}\n  lossdiff's full output:\n{_indent(proc.stdout)}"
        )
    return result


def _verdict_kind(json_path: Path, cmd: List[str]) -> str:
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
        return str(data[0]["comparison"]["verdict"]["kind"])
    except (OSError, ValueError, LookupError, TypeError) as e:
        raise LossdiffError(
            f"{json_path}: expected lossdiff's comparison JSON with [0].comparison.verdict.kind "
            f"({type(e).__name__}: {e})\n  command: {shlex.join(cmd)}"
        ) from None


def _verdict_line(stdout: str) -> str:
    """Returns the first unindented line that is not a `figure:`/`json:` note."""
    for line in stdout.splitlines():
        if line and not line[0].isspace() and not line.startswith(("figure:", "json:")):
            return line
    return "(no verdict line in lossdiff's output)"


@dataclasses.dataclass
class RunResult:
    """What ``lossdiff run`` did."""

    #: The report directory (``index.md``, ``index.html``, ``summary.json``, ``figures/``).
    report: Path
    #: The process exit code (0).
    returncode: int
    #: Everything lossdiff printed.
    stdout: str
    #: The command that was run.
    command: List[str]


def assert_run_passes(
    spec: PathLike,
    *,
    out: Optional[PathLike] = None,
    cells: Sequence[str] = (),
    args: Sequence[str] = (),
    lossdiff: Union[None, PathLike, Sequence[str]] = None,
    cwd: Optional[PathLike] = None,
    env: Optional[Mapping[str, str]] = None,
    timeout: Optional[float] = None,
) -> RunResult:
    """Runs ``lossdiff run SPEC`` and raises ``AssertionError`` if anything fails its expectation.

    ``out`` is the report directory (default: a new temporary directory), ``cells`` selects cells
    (``--cell``), ``args`` are passed verbatim (e.g. ``["--no-cache"]``). Goldens are read from
    ``golden/`` under ``cwd`` (default: the current directory), as the CLI does.

    The failure message lists the failing lines, each failing comparison's figure, the report and,
    when a golden is missing, stale or failing, the command that blesses it from this test (see
    :func:`bless_command`): ``LOSSDIFF_UPDATE=always python3 -m pytest <this test>``.
    """
    if out is None:
        out = tempfile.mkdtemp(prefix="lossdiff-run-")
    report = _absolute(out, cwd)
    cmd = find_lossdiff(lossdiff) + ["run", os.fspath(spec), "--out", str(report)]
    for cell in cells:
        cmd += ["--cell", cell]
    cmd += [str(x) for x in args]
    bless = bless_command()
    if bless is not None:
        # lossdiff's own "no golden … bless it with `…`" hint then names this test's command.
        env = {"LOSSDIFF_BLESS_COMMAND": bless, **(env or {})}
    proc = _run(cmd, cwd, env, timeout)
    _check_exit(proc, cmd)
    if proc.returncode == 1:
        raise AssertionError(_run_failure(proc.stdout, report, cmd))
    return RunResult(report, proc.returncode, proc.stdout, cmd)


def _run_failure(stdout: str, report: Path, cmd: List[str]) -> str:
    lines = [line.strip() for line in stdout.splitlines() if "FAIL" in line]
    msg = "lossdiff run: the gate failed\n" + "".join(f"  {line}\n" for line in lines)
    for name, figure in _failing_figures(report):
        msg += f"  figure ({name}): {figure}\n"
    msg += f"  report: {report / 'index.md'}\n"
    bless = bless_command() or "LOSSDIFF_UPDATE=always set on a re-run"
    if ("no golden at" in stdout or "is stale" in stdout or "against golden" in stdout) \
            and bless not in stdout:
        # A lossdiff that ignores LOSSDIFF_BLESS_COMMAND names `cargo test`; say the right command.
        msg += f"  to bless: `{bless}`, or `lossdiff golden accept` where golden/ is\n"
    msg += f"  command: {shlex.join(cmd)}\n  lossdiff's full output:\n{_indent(stdout)}"
    return msg


def _failing_figures(report: Path) -> List[tuple]:
    """Returns ``(entry name, figure path)`` of each failing entry in the report's summary.json."""
    try:
        summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))
        entries = summary.get("entries", [])
        return [
            (e.get("name", "?"), report / e["figure_path"])
            for e in entries
            if isinstance(e, dict) and e.get("passed") is False and e.get("figure_path")
        ]
    except (OSError, ValueError, AttributeError, TypeError):
        return []  # the failing lines above still say what failed; the report has the rest


#: pytest's rootdir, set by the plugin: test ids in ``PYTEST_CURRENT_TEST`` are relative to it.
_pytest_rootdir: Optional[Path] = None


def bless_command(environ: Optional[Mapping[str, str]] = None,
                  rootdir: Optional[PathLike] = None,
                  argv: Optional[Sequence[str]] = None) -> Optional[str]:
    """Returns the command that re-runs the caller with goldens blessed: the current pytest test
    under pytest, else the running Python script (``argv``, default ``sys.argv``), else None (an
    interactive session: lossdiff's own hint, ``lossdiff run SPEC --bless``, stands).

    The test id (``PYTEST_CURRENT_TEST``, relative to pytest's ``rootdir``) is rewritten relative
    to the current directory, so the command works where pytest was started. The helpers pass the
    command to lossdiff in ``LOSSDIFF_BLESS_COMMAND``, so every hint lossdiff prints names it.
    """
    environ = os.environ if environ is None else environ
    current = environ.get("PYTEST_CURRENT_TEST", "")
    node = current.rsplit(" (", 1)[0] if current else ""
    if not node:
        return _script_bless_command(sys.argv if argv is None else argv)
    root = rootdir if rootdir is not None else _pytest_rootdir
    if root is not None:
        file, sep, rest = node.partition("::")
        full = Path(root, file).resolve()
        try:
            file = str(full.relative_to(Path.cwd().resolve()))
        except ValueError:
            file = str(full)
        node = file + sep + rest
    return f"LOSSDIFF_UPDATE=always python3 -m pytest {shlex.quote(node)}"


def _script_bless_command(argv: Sequence[str]) -> Optional[str]:
    """Returns ``LOSSDIFF_UPDATE=always python3 SCRIPT ARGS…`` for a script run from a file."""
    if not argv or not argv[0] or not Path(argv[0]).is_file():
        return None
    if "pytest" in Path(argv[0]).parts or Path(argv[0]).name.startswith(("pytest", "py.test")):
        return None  # pytest itself, outside a test (collection): no test to re-run
    return "LOSSDIFF_UPDATE=always " + shlex.join(["python3", *[str(a) for a in argv]])


class Lossdiff:
    """The helpers bound to one lossdiff command and one output directory (the pytest fixture).

    Figures and reports go under ``tmp``; every keyword of :func:`assert_equivalent` and
    :func:`assert_run_passes` is accepted.
    """

    def __init__(self, command: List[str], tmp: PathLike) -> None:
        self.command = list(command)
        self.tmp = Path(tmp)
        self._count = 0

    def _fresh(self, name: str) -> Path:
        self._count += 1
        d = self.tmp / f"lossdiff-{self._count}"
        d.mkdir(parents=True, exist_ok=True)
        return d / name

    def assert_equivalent(self, a: Arm, b: Arm, **kw) -> CompareResult:
        """:func:`assert_equivalent` with this fixture's binary; the figure goes under ``tmp``."""
        kw.setdefault("lossdiff", self.command)
        if kw.get("png") is None:
            a_arg, b_arg = _arm_arg(a, "arm A"), _arm_arg(b, "arm B")
            kw["png"] = self._fresh(f"{_stem(b_arg)}_vs_{_stem(a_arg)}.png")
        return assert_equivalent(a, b, **kw)

    def assert_run_passes(self, spec: PathLike, **kw) -> RunResult:
        """:func:`assert_run_passes` with this fixture's binary; the report goes under ``tmp``."""
        kw.setdefault("lossdiff", self.command)
        if kw.get("out") is None:
            kw["out"] = self._fresh("report")
        return assert_run_passes(spec, **kw)

    def run(self, *args: str, cwd: Optional[PathLike] = None,
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        """Runs ``lossdiff ARGS…`` and returns the completed process (no exit-code check)."""
        return _run(self.command + [str(a) for a in args], cwd, env, None)
