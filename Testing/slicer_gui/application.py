"""The application around a scripted module: `slicer.app`, its module manager and layout manager, the
main window, and the two C++ classes that host a scripted module (read from Slicer's
Base/QTGUI/qSlicerScriptedLoadableModule*.cxx and qSlicerAbstractCoreModule.cxx).

How Slicer brings a scripted module up, and so how the harness does:

1. qSlicerScriptedLoadableModule::setPythonSource(path): the Python module named
   after the file is taken from sys.modules or executed from the file, the class
   of that name is instantiated with the C++ module object as `parent`, and
   `slicer.modules.<Name>Instance` is set. The module manager registers the C++
   object as `slicer.modules.<name>` (lower case) and `slicer.moduleNames.<Name>`.
2. widgetRepresentation() (first use): a qSlicerScriptedLoadableModuleWidget is
   made, setPythonSource instantiates `<Name>Widget(thatWidget)` and sets
   `slicer.modules.<Name>Widget`; setModule() calls setup(); then setMRMLScene.
3. Selecting the module calls enter() (isEntered becomes true); leaving it, exit().
4. reload() (from slicer.util.reloadScriptedModule) instantiates the class again from
   the re-imported Python module and calls setup(), not enter().
5. On exit the module manager emits moduleAboutToBeUnloaded(name): the widget's
   cleanup() runs.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Property, Signal

from .mrml_widgets import qSlicerWidget
from .pythonqt import PythonQtObject, declareProperties, pythonQtClass

import slicer


def _pythonModule(path: str):
    """The Python module of a scripted module file: from sys.modules, else executed from the file."""
    name = Path(path).stem
    if name not in sys.modules:
        if str(Path(path).parent) not in sys.path:
            sys.path.insert(0, str(Path(path).parent))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@declareProperties
class qSlicerScriptedLoadableModuleWidget(qSlicerWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        pythonQtClass(QtWidgets.QVBoxLayout)(self)
        self._pythonSource = ""
        self._self = None
        self._module = None
        self._entered = False

    isEntered = Property(bool, lambda self: self._entered)

    def setPythonSource(self, path: str, className: str = "") -> bool:
        className = className or Path(path).stem + "Widget"
        self._self = getattr(_pythonModule(path), className)(self)
        self._pythonSource = path
        setattr(slicer.modules, className, self._self)
        return True

    def pythonSource(self) -> str:
        return self._pythonSource

    def self(self):
        return self._self

    def module(self):
        return self._module

    def setModule(self, module) -> None:
        self._module = module
        self.setup()

    def setup(self) -> None:
        self._self.setup()

    def enter(self) -> None:
        self._entered = True
        self._self.enter()

    def exit(self) -> None:
        self._entered = False
        self._self.exit()

    def reload(self) -> None:
        if os.path.exists(self._pythonSource):
            self.setPythonSource(self._pythonSource)
            self.setup()


@declareProperties
class qSlicerScriptedLoadableModule(PythonQtObject, QtCore.QObject):
    """The C++ module object a scripted module's class gets as `parent` (its title, help, ... go here)."""

    def __init__(self, path: str, parent=None):
        super().__init__(parent)
        self._values = {"path": str(path), "name": Path(path).stem, "title": "", "categories": [],
                        "contributors": [], "dependencies": [], "associatedNodeTypes": [], "helpText": "",
                        "acknowledgementText": "", "icon": None, "hidden": False, "index": -1}
        self._widget = None
        self._self = None

    def _property(name, kind):
        return Property(kind, lambda self: self._values[name],
                        lambda self, value: self._values.__setitem__(name, value))

    path = _property("path", str)
    name = _property("name", str)
    title = _property("title", str)
    categories = _property("categories", "QStringList")
    contributors = _property("contributors", "QStringList")
    dependencies = _property("dependencies", "QStringList")
    associatedNodeTypes = _property("associatedNodeTypes", "QStringList")
    helpText = _property("helpText", str)
    acknowledgementText = _property("acknowledgementText", str)
    icon = _property("icon", object)
    hidden = _property("hidden", bool)
    index = _property("index", int)
    del _property

    def setPythonSource(self, path: str) -> bool:
        self._self = getattr(_pythonModule(path), Path(path).stem)(self)
        setattr(slicer.modules, Path(path).stem + "Instance", self._self)
        return True

    def widgetRepresentation(self):
        if self._widget is None:
            self._widget = self.createNewWidgetRepresentation()
        return self._widget

    def createNewWidgetRepresentation(self):
        widget = qSlicerScriptedLoadableModuleWidget()
        widget.setPythonSource(self._values["path"])
        widget.setModule(self)
        widget.setMRMLScene(slicer.mrmlScene)
        return widget

    def logic(self):
        return None  # a scripted module's Python logic is reached through its widget (slicer.util.getModuleLogic)


class qSlicerModuleManager(pythonQtClass(QtCore.QObject)):
    moduleAboutToBeUnloaded = Signal(str)

    def __init__(self):
        super().__init__()
        self._modules: dict[str, qSlicerScriptedLoadableModule] = {}

    def module(self, name: str):
        return self._modules.get(name)

    def factoryManager(self):
        return self

    def loadedModuleNames(self) -> list[str]:
        return list(self._modules)

    def loadScriptedModule(self, path) -> qSlicerScriptedLoadableModule:
        """Instantiate a scripted module as Slicer's factory does and register it under slicer.modules."""
        module = qSlicerScriptedLoadableModule(str(path), self)
        module.setPythonSource(str(path))
        self._modules[module.name] = module
        setattr(slicer.modules, module.name.lower(), module)
        setattr(slicer.moduleNames, module.name, module.name)
        return module

    def unloadModules(self) -> None:
        """What the application does on exit: each module's widget gets its cleanup() call."""
        for name in list(self._modules):
            self.moduleAboutToBeUnloaded.emit(name)


