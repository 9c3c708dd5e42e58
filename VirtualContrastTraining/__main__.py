"""`python -m VirtualContrastTraining ...` (how Slicer's PythonSlicer starts the engine).

A package folder named by $VIRTUALCONTRAST_PACKAGES goes first on the path
before anything else is imported: the Slicer module's own folder, whose
versions (pydicom 3) must win over those of Slicer's Python (pydicom 2.4),
whose paths the PythonSlicer launcher adds to the PYTHONPATH it inherits,
possibly ahead of it.
"""

import os
import sys

from VirtualContrastTraining import PACKAGES_VARIABLE

if os.environ.get(PACKAGES_VARIABLE):
    sys.path.insert(0, os.environ[PACKAGES_VARIABLE])

from VirtualContrastTraining.cli import main  # noqa: E402  (after the path is set)

raise SystemExit(main())
