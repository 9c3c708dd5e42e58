"""Stand-ins for Slicer's MRML widgets in the module's .ui (read from Slicer's Libs/MRML/Widgets and
Modules/Loadable/*/Widgets sources), kept to what the module and parameterNodeWrapper depend on.

- qMRMLWidget / qSlicerWidget: `setMRMLScene` emits `mrmlSceneChanged(vtkMRMLScene*)`.
- qMRMLNodeComboBox: lists the scene's nodes of `nodeTypes` (exact classes when
  `showChildNodeTypes` is false; hidden nodes only with `showHidden`). With
  `noneEnabled` false it selects the first node when the scene is set, and when
  the first node arrives into a list without action rows: QComboBox selects row 0
  only when rows arrive in an empty list, and add/remove/edit/rename put "Create
  new ..." rows there. When the current node is removed the next node (else the
  previous, else none) becomes current, as QComboBox keeps the row; nodes added
  during a batch (scene close, import) are listed when it ends. `addNode()` is the
  "Create new ..." action (`addEnabled`), `removeCurrentNode()` "Delete current".
  Emits `currentNodeChanged(vtkMRMLNode*)` and `currentNodeIDChanged(QString)` on
  each change. The visible combo box offers the same rows to `activated`.
- qMRMLSegmentSelectorWidget: a segmentation combo box (its `noneEnabled`) and a
  segment combo box; a new segmentation (or an added/removed segment) selects the
  first segment and emits `currentSegmentChanged`; the remembered segment ID is
  kept when the segmentation has no segment, as in C++.
- qSlicerMarkupsPlaceWidget: `setCurrentNode`, `placeMultipleMarkups` with the
  Force*/Show*/Hide* constants, `placeModeEnabled` switching the interaction node
  to Place mode on that markups node, and its place button.
"""

from __future__ import annotations

import shiboken6
import vtk
from PySide6 import QtWidgets
from PySide6.QtCore import Property, Signal

from .pythonqt import PythonQtObject, declareProperties, pythonQtClass

import slicer


class _SceneHolder:
    """qMRMLWidget's and qSlicerObject's scene: set once, announced by mrmlSceneChanged."""

    def mrmlScene(self):
        return getattr(self, "_scene", None)

    def setMRMLScene(self, scene) -> None:
        if scene is self.mrmlScene():
            return
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)


@declareProperties
class qMRMLWidget(_SceneHolder, PythonQtObject, QtWidgets.QWidget):
    mrmlSceneChanged = Signal(object)


@declareProperties
class qSlicerWidget(_SceneHolder, PythonQtObject, QtWidgets.QWidget):
    mrmlSceneChanged = Signal(object)


def _observe(obj, event, callback, calldata=False):
    """AddObserver with a callback that stops once the Qt widget is gone; returns (object, tag)."""
    owner = callback.__self__

    def call(caller, eventId, node=None):
        if shiboken6.isValid(owner):
            callback(node) if calldata else callback()
    if calldata:
        call.CallDataType = vtk.VTK_OBJECT
    return obj, obj.AddObserver(event, call)


def _boolProperty(attribute: str, onChange: str | None = None):
    def setter(self, value):
        setattr(self, attribute, bool(value))
        if onChange:
            getattr(self, onChange)()
    return Property(bool, lambda self: getattr(self, attribute), setter)


