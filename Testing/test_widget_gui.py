"""The module's real Widget, driven through its widgets as a user would (issue 12, part A).

Every other test of the module runs one layer below the panel; here Slicer 5.10's
own ScriptedLoadableModule, parameterNodeWrapper and util.py run the real
VirtualContrastWidget on a slicer-core scene, with PySide6 widgets offscreen
(Testing/slicer_gui explains the harness). Buttons are clicked, combo boxes
picked, path edits typed into, the Widget's own QTimer polls real child
processes, and every dialog must be expected by the test.

A user's drawing in a slice view is the one thing not emulated: a region is
made with its selector's "Create new ..." action and then given the geometry the
drag would give it.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

import slicer_gui
from conftest import make_tiny_model

JOB_TIMEOUT = 120  # s: a child that imports torch and trains for seconds on 2 busy cores


@pytest.fixture(scope="module")
def harness():
    """Installs the harness once for this file and gives the process its plain slicer-core back after it."""
    if slicer_gui.SKIP_REASON:
        pytest.skip(slicer_gui.SKIP_REASON)
    from slicer_gui import harness

    harness.install()
    yield harness
    harness.uninstall()


@pytest.fixture
def session(harness, tmp_path):
    """A fresh application per test; on teardown Slicer's exit runs and leftovers fail the test."""
    session = harness.Session(tmp_path / "app")
    yield session
    if not session.closed:
        problems = session.close()
        assert not problems, problems


@pytest.fixture
def widget(session):
    """The module as a user first sees it: loaded by the module manager, then selected (setup + enter)."""
    session.loadModule()
    return session.openModule()


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """One phantom case at 2 mm (the module's own self-test case): files, truth masks and its manifest."""
    from VirtualContrastTraining.data.manifest import read_manifest, resolve
    from VirtualContrastTraining.data.phantom import generate_dataset

    manifest = generate_dataset(tmp_path_factory.mktemp("case") / "phantom", 1, seed=11, pixel_mm=2.0)
    row = read_manifest(manifest)[0]
    le = resolve(manifest, row.le_path)
    truth = le.parent / "truth"
    return {"manifest": manifest, "le": le, "des": resolve(manifest, row.des_path),
            "lesions": resolve(manifest, row.lesion_path),
            "fibroglandular": truth / f"{row.case_id}_fibroglandular.nrrd",
            "adipose": truth / f"{row.case_id}_adipose.nrrd"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "run")


@pytest.fixture(scope="module")
def split_manifest(small_phantom, tmp_path_factory):
    """The small phantom with train/val/test filled in by patient, as evaluate needs them."""
    from VirtualContrastTraining.data.manifest import read_manifest, write_manifest
    from VirtualContrastTraining.data.splits import assign_splits

    cases = assign_splits(read_manifest(small_phantom), seed=0)
    return write_manifest(small_phantom.parent / "manifest_split.csv", cases)


# ---------------------------------------------------------------- what a user does

def click(button) -> None:
    """A click; a disabled button would ignore it, so the test says why the panel disabled it."""
    assert button.enabled, f"{button.objectName} is disabled: {button.toolTip}"
    button.click()


def pick(combo, text: str) -> None:
    """Choosing an item of a drop-down list: the current item changes, then `activated(index)`."""
    index = combo.findText(text)
    assert index >= 0, f"{combo.objectName} has no item {text!r}"
    combo.currentIndex = index
    combo.activated.emit(index)


def typePath(pathEdit, path) -> None:
    """Typing a path into a ctkPathLineEdit (its line edit's text, then its own signals)."""
    pathEdit.currentPath = str(path)


def expand(section) -> None:
    section.collapsed = False


def loadCase(widget, case, lesions=True) -> None:
    typePath(widget.ui.lePathLineEdit, case["le"])
    typePath(widget.ui.desPathLineEdit, case["des"])
    typePath(widget.ui.segmentationPathLineEdit, case["lesions"] if lesions else "")
    click(widget.ui.loadCaseButton)


