"""The module panel's rules, without Qt: what the Widget shows and allows, decided from plain values.

The Widget (VirtualContrast.py) only wires widgets to these functions and to
the Logic. Keeping the rules here means every one of them is tested headless
(Testing/test_slicer_panel.py) and the Widget stays a thin layer of wiring:
- which action is possible now, and why not (`buttonStates`);
- which dataset a Train press means (`datasetManifest`);
- which preset fields reach the panel and which apply (`presetParameters`, `usesGamma`);
- how long a training would take, roughly (`trainingEstimate`);
- which volumes CNR measures (`cnrVolumes`);
- what a finished, cancelled or failed job says (`jobEndText`);
- the training cases picked from the scene (`SceneCases`);
- how a CNR region is shown (`regionView`);
- the settings remembered between sessions (`SETTINGS`, `rememberedFields`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from VirtualContrastLib.jobs import CANCELLED, FINISHED
from VirtualContrastLib.training import LoadedCase
from VirtualContrastTraining.console import duration
from VirtualContrastTraining.errors import InputError

#: Labels of the dataset kinds offered by the Train section (index = page of datasetSourceStackedWidget).
DATASET_KINDS = ("Manifest", "DICOM folder", "Cases from this scene")

#: Manifest splits the Evaluate section offers (the engine's evaluate --split), held-out first.
EVALUATION_SPLITS = ("test", "val", "train")

#: The preset a fresh panel starts from: it trains in minutes on a laptop CPU. The paper presets are
#: GPU configurations (hours per epoch on a CPU, docs/benchmarks.md); the user picks them deliberately.
DEFAULT_PRESET = "demo"

#: QSettings keys the panel remembers between Slicer sessions (the recent-model list is the
#: modelPathLineEdit's own history, under the settingKey of the .ui).
SETTINGS = {"lastModel": "VirtualContrast/LastModel", "outputFolder": "VirtualContrast/OutputFolder",
            "device": "VirtualContrast/Device"}

#: Training throughput on 2 CPU cores, images per second (docs/benchmarks.md, `bench_train.py`, one
#: full step on random tensors at each preset's own size and batch). Only these presets were measured;
#: others get no CPU estimate rather than a guessed one.
CPU_IMAGES_PER_S = {"demo": 4.98, "rofena2025-segcyclegan-g35": 0.05, "rofena2025-segcyclegan-g100": 0.05,
                    "rofena2024-cyclegan": 0.05, "zormpas2026-cyclegan-patch": 0.34, "perre2025-unet": 1.60,
                    "rofena2024-autoencoder": 0.26, "hosseinipour2024-pix2pix-iamnet": 0.37}


@dataclass
class PanelState:
    """What the buttons depend on, read off the parameter node and the jobs by the Widget."""

    le: bool = False
    realDes: bool = False
    synthetic: bool = False
    heatmap: bool = False
    modelPath: Path | None = None
    tissueRegions: bool = False  # both CNR tissue regions complete (node, and segment for a segmentation)
    cnrTable: bool = False
    outputFolder: Path | None = None
    evaluationManifest: Path | None = None
    evaluationFolder: Path | None = None
    reportReady: bool = False
    sceneCases: int = 0
    running: set[str] = field(default_factory=set)  # "synthesis", "training", "evaluation"


def buttonStates(state: PanelState) -> dict[str, tuple[bool, str]]:
    """{button name in the .ui: (enabled, tooltip)}: a disabled button says what it is waiting for."""
    synthesizing, training, evaluating = (kind in state.running for kind in ("synthesis", "training", "evaluation"))
    if synthesizing:
        synthesize = (False, "A synthesis is running.")
    elif not (state.le and state.modelPath):
        synthesize = (False, "Select an LE volume and a model (run folder).")
    else:
        synthesize = (True, "Run the model on the LE volume in a background process.")
    if training:
        train = (False, "A training is running.")
    elif state.outputFolder is None:
        train = (False, "Choose an output folder for the run.")
    else:
        train = (True, "Start training in a background process.")
    resume = (train[0], "Continue the run in the output folder from its checkpoint, with its saved settings "
                        "(a larger Epochs extends it)." if train[0] else train[1])
    if evaluating:
        evaluate = (False, "An evaluation is running.")
    elif not (state.modelPath and state.evaluationManifest and state.evaluationFolder):
        evaluate = (False, "Select a model (under Synthesize), a manifest and a report folder.")
    else:
        evaluate = (True, "Run the papers' evaluation of the model on the manifest split in a background process.")
    return {
        "synthesizeButton": synthesize,
        "cancelSynthesisButton": (synthesizing, "Stop the running synthesis."),
        "showComparisonButton": (state.le and state.realDes and state.synthetic and state.heatmap,
                                 "Show LE | real DES | synthetic DES | heatmap again."),
        "computeCnrButton": (state.le and state.tissueRegions,
                             "Measure CNR on every available image." if state.le and state.tissueRegions
                             else "Select an LE volume and both tissue regions (fibroglandular and adipose)."),
        "saveCnrCsvButton": (state.cnrTable, "Write the CNR table as CSV."),
        "trainButton": train,
        "resumeTrainingButton": resume,
        "cancelTrainingButton": (training, "Stop training; a checkpoint is written so that Resume can continue."),
        "removeSceneCaseButton": (state.sceneCases > 0, "Drop the selected case from the list."),
        "evaluateButton": evaluate,
        "cancelEvaluationButton": (evaluating, "Stop the running evaluation."),
        "openReportButton": (state.reportReady, "Open the evaluation's report.html in the web browser."),
    }


def datasetFolder(outputFolder: Path) -> Path:
    """Where a DICOM-folder import or a scene export goes: beside the run folder, not inside it, because
    the engine keeps a run folder for its own files."""
    return outputFolder.parent / f"{outputFolder.name}-dataset"


def datasetManifest(kind: str, outputFolder: Path | None, resume: bool, *, manifestPath: Path | None = None,
                    dicomFolder: Path | None = None, sceneCases: list[LoadedCase] = (), logic=None) -> Path:
    """The manifest a Train press means, importing or exporting when the kind needs it.

    Resume reuses the dataset the run started from. A missing choice is an InputError worded for the panel.
    """
    if outputFolder is None:
        raise InputError(None, "choose an output folder for the run")
    if kind not in DATASET_KINDS:
        raise InputError(None, f"unknown dataset kind {kind!r}")
    exported = datasetFolder(outputFolder) / "manifest.csv"
    if resume and kind != "Manifest" and exported.is_file():
        return exported
    if kind == "Manifest":
        if manifestPath is None:
            raise InputError(None, "choose a manifest file")
        return manifestPath
    if kind == "DICOM folder":
        if dicomFolder is None:
            raise InputError(None, "choose a DICOM folder")
        return logic.importDicomFolder(dicomFolder, datasetFolder(outputFolder))
    if not sceneCases:
        raise InputError(None, "add at least one case from the scene (LE + real DES)")
    return logic.exportSceneCases(list(sceneCases), datasetFolder(outputFolder))


#: Parameter-node field <- preset field, for the fields the Train section shows.
PRESET_PARAMETERS = {"epochs": "epochs", "batchSize": "batch_size", "learningRate": "lr", "gamma": "gamma_lesion",
                     "imageSize": "image_size"}


def presetParameters(fields: dict) -> dict:
    """The parameter-node values of a preset's fields (logic.presetFields), typed as the panel's fields."""
    kinds = {"epochs": int, "batchSize": int, "imageSize": int, "learningRate": float, "gamma": float}
    return {name: kinds[name](fields[key]) for name, key in PRESET_PARAMETERS.items()}


def usesGamma(fields: dict) -> bool:
    """γ (lesion weight, Rofena 2025 eq. 7) acts only in the cycle-GAN recipe: Seg-CycleGAN when γ > 0,
    plain CycleGAN at 0. pix2pix and supervised presets ignore it, so the panel hides it there."""
    return fields.get("recipe", "cyclegan") == "cyclegan"


def trainingEstimate(preset: str, epochs: int, imageCount: int | None, device: str) -> str:
    """A rough duration for the Train section, or why there is none.

    Only measured CPU throughput is used (CPU_IMAGES_PER_S): an estimate must come from a measurement.
    GPUs differ too much to give one number, so a GPU device gets none.
    """
    if device.startswith("cuda"):
        return "Duration: depends on the GPU (CPU figures: docs/benchmarks.md)."
    rate = CPU_IMAGES_PER_S.get(preset)
    if rate is None:
        return f"Duration: not measured for {preset} on a CPU (docs/benchmarks.md)."
    images = imageCount if imageCount else 100
    where = f"{images} training images" if imageCount else "per 100 training images"
    text = (f"Duration on 2 CPU cores: about {duration(epochs * images / rate)} for {epochs} epochs, {where} "
            f"({rate:g} images/s measured).")
    return text + (" With a GPU (auto uses one when present) much less." if device == "auto" else "")


@dataclass
class RegionView:
    """How the CNR section shows one region: a segment picker for a segmentation, a place widget for
    markups (many clicks for a closed curve, one drag for an ROI)."""

    segmentation: bool
    markups: bool
    multiplePoints: bool
    segmentId: str  # the recorded segment to select in the picker, when it is in the segmentation


def regionView(node, segmentId: str) -> RegionView:
    isSegmentation = node is not None and node.IsA("vtkMRMLSegmentationNode")
    isMarkups = node is not None and not isSegmentation
    return RegionView(isSegmentation, isMarkups, isMarkups and node.IsA("vtkMRMLMarkupsClosedCurveNode"),
                      existingSegment(node, segmentId) if isSegmentation else "")


def existingSegment(segmentationNode, segmentId: str) -> str:
    """`segmentId` if the segmentation has that segment, else "" (a picker may still show a segment of the
    segmentation chosen before)."""
    found = segmentId and segmentationNode.GetSegmentation().GetSegment(segmentId)
    return segmentId if found else ""


def rememberedFields(value, starterModel: Path | None, devices: list[str]) -> dict:
    """Parameter-node fields from the settings of earlier sessions (`value(key)` reads one, e.g.
    QSettings().value): the last model (else the bundled starter model), the output folder and the device
    when this machine still has it."""
    fields = {}
    model = value(SETTINGS["lastModel"]) or starterModel
    if model:
        fields["modelPath"] = Path(model)
    if value(SETTINGS["outputFolder"]):
        fields["outputFolder"] = Path(value(SETTINGS["outputFolder"]))
    device = value(SETTINGS["device"])
    if device in devices:
        fields["device"] = fields["trainDevice"] = device
    return fields


def synthesisText(name: str, withHeatmaps: bool) -> str:
    """The status line of a finished synthesis; the heatmaps' sign is named (synthetic − real everywhere)."""
    return f"Done: {name}, with heatmaps (synthetic − real)" if withHeatmaps else f"Done: {name}"