@declareProperties
class qMRMLNodeComboBox(PythonQtObject, QtWidgets.QWidget):
    currentNodeChanged = Signal(object)
    currentNodeIDChanged = Signal(str)
    nodeAdded = Signal(object)
    nodeAboutToBeRemoved = Signal(object)
    nodeAddedByUser = Signal(object)
    nodeActivated = Signal(object)
    mrmlSceneChanged = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None
        self._nodeTypes: list[str] = []
        self._hideChildNodeTypes: list[str] = []
        self._noneEnabled = False
        self._addEnabled = self._removeEnabled = True
        self._editEnabled = self._renameEnabled = self._showHidden = False
        self._showChildNodeTypes = self._selectNodeUponCreation = True
        self._baseName = ""
        self._ids: list[str] = []      # the listed nodes, in scene order
        self._currentID = ""
        self._requestedNode = None     # set before the scene: applied when the scene comes
        self._observations: list = []
        self._batch = 0
        self._emptyBeforeBatch = False
        self._comboBox = pythonQtClass(QtWidgets.QComboBox)(self)
        self._comboBox.activated.connect(self._onActivated)
        QtWidgets.QHBoxLayout(self).addWidget(self._comboBox)
        self.setEnabled(False)  # C++: enabled only with a scene

    # -- properties -------------------------------------------------------------------------------
    def _setNodeTypes(self, types) -> None:
        self._nodeTypes = [t for t in types if t]
        self._refresh()

    nodeTypes = Property("QStringList", lambda self: list(self._nodeTypes), _setNodeTypes)

    def _setHideChildNodeTypes(self, types) -> None:
        self._hideChildNodeTypes = list(types)
        self._refresh()

    hideChildNodeTypes = Property("QStringList", lambda self: list(self._hideChildNodeTypes), _setHideChildNodeTypes)
    noneEnabled = _boolProperty("_noneEnabled", "_refresh")
    addEnabled = _boolProperty("_addEnabled")
    removeEnabled = _boolProperty("_removeEnabled")
    editEnabled = _boolProperty("_editEnabled")
    renameEnabled = _boolProperty("_renameEnabled")
    showHidden = _boolProperty("_showHidden", "_refresh")
    showChildNodeTypes = _boolProperty("_showChildNodeTypes", "_refresh")
    selectNodeUponCreation = _boolProperty("_selectNodeUponCreation")
    baseName = Property(str, lambda self: self._baseName, lambda self, name: setattr(self, "_baseName", name))
    currentNodeID = Property(str, lambda self: self._currentID, lambda self, nodeID: self.setCurrentNodeID(nodeID))

    # -- nodes ------------------------------------------------------------------------------------
    def mrmlScene(self):
        return self._scene

    def _accepts(self, node) -> bool:
        if node is None or not any(node.IsA(t) for t in self._nodeTypes):
            return False
        if not self._showChildNodeTypes and node.GetClassName() not in self._nodeTypes:
            return False
        if any(node.IsA(t) for t in self._hideChildNodeTypes):
            return False
        return self._showHidden or not node.GetHideFromEditors()

    def _sceneIDs(self) -> list[str]:
        if self._scene is None:
            return []
        nodes = (self._scene.GetNthNode(i) for i in range(self._scene.GetNumberOfNodes()))
        return [n.GetID() for n in nodes if self._accepts(n)]

    def currentNode(self):
        return self._scene.GetNodeByID(self._currentID) if self._scene is not None and self._currentID else None

    def nodeCount(self) -> int:
        return len(self._ids)

    def nodeFromIndex(self, index: int):
        return self._scene.GetNodeByID(self._ids[index]) if 0 <= index < len(self._ids) else None

    def nodes(self) -> list:
        return [self.nodeFromIndex(i) for i in range(len(self._ids))]

    def setCurrentNode(self, node) -> None:
        if self._scene is None:
            self._requestedNode = node
        self._select(node.GetID() if node is not None else "")

    def setCurrentNodeID(self, nodeID: str) -> None:
        if self._scene is None:
            self._requestedNode = nodeID
        self._select(nodeID or "")

    def setCurrentNodeIndex(self, index: int) -> None:
        self._select(self._ids[index] if 0 <= index < len(self._ids) else "")

    def setMRMLScene(self, scene) -> None:
        if scene is self._scene:
            return
        for obj, tag in self._observations:
            obj.RemoveObserver(tag)
        self._observations = []
        previous, hadNodes = self._currentID, bool(self._ids)
        self._scene = scene
        if scene is not None:
            E = slicer.vtkMRMLScene
            self._observations = [
                _observe(scene, E.NodeAddedEvent, self._onNodeAdded, calldata=True),
                _observe(scene, E.NodeAboutToBeRemovedEvent, self._onNodeAboutToBeRemoved, calldata=True),
                _observe(scene, E.StartBatchProcessEvent, self._onStartBatch),
                _observe(scene, E.EndBatchProcessEvent, self._onEndBatch)]
        self._ids = self._sceneIDs()
        requested = self._requestedNode
        self._requestedNode = None
        if not hadNodes and requested is not None:
            previous = requested if isinstance(requested, str) else requested.GetID()
        self._currentID = ""
        self._select(previous if previous in self._ids else "", autoSelect=True)
        self.setEnabled(scene is not None)
        self.mrmlSceneChanged.emit(scene)

    def addNode(self, nodeType: str | None = None):
        """The "Create new <type>" action: a new node, named as Slicer's node factory names it."""
        nodeType = nodeType or (self._nodeTypes[0] if self._nodeTypes else None)
        if nodeType not in self._nodeTypes or self._scene is None:
            return None
        node = self._scene.AddNewNodeByClass(nodeType, self._baseName)
        if hasattr(node, "CreateDefaultDisplayNodes"):
            node.CreateDefaultDisplayNodes()
        if self._selectNodeUponCreation:
            self.setCurrentNode(node)
        self.nodeAddedByUser.emit(node)
        return node

    def removeCurrentNode(self) -> None:
        if self.currentNode() is not None:
            self._scene.RemoveNode(self.currentNode())

    # -- scene events -----------------------------------------------------------------------------
    def _onNodeAdded(self, node) -> None:
        if self._batch or not self._accepts(node):
            return
        wasEmpty = not self._ids
        self._ids.append(node.GetID())
        self.nodeAdded.emit(node)
        self._select(self._currentID, autoSelect=wasEmpty and not self._hasActionRows())

    def _onNodeAboutToBeRemoved(self, node) -> None:
        """qMRMLSceneModel drops the row when the node is about to be removed (before the scene clears the
        references to it); additions made during a batch wait for its end, removals apply at once."""
        if node is None or node.GetID() not in self._ids:
            return
        self.nodeAboutToBeRemoved.emit(node)
        row = self._ids.index(node.GetID())
        self._ids.remove(node.GetID())
        if node.GetID() != self._currentID:
            self._updateComboBox()
            return
        # QComboBox keeps the row: the next node, else the previous one, else none.
        self._select(self._ids[min(row, len(self._ids) - 1)] if self._ids else "")

    def _hasActionRows(self) -> bool:
        return self._addEnabled or self._removeEnabled or self._editEnabled or self._renameEnabled

    def _onStartBatch(self) -> None:
        self._batch += 1
        self._emptyBeforeBatch = not self._ids

    def _onEndBatch(self) -> None:
        self._batch = max(0, self._batch - 1)
        if not self._batch:
            self._ids = self._sceneIDs()
            self._select(self._currentID, autoSelect=self._emptyBeforeBatch and not self._hasActionRows())

    # -- selection --------------------------------------------------------------------------------
    def _select(self, nodeID: str, autoSelect: bool = False) -> None:
        if nodeID not in self._ids:
            nodeID = ""
        if autoSelect and not nodeID and not self._noneEnabled and self._ids:
            nodeID = self._ids[0]
        changed = nodeID != self._currentID
        self._currentID = nodeID
        self._updateComboBox()
        if changed:
            self.currentNodeChanged.emit(self.currentNode())
            self.currentNodeIDChanged.emit(nodeID)

    def _refresh(self) -> None:
        self._ids = self._sceneIDs()
        self._select(self._currentID)

    def _rows(self) -> list[str]:
        return ([""] if self._noneEnabled else []) + self._ids

    def _updateComboBox(self) -> None:
        combo = self._comboBox
        combo.blockSignals(True)
        combo.clear()
        for nodeID in self._rows():
            combo.addItem(self._scene.GetNodeByID(nodeID).GetName() if nodeID else "None", nodeID)
        rows = self._rows()
        combo.setCurrentIndex(rows.index(self._currentID) if self._currentID in rows else -1)
        combo.blockSignals(False)

    def _onActivated(self, row: int) -> None:
        """The user picked a row of the drop-down list."""
        rows = self._rows()
        if 0 <= row < len(rows):
            self._select(rows[row])
            self.nodeActivated.emit(self.currentNode())