def drawRoiInside(widget, selector, maskPath):
    """The region selector's "Create new ROI", then the box a user would drag inside the tissue of a
    truth mask: around its deepest pixel, small enough to hold that tissue only."""
    import slicer
    import vtk
    from scipy import ndimage

    maskNode = widget.logic.loadVolume(str(maskPath), name="truth mask")
    depth = ndimage.distance_transform_edt(slicer.util.arrayFromVolume(maskNode) > 0)
    k, j, i = np.unravel_index(int(np.argmax(depth)), depth.shape)
    ijkToRas = vtk.vtkMatrix4x4()
    maskNode.GetIJKToRASMatrix(ijkToRas)
    center = ijkToRas.MultiplyPoint([float(i), float(j), float(k), 1.0])[:3]
    side = 2 * (depth[k, j, i] - 1) / math.sqrt(2) * min(maskNode.GetSpacing()[:2])
    slicer.mrmlScene.RemoveNode(maskNode)
    roi = selector.addNode("vtkMRMLMarkupsROINode")
    assert roi is not None and selector.currentNode() is roi
    roi.SetCenter(center)
    roi.SetSize(side, side, side)
    return roi


# ---------------------------------------------------------------- tests

def test_node_combo_box_follows_the_scene_as_slicer_does(session):
    """The qMRMLNodeComboBox stand-in: type filter, first node chosen only where QComboBox would choose it,
    the next node after a removal, "Create new" selecting the new node."""
    import slicer

    scene = slicer.mrmlScene
    first = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "first")
    combo = slicer.qMRMLNodeComboBox()
    combo.nodeTypes = ["vtkMRMLScalarVolumeNode"]
    combo.showChildNodeTypes = combo.noneEnabled = combo.addEnabled = combo.removeEnabled = False
    changes = []
    combo.currentNodeChanged.connect(lambda node: changes.append(node))
    combo.setMRMLScene(scene)
    assert combo.currentNode() is first and combo.enabled  # none not allowed: the first node at scene set
    scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "a label map")  # a child type, hidden
    second = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "second")
    assert combo.nodes() == [first, second] and combo.currentNodeID == first.GetID()
    scene.RemoveNode(first)
    assert combo.currentNode() is second  # the next row
    scene.RemoveNode(second)
    assert combo.currentNode() is None and changes == [first, second, None]
    third = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "third")
    assert combo.currentNode() is third  # the first node into an empty list without action rows

    withActions = slicer.qMRMLNodeComboBox()
    withActions.nodeTypes = ["vtkMRMLMarkupsROINode"]
    withActions.setMRMLScene(scene)
    scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    assert withActions.currentNode() is None  # "Create new ..." rows: QComboBox selects nothing
    created = withActions.addNode()
    assert withActions.currentNode() is created and created.GetDisplayNode() is not None
    noneFirst = slicer.qMRMLNodeComboBox()
    noneFirst.nodeTypes, noneFirst.noneEnabled = ["vtkMRMLScalarVolumeNode"], True
    noneFirst.setMRMLScene(scene)
    assert noneFirst.currentNode() is None


def test_path_line_edit_keeps_its_history_in_the_settings(session):
    """The ctkPathLineEdit stand-in: currentPathChanged for acceptable input only, the history in QSettings
    (newest first), recalled by a new edit with the same key; Browse asks a recorded file dialog."""
    import ctk
    import qt

    edit = ctk.ctkPathLineEdit()
    edit.objectName, edit.nameFilters = "imagePath", ["Images (*.nrrd)", "All files (*)"]
    seen = []
    edit.currentPathChanged.connect(lambda path: seen.append(path))
    edit.currentPath = "notes.txt"
    edit.currentPath = "a.nrrd"
    assert seen == ["a.nrrd"] and edit.currentPath == "a.nrrd"
    edit.addCurrentPathToHistory()
    edit.currentPath = "b.nrrd"
    edit.addCurrentPathToHistory()
    assert qt.QSettings().value("ctkPathLineEdit/imagePath") == ["b.nrrd", "a.nrrd"]
    assert any((session.folder / "settings").rglob("*.ini"))
    recalled = ctk.ctkPathLineEdit()
    recalled.settingKey = "imagePath"
    assert recalled.currentPath == "b.nrrd" and recalled.comboBox().count == 2
    edit.filters = ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Readable
    session.dialogs.expect("file", "getOpenFileName", answer="/data/c.nrrd")
    edit.browse()
    assert edit.currentPath == "/data/c.nrrd"


