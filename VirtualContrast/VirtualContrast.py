"""VirtualContrast: virtual contrast enhancement for contrast-enhanced spectral mammography (CESM).

Slicer's four scripted-module classes. The Widget only wires the panel to
VirtualContrastLogic and to the panel rules of VirtualContrastLib.panel; all
work (loading, background synthesis, training and evaluation, heatmaps, CNR,
layouts) lives in VirtualContrastLib so that it can be scripted from the
Python console and tested without the Slicer application.
"""

import contextlib
import logging
import math
import pathlib
import shutil
import tempfile
import time
import traceback
import unittest
from typing import Annotated, Optional, Union

import ctk
import numpy as np
import qt
import vtk
from scipy import ndimage

import slicer

#: The oldest Slicer this module runs in: Slicer 5.8 has Python 3.9, and the module and its engine
#: need Python 3.10 or newer. Checked before anything else is imported, so an older Slicer says why.
MINIMUM_SLICER = (5, 10)
if hasattr(slicer, "app") and (slicer.app.majorVersion, slicer.app.minorVersion) < MINIMUM_SLICER:
    raise ImportError("Virtual Contrast needs 3D Slicer {}.{} or newer; this is Slicer {}: install a current "
                      "Slicer release.".format(*MINIMUM_SLICER, slicer.app.applicationVersion))

