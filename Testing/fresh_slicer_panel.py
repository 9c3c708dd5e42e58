"""The module's panel in a fresh Slicer 5.10's Python: run by Testing/test_widget_fresh_slicer.py inside
fresh_slicer's child (pydicom 2.4.4 first, every package a fresh Slicer lacks refused), never by pytest.

It opens the real Widget through the GUI harness (Testing/slicer_gui), loads the bundled sample case from
Sample Data, measures CNR, then presses Synthesize (the install question answered No) and Train (answered
Yes, with installDependencies replaced by a recorder that installs nothing). What it saw is printed as one
JSON object on the last line of stdout; the test asserts on it.

Argument: a JSON object {"folder": scratch folder, "manifest": a phantom manifest to train on,
"installed": {canonical name: version} that the recorder reports as installed in the package folder,
"jobTimeout": seconds}.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

TESTING = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTING))

from fresh_slicer import NOT_BUNDLED  # noqa: E402

BLOCKED = {name for names in NOT_BUNDLED.values() for name in names}


def blockedModules() -> list[str]:
    """Modules of a package a fresh Slicer lacks that this process has imported (there must be none)."""
    return sorted(name for name in sys.modules if name.partition(".")[0] in BLOCKED)


def dialogsSince(session, start: int) -> list[dict]:
    return [{"kind": d.kind, "title": d.title, "text": d.text, "detail": d.detail, "answer": str(d.answer)}
            for d in session.dialogs.shown[start:]]


def jobsRunning(widget) -> dict:
    return {kind: (None if job is None else job.state) for kind, job in widget._jobs.items()}


def main(arguments: dict) -> dict:
    import slicer
    from PySide6 import QtWidgets
    from slicer_gui import harness
    from test_widget_gui import click, expand, finiteTableValues, pick, typePath
    from VirtualContrastLib import dependencies

    report: dict = {}
    try:
        importlib.import_module("torch")
        report["torchImport"] = "imported"
    except ModuleNotFoundError as error:
        report["torchImport"] = str(error)
    import pydicom

    report["pydicom"] = pydicom.__version__

    # The recorder standing in for the real install (Testing/test_dependencies.py installs local wheels):
    # it notes the plan it is given and returns the plan as it would stand after the install, with the folder
    # holding the versions the engine's child (this virtual environment's Python) really imports.
    installCalls = []

    def recordInstall(plan, indexArguments=()):
        installCalls.append({"missing": {p.name: p.replaces for p in plan.missing},
                             "torchRequirement": plan.torchRequirement, "pip": plan.pipRequirements,
                             "folder": str(plan.folder)})
        return dependencies.dependencyPlan([p.requirement for p in plan.packages],
                                           folderVersions=arguments["installed"])

    dependencies.installDependencies = recordInstall

    harness.install()
    session = harness.Session(Path(arguments["folder"]) / "app")
    started = time.monotonic()

    # 1. The module imports and its panel opens.
    session.loadModule()
    widget = session.openModule()
    ui = widget.ui
    report["open"] = {
        "seconds": round(time.monotonic() - started, 2),
        "entered": widget.parent.isEntered,
        "dialogs": dialogsSince(session, 0), "slotErrors": [repr(e) for e in session.slotErrors],
        "devices": [ui.deviceComboBox.itemText(i) for i in range(ui.deviceComboBox.count)],
        "trainDevices": [ui.trainDeviceComboBox.itemText(i) for i in range(ui.trainDeviceComboBox.count)],
        "presets": [ui.presetComboBox.itemText(i) for i in range(ui.presetComboBox.count)],
        "preset": ui.presetComboBox.currentText,
        "torchLoaded": "torch" in sys.modules, "blocked": blockedModules(),
        "modelPath": str(widget.logic.getParameterNode().modelPath),
    }

    # 2. The bundled case from Sample Data, selected as the inputs; CNR on its tissue and lesion segments.
    (source,) = session.sampleData.SampleDataLogic.sources
    case = source.customDownloader(source)
    p = widget.logic.getParameterNode()
    ui.leVolumeSelector.setCurrentNode(case.le)
    ui.realDesVolumeSelector.setCurrentNode(case.des)
    ui.lesionSegmentationSelector.setCurrentNode(case.segmentation)

    # Each region: the segmentation in its region selector, then its segment picked in the segment drop-down.
    for key, segmentation, word in (("fibroglandular", case.tissue, "fibroglandular"),
                                    ("adipose", case.tissue, "adipose"), ("lesion", case.segmentation, "lesion")):
        getattr(ui, f"{key}RegionSelector").setCurrentNode(segmentation)
        segments = segmentation.GetSegmentation()
        name = next(segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())
                    if word in segments.GetNthSegment(i).GetName().lower())
        pick(getattr(ui, f"{key}SegmentSelector").findChild(QtWidgets.QComboBox, "comboBox_Segment"), name)
    report["regions"] = {}
    for key in ("fibroglandular", "adipose", "lesion"):
        node, segmentId = getattr(p, f"{key}Region"), getattr(p, f"{key}SegmentId")
        report["regions"][key] = [node.GetName(), node.GetSegmentation().GetSegment(segmentId).GetName()]
    click(ui.computeCnrButton)
    table = p.cnrTable
    report["sample"] = {
        "source": source.sampleName,
        "volumes": [slicer.mrmlScene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode").GetName()
                    for i in range(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))],
        "inputs": [node.GetName() if node else None for node in (p.leVolume, p.realDesVolume, p.lesionSegmentation)],
        "cnrRows": table.GetNumberOfRows() if table else 0,
        "cnrValues": finiteTableValues(table) if table else [],
        "dialogs": dialogsSince(session, 0), "slotErrors": [repr(e) for e in session.slotErrors],
        "blocked": blockedModules(),
    }

    # 3. Synthesize: the install question, answered No. Nothing is installed, no job starts.
    shown = len(session.dialogs.shown)
    session.dialogs.expect("question", "torch", answer=False)
    statusBefore = ui.synthesisStatusLabel.text
    click(ui.synthesizeButton)
    session.spin(100)
    report["synthesize"] = {
        "dialogs": dialogsSince(session, shown), "installCalls": list(installCalls),
        "jobs": jobsRunning(widget), "timerActive": widget._pollTimer.active,
        "statusUnchanged": ui.synthesisStatusLabel.text == statusBefore,
        "synthesizeEnabled": ui.synthesizeButton.enabled,
        "children": sorted(harness.descendants() - session._processesBefore),
        "slotErrors": [repr(e) for e in session.slotErrors], "blocked": blockedModules(),
    }

    # 4. Train: asked again (nothing was installed), answered Yes; the recorder "installs"; the job runs in the
    # engine's own interpreter, which does not inherit this process's refusals.
    shown = len(session.dialogs.shown)
    expand(ui.trainCollapsibleButton)
    pick(ui.datasetKindComboBox, "Manifest")
    typePath(ui.manifestPathLineEdit, arguments["manifest"])
    pick(ui.presetComboBox, "demo")
    ui.epochsSpinBox.value = 1
    ui.imageSizeSpinBox.value = 32
    ui.batchSizeSpinBox.value = 2
    pick(ui.trainDeviceComboBox, "cpu")
    run = Path(arguments["folder"]) / "run"
    typePath(ui.outputFolderPathLineEdit, run)
    session.dialogs.expect("question", "torch", answer=True)
    click(ui.trainButton)
    train = report["train"] = {
        "dialogsAtPress": dialogsSince(session, shown), "installCalls": list(installCalls),
        "jobs": jobsRunning(widget), "timerActive": widget._pollTimer.active,
        "statusAtPress": ui.trainingStatusLabel.text, "cancelEnabled": ui.cancelTrainingButton.enabled,
    }
    job = widget._jobs["training"]
    train["command"] = list(job.command) if job is not None else None
    if job is not None:
        session.waitUntil(lambda: not widget._pollTimer.active, arguments["jobTimeout"], "training reported as ended")
        chart = p.lossChart
        train.update({
            "state": job.state, "status": ui.trainingStatusLabel.text, "progress": ui.trainingProgressBar.value,
            "runFolder": widget.logic.isRunFolder(run), "modelPath": str(p.modelPath),
            "chartRows": (chart.GetNthPlotSeriesNode(0).GetTableNode().GetTable().GetNumberOfRows()
                          if chart is not None and chart.GetNumberOfPlotSeriesNodes() else 0),
            "log": ui.logTextEdit.toPlainText()[-3000:],
        })
    train.update({"dialogs": dialogsSince(session, shown), "slotErrors": [repr(e) for e in session.slotErrors],
                  "blocked": blockedModules()})

    # Slicer's exit: exit(), cleanup(); leftovers (timers, processes, unexpected dialogs) are problems.
    report["closeProblems"] = session.close(timeout=15)
    report["blocked"] = blockedModules()
    report["pydicomAtExit"] = sys.modules["pydicom"].__version__
    report["torchLoaded"] = "torch" in sys.modules
    report["seconds"] = round(time.monotonic() - started, 2)
    return report


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