def test_module_comes_up_as_slicer_brings_it_up(session):
    """Module(parent) -> Widget(parent) -> setup() -> enter(), with what Slicer registers along the way."""
    import slicer

    module = session.loadModule()
    assert slicer.modules.virtualcontrast is module and module.title == "Virtual Contrast"
    assert type(slicer.modules.VirtualContrastInstance).__name__ == "VirtualContrast"
    assert "VirtualContrast" in slicer.selfTests and slicer.moduleNames.VirtualContrast == "VirtualContrast"
    # startupCompleted registered the phantom case with Sample Data.
    assert [s.sampleName for s in session.sampleData.SampleDataLogic.sources] == ["CESM phantom case"]
    widget = session.openModule()
    assert slicer.modules.VirtualContrastWidget is widget is slicer.util.getModuleWidget("VirtualContrast")
    assert slicer.util.getModuleLogic("VirtualContrast") is widget.logic
    assert widget.parent.isEntered and slicer.util.mainWindow() is session.mainWindow
    # The .ui's connections gave every MRML widget the scene.
    for name in ("leVolumeSelector", "fibroglandularSegmentSelector", "lesionPlaceWidget", "lossChartSelector"):
        assert getattr(widget.ui, name).mrmlScene() is slicer.mrmlScene, name
    # A fresh panel: demo preset's numbers in the spin boxes, actions waiting for their inputs.
    p = widget.logic.getParameterNode()
    assert widget.ui.presetComboBox.currentText == p.preset == "demo"
    assert widget.ui.epochsSpinBox.value == p.epochs == widget.logic.presetFields("demo")["epochs"]
    assert not widget.ui.computeCnrButton.enabled and "tissue regions" in widget.ui.computeCnrButton.toolTip
    assert not widget.ui.trainButton.enabled and not widget.ui.cancelTrainingButton.enabled
    # Paths not chosen are empty fields and None, never "." (str(pathlib.Path(""))); the model field starts
    # from the bundled phantom-trained model.
    for name, field in (("manifestPathLineEdit", "manifestPath"), ("dicomFolderPathLineEdit", "dicomFolder"),
                        ("evaluationManifestPathLineEdit", "evaluationManifestPath"),
                        ("evaluationFolderPathLineEdit", "evaluationFolder")):
        assert getattr(widget.ui, name).currentPath == "" and getattr(p, field) is None, name
    assert p.modelPath == widget.logic.starterModelPath() and widget.ui.modelPathLineEdit.currentPath == str(p.modelPath)
    # The parameter node and the panel follow each other while entered, not after exit().
    widget.ui.ringWidthSpinBox.value = 7.5
    assert p.ringWidthMm == 7.5
    p.ringWidthMm = 6.0
    assert widget.ui.ringWidthSpinBox.value == 6.0
    widget.parent.exit()
    widget.ui.ringWidthSpinBox.value = 9.0
    assert p.ringWidthMm == 6.0 and not widget.parent.isEntered
    widget.parent.enter()
    assert widget.ui.ringWidthSpinBox.value == 6.0


def test_load_case_from_files(widget, case, session):
    """LE, DES and lesions from files become the Inputs; a missing or unreadable LE is one error dialog."""
    import slicer

    session.dialogs.expect("error", "Choose an LE file first")
    click(widget.ui.loadCaseButton)
    typePath(widget.ui.lePathLineEdit, case["le"].parent / "missing_LE.dcm")
    session.dialogs.expect("error", "Failed to load the case")
    click(widget.ui.loadCaseButton)
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0

    loadCase(widget, case)
    p = widget.logic.getParameterNode()
    assert p.leVolume is not None and p.realDesVolume is not None and p.lesionSegmentation is not None
    assert widget.ui.leVolumeSelector.currentNode() is p.leVolume
    assert widget.ui.realDesVolumeSelector.currentNode() is p.realDesVolume
    assert widget.ui.lesionSegmentationSelector.currentNode() is p.lesionSegmentation
    assert p.leVolume.GetImageData().GetDimensions()[:2] == p.realDesVolume.GetImageData().GetDimensions()[:2]
    # Picking another LE in its selector reaches the parameter node.
    widget.ui.leVolumeSelector.setCurrentNode(p.realDesVolume)
    assert p.leVolume is widget.ui.leVolumeSelector.currentNode()


