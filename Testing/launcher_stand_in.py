"""A stand-in for PythonSlicer in tests: a launcher that starts the interpreter as its child and waits.

PythonSlicer is a CTK application launcher (../shared/slicer-5.10.0/README.md,
"PythonSlicer is a launcher"). This script behaves like it where it matters
to VirtualContrastLib.jobs:

- it starts `INTERPRETER ARGS...` with subprocess, not exec: the engine is a
  grandchild of the Job, with a pid of its own;
- the child inherits its stdin/stdout/stderr, so the engine writes straight
  into the Job's pipes;
- it installs no handler for SIGTERM: a signal sent to the launcher stops
  the launcher only (default action), the engine runs on;
- it exits with the child's exit code, as the CTK launcher returns its
  child's (128 + N where the child died of signal N, as a shell reports it).

    python launcher_stand_in.py INTERPRETER ARGS...

A Job takes one executable as its `python`: write_launcher() writes a shell
wrapper that runs this script in front of the given interpreter (POSIX).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def write_script(path: Path, command: list[str]) -> Path:
    """An executable /bin/sh script that replaces itself (exec) with `command` plus its own arguments."""
    quoted = " ".join("'" + part.replace("'", "'\\''") + "'" for part in command)
    path.write_text(f'#!/bin/sh\nexec {quoted} "$@"\n', encoding="utf-8")
    path.chmod(0o755)
    return path


def write_launcher(folder: Path, interpreter: str | Path = sys.executable) -> Path:
    """`folder/PythonSlicer`: the stand-in launcher in front of `interpreter`, to pass as Job(python=...)."""
    return write_script(Path(folder) / "PythonSlicer", [sys.executable, str(Path(__file__).resolve()), str(interpreter)])


def main(argv: list[str]) -> int:
    child = subprocess.Popen(argv)
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