class LayoutManager:
    """qSlicerLayoutManager reduced to the scene's layout node and a slice logic per slice view."""

    def __init__(self, scene, appLogic):
        self._scene, self._appLogic = scene, appLogic

    def _layoutNode(self):
        return self._scene.GetSingletonNode("vtkMRMLLayoutNode", "vtkMRMLLayoutNode")

    @property
    def layout(self) -> int:
        return self._layoutNode().GetViewArrangement()

    @layout.setter
    def layout(self, arrangement: int) -> None:
        self._layoutNode().SetViewArrangement(arrangement)

    def setLayout(self, arrangement: int) -> None:
        self.layout = arrangement

    def layoutLogic(self):
        return self._scene._virtualContrastLogics[1]

    def _sliceNodes(self) -> list:
        return [self._scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
                for i in range(self._scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"))]

    def sliceViewNames(self) -> list[str]:
        return [node.GetLayoutName() for node in self._sliceNodes()]

    def mrmlSliceLogics(self):
        """The application logic's slice logics, one per slice node (made as slice views would make them)."""
        import vtk

        logics = self._appLogic.GetSliceLogics() or vtk.vtkCollection()
        known = {logics.GetItemAsObject(i).GetSliceNode() for i in range(logics.GetNumberOfItems())}
        for node in self._sliceNodes():
            if node not in known:
                logic = slicer.vtkMRMLSliceLogic()
                logic.SetMRMLApplicationLogic(self._appLogic)
                logic.SetMRMLScene(self._scene)
                logic.SetSliceNode(node)
                logics.AddItem(logic)
        self._appLogic.SetSliceLogics(logics)
        return logics


class _ApplicationSignals(pythonQtClass(QtCore.QObject)):
    startupCompleted = Signal()


class SlicerApplication:
    """`slicer.app`: qSlicerApplication's attributes that Slicer's Python and the module use; the rest of
    QApplication through delegation. Not in testing mode, so message boxes take their real path.
    Its own signals (startupCompleted) connect by signature, as in PythonQt."""

    applicationName = "Slicer"
    applicationVersion = "5.10.0"
    majorVersion, minorVersion = 5, 10

    def __init__(self, qapp, temporaryPath: str, mainWindow):
        self._qapp = qapp
        self.temporaryPath = temporaryPath
        self._mainWindow = mainWindow
        self._moduleManager = qSlicerModuleManager()
        self._signals = _ApplicationSignals()
        self.startupCompleted = self._signals.startupCompleted

    def __getattr__(self, name):
        return getattr(self._qapp, name)

    def connect(self, signature: str, slot) -> bool:
        return self._signals.connect(signature, slot)

    def disconnect(self, signature: str, slot) -> bool:
        return self._signals.disconnect(signature, slot)

    def testingEnabled(self) -> bool:
        return False

    def processEvents(self, *args) -> None:
        QtWidgets.QApplication.processEvents(*args)

    def settings(self):
        import qt

        return qt.QSettings()

    userSettings = settings

    def moduleManager(self) -> qSlicerModuleManager:
        return self._moduleManager

    def applicationLogic(self):
        return slicer.mrmlScene._virtualContrastLogics[0]

    def mrmlScene(self):
        return slicer.mrmlScene

    def layoutManager(self) -> LayoutManager:
        return LayoutManager(slicer.mrmlScene, self.applicationLogic())

    def topLevelWidgets(self) -> list:
        return [self._mainWindow]

    def translate(self, context: str, text: str) -> str:
        return QtCore.QCoreApplication.translate(context, text)

    def restart(self) -> None:
        raise NotImplementedError("the harness does not restart the application")

    def pauseRender(self) -> None:
        pass

    def resumeRender(self) -> None:
        pass


def mainWindow():
    """qSlicerMainWindow: what slicer.util.mainWindow() finds (by object name) and dialogs use as parent."""
    window = pythonQtClass(QtWidgets.QMainWindow)()
    window.objectName = "qSlicerMainWindow"
    return window


class SampleDataLogic:
    """Slicer's SampleData module (a scripted module, not part of Base/Python): only the registration API a
    module calls at startup; the registered sources are kept for the test to "click"."""

    sources: list = []

    @classmethod
    def registerCustomSampleDataSource(cls, category="Custom", sampleName=None, uris=None, fileNames=None,
                                       nodeNames=None, thumbnailFileName=None, loadFileType="VolumeFile",
                                       customDownloader=None, **kwargs):
        import types

        cls.sources.append(types.SimpleNamespace(category=category, sampleName=sampleName, uris=uris,
                                                 fileNames=fileNames, nodeNames=nodeNames, loadFileType=loadFileType,
                                                 thumbnailFileName=thumbnailFileName,
                                                 customDownloader=customDownloader, **kwargs))


def sampleDataModule():
    import types

    module = types.ModuleType("SampleData", SampleDataLogic.__doc__)
    module.SampleDataLogic = SampleDataLogic
    SampleDataLogic.sources = []
    return module