def finiteTableValues(tableNode) -> list[float]:
    import vtk

    table = tableNode.GetTable()
    values = [table.GetColumn(c).GetTuple1(r) for c in range(table.GetNumberOfColumns())
              if isinstance(table.GetColumn(c), vtk.vtkDataArray) for r in range(table.GetNumberOfRows())]
    assert values and all(math.isfinite(v) for v in values), values
    return values


def test_regions_cnr_table_and_csv(widget, case, session, tmp_path):
    """ROIs drawn for the tissues, a segment of a segmentation for the lesion, CNR into the table, CSV saved."""
    from PySide6 import QtWidgets

    loadCase(widget, case)
    ui, p = widget.ui, widget.logic.getParameterNode()
    fibroglandular = drawRoiInside(widget, ui.fibroglandularRegionSelector, case["fibroglandular"])
    assert p.fibroglandularRegion is fibroglandular
    # A markups region shows its place widget (single-click ROI placement), not the segment picker.
    assert not ui.fibroglandularPlaceWidget.isHidden() and ui.fibroglandularSegmentSelector.isHidden()
    assert ui.fibroglandularPlaceWidget.currentNode() is fibroglandular
    assert ui.fibroglandularPlaceWidget.placeMultipleMarkups == ui.fibroglandularPlaceWidget.ForcePlaceSingleMarkup
    assert not ui.computeCnrButton.enabled
    drawRoiInside(widget, ui.adiposeRegionSelector, case["adipose"])

    # The lesion: the loaded segmentation, then its mass segment picked in the segment drop-down.
    ui.lesionRegionSelector.setCurrentNode(p.lesionSegmentation)
    assert not ui.lesionSegmentSelector.isHidden() and ui.lesionPlaceWidget.isHidden()
    segments = p.lesionSegmentation.GetSegmentation()
    ids = [segments.GetNthSegmentID(i) for i in range(segments.GetNumberOfSegments())]
    assert p.lesionSegmentId == ids[0] == ui.lesionSegmentSelector.currentSegmentID()
    mass = next(i for i in ids if "mass" in segments.GetSegment(i).GetName())
    pick(ui.lesionSegmentSelector.findChild(QtWidgets.QComboBox, "comboBox_Segment"),
         segments.GetSegment(mass).GetName())
    assert p.lesionSegmentId == mass

    click(ui.computeCnrButton)
    table = p.cnrTable
    assert table is not None and ui.cnrTableSelector.currentNode() is table
    assert table.GetNumberOfRows() >= 2  # LE and real DES
    finiteTableValues(table)

    csvPath = tmp_path / "cnr.csv"
    session.dialogs.expect("file", "Save CNR table", answer=str(csvPath))
    click(ui.saveCnrCsvButton)
    with open(csvPath, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert len(rows) == table.GetNumberOfRows() + 1
    session.dialogs.expect("file", "Save CNR table", answer="")  # the user cancels: nothing happens
    click(ui.saveCnrCsvButton)

    # A region outside the image is refused in words, in one dialog.
    fibroglandular.SetCenter(1e5, 1e5, 0)
    session.dialogs.expect("error", "Failed to compute CNR")
    click(ui.computeCnrButton)


def test_synthesize_polls_the_child_until_result_heatmaps_and_layout(widget, case, session, tiny_run):
    """Synthesize starts a real child process; the Widget's QTimer follows it to the synthetic DES, both
    heatmaps and the comparison layout; the model joins the recent-models history. Cancel stops a second run."""
    import qt
    import slicer
    from VirtualContrastLib import display

    loadCase(widget, case)
    ui, p = widget.ui, widget.logic.getParameterNode()
    typePath(ui.modelPathLineEdit, tiny_run)
    pick(ui.deviceComboBox, "cpu")
    assert p.modelPath == tiny_run and p.device == "cpu"
    click(ui.synthesizeButton)
    assert ui.cancelSynthesisButton.enabled and not ui.synthesizeButton.enabled and widget._pollTimer.active
    session.waitUntil(lambda: p.heatmapVolume is not None, JOB_TIMEOUT, "synthetic DES and heatmaps")
    assert ui.synthesisStatusLabel.text.startswith("Done") and ui.synthesisProgressBar.value == 100
    assert not widget._pollTimer.active and not ui.cancelSynthesisButton.enabled
    synthetic = p.syntheticVolume
    assert "synthetic DES" in synthetic.GetName() and ui.syntheticVolumeSelector.currentNode() is synthetic
    assert ui.heatmapVolumeSelector.currentNode() is p.heatmapVolume and p.signedHeatmapVolume is not None
    pixels = slicer.util.arrayFromVolume(synthetic)
    assert pixels.shape == slicer.util.arrayFromVolume(p.leVolume).shape and np.isfinite(pixels).all()
    assert slicer.app.layoutManager().layout == display.LAYOUT_ID
    history = qt.QSettings().value(f"ctkPathLineEdit/{ui.modelPathLineEdit.settingKey}")
    assert str(tiny_run) in ([history] if isinstance(history, str) else history)
    assert "predict" in ui.logTextEdit.toPlainText()
    slicer.app.layoutManager().layout = slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpRedSliceView
    click(ui.showComparisonButton)
    assert slicer.app.layoutManager().layout == display.LAYOUT_ID

    volumes = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    click(ui.synthesizeButton)
    click(ui.cancelSynthesisButton)
    session.waitUntil(lambda: not widget._pollTimer.active, JOB_TIMEOUT, "cancelled synthesis reported")
    assert ui.synthesisStatusLabel.text == "Cancelled."
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumes


def test_synthesis_without_real_des_and_a_failing_model(widget, case, session, tiny_run, tmp_path):
    """Without a real DES the synthetic DES is shown alone (no heatmap); a model the engine refuses ends in
    one error dialog with the engine's own words."""
    import slicer

    ui, p = widget.ui, widget.logic.getParameterNode()
    typePath(ui.lePathLineEdit, case["le"])
    click(ui.loadCaseButton)
    assert p.realDesVolume is None
    typePath(ui.modelPathLineEdit, tiny_run)
    pick(ui.deviceComboBox, "cpu")
    click(ui.synthesizeButton)
    session.waitUntil(lambda: not widget._pollTimer.active, JOB_TIMEOUT, "synthesis reported as ended")
    assert ui.synthesisStatusLabel.text.startswith("Done") and p.syntheticVolume is not None
    assert p.heatmapVolume is None and not ui.showComparisonButton.enabled

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"not a model")
    typePath(ui.modelPathLineEdit, broken)
    session.dialogs.expect("error", "Synthesis failed")
    click(ui.synthesizeButton)
    session.waitUntil(lambda: not widget._pollTimer.active, JOB_TIMEOUT, "failed synthesis reported")
    assert ui.synthesisStatusLabel.text == "Failed." and "model.safetensors" in session.dialogs.of("error")[-1].text
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 2  # LE and the first result


