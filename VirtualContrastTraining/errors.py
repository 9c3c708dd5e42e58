"""One exception type for bad input, so the CLI can print one clear line.

Library errors (pydicom, SimpleITK, torch) are caught where a file is read and
re-raised as InputError naming the file and the problem, never as a traceback
from deep inside a library.
"""

from __future__ import annotations

import os


class InputError(Exception):
    """Bad user input: a file that cannot be used, or an argument that makes no sense."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