from slicer import (  # noqa: E402 (after the version check)
    vtkMRMLMarkupsClosedCurveNode,
    vtkMRMLMarkupsROINode,
    vtkMRMLPlotChartNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _  # noqa: E402
from slicer.parameterNodeWrapper import (  # noqa: E402
    Choice,
    GuiConnector,
    WithinRange,
    parameterNodeGuiConnector,
    parameterNodeWrapper,
)
from slicer.ScriptedLoadableModule import (  # noqa: E402
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin  # noqa: E402

from VirtualContrastLib import dependencies, jobs, panel, sampledata  # noqa: E402
from VirtualContrastLib.logic import LoadedCase, VirtualContrastLogicBase  # noqa: E402
from VirtualContrastTraining import checkpoints  # noqa: E402
from VirtualContrastTraining.config.schema import TrainConfig  # noqa: E402
from VirtualContrastTraining.data.manifest import read_manifest, resolve  # noqa: E402
from VirtualContrastTraining.data.phantom import generate_dataset  # noqa: E402
from VirtualContrastTraining.data.preprocessing import PreprocessConfig  # noqa: E402
from VirtualContrastTraining.errors import InputError  # noqa: E402

#: How often the Widget reads the background jobs' progress lines (ms): fast enough for a
#: smooth progress bar, slow enough that the GUI thread stays free.
POLL_INTERVAL_MS = 500

#: A region for CNR: drawn as markups, or painted as a segment in the Segment Editor. None is part of
#: the type: the wrapper writes each field's default (None) when it creates the parameter node, and
#: Slicer's union serializer refuses a None that the union does not name.
RegionNode = Union[vtkMRMLMarkupsROINode, vtkMRMLMarkupsClosedCurveNode, vtkMRMLSegmentationNode, None]

#: A path the user may leave empty. Slicer's own Path connector shows an unset pathlib.Path as "."
#: (str(Path(""))); this type and its connector below keep "not chosen" as None and an empty field.
OptionalPath = Optional[pathlib.Path]


#
# VirtualContrast
#


class VirtualContrast(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel; registers the sample case."""

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
            "through difference heatmaps, measure contrast-to-noise ratios on drawn regions, and train and "
            "evaluate models in the background. Needs Slicer 5.10 or newer. Synthetic images are research output, "
            'not for diagnosis. See the <a href="https://github.com/VirtualContrast/SlicerVirtualContrast">'
            "extension documentation</a>."
        )
        self.parent.acknowledgementText = _(
            "Built on 3D Slicer, PyTorch (through SlicerPyTorch) and MONAI. The recipes follow the published "
            "CycleGAN and Seg-CycleGAN work on virtual contrast enhancement for CESM."
        )
        # Sample Data registers sources once the application has started (as Slicer's module template does).
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData() -> None:
    """A phantom CESM case (LE, DES, lesion segmentation) in the Sample Data module: one click, offline."""
    import SampleData  # lazy: Slicer application

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="Virtual Contrast", sampleName=sampledata.SAMPLE_NAME, uris=sampledata.SAMPLE_NAME,
        fileNames=sampledata.SAMPLE_NAME, thumbnailFileName=str(sampledata.THUMBNAIL),
        customDownloader=lambda source: VirtualContrastLogic().loadSampleCase())


#
# VirtualContrastParameterNode
#


@parameterNodeGuiConnector
class OptionalPathLineEditConnector(GuiConnector):
    """ctkPathLineEdit <-> Optional[pathlib.Path]: an empty field is None, and None shows as empty."""

    @staticmethod
    def canRepresent(widget, datatype) -> bool:
        return type(widget) == ctk.ctkPathLineEdit and datatype == OptionalPath

    @staticmethod
    def create(widget, datatype):
        return OptionalPathLineEditConnector(widget) if OptionalPathLineEditConnector.canRepresent(
            widget, datatype) else None

    def __init__(self, widget):
        super().__init__()
        self._widget = widget

    def _connect(self):
        self._widget.currentPathChanged.connect(self.changed)

    def _disconnect(self):
        self._widget.currentPathChanged.disconnect(self.changed)

    def widget(self):
        return self._widget

    def read(self):
        return pathlib.Path(self._widget.currentPath) if self._widget.currentPath else None

    def write(self, value) -> None:
        self._widget.currentPath = "" if value is None else str(value)


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
    modelPath: OptionalPath
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
    datasetKind: Annotated[str, Choice(list(panel.DATASET_KINDS))] = panel.DATASET_KINDS[0]
    manifestPath: OptionalPath
    dicomFolder: OptionalPath
    preset: str = ""
    epochs: Annotated[int, WithinRange(1, 100000)] = 200
    batchSize: Annotated[int, WithinRange(1, 1024)] = 8
    learningRate: Annotated[float, WithinRange(1e-7, 1.0)] = 1e-5
    gamma: Annotated[float, WithinRange(0.0, 10000.0)] = 0.0
    imageSize: Annotated[int, WithinRange(32, 4096)] = 256
    trainDevice: str = "auto"
    outputFolder: OptionalPath
    lossChart: vtkMRMLPlotChartNode
    # Evaluate
    evaluationManifestPath: OptionalPath
    evaluationSplit: Annotated[str, Choice(list(panel.EVALUATION_SPLITS))] = panel.EVALUATION_SPLITS[0]
    evaluationFolder: OptionalPath


#
# VirtualContrastWidget
#


class VirtualContrastWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Wires the panel to VirtualContrastLogic and to VirtualContrastLib.panel; computes nothing itself."""

    #: Each background job kind and its progress bar and status label in the .ui.
    JOB_WIDGETS = {"synthesis": ("synthesisProgressBar", "synthesisStatusLabel"),
                   "training": ("trainingProgressBar", "trainingStatusLabel"),
                   "evaluation": ("evaluationProgressBar", "evaluationStatusLabel")}

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._updatingGui = False
        self._jobs = dict.fromkeys(self.JOB_WIDGETS)
        self._jobMessages = dict.fromkeys(self.JOB_WIDGETS, "")
        self._synthesisInputs = None
        self._sceneCases = panel.SceneCases()
        self._dependenciesChecked = False

    def setup(self) -> None:
        """Load the .ui, create the logic, fill the lists, connect signals, restore the remembered settings."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/VirtualContrast.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects mrmlSceneChanged of the top-level qMRMLWidget to every MRML widget.
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = VirtualContrastLogic()

        # Lists that only the logic knows: devices (found without importing torch here) and presets.
        for combo in (self.ui.deviceComboBox, self.ui.trainDeviceComboBox):
            combo.addItems(self.logic.availableDevices())
        for name, description in self.logic.listPresets():
            self.ui.presetComboBox.addItem(name)
            self.ui.presetComboBox.setItemData(self.ui.presetComboBox.count - 1, description, qt.Qt.ToolTipRole)

        # Background jobs are polled from the GUI thread, as SlicerMONAIAuto3DSeg does.
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.timeout.connect(self.onPollTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeRemovedEvent, self.onNodeRemoved)

        for button, slot in {
                "loadCaseButton": self.onLoadCase, "synthesizeButton": self.onSynthesize,
                "showComparisonButton": self.onShowComparison, "computeCnrButton": self.onComputeCnr,
                "saveCnrCsvButton": self.onSaveCnrCsv, "addSceneCaseButton": self.onAddSceneCase,
                "removeSceneCaseButton": self.onRemoveSceneCase, "trainButton": lambda: self.onTrain(resume=False),
                "resumeTrainingButton": lambda: self.onTrain(resume=True), "evaluateButton": self.onEvaluate,
                "openReportButton": self.onOpenReport, "cancelSynthesisButton": lambda: self._cancel("synthesis"),
                "cancelTrainingButton": lambda: self._cancel("training"),
                "cancelEvaluationButton": lambda: self._cancel("evaluation")}.items():
            getattr(self.ui, button).clicked.connect(slot)
        for combo, field in (("deviceComboBox", "device"), ("trainDeviceComboBox", "trainDevice")):
            getattr(self.ui, combo).currentTextChanged.connect(lambda text, f=field: self._setParameter(f, text))
        for key in ("fibroglandular", "adipose", "lesion"):
            getattr(self.ui, f"{key}SegmentSelector").currentSegmentChanged.connect(
                lambda segmentId, key=key: self._setParameter(f"{key}SegmentId", segmentId))
        self.ui.presetComboBox.connect("activated(int)", self.onPresetChosen)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes or the module reloads: stop polling and observing, and stop
        every running job so that none outlives Slicer. A running training is asked about first: stopped
        with a checkpoint (Resume continues it) or at once."""
        self._pollTimer.stop()
        self.removeObservers()  # every observation, the parameter node's included (exit() may have removed it)
        training = self._jobs["training"]
        if training is not None and not training.done and not slicer.util.confirmYesNoDisplay(_(
                "A training is running. Write a checkpoint before it stops, so that Resume can continue it later? "
                "(No stops it at once.)")):
            training.kill()
        jobs.stopAll(self._jobs.values())  # cancel (checkpoint), then kill what is left after a few seconds

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module: unbind the parameter node (enter() binds it
        again), so that nothing later (scene close, cleanup) unbinds it a second time."""
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        """The parameter node, the scene cases and a running synthesis (its LE is going) end with the scene.

        A running training and evaluation go on: they read only files; the training's chart moves to the
        next scene (onSceneEndClose)."""
        if self._jobs["synthesis"] is not None and not self._jobs["synthesis"].done:
            self._jobs["synthesis"].cancel()
        self.setParameterNode(None)
        self._sceneCases.clear()
        self.ui.sceneCasesListWidget.clear()

    def onSceneEndClose(self, caller, event) -> None:
        """A running training's loss chart is rebuilt in the new scene; a shown module gets a fresh node."""
        training = self._jobs["training"]
        if training is not None and not training.done:
            training.lossChart.moveTo(slicer.mrmlScene)
        if self.parent.isEntered:
            self.initializeParameterNode()
            if training is not None and not training.done:
                self._parameterNode.lossChart = training.lossChart.chart

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeRemoved(self, caller, event, node) -> None:
        """A deleted LE/DES/segmentation leaves the training-case list with it."""
        if self._sceneCases.prune(slicer.mrmlScene):
            self._showSceneCases()

    def initializeParameterNode(self) -> None:
        """Ensure the parameter node exists and is observed, with an LE, a preset and the remembered settings."""
        self.setParameterNode(self.logic.getParameterNode())
        p = self._parameterNode
        if not p.leVolume:
            p.leVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not p.preset:
            self._applyPreset(panel.DEFAULT_PRESET if self.ui.presetComboBox.findText(panel.DEFAULT_PRESET) >= 0
                              else self.ui.presetComboBox.itemText(0))
        devices = [self.ui.deviceComboBox.itemText(i) for i in range(self.ui.deviceComboBox.count)]
        with slicer.util.NodeModify(p):
            for field, value in panel.rememberedFields(qt.QSettings().value, self.logic.starterModelPath(),
                                                       devices).items():
                if getattr(p, field) in (None, "auto"):
                    setattr(p, field, value)

    def setParameterNode(self, inputParameterNode: Optional[VirtualContrastParameterNode]) -> None:
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
        """Refresh what the wrapper does not bind: combo selections, region helpers, γ, estimate, buttons."""
        p = self._parameterNode
        if p is None or self._updatingGui:
            return
        self._updatingGui = True
        try:
            for combo, value in ((self.ui.deviceComboBox, p.device), (self.ui.trainDeviceComboBox, p.trainDevice),
                                 (self.ui.presetComboBox, p.preset)):
                if value and combo.findText(value) >= 0:
                    combo.currentText = value
            self.ui.datasetSourceStackedWidget.currentIndex = panel.DATASET_KINDS.index(p.datasetKind)
            fields = self.logic.presetFields(p.preset) if p.preset else {}
            for name in ("gammaLabel", "gammaSpinBox"):
                getattr(self.ui, name).visible = panel.usesGamma(fields)
            self.ui.trainingEstimateLabel.text = self.logic.trainingEstimate(
                p.preset, p.epochs, p.manifestPath if p.datasetKind == "Manifest" else None, p.trainDevice)
            # A newly chosen segmentation pre-selects a segment: record it once the refresh is over.
            chosenSegments = {key: self._updateRegionWidgets(key) for key in ("fibroglandular", "adipose", "lesion")}
        finally:
            self._updatingGui = False
        with slicer.util.NodeModify(p):
            for key, segmentId in chosenSegments.items():
                if segmentId is not None and segmentId != getattr(p, f"{key}SegmentId"):
                    setattr(p, f"{key}SegmentId", segmentId)
        self._updateButtonStates()

    def _updateRegionWidgets(self, key: str) -> Optional[str]:
        """Segment picker or place widget for one region (panel.regionView); returns the segment shown."""
        segmentSelector, placeWidget = getattr(self.ui, f"{key}SegmentSelector"), getattr(self.ui, f"{key}PlaceWidget")
        node = getattr(self._parameterNode, f"{key}Region")
        view = panel.regionView(node, getattr(self._parameterNode, f"{key}SegmentId"))
        segmentSelector.visible, placeWidget.visible = view.segmentation, view.markups
        segmentSelector.setCurrentNode(node if view.segmentation else None)
        placeWidget.setCurrentNode(node if view.markups else None)
        if view.segmentation:
            if view.segmentId:
                segmentSelector.setCurrentSegmentID(view.segmentId)
            # The picker may still name a segment of the previous segmentation when this one has none.
            return panel.existingSegment(node, segmentSelector.currentSegmentID())
        if view.markups:  # a closed curve takes many clicks; an ROI is done in one drag
            placeWidget.placeMultipleMarkups = (slicer.qSlicerMarkupsPlaceWidget.ForcePlaceMultipleMarkups
                                                if view.multiplePoints else
                                                slicer.qSlicerMarkupsPlaceWidget.ForcePlaceSingleMarkup)
        return None

    def _updateButtonStates(self) -> None:
        """Enable each action only when its inputs are there and no job of its kind runs (panel.buttonStates)."""
        p = self._parameterNode
        if p is None:
            return
        evaluation = self._jobs["evaluation"]
        state = panel.PanelState(
            le=bool(p.leVolume), realDes=bool(p.realDesVolume), synthetic=bool(p.syntheticVolume),
            heatmap=bool(p.heatmapVolume), modelPath=p.modelPath,
            tissueRegions=bool(self._region("fibroglandular") and self._region("adipose")),
            cnrTable=bool(p.cnrTable), outputFolder=p.outputFolder, evaluationManifest=p.evaluationManifestPath,
            evaluationFolder=p.evaluationFolder, sceneCases=len(self._sceneCases.cases),
            reportReady=evaluation is not None and evaluation.state == "finished",
            running={kind for kind, job in self._jobs.items() if job is not None and not job.done})
        for name, (enabled, toolTip) in panel.buttonStates(state).items():
            button = getattr(self.ui, name)
            button.enabled = enabled
            button.toolTip = toolTip

    def _region(self, key: str):
        """The logic's form of a region: the markups node, or (segmentation, segment id); None if incomplete."""
        node = getattr(self._parameterNode, f"{key}Region")
        if node is None or not node.IsA("vtkMRMLSegmentationNode"):
            return node
        segmentId = getattr(self._parameterNode, f"{key}SegmentId")
        return (node, segmentId) if segmentId else None

    # ------------------------------------------------------------------ background jobs
    @contextlib.contextmanager
    def _reporting(self, message: str):
        """Run a panel action under a wait cursor; a failure becomes one dialog and a log line, not a traceback
        in the console. Bad input (InputError: a file, a region, a missing choice) is shown in its own words."""
        try:
            with slicer.util.WaitCursor():
                yield
        except InputError as error:
            self._log("error", str(error))
            slicer.util.errorDisplay(f"{message}\n\n{error}")
        except Exception as error:
            logging.exception(message)
            self._log("error", f"{message} {error}")
            slicer.util.errorDisplay(f"{message}\n\n{error}", detailedText=traceback.format_exc())

    def _ensureDependencies(self) -> bool:
        """Before the first synthesis or training: ONE dialog that lists what will be installed, where, and
        what stays (VirtualContrastLib.dependencies words it), then the install: torch through SlicerPyTorch,
        the rest into the module's own package folder. Nothing is installed without the user's consent, and
        no package that Slicer ships is upgraded in Slicer's own Python."""
        if self._dependenciesChecked:
            return True

        plan = dependencies.dependencyPlan()
        if plan.missing:
            if not slicer.util.confirmOkCancelDisplay(plan.summary(), windowTitle=_("Install Python packages")):
                return False
            installed = None
            with self._reporting(_("Failed to install the required Python packages.")):
                installed = dependencies.installDependencies(plan)
            if installed is None:
                return False
            if installed.missing:
                slicer.util.errorDisplay(_("Still missing: {packages}.").format(
                    packages=", ".join(str(package.requirement) for package in installed.missing)))
                return False
        self._dependenciesChecked = True
        return True

    def _start(self, kind: str, start, startingText: str) -> None:
        """Start a job (`start()` returns it) unless the engine's packages are refused; errors go to a dialog."""
        if not self._ensureDependencies():
            return
        with self._reporting(_("Failed to start the {kind}.").format(kind=kind)):
            job = start()
            if job is None:
                return
            self._jobs[kind] = job
            job.onText(lambda job, line: self._log(kind, line))
            progressBar, statusLabel = (getattr(self.ui, name) for name in self.JOB_WIDGETS[kind])
            progressBar.value = 0
            statusLabel.text = startingText
            self._log(kind, " ".join(job.command))
            self._pollTimer.start()
        self._updateButtonStates()

    def _cancel(self, kind: str) -> None:
        """Ask the job to stop; a training writes a checkpoint first. The poll reports the end."""
        if self._jobs[kind] is not None:
            self._jobs[kind].cancel()

    def onPollTimer(self) -> None:
        """One tick: read every running job's new output into its progress bar, status label and the log;
        report the ones that ended. The timer stops when nothing runs."""
        for kind, job in self._jobs.items():
            if job is None or job.done:
                continue
            progressBar, statusLabel = (getattr(self.ui, name) for name in self.JOB_WIDGETS[kind])
            job.poll()  # never raises: a failing callback fails the job instead
            progressBar.value = int(round(100 * job.progress))
            if job.message != self._jobMessages[kind]:
                self._jobMessages[kind] = statusLabel.text = job.message
                self._log(kind, job.message)
            if job.done:
                self._jobEnded(kind, job, statusLabel)
        if not any(job is not None and not job.done for job in self._jobs.values()):
            self._pollTimer.stop()
        self._updateButtonStates()

    def _jobEnded(self, kind: str, job, statusLabel) -> None:
        """Show what the job left: the synthetic DES, the new model, the report; or why it failed."""
        text, error = panel.jobEndText(kind, job)
        if job.state == "finished" and kind == "synthesis":
            text = self._showSynthesisResult(job.result)
        elif job.state == "finished" and kind == "training":
            # The new model becomes the current one (also if the user is in another module) and joins the
            # recent-models list.
            self.logic.getParameterNode().modelPath = job.result
            self.ui.modelPathLineEdit.currentPath = str(job.result)
            self.ui.modelPathLineEdit.addCurrentPathToHistory()
        statusLabel.text = text
        self._log(kind, text if error is None else f"{error}\n{job.stderrTail()}")
        if error is not None:
            slicer.util.errorDisplay(error, detailedText=job.stderrTail())

    def _log(self, kind: str, text: str) -> None:
        """A line in the panel's log: what the background processes said, for the user to read or copy."""
        self.ui.logTextEdit.appendPlainText(f"[{time.strftime('%H:%M:%S')}] {kind}: {text}")

    # ------------------------------------------------------------------ inputs

    def onLoadCase(self) -> None:
        """Load the chosen files and select them as inputs."""
        lePath = self.ui.lePathLineEdit.currentPath
        if not lePath:
            slicer.util.errorDisplay(_("Choose an LE file first."))
            return
        with self._reporting(_("Failed to load the case.")):
            case = self.logic.loadCase(lePath, self.ui.desPathLineEdit.currentPath or None,
                                       self.ui.segmentationPathLineEdit.currentPath or None)
            with slicer.util.NodeModify(self._parameterNode):
                self._parameterNode.leVolume = case.le
                self._parameterNode.realDesVolume = case.des
                self._parameterNode.lesionSegmentation = case.segmentation
            slicer.util.setSliceViewerLayers(background=case.le, foreground=None, fit=True)

    # ------------------------------------------------------------------ synthesize

    def onSynthesize(self) -> None:
        """Start the engine's predict as a background process; remember model and device for next time."""
        p = self._parameterNode
        self._synthesisInputs = (p.leVolume, p.realDesVolume)
        settings = qt.QSettings()
        settings.setValue(panel.SETTINGS["lastModel"], str(p.modelPath))
        settings.setValue(panel.SETTINGS["device"], p.device)
        self._start("synthesis", lambda: self.logic.startSynthesis(p.leVolume, str(p.modelPath), device=p.device),
                    _("Starting..."))

    def _showSynthesisResult(self, syntheticNode) -> str:
        """Record the synthetic DES (and, with a real DES, its heatmaps and the comparison); the status line."""
        leNode, realDesNode = self._synthesisInputs
        p = self.logic.getParameterNode()  # also when the user has moved to another module meanwhile
        p.syntheticVolume = syntheticNode
        self.ui.modelPathLineEdit.addCurrentPathToHistory()  # the model worked: remember it
        heatmap = None
        with self._reporting(_("Failed to compute the difference heatmap.")):
            if realDesNode is None:
                slicer.util.setSliceViewerLayers(background=syntheticNode, foreground=None, fit=True)
            else:
                heatmap = self.logic.differenceHeatmap(realDesNode, syntheticNode, leNode)
                with slicer.util.NodeModify(p):
                    p.heatmapVolume, p.signedHeatmapVolume = heatmap.absolute, heatmap.signed
                self.logic.showComparison(leNode, realDesNode, syntheticNode, heatmap.absolute)
        return panel.synthesisText(syntheticNode.GetName(), withHeatmaps=heatmap is not None)

    def onShowComparison(self) -> None:
        """Show the four linked views again (e.g. after changing the layout by hand)."""
        p = self._parameterNode
        with self._reporting(_("Failed to show the comparison.")):
            self.logic.showComparison(p.leVolume, p.realDesVolume, p.syntheticVolume, p.heatmapVolume)

    # ------------------------------------------------------------------ CNR

    def onComputeCnr(self) -> None:
        """CNR on every available image; a region problem is shown as the logic words it."""
        p = self._parameterNode
        with self._reporting(_("Failed to compute CNR.")):
            result = self.logic.computeCNR(
                self._region("fibroglandular"), self._region("adipose"),
                panel.cnrVolumes(p.leVolume, p.realDesVolume, p.syntheticVolume),
                lesion=self._region("lesion"), ringWidthMm=p.ringWidthMm, tableNode=p.cnrTable)
            p.cnrTable = result.table
            self.logic.showTable(result.table)

    def onSaveCnrCsv(self) -> None:
        """Ask for a file name and write the results table as CSV."""
        table = self._parameterNode.cnrTable
        path = qt.QFileDialog.getSaveFileName(
            slicer.util.mainWindow(), _("Save CNR table"), f"{table.GetName()}.csv", _("CSV files (*.csv)"))
        if path:
            with self._reporting(_("Failed to save the table.")):
                self.logic.saveTable(table, path)

    # ------------------------------------------------------------------ train

    def onPresetChosen(self, index: int) -> None:
        """The user picked a preset: its published numbers fill the fields."""
        self._applyPreset(self.ui.presetComboBox.itemText(index))

    def _applyPreset(self, name: str) -> None:
        """Copy a preset's main fields into the parameter node (and so into the spin boxes)."""
        with slicer.util.NodeModify(self._parameterNode):
            self._parameterNode.preset = name
            for field, value in panel.presetParameters(self.logic.presetFields(name)).items():
                setattr(self._parameterNode, field, value)

    def onAddSceneCase(self) -> None:
        """Take the LE, DES and lesion segmentation of the Inputs section as one training case."""
        p = self._parameterNode
        with self._reporting(_("Cannot add the case.")):
            self._sceneCases.add(p.leVolume, p.realDesVolume, p.lesionSegmentation)
        self._showSceneCases()

    def onRemoveSceneCase(self) -> None:
        """Drop the selected scene case from the list."""
        self._sceneCases.remove(self.ui.sceneCasesListWidget.currentRow)
        self._showSceneCases()

    def _showSceneCases(self) -> None:
        self.ui.sceneCasesListWidget.clear()
        self.ui.sceneCasesListWidget.addItems(self._sceneCases.labels())
        self._updateButtonStates()

    def onTrain(self, resume: bool) -> None:
        """Start (or resume) the engine's train as a background process with a live loss chart.

        A resumed run keeps its saved configuration; only Epochs applies, so that a run can be extended.
        """
        p = self._parameterNode
        qt.QSettings().setValue(panel.SETTINGS["outputFolder"], str(p.outputFolder))

        def start():
            manifest = panel.datasetManifest(p.datasetKind, p.outputFolder, resume, manifestPath=p.manifestPath,
                                             dicomFolder=p.dicomFolder, sceneCases=self._sceneCases.cases,
                                             logic=self.logic)
            fields = {} if resume else dict(batchSize=p.batchSize, learningRate=p.learningRate,
                                            gamma=p.gamma, imageSize=p.imageSize)
            job = self.logic.startTraining(p.preset, str(manifest), str(p.outputFolder), device=p.trainDevice,
                                           resume=resume, epochs=p.epochs, plotChartNode=p.lossChart, **fields)
            p.lossChart = job.chart
            self.logic.showChart(job.chart)
            return job

        self._start("training", start, _("Resuming...") if resume else _("Starting..."))

    # ------------------------------------------------------------------ evaluate

    def onEvaluate(self) -> None:
        """The engine's evaluate of the current model on a manifest split, in the background."""
        p = self._parameterNode
        self._start("evaluation", lambda: self.logic.startEvaluation(
            str(p.evaluationManifestPath), str(p.evaluationFolder), modelPath=str(p.modelPath),
            split=p.evaluationSplit, device=p.device), _("Starting..."))

    def onOpenReport(self) -> None:
        """Open the finished evaluation's report.html in the system's web browser."""
        report = self._jobs["evaluation"].result
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(report)))


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
        # What the module installed into its own package folder imports here too, after Slicer's own packages.
        dependencies.activate()

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
        for test in (self.test_LoadAndCNR, self.test_WidgetBinding, self.test_SynthesizeHeatmapAndCNR,
                     self.test_SampleCaseWithStarterModel):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as reason:
                self.delayDisplay(f"Skipped {test.__name__}: {reason}")
            finally:
                self.doCleanups()

    # -------------------------------------------------------------- helpers

    def _skipWithoutEngine(self) -> None:
        """Skip a test that runs the engine when its Python packages are not in this Slicer yet (external: the
        module installs them only on the first Synthesize/Train, after asking the user, torch through the
        SlicerPyTorch extension; a self-test must not install packages on its own)."""
        missing = self.logic.missingDependencies()
        if missing:
            self.skipTest(f"Python packages not installed in this Slicer: {', '.join(missing)} (the module "
                          "installs them on the first Synthesize or Train, after asking)")

    def _loadCase(self) -> LoadedCase:
        """The phantom case through the same call as the Load case button."""
        case = self.logic.loadCase(str(self.lePath), str(self.desPath), str(self.lesionPath))
        self.assertIsNotNone(case.le)
        self.assertIsNotNone(case.des)
        self.assertIsNotNone(case.segmentation)
        return case

    def _roiInside(self, maskPath: pathlib.Path, name: str):
        """A small ROI around the pixel deepest inside a truth mask, so that the region holds only that tissue."""
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
        from VirtualContrastTraining.models.networks import define_G  # lazy: torch

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
        self._skipWithoutEngine()
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

    def test_SampleCaseWithStarterModel(self) -> None:
        """A new user's first run: the Sample Data case and the bundled phantom-trained model, no training."""
        self._skipWithoutEngine()
        starter = self.logic.starterModelPath()
        self.assertIsNotNone(starter, "the extension has no bundled model (Resources/Models/phantom-demo)")
        case = self.logic.loadSampleCase()
        synthetic = self.logic.synthesize(case.le, str(starter), device="cpu", timeout=300)
        self.assertIn("phantom-trained demo model", synthetic.GetName())
        self._assertFiniteVolume(synthetic, case.le)
        self.delayDisplay("Sample case with the starter model passed")