def setUpTraining(widget, runFolder, epochs: int, kind: str = "Manifest", source=None) -> None:
    """The Train section as a user fills it: a dataset, the demo preset, a tiny and short run on CPU."""
    ui = widget.ui
    expand(ui.trainCollapsibleButton)
    pick(ui.datasetKindComboBox, kind)
    if kind == "Manifest":
        typePath(ui.manifestPathLineEdit, source)
    elif kind == "DICOM folder":
        typePath(ui.dicomFolderPathLineEdit, source)
    pick(ui.presetComboBox, "demo")
    ui.epochsSpinBox.value = epochs
    ui.imageSizeSpinBox.value = 32
    ui.batchSizeSpinBox.value = 2
    pick(ui.trainDeviceComboBox, "cpu")
    typePath(ui.outputFolderPathLineEdit, runFolder)


def test_train_with_live_loss_chart(widget, session, small_phantom, tmp_path):
    """Train runs the engine in the background; its losses fill the chart; the new model is selected."""
    import slicer

    run = tmp_path / "run"
    ui, p = widget.ui, widget.logic.getParameterNode()
    setUpTraining(widget, run, epochs=1, source=None)
    session.dialogs.expect("error", "choose a manifest file")  # Train pressed before the manifest is chosen
    click(ui.trainButton)
    typePath(ui.manifestPathLineEdit, small_phantom)
    assert (p.preset, p.epochs, p.imageSize, p.batchSize, p.trainDevice) == ("demo", 1, 32, 2, "cpu")
    assert p.manifestPath == small_phantom and p.outputFolder == run
    assert "Duration" in ui.trainingEstimateLabel.text
    click(ui.trainButton)
    assert ui.cancelTrainingButton.enabled and not ui.trainButton.enabled and not ui.resumeTrainingButton.enabled
    chart = p.lossChart
    assert chart is not None and ui.lossChartSelector.currentNode() is chart
    session.waitUntil(lambda: not widget._pollTimer.active, JOB_TIMEOUT, "training reported as ended")
    assert ui.trainingStatusLabel.text.startswith("Finished"), ui.logTextEdit.toPlainText()
    assert ui.trainingProgressBar.value == 100 and widget.logic.isRunFolder(run)
    # The live chart: one line per loss, from a table filled by the progress events.
    assert chart.GetNumberOfPlotSeriesNodes() >= 1
    table = chart.GetNthPlotSeriesNode(0).GetTableNode().GetTable()
    assert table.GetNumberOfRows() >= 1
    # The new model is the one Synthesize uses now, and the first of the recent models.
    assert ui.modelPathLineEdit.currentPath == str(run) and p.modelPath == run
    assert ui.modelPathLineEdit.comboBox().itemText(0) == str(run)
    assert slicer.mrmlScene.IsNodePresent(chart)