def cnrVolumes(le, realDes=None, synthetic=None) -> dict:
    """Label -> volume for CNR: the LE, and the real and synthetic DES that are there (ΔCNR needs both)."""
    volumes = {"LE": le}
    if realDes is not None:
        volumes["real DES"] = realDes
    if synthetic is not None:
        volumes["synthetic DES"] = synthetic
    return volumes


#: What each kind of job says when it ends (the failure message is the job's own error).
_END_TEXTS = {
    "synthesis": {FINISHED: "Done: {result}", CANCELLED: "Cancelled."},
    "training": {FINISHED: "Finished: the model is selected under Synthesize.",
                 CANCELLED: "Cancelled: the checkpoint is kept; press Resume to continue."},
    "evaluation": {FINISHED: "Done: {result}", CANCELLED: "Cancelled."},
}


def jobEndText(kind: str, job) -> tuple[str, str | None]:
    """(status line, error dialog text or None) for a job that has ended."""
    texts = _END_TEXTS[kind]
    if job.state in texts:
        result = job.result.GetName() if hasattr(job.result, "GetName") else job.result
        return texts[job.state].format(result=result), None
    return "Failed.", f"{kind.capitalize()} failed: {job.error}"


class SceneCases:
    """The training cases taken from the scene, with the labels the list widget shows.

    A case whose LE or DES node has left the scene is dropped (`prune`), so a stale entry never reaches
    the export as a node of a closed scene.
    """

    def __init__(self):
        self.cases: list[LoadedCase] = []

    def add(self, le, des, segmentation=None) -> str:
        """Add one case; returns its label. An LE without a real DES is refused (training needs pairs)."""
        if le is None or des is None:
            raise InputError(None, "a training case needs an LE volume and a real DES volume (Inputs section)")
        if any(case.le is le for case in self.cases):
            raise InputError(None, f"{le.GetName()!r} is already in the list")
        self.cases.append(LoadedCase(le=le, des=des, segmentation=segmentation))
        return self.label(self.cases[-1])

    def remove(self, row: int) -> None:
        if 0 <= row < len(self.cases):
            del self.cases[row]

    def prune(self, scene) -> bool:
        """Drop cases whose nodes are no longer in `scene`; True when something was dropped."""
        kept = [case for case in self.cases
                if all(node is None or scene.IsNodePresent(node) for node in (case.le, case.des, case.segmentation))]
        changed = len(kept) != len(self.cases)
        self.cases = kept
        return changed

    def clear(self) -> None:
        self.cases = []

    def labels(self) -> list[str]:
        return [self.label(case) for case in self.cases]

    @staticmethod
    def label(case: LoadedCase) -> str:
        label = f"{case.le.GetName()} + {case.des.GetName()}"
        return label + f" + {case.segmentation.GetName()}" if case.segmentation is not None else label
