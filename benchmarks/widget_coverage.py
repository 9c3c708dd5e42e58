"""Line coverage of the module's Widget file by the GUI harness tests.

    .venv/bin/python benchmarks/widget_coverage.py [extra pytest arguments]

Runs Testing/test_widget_gui.py under pytest-cov (the test extra of pyproject.toml)
and prints the share of VirtualContrast/VirtualContrast.py's lines it executes,
then the line numbers it never reaches. The same figure by hand:

    .venv/bin/python -m pytest Testing/test_widget_gui.py -p no:cacheprovider \\
        --cov=VirtualContrast --cov-report=term-missing --cov-config=/dev/null
    (read the VirtualContrast/VirtualContrast.py row)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WIDGET_FILE = REPO / "VirtualContrast" / "VirtualContrast.py"
TESTS = REPO / "Testing" / "test_widget_gui.py"


def main(argv: list[str]) -> int:
    import coverage

    with tempfile.TemporaryDirectory() as folder:
        dataFile = Path(folder) / ".coverage"
        env = dict(os.environ, COVERAGE_FILE=str(dataFile))
        command = [sys.executable, "-m", "pytest", str(TESTS), "-q", "-p", "no:cacheprovider",
                   "--cov=VirtualContrast", "--cov-report=", *argv]
        result = subprocess.run(command, cwd=REPO, env=env)
        if not dataFile.exists():
            print("no coverage data: the tests did not run", file=sys.stderr)
            return result.returncode or 1
        cov = coverage.Coverage(data_file=str(dataFile))
        cov.load()
        _, statements, _, missing, missingText = cov.analysis2(str(WIDGET_FILE))
        percent = 100.0 * (len(statements) - len(missing)) / len(statements)
        print(f"\n{WIDGET_FILE.relative_to(REPO)}: {percent:.1f}% of {len(statements)} statements executed by "
              f"{TESTS.relative_to(REPO)} (pytest exit code {result.returncode})")
        print(f"never executed: {missingText or '-'}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