def test_cancel_a_running_training_then_resume(widget, session, small_phantom, tmp_path):
    """A DICOM folder is imported beside the run and trained on; Cancel writes a checkpoint once training
    runs; Resume continues the same run, on the same imported dataset, to its end."""
    run = tmp_path / "run"
    setUpTraining(widget, run, epochs=40, kind="DICOM folder", source=small_phantom.parent)
    ui = widget.ui
    click(ui.trainButton)
    session.waitUntil(lambda: "epoch" in ui.trainingStatusLabel.text, JOB_TIMEOUT, "first training progress")
    click(ui.cancelTrainingButton)
    session.waitUntil(lambda: not widget._pollTimer.active, JOB_TIMEOUT, "cancelled training reported")
    assert ui.trainingStatusLabel.text.startswith("Cancelled"), ui.logTextEdit.toPlainText()
    assert (run / "checkpoint.safetensors").is_file()
    assert ui.trainButton.enabled and ui.resumeTrainingButton.enabled and not ui.cancelTrainingButton.enabled

    dataset = run.parent / "run-dataset" / "manifest.csv"
    assert dataset.is_file()
    imported = dataset.stat().st_mtime_ns
    ui.epochsSpinBox.value = 2
    click(ui.resumeTrainingButton)
    assert ui.trainingStatusLabel.text == "Resuming..."
    session.waitUntil(lambda: not widget._pollTimer.active, JOB_TIMEOUT, "resumed training reported")
    assert ui.trainingStatusLabel.text.startswith("Finished"), ui.logTextEdit.toPlainText()
    assert dataset.stat().st_mtime_ns == imported and "--resume" in ui.logTextEdit.toPlainText()
    assert widget.logic.isRunFolder(run)


