"""Install the harness in this process (`install`) and give each test a fresh application (`Session`).

A Session is what a user's Slicer is when they open the module: a new slicer-core
scene set up like Slicer's, a main window, `slicer.app`, settings in the test's own
folder, the module instantiated by the module manager. It records dialogs and
exceptions raised in Qt slots (Slicer prints those in its Python console; here an
unexpected one fails the test) and on close does what Slicer's exit does
(exit(), moduleAboutToBeUnloaded -> cleanup()), then checks that no QTimer is
still running and no child process is left.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.machinery
import os
import sys
import time
import types
from pathlib import Path

from . import MODULE_FILE, SLICER_PYTHON

_installed: dict | None = None


def _immortalSingletons() -> None:
    """PySide6 6.12's abi3 wheel returns None, True and False without a new reference on Python < 3.12,
    where they are not yet immortal: every void call lowers None's count and every Python signal's
    emit(), connect() and disconnect() lowers True's, and after a few thousand calls the interpreter
    aborts ("none_dealloc", "bool_dealloc") or crashes on freed memory. Raise their counts once, as
    Python 3.12 makes them immortal."""
    if sys.version_info < (3, 12):
        for singleton in (None, True, False, Ellipsis, NotImplemented):
            ctypes.c_ssize_t.from_address(id(singleton)).value += 1 << 40


class _NoBytecodeLoader(importlib.machinery.SourceFileLoader):
    """Reads Slicer's files in place without writing a __pycache__ into the shared fixture."""

    def set_data(self, path, data, *, _mode=0o666):
        pass


def _sharedPathHook(path: str):
    if not Path(path).resolve().is_relative_to(SLICER_PYTHON):
        raise ImportError(path)
    return importlib.machinery.FileFinder(path, (_NoBytecodeLoader, importlib.machinery.SOURCE_SUFFIXES))


def _qtModule() -> types.ModuleType:
    """`qt`: PySide6's QtCore, QtGui and QtWidgets classes with PythonQt semantics, made on first use."""
    from PySide6 import QtCore, QtGui, QtWidgets

    from . import dialogs, pythonqt

    module = types.ModuleType("qt", "PySide6 behind PythonQt's `qt` module (see slicer_gui.pythonqt)")
    overrides = {"QUiLoader": pythonqt.QUiLoader, "QMenu": pythonqt.QMenu, "QTimer": pythonqt.QTimer,
                 "QMessageBox": dialogs.QMessageBox, "QFileDialog": dialogs.QFileDialog,
                 "QDesktopServices": dialogs.QDesktopServices}

    def __getattr__(name):
        value = overrides.get(name)
        for source in () if value else (QtWidgets, QtGui, QtCore):
            value = getattr(source, name, None)
            if value is not None:
                break
        if value is None or name.startswith("__"):
            raise AttributeError(f"module 'qt' has no attribute {name!r}")
        if name not in overrides and isinstance(value, type) and issubclass(value, QtCore.QObject):
            value = pythonqt.pythonQtClass(value)
        setattr(module, name, value)
        return value

    module.__getattr__ = __getattr__
    return module


def _ctkModule() -> types.ModuleType:
    from . import ctk_widgets

    module = types.ModuleType("ctk", "Stand-ins for the CTK widgets the module uses (see slicer_gui.ctk_widgets)")
    module.__dict__.update(ctk_widgets.CLASSES)
    return module


