"""The module's console API: every action of the GUI is one method here.

    logic = slicer.util.getModuleLogic("VirtualContrast")
    case = logic.loadCase("P1_L_CC_LE.dcm", "P1_L_CC_DES.dcm", "P1_L_CC_lesions.seg.nrrd")
    synthetic = logic.synthesize(case.le, "runs/demo")            # a background job, waited for
    heatmap = logic.differenceHeatmap(case.des, synthetic, case.le)
    logic.showComparison(case.le, case.des, synthetic, heatmap.absolute)
    result = logic.computeCNR(fibroRoi, adiposeRoi, {"LE": case.le, "real DES": case.des,
                                                       "synthetic DES": synthetic})
    job = logic.startTraining("demo", "data/manifest.csv", "runs/mine"); job.wait()
    # The papers' evaluation, as `virtual-contrast evaluate` / `report` compute it:
    metrics = logic.measureImages(case.le, case.des, synthetic, lesion=case.segmentation,
                                  fibroglandular=fibroRoi, adipose=adiposeRoi)   # metrics.table: a table node
    report = logic.evaluate("data/manifest.csv", "runs/mine/evaluation", modelPath="runs/mine")  # report.html
    logic.buildReport(["runs/a/evaluation", "runs/b/evaluation"], "comparison.html")
    study = logic.readerStudy("ratings.csv")                                     # study.table, study.testsTable

`VirtualContrastLogic` in VirtualContrast.py adds Slicer's base class to this
one; here only MRML, vtk, numpy and the engine are used, so it runs on a bare
slicer-core scene as well (the tests do).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import slicer

from VirtualContrastLib import cnr as cnrModule
from VirtualContrastLib import dependencies, display, evaluation, heatmap, panel, sampledata, training
from VirtualContrastLib.jobs import Job, JobError
from VirtualContrastLib.nodes import (
    dicomSourceFile,
    imageFromVolume,
    isSynthetic,
    loadVolume,
    sourceWindow,
    volumeFromImage,
)
from VirtualContrastLib.training import LoadedCase
from VirtualContrastTraining.checkpoints import model_path
from VirtualContrastTraining.config.presets import PRESETS
from VirtualContrastTraining.data.cases import read_case_images
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import is_dicom_file, read_image, write_nrrd
from VirtualContrastTraining.data.importer import import_dicom
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.synthetic_wording import NODE_SUFFIX, SERIES_DESCRIPTION


class VirtualContrastLogicBase:
    def __init__(self, scene=None):
        self._scene = scene

    @property
    def scene(self):
        return self._scene or slicer.mrmlScene

    # -- inputs -------------------------------------------------------------------------------------
    def loadVolume(self, path, name: str | None = None):
        """A DICOM (MG) file, NRRD/NIfTI/MHA, or CDD-CESM JPEG/PNG -> scalar volume node."""
        return loadVolume(path, name, self.scene)

    def loadSegmentation(self, path, referenceVolume=None):
        """A `.seg.nrrd` (Segment Editor's format) or a DICOM SEG -> segmentation node on `referenceVolume`'s
        geometry. A DICOM SEG is read by the engine (highdicom), which checks that it segments that very
        image, so it needs the reference volume (the LE it was drawn on)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "no such file")

        if is_dicom_file(path):
            return self._loadDicomSegmentation(path, referenceVolume)
        node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", path.name.split(".")[0])
        storage = self.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        storage.SetFileName(str(path))
        node.SetAndObserveStorageNodeID(storage.GetID())
        if not storage.ReadData(node):
            self.scene.RemoveNode(node)
            self.scene.RemoveNode(storage)
            raise InputError(path, "not a segmentation Slicer can read (expected a .seg.nrrd or a DICOM SEG)")
        if referenceVolume is not None:
            node.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
        node.CreateDefaultDisplayNodes()
        return node

    def _loadDicomSegmentation(self, path: Path, referenceVolume):
        """A DICOM SEG through the engine's child (`virtual-contrast seg --to-nrrd`, highdicom), then as a
        .seg.nrrd. highdicom needs pydicom 3, which Slicer's own process does not have (it keeps Slicer's
        pydicom 2.4.4); the child checks that the SEG segments this very LE DICOM."""
        if referenceVolume is None:
            raise InputError(path, "a DICOM SEG is loaded onto the image it segments: give its LE volume")
        source = dicomSourceFile(referenceVolume)
        if source is None or not source.is_file():
            raise InputError(path, f"a DICOM SEG is read against the DICOM file of its LE; "
                                   f"{referenceVolume.GetName()!r} was not loaded from one")
        work = Path(tempfile.mkdtemp(prefix="VirtualContrast-seg-"))
        try:
            converted = work / f"{path.stem}.seg.nrrd"
            job = Job(f"read {path.name}", ["seg", "--to-nrrd", str(path), "--le", str(source),
                                            "--out", str(converted)]).wait(timeout=300)
            if job.state != "finished":
                raise InputError(None, job.error or f"{path}: could not be read as a DICOM SEG")
            node = self.loadSegmentation(converted, referenceVolume)
            node.SetName(path.stem)
            node.GetStorageNode().SetFileName("")  # Slicer's Save asks where, not into the removed folder
            return node
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def loadCase(self, lePath, desPath=None, segmentationPath=None) -> LoadedCase:
        """LE, optional real DES and optional lesion segmentation from files."""
        le = self.loadVolume(lePath)
        des = self.loadVolume(desPath) if desPath else None
        segmentation = self.loadSegmentation(segmentationPath, le) if segmentationPath else None
        return LoadedCase(le, des, segmentation)

    def loadManifestCase(self, manifestPath, caseId: str) -> LoadedCase:
        """One case of a manifest (`virtual-contrast import`'s output): the LE, its real DES on the LE's
        grid and its lesion segmentation. A registered pair (CDD-CESM: des_offset set) gets its DES moved
        by the stored offset exactly as training and evaluation read it (the engine's read_case_images)."""
        cases = {c.case_id: c for c in read_manifest(manifestPath)}
        if caseId not in cases:
            raise InputError(manifestPath, f"no case {caseId!r} (cases: {', '.join(list(cases)[:5])}"
                                           f"{', ...' if len(cases) > 5 else ''})")
        case = cases[caseId]
        le = self.loadVolume(case.le_path, f"{caseId} LE")
        des = None
        if case.des_path and (case.des_offset_x or case.des_offset_y):
            des = volumeFromImage(read_case_images(case)[1], f"{caseId} DES (registered)", self.scene)
        elif case.des_path:
            des = self.loadVolume(case.des_path, f"{caseId} DES")
        segmentation = self.loadSegmentation(case.lesion_path, le) if case.lesion_path else None
        return LoadedCase(le, des, segmentation)

    # -- synthesis ----------------------------------------------------------------------------------
    def startSynthesis(self, leNode, modelPath, device: str = "auto") -> Job:
        """Run the engine's predict in the background; on success `job.result` is the synthetic DES node
        "<LE name> – synthetic DES", in the LE's geometry with the DES window, marked synthetic."""
        if leNode is None or leNode.GetImageData() is None:
            raise InputError(None, "synthesize: no LE volume selected")
        if isSynthetic(leNode):
            raise InputError(None, f"{leNode.GetName()!r} is itself synthetic; choose the real LE")
        modelPath = Path(modelPath)
        if not self.isRunFolder(modelPath):
            raise InputError(modelPath, "not a trained model (a run folder holding model.safetensors)")
        le = imageFromVolume(leNode)
        work = Path(tempfile.mkdtemp(prefix="VirtualContrast-predict-"))
        inputPath = write_nrrd(Image(le.array, le.spacing, le.origin, le.direction), work / "LE.nrrd")
        outputPath = work / "LE_SYNTHETIC-DES.nrrd"
        args = ["predict", "--model", str(modelPath), "--input", str(inputPath), "--out", str(outputPath),
                "--device", device]
        if le.meta.get("laterality") in ("L", "R"):
            args += ["--laterality", le.meta["laterality"]]
        window = sourceWindow(leNode)
        if window:
            args += ["--le-window", f"{window[0]!r},{window[1]!r}"]
        job = Job(f"synthesize {leNode.GetName()}", args)

        def loadResult(job: Job) -> None:
            if job.state == "finished":
                name = leNode.GetName() + NODE_SUFFIX
                starter = sampledata.isStarterModel(modelPath)
                if starter:  # the bundled model learned phantom images only: its output says so
                    name += " (phantom-trained demo model)"
                # Through the engine's reader (provenance and window fields), without a storage node that
                # would point into the temporary folder: Slicer's Save then asks where to write it.
                node = volumeFromImage(read_image(outputPath), name, self.scene)
                node.SetDescription(SERIES_DESCRIPTION)
                node.SetAttribute("VirtualContrast.Model",
                                  sampledata.STARTER_MODEL_LABEL if starter else str(modelPath.resolve()))
                job.result = node
            shutil.rmtree(work, ignore_errors=True)  # the node holds the pixels now

        job.onDone(loadResult)
        return job

    def synthesize(self, leNode, modelPath, device: str = "auto", timeout: float | None = None):
        """startSynthesis, waited for: returns the synthetic DES node (JobError when it fails)."""
        return self.startSynthesis(leNode, modelPath, device).wait(timeout).check().result

    def differenceHeatmap(self, realDesNode, syntheticNode, leNode=None) -> heatmap.Heatmap:
        """Absolute and signed synthetic − real difference volumes, inside the breast."""
        return heatmap.differenceHeatmap(realDesNode, syntheticNode, leNode, self.scene)

    def showComparison(self, leNode, desNode, syntheticNode, heatmapNode=None) -> None:
        """Four linked views LE | real DES | synthetic | heatmap over LE, with table and chart views below."""
        display.showComparison(leNode, desNode, syntheticNode, heatmapNode, self.scene)

    # -- CNR ------------------------------------------------------------------------------------------
    def computeCNR(self, fibroglandular, adipose, volumes: dict, lesion=None, ringWidthMm: float = 5.0,
                   tableNode=None) -> cnrModule.CNRResult:
        """Tissue CNR (and lesion CNR with a lesion region) for each volume, ΔCNR, into a table node.

        Regions: a markups ROI or closed-curve node, or (segmentationNode, segmentId).
        Volumes: label -> node; use the labels "LE", "real DES", "synthetic DES" for ΔCNR.
        """
        return cnrModule.computeCNR(fibroglandular, adipose, volumes, lesion, ringWidthMm, tableNode, self.scene)

    def saveTable(self, tableNode, path) -> Path:
        return cnrModule.saveTable(tableNode, path)

    def showTable(self, tableNode) -> None:
        display.showTable(tableNode, self.scene)

    def showChart(self, chartNode) -> None:
        """Put a plot chart (e.g. a training job's `job.chart`) in the layout's chart view."""
        display.showChart(chartNode, self.scene)

    # -- evaluation (the papers' analyses, as `virtual-contrast evaluate` and `report`) ---------------------
    def measureImages(self, leNode, realDesNode, syntheticNode, lesion=None, fibroglandular=None, adipose=None,
                      size: int = evaluation.COMPARISON_SIZE, tableNode=None) -> evaluation.MeasureResult:
        """Every per-image value of `virtual-contrast evaluate` for one LE / real DES / synthetic DES triple:
        `result.values` (the engine's row) and `result.table` (measure, value, paper, note).

        Regions on the LE: a markups ROI or closed curve, or (segmentationNode, segmentId); the lesion
        may also be a whole segmentation node (its lesion segments). Undefined values are NaN with a note.
        """
        return evaluation.measureImages(leNode, realDesNode, syntheticNode, lesion, fibroglandular, adipose, size,
                                        tableNode, self.scene)

    def startEvaluation(self, manifestPath, outDir, modelPath=None, synthetic=None, split: str = "test",
                        device: str = "auto", readerStudy=None, name: str | None = None,
                        size: int | None = None) -> Job:
        """`virtual-contrast evaluate` of a trained model (or a CSV of synthetic images made elsewhere) on a
        manifest split, in the background; on success `job.result` is the Path of its report.html."""
        if modelPath is not None and not self.isRunFolder(modelPath):
            raise InputError(modelPath, "not a trained model (a run folder holding model.safetensors)")
        args = evaluation.evaluationArguments(manifestPath, outDir, modelPath, synthetic, split, device, readerStudy,
                                              name, size)
        job = Job(f"evaluate {Path(outDir).name}", args)
        report = Path(outDir).resolve() / "report.html"

        def setResult(job: Job) -> None:
            if job.state == "finished":
                job.result = report
        job.onDone(setResult)
        return job

    def evaluate(self, manifestPath, outDir, modelPath=None, synthetic=None, split: str = "test",
                 device: str = "auto", readerStudy=None, name: str | None = None, size: int | None = None,
                 timeout: float | None = None) -> Path:
        """startEvaluation, waited for: the Path of report.html (JobError when the evaluation fails)."""
        return self.startEvaluation(manifestPath, outDir, modelPath, synthetic, split, device, readerStudy, name,
                                    size).wait(timeout).check().result

    def buildReport(self, evaluationDirs, outPath, readerStudy=None) -> Path:
        """One self-contained HTML report of one or more evaluation folders (and a reader study)."""
        return evaluation.buildReport(evaluationDirs, outPath, readerStudy)

    def readerStudy(self, ratingsPath, tableNode=None, testsTableNode=None, nResamples: int = 1000,
                    seed: int = 0) -> evaluation.ReaderStudyTables:
        """000's reader-study statistics of a ratings CSV: `.result` (the engine's), `.table` (measures with
        bootstrap CIs per endpoint, reader and image), `.testsTable` (clinical vs synthetic Wilcoxon)."""
        return evaluation.readerStudy(ratingsPath, tableNode, testsTableNode, nResamples, seed, self.scene)

    # -- training -------------------------------------------------------------------------------------
    def exportSceneCases(self, cases: list[LoadedCase], folder) -> Path:
        """Scene cases -> a dataset folder with manifest.csv (returned)."""
        return training.exportSceneCases(cases, folder)

    def importDicomFolder(self, dicomFolder, datasetFolder) -> Path:
        """Pair LE/DES DICOM files of a folder into a manifest (the engine's import); returns its path."""
        return import_dicom(dicomFolder, Path(datasetFolder) / "manifest.csv").manifest_path

    def startTraining(self, preset: str, manifestPath, outputFolder, device: str = "auto", resume: bool = False,
                      epochs: int | None = None, batchSize: int | None = None, learningRate: float | None = None,
                      gamma: float | None = None, imageSize: int | None = None, plotChartNode=None) -> Job:
        """Train in the background; `job.chart` is the live loss chart; `job.result` the run folder when done."""
        if not Path(manifestPath).is_file():
            raise InputError(manifestPath, "no such manifest")
        args = training.trainArguments(preset, manifestPath, outputFolder, device, resume, epochs, batchSize,
                                       learningRate, gamma, imageSize)
        job = Job(f"train {Path(outputFolder).name}", args)
        chart = training.LossChart(Path(outputFolder).name, self.scene, plotChartNode)
        chart.follow(job)
        job.chart, job.lossChart = chart.chart, chart  # lossChart.moveTo(scene) after a scene close

        def setResult(job: Job) -> None:
            if job.state == "finished":
                job.result = Path(outputFolder)
        job.onDone(setResult)
        return job

    def trainingEstimate(self, preset: str, epochs: int, manifestPath=None, device: str = "auto") -> str:
        """A rough training duration from measured CPU throughput (panel.trainingEstimate), counting the
        training images of the manifest when one is given."""
        count = None
        if manifestPath is not None and Path(manifestPath).is_file():
            try:
                cases = read_manifest(manifestPath)
            except InputError:
                cases = []
            count = sum(1 for case in cases if case.split in ("train", "")) or None
        return panel.trainingEstimate(preset, epochs, count, device)

    def listPresets(self) -> list[tuple[str, str]]:
        return [(name, config.description) for name, config in PRESETS.items()]

    def presetFields(self, name: str) -> dict:
        """The Train panel's fields of a preset (epochs, batch_size, lr, gamma_lesion, image_size) and its recipe
        (which decides whether gamma_lesion acts)."""
        config = PRESETS[name]
        return {key: getattr(config, key)
                for key in ("recipe", "epochs", "batch_size", "lr", "gamma_lesion", "image_size")}

    @staticmethod
    def starterModelPath() -> Path | None:
        """The bundled phantom-trained model (sampledata.STARTER_MODEL_LABEL), when the extension has it."""
        return sampledata.STARTER_MODEL if (sampledata.STARTER_MODEL / "model.safetensors").is_file() else None

    def loadSampleCase(self) -> LoadedCase:
        """The bundled phantom case (Sample Data): LE, DES, lesion segmentation, and a tissue segmentation
        with "fibroglandular" and "adipose" segments, ready for CNR. Returns the case (tissue: `.tissue`)."""
        files = {role: sampledata.SAMPLE_FOLDER / name for role, name in sampledata.SAMPLE_FILES.items()}
        case = self.loadCase(files["LE"], files["DES"], files["lesions"])
        for role, node in (("LE", case.le), ("DES", case.des), ("lesions", case.segmentation)):
            node.SetName(sampledata.sampleNodeName(role))
        case.tissue = self.loadSegmentation(files["tissue"], case.le)
        case.tissue.SetName(sampledata.sampleNodeName("tissue"))
        return case

    @staticmethod
    def isRunFolder(path) -> bool:
        try:
            return Path(model_path(path)).is_file()
        except InputError:
            return False

    @staticmethod
    def availableDevices() -> list[str]:
        """auto, cpu and cuda:N for each NVIDIA GPU that `nvidia-smi -L` lists, as many as
        CUDA_VISIBLE_DEVICES lets the engine see. torch is never imported here: the panel opens at once,
        a broken torch cannot break it, and the engine's child resolves the device itself."""
        devices = ["auto", "cpu"]
        smi = shutil.which("nvidia-smi")
        try:
            listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=5) if smi else None
        except (OSError, subprocess.SubprocessError):
            listed = None
        if listed is None or listed.returncode != 0:
            return devices
        count = sum(line.startswith("GPU ") for line in listed.stdout.splitlines())
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:  # CUDA stops at the first entry that is not a device
            count = min(count, sum(1 for _ in itertools.takewhile(
                lambda entry: entry.strip() and not entry.strip().startswith("-"), visible.split(","))))
        return devices + [f"cuda:{index}" for index in range(count)]

    @staticmethod
    def missingDependencies() -> list[str]:
        """The engine's requirements (pyproject.toml) that its environment does not satisfy, checked by version:
        torch in Slicer's Python, the others in the module's package folder or Slicer's (dependencies.py)."""
        return [str(package.requirement) for package in dependencies.dependencyPlan().missing]


__all__ = ["VirtualContrastLogicBase", "LoadedCase", "Job", "JobError"]