def test_scene_close_while_jobs_run(widget, case, session, small_phantom, tiny_run, tmp_path):
    """Cases taken from the scene are exported and trained on. Closing the scene then stops the synthesis
    (its LE is gone) and empties the case list; the training goes on, its chart moves to the new scene, and
    its model is selected in the fresh parameter node."""
    import slicer
    from VirtualContrastTraining.data.manifest import read_manifest

    ui = widget.ui
    session.dialogs.expect("error", "needs an LE volume and a real DES")
    click(ui.addSceneCaseButton)
    loadCase(widget, case)
    click(ui.addSceneCaseButton)
    session.dialogs.expect("error", "already in the list")
    click(ui.addSceneCaseButton)
    assert ui.sceneCasesListWidget.count == 1 and ui.removeSceneCaseButton.enabled
    ui.sceneCasesListWidget.currentRow = 0
    click(ui.removeSceneCaseButton)
    assert ui.sceneCasesListWidget.count == 0 and not ui.removeSceneCaseButton.enabled
    click(ui.addSceneCaseButton)
    slicer.mrmlScene.RemoveNode(widget.logic.getParameterNode().realDesVolume)  # deleted in the Data module
    assert ui.sceneCasesListWidget.count == 0  # a case whose DES is gone leaves the list
    # Training needs patients for its validation and test splits: the small phantom's cases, one by one.
    for row in read_manifest(small_phantom):
        loadCase(widget, {"le": row.le_path, "des": row.des_path, "lesions": row.lesion_path},
                 lesions=bool(row.lesion_path))
        click(ui.addSceneCaseButton)
    assert ui.sceneCasesListWidget.count == len(read_manifest(small_phantom))
    run = tmp_path / "run"
    setUpTraining(widget, run, epochs=1, kind="Cases from this scene")
    assert ui.datasetSourceStackedWidget.currentIndex == 2
    click(ui.trainButton)
    assert (run.parent / "run-dataset" / "manifest.csv").is_file()
    typePath(ui.modelPathLineEdit, tiny_run)
    pick(ui.deviceComboBox, "cpu")
    click(ui.synthesizeButton)
    slicer.mrmlScene.Clear(0)
    p = widget.logic.getParameterNode()
    assert p.leVolume is None and p.syntheticVolume is None and ui.leVolumeSelector.currentNode() is None
    assert ui.sceneCasesListWidget.count == 0
    assert p.lossChart is not None and slicer.mrmlScene.IsNodePresent(p.lossChart)
    session.waitUntil(lambda: not widget._pollTimer.active, JOB_TIMEOUT, "both jobs reported as ended")
    assert ui.synthesisStatusLabel.text == "Cancelled.", ui.logTextEdit.toPlainText()
    assert ui.trainingStatusLabel.text.startswith("Finished"), ui.logTextEdit.toPlainText()
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0  # no late synthetic DES
    assert p.modelPath == run and ui.lossChartSelector.currentNode() is p.lossChart
    assert p.lossChart.GetNumberOfPlotSeriesNodes() >= 1
    loadCase(widget, case)  # the panel works on in the new scene
    assert p.leVolume is not None


def enableDeveloperMode() -> None:
    """Application Settings > Developer: the Reload & Test section, and no message delay in self-tests."""
    import qt

    qt.QSettings().setValue("Developer/DeveloperMode", True)
    qt.QSettings().setValue("Developer/SelfTestDisplayMessageDelay", 0)


def test_reload_makes_a_new_widget_from_the_reimported_module(session, case, tiny_run):
    """The Reload button (developer mode): the module file is imported again, the old widget's cleanup()
    runs (its timer and observers gone, its panel hidden) and a new widget is set up on the same scene."""
    import sys

    import slicer

    enableDeveloperMode()
    session.loadModule()
    old = session.openModule()
    loadCase(old, case)
    click(old.reloadButton)
    new = slicer.modules.VirtualContrastWidget
    assert new is not old and slicer.util.getModuleWidget("VirtualContrast") is new
    assert type(new) is sys.modules["VirtualContrast"].VirtualContrastWidget is not type(old)
    assert not old._pollTimer.active and not old.Observations
    session.spin(10)  # a widget added to a shown parent is shown by a queued call
    assert old.ui.VirtualContrast.isHidden() and not new.ui.VirtualContrast.isHidden()
    # Same scene, same parameter node: the new panel shows the loaded case and works on.
    assert new.ui.leVolumeSelector.currentNode() is new.logic.getParameterNode().leVolume is not None
    typePath(new.ui.modelPathLineEdit, tiny_run)
    pick(new.ui.deviceComboBox, "cpu")
    click(new.ui.synthesizeButton)
    session.waitUntil(lambda: not new._pollTimer.active, JOB_TIMEOUT, "synthesis in the reloaded widget")
    assert new.ui.synthesisStatusLabel.text.startswith("Done"), new.ui.logTextEdit.toPlainText()


def test_reload_while_a_synthesis_runs_stops_it(session, case, tiny_run):
    """Reload while the old widget's synthesis runs: cleanup() stops it; nothing of the old widget runs on."""
    import slicer

    enableDeveloperMode()
    session.loadModule()
    old = session.openModule()
    loadCase(old, case)
    typePath(old.ui.modelPathLineEdit, tiny_run)
    pick(old.ui.deviceComboBox, "cpu")
    click(old.ui.synthesizeButton)
    click(old.reloadButton)
    assert not session.slotErrors, session.slotErrors
    assert slicer.modules.VirtualContrastWidget is not old and old._jobs["synthesis"].done
    assert session.close(timeout=15) == []


