"""The hostile-input suite's census (issue 14): every case of Testing/test_hostile_*.py by outcome.

    .venv/bin/python benchmarks/hostile_census.py [-k EXPR]

Runs the cases with pytest in this process and prints one line per outcome:
clear error (exit 2, one line naming the file, nothing changed), handled
(exit 0, right result), and, for a case that fails, the kind its message
names: traceback, lost (files changed although the command refused), or
silently wrong (any other failed check). The suite's goal is 0 for the last
three; the table goes to docs/benchmarks.md.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest

TESTING = Path(__file__).resolve().parents[1] / "Testing"
sys.path.insert(0, str(TESTING))

import hostile  # noqa: E402 (Testing/ on the path first)


class Census:
    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self.groups: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.failed: list[str] = []

    def pytest_runtest_setup(self, item) -> None:
        hostile.MET.clear()

    def pytest_runtest_logreport(self, report) -> None:
        if report.when != "call" and not report.failed:
            return
        if report.skipped:
            kind = "skipped"
        elif report.passed:
            kind = hostile.MET[-1] if hostile.MET else "handled (own check)"
        else:
            text = str(report.longrepr)
            kind = "traceback" if "traceback:" in text else "lost" if "lost:" in text else "silently wrong"
            self.failed.append(f"{report.nodeid}: {kind}")
        self.counts[kind] += 1
        self.groups[report.nodeid.split("::")[0].rsplit("/", 1)[-1]][kind] += 1


def main() -> int:
    census = Census()
    files = sorted(str(p) for p in TESTING.glob("test_hostile_*.py"))
    pytest.main(["-q", "-p", "no:cacheprovider", "--no-header", "-o", "console_output_style=classic",
                 *sys.argv[1:], *files], plugins=[census])
    total = sum(census.counts.values())
    print(f"\nhostile cases: {total}")
    for kind in ("clear error", "handled", "handled (own check)", "traceback", "silently wrong", "lost", "skipped"):
        print(f"  {kind:20} {census.counts.get(kind, 0)}")
    for group, counts in sorted(census.groups.items()):
        print(f"  {group}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for line in census.failed:
        print(f"  FAILED {line}")
    return 0 if not census.failed else 1


if __name__ == "__main__":
    sys.exit(main())
