"""VirtualContrast: virtual contrast enhancement for contrast-enhanced spectral mammography (CESM).

Slicer's four scripted-module classes. The Widget only connects the GUI to
VirtualContrastLogic; all work (loading, background synthesis and training,
heatmaps, CNR, layouts) lives in VirtualContrastLib so that it can be scripted
from the Python console and tested without the Slicer application.
"""

import logging
import math
import pathlib
import shutil
import tempfile
import time
import unittest
from typing import Annotated, Union

import numpy as np
import qt
import vtk

import slicer
from slicer import (
    vtkMRMLMarkupsClosedCurveNode,
    vtkMRMLMarkupsROINode,
    vtkMRMLPlotChartNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from VirtualContrastLib.logic import ENGINE_MODULES, LoadedCase, VirtualContrastLogicBase

#: How often the Widget reads the background job's progress lines (ms): fast enough for a
#: smooth progress bar, slow enough that the GUI thread stays free.
POLL_INTERVAL_MS = 500

#: Labels of the dataset kinds offered by the Train section (index = page of datasetSourceStackedWidget).
DATASET_KINDS = ["Manifest", "DICOM folder", "Cases from this scene"]

#: A region for CNR: drawn as markups, or painted as a segment in the Segment Editor. None is part of
#: the type: the wrapper writes each field's default (None) when it creates the parameter node, and
#: Slicer's union serializer refuses a None that the union does not name.
RegionNode = Union[vtkMRMLMarkupsROINode, vtkMRMLMarkupsClosedCurveNode, vtkMRMLSegmentationNode, None]


#
# VirtualContrast
#


class VirtualContrast(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Virtual Contrast")
        self.parent.categories = [_("Breast Imaging")]
        # PyTorchUtils (SlicerPyTorch) is imported only when torch must be installed, so the module
        # loads, and CNR works, even before PyTorch is set up.
        self.parent.dependencies = []
        self.parent.contributors = ["VirtualContrast developers"]
        self.parent.helpText = _(
            "Synthesize the dual-energy subtracted (DES) image of contrast-enhanced mammography from the "
            "low-energy (LE) image with a trained Seg-CycleGAN (or peer) model, compare it with the real DES "
            "through difference heatmaps, measure contrast-to-noise ratios on drawn regions, and train models "
            "in the background. Synthetic images are research output, not for diagnosis. "
            'See the <a href="https://github.com/VirtualContrast/SlicerVirtualContrast">extension documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "Built on 3D Slicer, PyTorch (through SlicerPyTorch) and MONAI. The recipes follow the published "
            "CycleGAN and Seg-CycleGAN work on virtual contrast enhancement for CESM."
        )


#
# VirtualContrastParameterNode
#


@parameterNodeWrapper
class VirtualContrastParameterNode:
    """Everything the user chose in the panel, saved with the scene.

    Fields whose widget carries a `SlicerParameterName` in the .ui are bound
    both ways by the wrapper; device, preset and segment ids are filled at run
    time (lists from the logic, segments of the chosen segmentation), so the
    Widget writes those itself.
    """

    # Inputs
    leVolume: vtkMRMLScalarVolumeNode
    realDesVolume: vtkMRMLScalarVolumeNode
    lesionSegmentation: vtkMRMLSegmentationNode
    # Synthesize
    modelPath: pathlib.Path
    device: str = "auto"
    syntheticVolume: vtkMRMLScalarVolumeNode
    heatmapVolume: vtkMRMLScalarVolumeNode
    signedHeatmapVolume: vtkMRMLScalarVolumeNode
    # CNR
    fibroglandularRegion: RegionNode
    fibroglandularSegmentId: str = ""
    adiposeRegion: RegionNode
    adiposeSegmentId: str = ""
    lesionRegion: RegionNode
    lesionSegmentId: str = ""
    ringWidthMm: Annotated[float, WithinRange(0.5, 50.0)] = 5.0
    cnrTable: vtkMRMLTableNode
    # Train
    datasetKind: Annotated[str, Choice(DATASET_KINDS)] = DATASET_KINDS[0]
    manifestPath: pathlib.Path
    dicomFolder: pathlib.Path
    preset: str = ""
    epochs: Annotated[int, WithinRange(1, 100000)] = 200
    batchSize: Annotated[int, WithinRange(1, 1024)] = 8
    learningRate: Annotated[float, WithinRange(1e-7, 1.0)] = 1e-5
    gamma: Annotated[float, WithinRange(0.0, 10000.0)] = 0.0
    imageSize: Annotated[int, WithinRange(32, 4096)] = 256
    trainDevice: str = "auto"
    outputFolder: pathlib.Path
    lossChart: vtkMRMLPlotChartNode


def _givenPath(path) -> pathlib.Path | None:
    """A path the user actually entered, or None: the wrapper stores an empty path as '.'."""
    if path is None or str(path) in ("", "."):
        return None
    return pathlib.Path(path)


#
# VirtualContrastWidget
#


class VirtualContrastWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Connects the panel to VirtualContrastLogic; holds no image computation."""

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._updatingGui = False
        self._synthesisJob = None
        self._synthesisInputs = None
        self._trainingJob = None
        self._sceneCases: list[LoadedCase] = []
        self._dependenciesChecked = False

    def setup(self) -> None:
        """Load the .ui, create the logic and connect signals."""
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/VirtualContrast.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects mrmlSceneChanged of the top-level qMRMLWidget to every MRML widget.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = VirtualContrastLogic()

        # Lists that only the logic knows: devices (torch may find GPUs) and presets.
        for combo in (self.ui.deviceComboBox, self.ui.trainDeviceComboBox):
            combo.addItems(self.logic.availableDevices())
        for name, description in self.logic.listPresets():
            self.ui.presetComboBox.addItem(name)
            self.ui.presetComboBox.setItemData(self.ui.presetComboBox.count - 1, description, qt.Qt.ToolTipRole)

        # Background jobs are polled from the GUI thread, as SlicerMONAIAuto3DSeg does.
        self._synthesisTimer = qt.QTimer()
        self._synthesisTimer.setInterval(POLL_INTERVAL_MS)
        self._synthesisTimer.timeout.connect(self.onSynthesisTimer)
        self._trainingTimer = qt.QTimer()
        self._trainingTimer.setInterval(POLL_INTERVAL_MS)
        self._trainingTimer.timeout.connect(self.onTrainingTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Inputs
        self.ui.loadCaseButton.clicked.connect(self.onLoadCase)
        # Synthesize
        self.ui.deviceComboBox.currentTextChanged.connect(lambda text: self._setParameter("device", text))
        self.ui.synthesizeButton.clicked.connect(self.onSynthesize)
        self.ui.cancelSynthesisButton.clicked.connect(self.onCancelSynthesis)
        self.ui.showComparisonButton.clicked.connect(self.onShowComparison)
        # CNR
        for key in ("fibroglandular", "adipose", "lesion"):
            segmentSelector = getattr(self.ui, f"{key}SegmentSelector")
            segmentSelector.currentSegmentChanged.connect(
                lambda segmentId, key=key: self._setParameter(f"{key}SegmentId", segmentId))
        self.ui.computeCnrButton.clicked.connect(self.onComputeCnr)
        self.ui.saveCnrCsvButton.clicked.connect(self.onSaveCnrCsv)
        # Train
        self.ui.presetComboBox.connect("activated(int)", self.onPresetChosen)
        self.ui.trainDeviceComboBox.currentTextChanged.connect(lambda text: self._setParameter("trainDevice", text))
        self.ui.addSceneCaseButton.clicked.connect(self.onAddSceneCase)
        self.ui.removeSceneCaseButton.clicked.connect(self.onRemoveSceneCase)
        self.ui.trainButton.clicked.connect(lambda: self.onTrain(resume=False))
        self.ui.resumeTrainingButton.clicked.connect(lambda: self.onTrain(resume=True))
        self.ui.cancelTrainingButton.clicked.connect(self.onCancelTraining)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes: stop observing, and stop children so none outlives Slicer.

        A cancelled training writes its checkpoint first, so it can be resumed next time.
        """
        self.removeObservers()
        for job in (self._synthesisJob, self._trainingJob):
            if job is not None and not job.done:
                job.cancel()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module: stop following the parameter node."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        """The parameter node, the scene cases and a running synthesis (its LE is going) end with the scene.

        A running training goes on: it reads only files, and its model is still wanted.
        """
        if self._synthesisJob is not None and not self._synthesisJob.done:
            self._synthesisJob.cancel()
        self.setParameterNode(None)
        self._sceneCases = []
        self.ui.sceneCasesListWidget.clear()

    def onSceneEndClose(self, caller, event) -> None:
        """If the module is shown while the scene closes, start again with a fresh parameter node."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Ensure the parameter node exists, is observed, and has a preset and an LE to start from."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.leVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.leVolume = firstVolumeNode
        if not self._parameterNode.preset and self.ui.presetComboBox.count:
            self._applyPreset(self.ui.presetComboBox.itemText(0))

    def setParameterNode(self, inputParameterNode: VirtualContrastParameterNode | None) -> None:
        """Bind the GUI to a parameter node (and unbind the previous one)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiFromParameterNode)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Binds every widget with a SlicerParameterName in the .ui.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGuiFromParameterNode)
            self.updateGuiFromParameterNode()

    def _setParameter(self, name: str, value) -> None:
        """Write one unbound field (device, preset, segment ids) unless the GUI is being refreshed from it."""
        if self._parameterNode and not self._updatingGui:
            setattr(self._parameterNode, name, value)

    def updateGuiFromParameterNode(self, caller=None, event=None) -> None:
        """Refresh what the wrapper does not bind: combo selections, region helpers, button states."""
        p = self._parameterNode
        if p is None or self._updatingGui:
            return
        self._updatingGui = True
        try:
            for combo, value in ((self.ui.deviceComboBox, p.device), (self.ui.trainDeviceComboBox, p.trainDevice),
                                 (self.ui.presetComboBox, p.preset)):
                if value and combo.findText(value) >= 0:
                    combo.currentText = value
            self.ui.datasetSourceStackedWidget.currentIndex = DATASET_KINDS.index(p.datasetKind)
            # A newly chosen segmentation pre-selects a segment: record it once the refresh is over.
            chosenSegments = {key: self._updateRegionWidgets(key) for key in ("fibroglandular", "adipose", "lesion")}
        finally:
            self._updatingGui = False
        with slicer.util.NodeModify(p):
            for key, segmentId in chosenSegments.items():
                if segmentId is not None and segmentId != getattr(p, f"{key}SegmentId"):
                    setattr(p, f"{key}SegmentId", segmentId)
        self._updateButtonStates()

    def _updateRegionWidgets(self, key: str) -> str | None:
        """Show the segment picker for a segmentation region and the place widget for a markups region.

        Returns the segment the picker shows for a segmentation region (None otherwise).
        """
        node = getattr(self._parameterNode, f"{key}Region")
        segmentSelector = getattr(self.ui, f"{key}SegmentSelector")
        placeWidget = getattr(self.ui, f"{key}PlaceWidget")
        isSegmentation = node is not None and node.IsA("vtkMRMLSegmentationNode")
        isMarkups = node is not None and not isSegmentation
        segmentSelector.visible = isSegmentation
        placeWidget.visible = isMarkups
        segmentSelector.setCurrentNode(node if isSegmentation else None)
        shownSegment = None
        if isSegmentation:
            segmentId = getattr(self._parameterNode, f"{key}SegmentId")
            if segmentId and node.GetSegmentation().GetSegment(segmentId):
                segmentSelector.setCurrentSegmentID(segmentId)
            # The picker may still name a segment of the previous segmentation when this one has none.
            shown = segmentSelector.currentSegmentID()
            shownSegment = shown if shown and node.GetSegmentation().GetSegment(shown) else ""
        placeWidget.setCurrentNode(node if isMarkups else None)
        if isMarkups:
            # A closed curve takes many clicks; an ROI is done in one drag.
            placeWidget.placeMultipleMarkups = (
                slicer.qSlicerMarkupsPlaceWidget.ForcePlaceMultipleMarkups
                if node.IsA("vtkMRMLMarkupsClosedCurveNode")
                else slicer.qSlicerMarkupsPlaceWidget.ForcePlaceSingleMarkup)
        return shownSegment

    def _updateButtonStates(self) -> None:
        """Enable each action only when its inputs are there and no job of its kind runs."""
        p = self._parameterNode
        if p is None:
            return
        synthesizing = self._synthesisJob is not None and not self._synthesisJob.done
        training = self._trainingJob is not None and not self._trainingJob.done
        modelPath = _givenPath(p.modelPath)
        self.ui.synthesizeButton.enabled = bool(p.leVolume and modelPath and not synthesizing)
        self.ui.synthesizeButton.toolTip = (
            _("Run the model on the LE volume in a background process.") if p.leVolume and modelPath
            else _("Select an LE volume and a model (run folder)."))
        self.ui.cancelSynthesisButton.enabled = synthesizing
        self.ui.showComparisonButton.enabled = bool(
            p.leVolume and p.realDesVolume and p.syntheticVolume and p.heatmapVolume)
        self.ui.computeCnrButton.enabled = bool(
            p.leVolume and self._region("fibroglandular") and self._region("adipose"))
        self.ui.saveCnrCsvButton.enabled = p.cnrTable is not None
        hasOutput = _givenPath(p.outputFolder) is not None
        self.ui.trainButton.enabled = hasOutput and not training
        self.ui.resumeTrainingButton.enabled = hasOutput and not training
        self.ui.cancelTrainingButton.enabled = training
        self.ui.removeSceneCaseButton.enabled = self.ui.sceneCasesListWidget.count > 0

    def _region(self, key: str):
        """The logic's form of a region: the markups node, or (segmentation, segment id); None if incomplete."""
        node = getattr(self._parameterNode, f"{key}Region")
        if node is None:
            return None
        if node.IsA("vtkMRMLSegmentationNode"):
            segmentId = getattr(self._parameterNode, f"{key}SegmentId")
            return (node, segmentId) if segmentId else None
        return node

    # ------------------------------------------------------------------ dependencies

    def _ensureDependencies(self) -> bool:
        """Before the first synthesis or training: offer to install what the engine needs.

        Torch comes through SlicerPyTorch, which picks the build that matches the
        GPU driver; the engine's other packages come through pip. Nothing is
        installed without the user's consent.
        """
        if self._dependenciesChecked:
            return True
        missing = self.logic.missingDependencies()
        if missing:
            if not slicer.util.confirmOkCancelDisplay(
                    _("Virtual Contrast needs Python packages that are not installed yet: {packages}.\n\n"
                      "PyTorch is installed through the PyTorch extension (SlicerPyTorch), the others through pip. "
                      "This can take several minutes. Install now?").format(
                        packages=", ".join(ENGINE_MODULES.get(name, name) for name in missing))):
                return False
            with slicer.util.tryWithErrorDisplay(_("Failed to install the required Python packages."), waitCursor=True):
                if "torch" in missing:
                    try:
                        import PyTorchUtils
                    except ImportError:
                        slicer.util.errorDisplay(_("The PyTorch extension (SlicerPyTorch) is not installed: install it "
                                                   "from the Extensions Manager and restart Slicer."))
                        return False
                    if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is None:
                        return False
                others = [ENGINE_MODULES[name] for name in missing if name != "torch"]
                if others:
                    slicer.util.pip_install(others)
            missing = self.logic.missingDependencies()
            if missing:
                slicer.util.errorDisplay(_("Still missing: {packages}.").format(packages=", ".join(missing)))
                return False
        self._dependenciesChecked = True
        return True

    def _advance(self, job, timer, progressBar, statusLabel) -> bool:
        """One timer tick of a background job: read its new progress lines into the progress bar and the
        status label; True once the job has ended (the timer is then stopped). If reading the job itself
        fails, polling stops too (a timer must not raise every 500 ms)."""
        try:
            job.poll()
        except Exception as error:
            timer.stop()
            logging.exception("Polling the background job failed")
            statusLabel.text = _("Failed.")
            slicer.util.errorDisplay(_("Lost track of the background process: {error}").format(error=error))
            self._updateButtonStates()
            return False
        progressBar.value = int(round(100 * job.progress))
        statusLabel.text = job.message  # the job words it, e.g. "epoch 3/35, about 4 min 10 s left"
        if not job.done:
            return False
        timer.stop()
        return True

    # ------------------------------------------------------------------ inputs

    def onLoadCase(self) -> None:
        """Load the chosen files and select them as inputs."""
        lePath = self.ui.lePathLineEdit.currentPath
        if not lePath:
            slicer.util.errorDisplay(_("Choose an LE file first."))
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to load the case."), waitCursor=True):
            case = self.logic.loadCase(lePath, self.ui.desPathLineEdit.currentPath or None,
                                       self.ui.segmentationPathLineEdit.currentPath or None)
            with slicer.util.NodeModify(self._parameterNode):
                self._parameterNode.leVolume = case.le
                self._parameterNode.realDesVolume = case.des
                self._parameterNode.lesionSegmentation = case.segmentation
            slicer.util.setSliceViewerLayers(background=case.le, foreground=None, fit=True)

    # ------------------------------------------------------------------ synthesize

    def onSynthesize(self) -> None:
        """Start the engine's predict as a background process and poll it."""
        if not self._ensureDependencies():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Failed to start synthesis."), waitCursor=True):
            self._synthesisInputs = (p.leVolume, p.realDesVolume)
            self._synthesisJob = self.logic.startSynthesis(p.leVolume, str(_givenPath(p.modelPath)), device=p.device)
            self._synthesisTimer.start()
            self.ui.synthesisProgressBar.value = 0
            self.ui.synthesisStatusLabel.text = _("Starting...")
        self._updateButtonStates()

    def onCancelSynthesis(self) -> None:
        """Stop the running synthesis; the timer reports the end."""
        if self._synthesisJob is not None:
            self._synthesisJob.cancel()

    def onSynthesisTimer(self) -> None:
        """Read the job's new progress lines; on the end, show the result."""
        job = self._synthesisJob
        if not self._advance(job, self._synthesisTimer, self.ui.synthesisProgressBar, self.ui.synthesisStatusLabel):
            return
        try:
            if job.state == "finished":
                if self._parameterNode is not None:  # None when the scene was closed meanwhile
                    self._showSynthesisResult(job.result)
            elif job.state == "cancelled":
                self.ui.synthesisStatusLabel.text = _("Cancelled.")
            else:
                self.ui.synthesisStatusLabel.text = _("Failed.")
                slicer.util.errorDisplay(_("Synthesis failed: {error}").format(error=job.error))
        finally:
            self._updateButtonStates()

    def _showSynthesisResult(self, syntheticNode) -> None:
        """Record the synthetic DES; with a real DES, add heatmaps and the four-view comparison."""
        leNode, realDesNode = self._synthesisInputs
        self._parameterNode.syntheticVolume = syntheticNode
        # The model worked: remember its run folder in the drop-down list of recent models.
        self.ui.modelPathLineEdit.addCurrentPathToHistory()
        if realDesNode is None:
            slicer.util.setSliceViewerLayers(background=syntheticNode, foreground=None, fit=True)
            self.ui.synthesisStatusLabel.text = _("Done: {name}").format(name=syntheticNode.GetName())
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to compute the difference heatmap."), waitCursor=True):
            heatmap = self.logic.differenceHeatmap(realDesNode, syntheticNode, leNode)
            with slicer.util.NodeModify(self._parameterNode):
                self._parameterNode.heatmapVolume = heatmap.absolute
                self._parameterNode.signedHeatmapVolume = heatmap.signed
            self.logic.showComparison(leNode, realDesNode, syntheticNode, heatmap.absolute)
            self.ui.synthesisStatusLabel.text = _("Done: {name}, with heatmaps").format(name=syntheticNode.GetName())

    def onShowComparison(self) -> None:
        """Show the four linked views again (e.g. after changing the layout by hand)."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Failed to show the comparison."), waitCursor=True):
            self.logic.showComparison(p.leVolume, p.realDesVolume, p.syntheticVolume, p.heatmapVolume)

    # ------------------------------------------------------------------ CNR

    def onComputeCnr(self) -> None:
        """CNR on every available image; region problems are shown as the logic words them."""
        p = self._parameterNode
        volumes = {"LE": p.leVolume}
        if p.realDesVolume:
            volumes["real DES"] = p.realDesVolume
        if p.syntheticVolume:
            volumes["synthetic DES"] = p.syntheticVolume
        try:
            with slicer.util.WaitCursor():
                result = self.logic.computeCNR(
                    self._region("fibroglandular"), self._region("adipose"), volumes,
                    lesion=self._region("lesion"), ringWidthMm=p.ringWidthMm, tableNode=p.cnrTable)
        except ValueError as error:  # RegionError: empty or degenerate region, with a message for the user
            slicer.util.errorDisplay(str(error))
            return
        except Exception as error:
            logging.exception("CNR failed")
            slicer.util.errorDisplay(_("Failed to compute CNR: {error}").format(error=error))
            return
        p.cnrTable = result.table
        self.logic.showTable(result.table)

    def onSaveCnrCsv(self) -> None:
        """Ask for a file name and write the results table as CSV."""
        table = self._parameterNode.cnrTable
        path = qt.QFileDialog.getSaveFileName(
            slicer.util.mainWindow(), _("Save CNR table"), f"{table.GetName()}.csv", _("CSV files (*.csv)"))
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to save the table."), waitCursor=True):
            self.logic.saveTable(table, path)

    # ------------------------------------------------------------------ train

    def onPresetChosen(self, index: int) -> None:
        """The user picked a preset: its published numbers fill the fields."""
        self._applyPreset(self.ui.presetComboBox.itemText(index))

    def _applyPreset(self, name: str) -> None:
        """Copy a preset's main fields into the parameter node (and so into the spin boxes)."""
        fields = self.logic.presetFields(name)
        p = self._parameterNode
        with slicer.util.NodeModify(p):
            p.preset = name
            p.epochs = int(fields["epochs"])
            p.batchSize = int(fields["batch_size"])
            p.learningRate = float(fields["lr"])
            p.gamma = float(fields["gamma_lesion"])
            p.imageSize = int(fields["image_size"])

    def onAddSceneCase(self) -> None:
        """Take the LE, DES and lesion segmentation of the Inputs section as one training case."""
        p = self._parameterNode
        if not (p.leVolume and p.realDesVolume):
            slicer.util.errorDisplay(_("A training case needs an LE volume and a real DES volume (Inputs section)."))
            return
        case = LoadedCase(le=p.leVolume, des=p.realDesVolume, segmentation=p.lesionSegmentation)
        self._sceneCases.append(case)
        label = f"{case.le.GetName()} + {case.des.GetName()}"
        if case.segmentation:
            label += f" + {case.segmentation.GetName()}"
        self.ui.sceneCasesListWidget.addItem(label)
        self._updateButtonStates()

    def onRemoveSceneCase(self) -> None:
        """Drop the selected scene case from the list."""
        row = self.ui.sceneCasesListWidget.currentRow
        if 0 <= row < len(self._sceneCases):
            del self._sceneCases[row]
            self.ui.sceneCasesListWidget.takeItem(row)
        self._updateButtonStates()

    def _datasetManifest(self, outputFolder: pathlib.Path, resume: bool) -> pathlib.Path | None:
        """The manifest for the chosen dataset kind, importing or exporting beside the run folder when needed.

        The dataset goes next to the run folder, not inside it, because the
        engine keeps a run folder for its own files. Resume reuses the dataset
        the run started from.
        """
        p = self._parameterNode
        datasetFolder = outputFolder.parent / f"{outputFolder.name}-dataset"
        if resume and p.datasetKind != "Manifest" and (datasetFolder / "manifest.csv").is_file():
            return datasetFolder / "manifest.csv"
        if p.datasetKind == "Manifest":
            manifest = _givenPath(p.manifestPath)
            if manifest is None:
                slicer.util.errorDisplay(_("Choose a manifest file."))
            return manifest
        if p.datasetKind == "DICOM folder":
            folder = _givenPath(p.dicomFolder)
            if folder is None:
                slicer.util.errorDisplay(_("Choose a DICOM folder."))
                return None
            return self.logic.importDicomFolder(folder, datasetFolder)
        if not self._sceneCases:
            slicer.util.errorDisplay(_("Add at least one case from the scene (LE + real DES)."))
            return None
        return self.logic.exportSceneCases(self._sceneCases, datasetFolder)

    def onTrain(self, resume: bool) -> None:
        """Start (or resume) the engine's train as a background process with a live loss chart.

        A resumed run keeps its saved configuration; only Epochs applies, so that a run can be extended.
        """
        if not self._ensureDependencies():
            return
        p = self._parameterNode
        outputFolder = _givenPath(p.outputFolder)
        with slicer.util.tryWithErrorDisplay(_("Failed to start training."), waitCursor=True):
            manifest = self._datasetManifest(outputFolder, resume)
            if manifest is None:
                return
            fields = {} if resume else dict(batchSize=p.batchSize, learningRate=p.learningRate, gamma=p.gamma,
                                            imageSize=p.imageSize)
            self._trainingJob = self.logic.startTraining(
                p.preset, str(manifest), str(outputFolder), device=p.trainDevice, resume=resume, epochs=p.epochs,
                plotChartNode=p.lossChart, **fields)
            self._trainingTimer.start()
            self.ui.trainingProgressBar.value = 0
            self.ui.trainingStatusLabel.text = _("Resuming...") if resume else _("Starting...")
            p.lossChart = self._trainingJob.chart
            self.logic.showChart(self._trainingJob.chart)
        self._updateButtonStates()

    def onCancelTraining(self) -> None:
        """Ask the child to stop; it writes a checkpoint first, so Resume can continue."""
        if self._trainingJob is not None:
            self._trainingJob.cancel()

    def onTrainingTimer(self) -> None:
        """Read the job's new progress lines (the logic's callbacks update the loss chart); on the end, report."""
        job = self._trainingJob
        if not self._advance(job, self._trainingTimer, self.ui.trainingProgressBar, self.ui.trainingStatusLabel):
            return
        try:
            if job.state == "finished":
                # The new model becomes the current one and joins the recent-models list.
                self.ui.modelPathLineEdit.currentPath = str(job.result)
                self.ui.modelPathLineEdit.addCurrentPathToHistory()
                self.ui.trainingStatusLabel.text = _("Finished: the model is selected under Synthesize.")
            elif job.state == "cancelled":
                self.ui.trainingStatusLabel.text = _("Cancelled: the checkpoint is kept; press Resume to continue.")
            else:
                self.ui.trainingStatusLabel.text = _("Failed.")
                slicer.util.errorDisplay(_("Training failed: {error}").format(error=job.error))
        finally:
            self._updateButtonStates()


#
# VirtualContrastLogic
#


class VirtualContrastLogic(ScriptedLoadableModuleLogic, VirtualContrastLogicBase):
    """Slicer's logic base class plus the whole console API of VirtualContrastLib.

    Everything that computes lives in VirtualContrastLogicBase, which needs
    only MRML, vtk and numpy; this class adds the typed parameter node.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        VirtualContrastLogicBase.__init__(self, scene=slicer.mrmlScene)

    def getParameterNode(self) -> VirtualContrastParameterNode:
        """The module's parameter node in the scene, with typed access."""
        return VirtualContrastParameterNode(ScriptedLoadableModuleLogic.getParameterNode(self))


#
# VirtualContrastTest
#


class VirtualContrastTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest) on a tiny phantom case and a tiny untrained model.

    The model's weights are random: the tests check the plumbing (files ->
    nodes -> background process -> nodes -> heatmaps -> CNR table) and that
    every number is finite, not image quality.
    """

    #: Seed of the one-case phantom: its fibroglandular and adipose truth masks are thick enough for
    #: test ROIs at 2 mm pixels, and it has an enhancing mass for the lesion CNR.
    PHANTOM_SEED = 11

    def setUp(self) -> None:
        """A clean scene and a scratch folder with one 2 mm phantom case."""
        slicer.mrmlScene.Clear()
        from VirtualContrastTraining.data.manifest import read_manifest, resolve
        from VirtualContrastTraining.data.phantom import generate_dataset

        self.folder = pathlib.Path(tempfile.mkdtemp(prefix="VirtualContrastTest-", dir=slicer.app.temporaryPath))
        self.addCleanup(shutil.rmtree, self.folder, ignore_errors=True)
        manifest = generate_dataset(self.folder / "phantom", 1, seed=self.PHANTOM_SEED, pixel_mm=2.0)
        row = read_manifest(manifest)[0]
        self.lePath = resolve(manifest, row.le_path)
        self.desPath = resolve(manifest, row.des_path)
        self.lesionPath = resolve(manifest, row.lesion_path)
        truth = self.lePath.parent / "truth"
        self.fibroglandularMaskPath = truth / f"{row.case_id}_fibroglandular.nrrd"
        self.adiposeMaskPath = truth / f"{row.case_id}_adipose.nrrd"
        self.logic = VirtualContrastLogic()

    def runTest(self) -> None:
        """Reload and Test entry point; ctest runs the test_ methods one by one instead."""
        for test in (self.test_LoadAndCNR, self.test_WidgetBinding, self.test_SynthesizeHeatmapAndCNR):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as reason:
                self.delayDisplay(f"Skipped {test.__name__}: {reason}")
            finally:
                self.doCleanups()

    # -------------------------------------------------------------- helpers

    def _loadCase(self) -> LoadedCase:
        """The phantom case through the same call as the Load case button."""
        case = self.logic.loadCase(str(self.lePath), str(self.desPath), str(self.lesionPath))
        self.assertIsNotNone(case.le)
        self.assertIsNotNone(case.des)
        self.assertIsNotNone(case.segmentation)
        return case

    def _roiInside(self, maskPath: pathlib.Path, name: str):
        """A small ROI around the pixel deepest inside a truth mask, so that the region holds only that tissue."""
        from scipy import ndimage

        maskNode = self.logic.loadVolume(str(maskPath), name=f"{name} truth")
        mask = slicer.util.arrayFromVolume(maskNode) > 0
        depth = ndimage.distance_transform_edt(mask)
        k, j, i = np.unravel_index(int(np.argmax(depth)), depth.shape)
        self.assertGreater(depth[k, j, i], 3, f"{name} truth mask is too thin for a test ROI")
        ijkToRas = vtk.vtkMatrix4x4()
        maskNode.GetIJKToRASMatrix(ijkToRas)
        center = ijkToRas.MultiplyPoint([float(i), float(j), float(k), 1.0])[:3]
        # A cube whose in-plane side fits inside the distance circle; whatever the image's direction,
        # it also spans the one-slice thickness.
        side = 2 * (depth[k, j, i] - 1) / math.sqrt(2) * min(maskNode.GetSpacing()[:2])
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
        roi.SetCenter(center)
        roi.SetSize(side, side, side)
        slicer.mrmlScene.RemoveNode(maskNode)
        return roi

    def _massSegment(self, segmentationNode) -> tuple:
        """(segmentation, id) of the phantom's mass: calcifications are too small for a ring CNR."""
        segmentation = segmentationNode.GetSegmentation()
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            if "mass" in segmentation.GetSegment(segmentId).GetName():
                return segmentationNode, segmentId
        self.fail("the phantom case has no mass segment")

    def _assertFiniteVolume(self, node, reference) -> None:
        """Same grid as the reference and only finite values."""
        array = slicer.util.arrayFromVolume(node)
        self.assertEqual(array.shape, slicer.util.arrayFromVolume(reference).shape)
        self.assertTrue(np.all(np.isfinite(array)), f"{node.GetName()} has non-finite values")

    def _assertFiniteTable(self, tableNode) -> None:
        """Every numeric cell of the CNR table is finite, and there is at least one."""
        table = tableNode.GetTable()
        values = []
        for column in range(table.GetNumberOfColumns()):
            array = table.GetColumn(column)
            if isinstance(array, vtk.vtkDataArray):
                values += [array.GetTuple1(row) for row in range(array.GetNumberOfTuples())]
        self.assertTrue(values, "the CNR table has no numeric column")
        self.assertTrue(all(math.isfinite(v) for v in values), f"non-finite CNR values: {values}")

    def _tinyModel(self) -> pathlib.Path:
        """A run folder with a 4-filter, 1-block generator saved through the engine's own checkpoint code."""
        from VirtualContrastTraining import checkpoints
        from VirtualContrastTraining.data.preprocessing import PreprocessConfig
        from VirtualContrastTraining.models.networks import define_G
        from VirtualContrastTraining.presets import TrainConfig

        runDir = self.folder / "run"
        config = TrainConfig(preset="demo", gamma_lesion=35.0, ngf=4, n_blocks=1, image_size=32)
        checkpoints.save_model(runDir, define_G(1, 1, config.ngf, config.n_blocks), {
            "config": config.to_dict(), "preprocessing": PreprocessConfig(size=32).to_dict(),
            "des_output_window": [1700.0, 2400.0], "data_fingerprint": "selftest"})
        return runDir

    # -------------------------------------------------------------- tests

    def test_LoadAndCNR(self) -> None:
        """Load a case from files, measure CNR on two drawn ROIs and the lesion segment: needs no torch."""
        self.delayDisplay("Loading a phantom case")
        case = self._loadCase()
        fibroglandular = self._roiInside(self.fibroglandularMaskPath, "fibroglandular")
        adipose = self._roiInside(self.adiposeMaskPath, "adipose")
        result = self.logic.computeCNR(fibroglandular, adipose, {"LE": case.le, "real DES": case.des},
                                       lesion=self._massSegment(case.segmentation), ringWidthMm=6.0)
        self._assertFiniteTable(result.table)
        csvPath = self.folder / "cnr.csv"
        self.logic.saveTable(result.table, str(csvPath))
        self.assertTrue(csvPath.is_file() and csvPath.stat().st_size > 0)
        self.delayDisplay("Load and CNR passed")

    def test_WidgetBinding(self) -> None:
        """The panel and the parameter node follow each other, and a preset fills the training fields."""
        widget = slicer.util.getModuleWidget("VirtualContrast")
        widget.enter()
        parameterNode = widget.logic.getParameterNode()
        case = self._loadCase()
        parameterNode.leVolume = case.le
        self.assertEqual(widget.ui.leVolumeSelector.currentNode(), case.le)
        widget.ui.ringWidthSpinBox.value = 7.5
        self.assertAlmostEqual(parameterNode.ringWidthMm, 7.5)
        # A segmentation region shows the segment picker, and its segment reaches the parameter node.
        parameterNode.lesionRegion = case.segmentation
        self.assertFalse(widget.ui.lesionSegmentSelector.isHidden())
        self.assertTrue(widget.ui.lesionPlaceWidget.isHidden())
        self.assertIn(parameterNode.lesionSegmentId, [case.segmentation.GetSegmentation().GetNthSegmentID(i)
                      for i in range(case.segmentation.GetSegmentation().GetNumberOfSegments())])
        name, _description = self.logic.listPresets()[-1]
        widget.ui.presetComboBox.currentText = name
        widget.onPresetChosen(widget.ui.presetComboBox.currentIndex)
        fields = self.logic.presetFields(name)
        self.assertEqual(parameterNode.preset, name)
        self.assertEqual(widget.ui.epochsSpinBox.value, int(fields["epochs"]))
        self.assertEqual(widget.ui.imageSizeSpinBox.value, int(fields["image_size"]))
        self.assertAlmostEqual(widget.ui.learningRateSpinBox.value, float(fields["lr"]), places=7)
        self.delayDisplay("Widget binding passed")

    def test_SynthesizeHeatmapAndCNR(self) -> None:
        """Synthesize in a background process polled like the Widget does, then heatmaps, comparison and CNR."""
        missing = self.logic.missingDependencies()
        if missing:
            # External: these Python packages are not in this Slicer yet. The module installs them only on the
            # first Synthesize/Train, after asking the user (torch through the SlicerPyTorch extension); a
            # self-test must not install packages on its own.
            self.skipTest(f"Python packages not installed in this Slicer: {', '.join(missing)} (the module "
                          "installs them on the first Synthesize or Train, after asking)")
        case = self._loadCase()
        runDir = self._tinyModel()
        self.assertTrue(self.logic.isRunFolder(str(runDir)))

        self.delayDisplay("Synthesizing with a tiny model")
        job = self.logic.startSynthesis(case.le, str(runDir), device="cpu")
        events = []
        deadline = time.monotonic() + 300
        while not job.done:
            self.assertLess(time.monotonic(), deadline, "synthesis did not finish within 5 minutes")
            events += job.poll()
            slicer.app.processEvents()
            time.sleep(0.1)
        events += job.poll()
        self.assertEqual(job.state, "finished", f"synthesis {job.state}: {job.error}")
        self.assertTrue(events, "the background process reported no progress")
        synthetic = job.result
        self.assertIn("synthetic DES", synthetic.GetName())
        self._assertFiniteVolume(synthetic, case.le)

        heatmap = self.logic.differenceHeatmap(case.des, synthetic, case.le)
        self._assertFiniteVolume(heatmap.absolute, case.le)
        self._assertFiniteVolume(heatmap.signed, case.le)
        self.assertGreaterEqual(float(np.min(slicer.util.arrayFromVolume(heatmap.absolute))), 0.0)
        self.logic.showComparison(case.le, case.des, synthetic, heatmap.absolute)

        fibroglandular = self._roiInside(self.fibroglandularMaskPath, "fibroglandular")
        adipose = self._roiInside(self.adiposeMaskPath, "adipose")
        result = self.logic.computeCNR(
            fibroglandular, adipose, {"LE": case.le, "real DES": case.des, "synthetic DES": synthetic})
        self._assertFiniteTable(result.table)
        self.delayDisplay("Synthesis, heatmap and CNR passed")