def test_module_self_test_runs_in_the_harness(session, caplog):
    """The module's own VirtualContrastTest, started by the developer section's Test action: all four
    of its tests pass (a failure would be an error dialog and an exception in the action's slot)."""
    enableDeveloperMode()
    session.loadModule()
    widget = session.openModule()
    with caplog.at_level("INFO"):
        widget.testAction.trigger()
    assert not session.slotErrors and not session.dialogs.shown
    for passed in ("Load and CNR passed", "Widget binding passed", "Synthesis, heatmap and CNR passed",
                   "Sample case with the starter model passed"):
        assert passed in caplog.text


@pytest.mark.parametrize("checkpoint", [True, False], ids=["checkpoint", "at-once"])
def test_cleanup_stops_every_job_and_leaves_no_timer(widget, case, session, small_phantom, tiny_run, tmp_path,
                                                      checkpoint):
    """Slicer's exit while a training and a synthesis run: cleanup() asks whether to checkpoint, stops both
    (with a checkpoint, or at once), and nothing keeps running (no QTimer, no child process)."""
    loadCase(widget, case)
    ui = widget.ui
    typePath(ui.modelPathLineEdit, tiny_run)
    pick(ui.deviceComboBox, "cpu")
    run = tmp_path / "run"
    setUpTraining(widget, run, epochs=40, source=small_phantom)
    click(ui.trainButton)
    session.waitUntil(lambda: "epoch" in ui.trainingStatusLabel.text, JOB_TIMEOUT, "first training progress")
    click(ui.synthesizeButton)
    session.dialogs.expect("question", "A training is running", answer=checkpoint)
    assert session.close(timeout=15) == []
    assert (run / "checkpoint.safetensors").is_file() or not checkpoint


def test_evaluate_writes_a_report_and_opens_it(widget, session, split_manifest, tmp_path):
    """Evaluate runs the engine's evaluation of the current model on a manifest split; Open report shows it."""
    ui = widget.ui
    expand(ui.evaluateCollapsibleButton)
    # VIF, one of the papers' measures, needs images of 41 pixels or more: a 64-pixel tiny model.
    typePath(ui.modelPathLineEdit, make_tiny_model(tmp_path / "run64", image_size=64))
    pick(ui.deviceComboBox, "cpu")
    typePath(ui.evaluationManifestPathLineEdit, split_manifest)
    pick(ui.evaluationSplitComboBox, "test")
    folder = tmp_path / "evaluation"
    typePath(ui.evaluationFolderPathLineEdit, folder)
    assert not ui.openReportButton.enabled
    click(ui.evaluateButton)
    assert ui.cancelEvaluationButton.enabled
    session.waitUntil(lambda: not widget._pollTimer.active, JOB_TIMEOUT, "evaluation reported as ended")
    assert ui.evaluationStatusLabel.text.startswith("Done"), ui.logTextEdit.toPlainText()
    assert (folder / "report.html").is_file()
    session.dialogs.expect("url", "report.html")
    click(ui.openReportButton)


def test_sample_data_loads_the_bundled_case(widget, session):
    """The module registered its phantom case with Sample Data at startup; choosing it loads the case."""
    import slicer

    (source,) = session.sampleData.SampleDataLogic.sources
    source.customDownloader(source)
    names = [slicer.mrmlScene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode").GetName()
             for i in range(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
    assert any("LE" in name for name in names) and any("DES" in name for name in names)


def test_closing_slicer_with_the_module_shown_warns_nothing(widget, session):
    """Slicer's exit order: qSlicerMainWindow::closeEvent selects no module, so the current one gets exit();
    then the module manager unloads it: cleanup(). Nothing may be removed twice (VTKObservationMixin warns)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert session.close() == []
    assert [str(w.message) for w in caught] == []


def test_an_older_slicer_is_told_the_minimum_version(session, monkeypatch):
    """Slicer 5.8 (Python 3.9) cannot run the module: loading it says which Slicer it needs, in one line."""
    import slicer

    monkeypatch.setattr(type(slicer.app), "minorVersion", 8)
    monkeypatch.setattr(type(slicer.app), "applicationVersion", "5.8.1")
    with pytest.raises(ImportError) as error:
        session.loadModule()
    assert str(error.value) == ("Virtual Contrast needs 3D Slicer 5.10 or newer; this is Slicer 5.8.1: install a "
                                "current Slicer release.")
