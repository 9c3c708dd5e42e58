"""`python -m VirtualContrastTraining ...` (how Slicer's PythonSlicer starts the engine)."""

from VirtualContrastTraining.cli import main

raise SystemExit(main())