@declareProperties
class qMRMLSegmentSelectorWidget(qMRMLWidget):
    currentNodeChanged = Signal(object)
    currentSegmentChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        self._nodeComboBox = qMRMLNodeComboBox(self)
        self._nodeComboBox.setObjectName("MRMLNodeComboBox_Segmentation")
        self._nodeComboBox.nodeTypes = ["vtkMRMLSegmentationNode"]
        self._nodeComboBox.addEnabled = self._nodeComboBox.removeEnabled = False
        self._segmentComboBox = pythonQtClass(QtWidgets.QComboBox)(self)
        self._segmentComboBox.setObjectName("comboBox_Segment")
        layout.addWidget(self._nodeComboBox)
        layout.addWidget(self._segmentComboBox)
        self._segmentationNode = None
        self._selectedSegmentID = ""
        self._observations: list = []
        self.mrmlSceneChanged.connect(self._nodeComboBox.setMRMLScene)
        self._nodeComboBox.currentNodeChanged.connect(self._onCurrentNodeChanged)
        self._nodeComboBox.currentNodeChanged.connect(self.currentNodeChanged)
        self._segmentComboBox.currentIndexChanged.connect(self._onCurrentSegmentChanged)

    noneEnabled = Property(bool, lambda self: self._nodeComboBox.noneEnabled,
                           lambda self, enabled: setattr(self._nodeComboBox, "noneEnabled", enabled))

    def setCurrentNode(self, node) -> None:
        self._nodeComboBox.setCurrentNode(node)

    def currentNode(self):
        return self._nodeComboBox.currentNode()

    def setCurrentNodeID(self, nodeID: str) -> None:
        self._nodeComboBox.setCurrentNodeID(nodeID)

    def currentNodeID(self) -> str:
        return self._nodeComboBox.currentNodeID

    def currentSegmentID(self) -> str:
        return self._selectedSegmentID

    def setCurrentSegmentID(self, segmentID: str) -> None:
        if not segmentID and self.noneEnabled:
            self._segmentComboBox.setCurrentIndex(0)
            return
        index = self._segmentComboBox.findData(segmentID)
        if index != -1 and self._segmentComboBox.currentIndex != index:
            self._segmentComboBox.setCurrentIndex(index)

    def _onCurrentNodeChanged(self, node) -> None:
        if node is self._segmentationNode:
            return
        for obj, tag in self._observations:
            obj.RemoveObserver(tag)
        self._segmentationNode = node
        self._observations = [] if node is None else [
            _observe(node, slicer.vtkSegmentation.SegmentAdded, self.populateSegmentCombobox),
            _observe(node, slicer.vtkSegmentation.SegmentRemoved, self.populateSegmentCombobox)]
        self.populateSegmentCombobox()

    def populateSegmentCombobox(self) -> None:
        combo = self._segmentComboBox
        combo.blockSignals(True)
        combo.clear()
        segmentation = self._segmentationNode.GetSegmentation() if self._segmentationNode is not None else None
        hasSegments = segmentation is not None and segmentation.GetNumberOfSegments() > 0
        combo.setVisible(hasSegments)
        if not hasSegments:
            combo.blockSignals(False)
            return
        if self.noneEnabled:
            combo.addItem("None")
        for i in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(i)
            combo.addItem(segmentation.GetSegment(segmentId).GetName(), segmentId)
        combo.setCurrentIndex(-1)
        combo.blockSignals(False)
        combo.setCurrentIndex(1 if self.noneEnabled else 0)

    def _onCurrentSegmentChanged(self, index: int) -> None:
        if self._segmentationNode is None:
            return
        self._selectedSegmentID = self._segmentComboBox.itemData(index) or ""
        self.currentSegmentChanged.emit(self._selectedSegmentID)