def joinSlicer() -> None:
    """Slicer 5.10's Python files as submodules of slicer-core's `slicer` package (see the package docstring)."""
    import slicer

    from . import application, ctk_widgets, mrml_widgets, pythonqt

    coreUtil = sys.modules.pop("slicer.util", None)
    for name in dir(coreUtil) if coreUtil else []:
        if not name.startswith("_") and getattr(slicer, name, None) is getattr(coreUtil, name):
            delattr(slicer, name)
    sys.path_hooks.insert(0, _sharedPathHook)
    sys.path_importer_cache.pop(str(SLICER_PYTHON), None)
    slicer.__path__.insert(0, str(SLICER_PYTHON))
    for name in ("modules", "moduleNames"):  # as Slicer's __init__ creates them
        module = types.ModuleType(f"slicer.{name}")
        sys.modules[f"slicer.{name}"] = module
        setattr(slicer, name, module)
    # The C++ classes Slicer's Python and the .ui name: stand-ins, and never-built placeholders for the
    # ones parameterNodeWrapper's connectors only compare types with.
    hosts = {cls.__name__: cls for cls in (application.qSlicerScriptedLoadableModule,
                                            application.qSlicerScriptedLoadableModuleWidget)}
    for name, cls in {**mrml_widgets.CLASSES, **hosts}.items():
        setattr(slicer, name, cls)
    for name in ("qMRMLSliderWidget", "qMRMLSpinBox", "qMRMLRangeWidget", "qMRMLSubjectHierarchyTreeView"):
        setattr(slicer, name, type(name, (mrml_widgets.qMRMLWidget,), {"__init__": _refuse(name)}))
    pythonqt.QUiLoader.customClasses.update({**mrml_widgets.CLASSES, **ctk_widgets.CLASSES})
    for name in ("util", "i18n", "ScriptedLoadableModule", "parameterNodeWrapper", "testing"):
        module = importlib.import_module(f"slicer.{name}")
        assert Path(module.__file__).resolve().is_relative_to(SLICER_PYTHON), module.__file__


def _refuse(name):
    def refuse(self, *args, **kwargs):
        raise NotImplementedError(f"slicer.{name} is not emulated by the test harness (the .ui does not use it)")
    return refuse


def install() -> None:
    """Once per process: offscreen Qt, the `qt` and `ctk` modules, the joined `slicer` package."""
    global _installed
    if _installed is not None:
        return
    import slicer

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    _immortalSingletons()
    from PySide6 import QtCore, QtWidgets

    if QtWidgets.QApplication.instance() is None:
        QtWidgets.QApplication(["Slicer"])
    QtCore.QCoreApplication.setOrganizationName("NA-MIC")
    QtCore.QCoreApplication.setApplicationName("Slicer")
    _installed = {"modules": {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("slicer", "qt", "ctk")},
                  "slicer": dict(slicer.__dict__), "path": list(slicer.__path__), "hooks": list(sys.path_hooks)}
    sys.modules["qt"] = _qtModule()
    sys.modules["ctk"] = _ctkModule()
    joinSlicer()


def uninstall() -> None:
    """Give the process its plain slicer-core `slicer` package back (for tests that run after these)."""
    global _installed
    if _installed is None:
        return
    import slicer

    for name in [k for k in sys.modules if k.split(".")[0] in ("slicer", "qt", "ctk")]:
        if name not in _installed["modules"]:
            del sys.modules[name]
    sys.modules.update(_installed["modules"])
    slicer.__dict__.clear()
    slicer.__dict__.update(_installed["slicer"])
    slicer.__path__[:] = _installed["path"]
    sys.path_hooks[:] = _installed["hooks"]
    sys.path_importer_cache.pop(str(SLICER_PYTHON), None)
    _installed = None


def spin(ms: int = 50) -> None:
    """Run Qt's event loop for `ms` milliseconds (timers fire, queued signals arrive)."""
    from PySide6 import QtCore

    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(ms, loop.quit)
    loop.exec()


