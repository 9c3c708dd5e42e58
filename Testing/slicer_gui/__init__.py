"""A GUI harness that runs a scripted module's real Widget class: Slicer 5.10's own Python layer on
slicer-core's MRML, with PySide6 widgets offscreen standing in for Slicer's Qt.

How the two `slicer` packages are joined (see `harness.joinSlicer`)
-------------------------------------------------------------------
slicer-core's `slicer/__init__.py` is a meta-package: it copies the public names
of every module beside it (`slicer_core` = the MRML classes and logics, and its
own newer `util.py`) into the `slicer` namespace. Slicer's own
`Base/Python/slicer/__init__.py` instead creates `slicer.modules` and
`slicer.moduleNames` and star-imports the C++ "kits" (absent outside the
application). Neither can simply go first on sys.path: Slicer's would shadow the
MRML classes, and slicer-core's loop would import every file of Slicer's folder
(`slicer.logic` needs the application's C++ libraries).

So slicer-core's package stays the `slicer` package (MRML classes from there) and
Slicer's folder is put first on its `__path__`: `slicer.ScriptedLoadableModule`,
`slicer.parameterNodeWrapper`, `slicer.i18n`, `slicer.testing` and `slicer.util`
are then Slicer 5.10's files, unchanged, imported as submodules of that package.
slicer-core's own util (already imported by its `__init__`) is replaced: it is
removed from sys.modules, and the names it had copied into `slicer.` are dropped,
as real Slicer has no `slicer.getNode`. What Slicer's `__init__` adds is done
here the same way: `slicer.modules` / `slicer.moduleNames` are modules registered
in sys.modules. The shared folder is read in place (never copied) and no
`__pycache__` is written into it. Everything is restored when the session ends.

Where ../shared/slicer-5.10.0 is absent, `SKIP_REASON` says so: the tests of this
harness skip with it (decided here only).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SLICER_PYTHON = REPO.parent / "shared" / "slicer-5.10.0" / "Base" / "Python" / "slicer"
MODULE_FILE = REPO / "VirtualContrast" / "VirtualContrast.py"

SKIP_REASON = None if (SLICER_PYTHON / "ScriptedLoadableModule.py").is_file() else (
    f"Slicer 5.10's Python layer ({SLICER_PYTHON}) is absent on this machine: the GUI harness runs the "
    "module's Widget on Slicer's own ScriptedLoadableModule, parameterNodeWrapper and util.py")