@declareProperties
class qSlicerMarkupsPlaceWidget(qSlicerWidget):
    activeMarkupsPlaceModeChanged = Signal(bool)
    # qSlicerMarkupsPlaceWidget::PlaceMultipleMarkupsType
    ShowPlaceMultipleMarkupsOption, HidePlaceMultipleMarkupsOption, ForcePlaceSingleMarkup, \
        ForcePlaceMultipleMarkups = range(4)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._node = None
        self._placeMultipleMarkups = self.ShowPlaceMultipleMarkupsOption
        self._placeButton = pythonQtClass(QtWidgets.QToolButton)(self)
        self._placeButton.setCheckable(True)
        self._placeButton.toggled.connect(lambda checked: setattr(self, "placeModeEnabled", checked))
        QtWidgets.QHBoxLayout(self).addWidget(self._placeButton)

    def setCurrentNode(self, node) -> None:
        if node is not self._node and self.placeModeEnabled:
            self.placeModeEnabled = False
        self._node = node
        self.setEnabled(node is not None)

    def currentNode(self):
        return self._node

    def placeButton(self) -> QtWidgets.QToolButton:
        return self._placeButton

    placeMultipleMarkups = Property(int, lambda self: self._placeMultipleMarkups,
                                    lambda self, value: setattr(self, "_placeMultipleMarkups", int(value)))

    def _interactionNode(self):
        scene = self.mrmlScene()
        return scene.GetSingletonNode("Singleton", "vtkMRMLInteractionNode") if scene is not None else None

    def _getPlaceModeEnabled(self) -> bool:
        interaction = self._interactionNode()
        selection = self.mrmlScene().GetSingletonNode("Singleton", "vtkMRMLSelectionNode") if interaction else None
        return bool(self._node is not None and interaction is not None and selection is not None
                    and interaction.GetCurrentInteractionMode() == interaction.Place
                    and selection.GetActivePlaceNodeID() == self._node.GetID())

    def _setPlaceModeEnabled(self, enabled: bool) -> None:
        interaction = self._interactionNode()
        if interaction is None or self._node is None:
            return
        if enabled:
            slicer.modules.markups.logic().SetActiveList(self._node)
            if self._placeMultipleMarkups in (self.ForcePlaceSingleMarkup, self.ForcePlaceMultipleMarkups):
                interaction.SetPlaceModePersistence(self._placeMultipleMarkups == self.ForcePlaceMultipleMarkups)
            interaction.SetCurrentInteractionMode(interaction.Place)
        else:
            interaction.SetCurrentInteractionMode(interaction.ViewTransform)
        self._placeButton.setChecked(bool(enabled))
        self.activeMarkupsPlaceModeChanged.emit(bool(enabled))

    placeModeEnabled = Property(bool, _getPlaceModeEnabled, _setPlaceModeEnabled)


CLASSES = {cls.__name__: cls for cls in (qMRMLWidget, qSlicerWidget, qMRMLNodeComboBox, qMRMLSegmentSelectorWidget,
                                         qSlicerMarkupsPlaceWidget)}