def waitUntil(predicate, timeout: float, what: str) -> None:
    """Spin the event loop until `predicate()` holds; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        spin(50)


def descendants() -> set[int]:
    """Living (not zombie) processes descended from this one, read from /proc."""
    parents, states = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            states[int(entry.name)], parents[int(entry.name)] = fields[0], int(fields[1])
    found, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {pid for pid in found if states.get(pid) != "Z"}


class Session:
    """One application run for one test; `close()` ends it as Slicer's exit would and reports leftovers."""

    def __init__(self, folder: Path):
        import slicer
        from PySide6 import QtCore, QtWidgets
        from VirtualContrastLib.headless import newScene

        from . import application, dialogs

        self.folder = Path(folder)
        self.dialogs = dialogs.current = dialogs.Dialogs()
        self.slotErrors: list[BaseException] = []
        self._previousHook = sys.excepthook
        sys.excepthook = self._onSlotError
        settings = self.folder / "settings"
        QtCore.QSettings.setDefaultFormat(QtCore.QSettings.Format.IniFormat)
        QtCore.QSettings.setPath(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, str(settings))
        self.scene = newScene()
        self._holdNodes(self.scene)
        # newScene gives slicer.modules the scene's module logics; Slicer's slicer.modules is a module.
        logics = vars(slicer.modules)
        slicer.modules = sys.modules["slicer.modules"] = types.ModuleType("slicer.modules")
        slicer.modules.__dict__.update(logics)
        slicer.moduleNames = sys.modules["slicer.moduleNames"] = types.ModuleType("slicer.moduleNames")
        slicer.selfTests = {}
        self._sampleData = sys.modules.get("SampleData")
        sys.modules["SampleData"] = self.sampleData = application.sampleDataModule()
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        self.mainWindow = application.mainWindow()
        slicer.app = self.app = application.SlicerApplication(
            QtWidgets.QApplication.instance(), str(self.folder / "tmp"), self.mainWindow)
        self._processesBefore = descendants()
        self.module = None
        self.closed = False

    def _holdNodes(self, scene) -> None:
        """Hold the Python object of every node of the scene for the session.

        slicer-core's VTK (9.6) lets Python's cyclic GC see an observer's callable
        through the observed object's Python wrapper. When that wrapper is reachable
        only through such a cycle, for example parameterNodeWrapper's GUI lambda
        (which closes over a wrapper that holds the node), the GC frees the callable
        while the C++ node keeps the observer, and the node's next event crashes
        the interpreter. After a Reload, the old widget's wrappers form exactly that
        cycle. Holding each node's Python object keeps such cycles reachable.
        """
        import vtk

        self._nodes = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def hold(caller, event, node):
            self._nodes.append(node)
        scene.AddObserver(scene.NodeAddedEvent, hold)

    waitUntil = staticmethod(waitUntil)
    spin = staticmethod(spin)

    def _onSlotError(self, kind, error, traceback) -> None:
        self.slotErrors.append(error)
        self._previousHook(kind, error, traceback)

    # -- the module ---------------------------------------------------------------------------------
    def loadModule(self, path: Path = MODULE_FILE):
        """The module manager's part: import the file afresh, instantiate the Module class, register it."""
        sys.modules.pop(path.stem, None)
        self.module = self.app.moduleManager().loadScriptedModule(path)
        self.app.startupCompleted.emit()
        return self.module

    def openModule(self):
        """Select the module: its widget is made (setup) on first use, shown in the main window and entered."""
        representation = self.module.widgetRepresentation()
        if self.mainWindow.centralWidget() is not representation:
            self.mainWindow.setCentralWidget(representation)
            self.mainWindow.show()
        representation.enter()
        return representation.self()

    # -- ending -------------------------------------------------------------------------------------
    def close(self, timeout: float = 60.0) -> list[str]:
        """Exit the module, unload it (cleanup), then list what is left: running timers, child processes,
        unexpected dialogs and slot exceptions. Leftovers are stopped so that the next test starts clean."""
        from . import pythonqt

        problems = []
        self.closed = True
        try:
            representation = self.module.widgetRepresentation() if self.module and self.module._widget else None
            if representation is not None and representation.isEntered:
                representation.exit()
            self.app.moduleManager().unloadModules()
            running = [t for t in pythonqt.createdTimers if t.isActive()]
            if running:
                problems.append(f"{len(running)} QTimer(s) still running after cleanup()")
            waitUntil(lambda: not (descendants() - self._processesBefore), timeout, "child processes ending")
        except AssertionError as error:
            problems.append(f"child processes left after cleanup(): {sorted(descendants() - self._processesBefore)}"
                            f" ({error})")
        finally:
            for timer in list(pythonqt.createdTimers):
                timer.stop()
            for pid in descendants() - self._processesBefore:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            problems += self.dialogs.problems()
            problems += [f"exception in a Qt slot: {type(e).__name__}: {e}" for e in self.slotErrors]
            sys.excepthook = self._previousHook
            if self._sampleData is None:
                sys.modules.pop("SampleData", None)
            else:
                sys.modules["SampleData"] = self._sampleData
            self.mainWindow.close()
            self.mainWindow.deleteLater()
            spin(0)
            self._nodes.clear()
        return problems
