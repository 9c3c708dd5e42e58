"""Harness of the hostile-input suite (issue 14, Testing/test_hostile_*.py): the real CLI on one bad input.

Each case runs `virtual-contrast ...` through the CLI's own entry point
(`cli.main`, the function the console script calls) in this process, so that
the suite stays fast enough for CI, and classifies what happened:

    clear error      exit code 2 and exactly one line on stderr that names the file and says the problem
    handled          exit code 0 and a correct result (the case checks the result)
    traceback        an exception escaped main(), or a traceback on stderr
    silently wrong   exit code 0 with a wrong result (the case's check fails)
    lost             a file that existed before the command is changed or gone, or a half-written one

`expect_clear_error` asserts the first outcome and that nothing under the
watched folders changed (no output left behind, nothing earlier overwritten).
A handful of cases also go through a real child process (`run_child`), which
proves the console entry point behaves as main() does.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from VirtualContrastTraining import cli
from VirtualContrastTraining.events import EXIT_BAD_INPUT

REPO = Path(__file__).resolve().parents[1]
ERROR_LINE = re.compile(r"^virtual-contrast [\w-]+: error: ")

# The expectations each case has met so far ("clear error", "handled"): benchmarks/hostile_census.py empties
# it before each case and, when the case passes, counts its last one; a failure counts by its message.
MET: list[str] = []


@dataclass
class Outcome:
    code: int | None
    stdout: str
    stderr: str
    escaped: str = ""     # the traceback of an exception that escaped main(), else ""

    @property
    def error_lines(self) -> list[str]:
        """The CLI's error lines ("virtual-contrast CMD: error: ..."); progress lines on stderr are not errors."""
        return [line for line in self.stderr.splitlines() if ERROR_LINE.match(line)]

    def describe(self) -> str:
        return f"exit {self.code}\nstderr:\n{self.stderr[-3000:]}\nescaped:\n{self.escaped[-3000:]}"


def run_cli(*args: str | os.PathLike) -> Outcome:
    """`virtual-contrast ARGS` through cli.main in this process; stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    escaped = ""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - what the suite exists to catch
            code, escaped = None, traceback.format_exc()
    return Outcome(code, out.getvalue(), err.getvalue(), escaped)


def run_child(*args: str | os.PathLike, timeout: float = 300, env: dict | None = None) -> Outcome:
    """`python -m VirtualContrastTraining ARGS` in a real child process."""
    done = subprocess.run([sys.executable, "-m", "VirtualContrastTraining", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return Outcome(done.returncode, done.stdout, done.stderr)


def snapshot(*roots: str | os.PathLike) -> dict[str, str]:
    """Every file under `roots` (or the file itself) -> sha256 of its bytes; folders -> "dir"."""
    state = {}
    for root in map(Path, roots):
        if root.is_file():
            state[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
        elif root.is_dir():
            state[str(root)] = "dir"
            for path in sorted(root.rglob("*")):
                state[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def expect_clear_error(outcome: Outcome, *, names: str | os.PathLike | None, says: str | tuple[str, ...],
                       before: dict[str, str] | None = None, watched: tuple = ()) -> None:
    """Exit code 2, one error line on stderr naming `names` (a file; None: no file is involved) and containing
    `says` (each of them, case-insensitive), and the watched folders unchanged since `before`."""
    assert not outcome.escaped and "Traceback" not in outcome.stderr, f"traceback:\n{outcome.describe()}"
    assert outcome.code == EXIT_BAD_INPUT, f"expected a clear error (exit 2):\n{outcome.describe()}"
    assert len(outcome.error_lines) == 1, f"expected one error line on stderr:\n{outcome.describe()}"
    line = outcome.error_lines[0]
    if names is not None:
        assert str(names) in line or Path(names).name in line, f"the message does not name {names}: {line}"
    for word in (says,) if isinstance(says, str) else says:
        assert word.lower() in line.lower(), f"the message does not say {word!r}: {line}"
    if before is not None:
        assert snapshot(*watched) == before, "lost: files changed, appeared or went although the command refused"
    MET.append("clear error")


def expect_handled(outcome: Outcome) -> None:
    """Exit code 0 without a traceback; the case then checks that the result is right."""
    assert not outcome.escaped and "Traceback" not in outcome.stderr, f"traceback:\n{outcome.describe()}"
    assert outcome.code == 0, f"expected success:\n{outcome.describe()}"
    MET.append("handled")
