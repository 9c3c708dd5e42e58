"""Training from Slicer: datasets from the scene, the train job, and its live loss chart.

A dataset is a manifest (the engine's format). "Cases from this scene" are
exported to one: LE and DES as NRRD with their windows, lesion segments as
`.seg.nrrd` on the LE's grid (segments named like tissue, e.g. the CNR
regions "fibroglandular" / "adipose", are left out: a tissue map is never a
lesion mask). Segments named fibroglandular (or glandular) and adipose (or
fat) go to the manifest's tissue columns instead, as labelmap NRRDs, so
`evaluate` computes 000's tissue CNR over the regions the user drew. The export is written to a temporary folder and renamed, so a
failure leaves no half dataset.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import slicer
import vtk

from VirtualContrastLib.jobs import Job
from VirtualContrastLib.nodes import imageFromVolume, isSynthetic
from VirtualContrastTraining.atomic import atomic_dir, ensure_writable_dir
from VirtualContrastTraining.data.imageio import NRRD_WINDOW_FIELDS, write_nrrd
from VirtualContrastTraining.data.importer import TISSUE_REGION_WORDS, is_tissue_name, tissue_region
from VirtualContrastTraining.data.manifest import Case, case_file_stem, write_manifest
from VirtualContrastTraining.data.segmentation import write_lesion_segmentation
from VirtualContrastTraining.errors import InputError

REFRESH_S = 1.0
LOSS_COLORS = ((0.85, 0.33, 0.10), (0.00, 0.45, 0.74), (0.47, 0.67, 0.19), (0.49, 0.18, 0.56),
               (0.93, 0.69, 0.13), (0.30, 0.75, 0.93), (0.64, 0.08, 0.18), (0.5, 0.5, 0.5))


@dataclass
class LoadedCase:
    """An LE volume with its optional real DES and lesion segmentation, as loaded or picked in the scene."""

    le: object
    des: object = None
    segmentation: object = None
    tissue: object = None  # a segmentation with fibroglandular / adipose segments, when one came with the case




def segmentMasks(segmentation, reference) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(lesion masks by segment name, tissue masks by region: fibroglandular / adipose, the engine's
    TISSUE_REGION_WORDS), non-empty ones only; several segments of one tissue are united."""
    lesions, tissue = {}, {}
    segments = segmentation.GetSegmentation()
    for i in range(segments.GetNumberOfSegments()):
        segmentId = segments.GetNthSegmentID(i)
        name = segments.GetSegment(segmentId).GetName()
        mask = np.asarray(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, reference))[0] > 0
        if not mask.any():
            continue
        region = tissue_region(name)
        if region is not None:
            tissue[region] = tissue[region] | mask if region in tissue else mask
        elif not is_tissue_name(name):  # other tissue words (breast, skin...) are neither lesion nor region
            lesions[name] = mask
    return lesions, tissue


def exportSceneCases(cases: list[LoadedCase], folder: str | os.PathLike) -> Path:
    """Write the cases as a dataset folder with manifest.csv (returned); patient = the LE's PatientID
    attribute when it has one (so both views of a patient stay in one split), else the case itself."""
    folder = Path(folder)
    if not cases:
        raise InputError(folder, "no case selected to export")
    if folder.exists() and any(folder.iterdir()):
        raise InputError(folder, "exists and is not empty; choose a new folder for the dataset")
    ensure_writable_dir(folder.parent)
    rows, seen = [], set()
    with atomic_dir(folder) as tmp:
        for case in cases:
            if case.le is None or case.des is None:
                raise InputError(None, f"case {case.le.GetName() if case.le else '?'}: training needs an LE and a real DES")
            for node in (case.le, case.des):
                if isSynthetic(node):
                    raise InputError(None, f"{node.GetName()!r} is synthetic: train on real LE/DES pairs only")
            caseId = case_file_stem(case.le.GetName())
            if caseId in seen:
                raise InputError(None, f"two cases named {caseId!r}: rename one LE volume")
            seen.add(caseId)
            le, des = imageFromVolume(case.le), imageFromVolume(case.des)
            if des.shape != le.shape:
                raise InputError(None, f"{case.des.GetName()!r} ({des.geometry_text()}) is not on the grid of "
                                       f"{case.le.GetName()!r} ({le.geometry_text()}): register or resample it first")
            paths = {}
            for role, image in (("LE", le), ("DES", des)):
                fields = {NRRD_WINDOW_FIELDS[k]: f"{image.meta[k]:g}" for k in NRRD_WINDOW_FIELDS if k in image.meta}
                paths[role] = write_nrrd(image, tmp / f"{caseId}_{role}.nrrd", fields)
            lesionPath, tissuePaths = "", {}
            if case.segmentation is not None:
                masks, tissue = segmentMasks(case.segmentation, case.le)
                if masks:
                    lesionPath = str(write_lesion_segmentation(tmp / f"{caseId}_lesions.seg.nrrd", masks, le))
                if len(tissue) == len(TISSUE_REGION_WORDS):  # 000's CNR needs both regions
                    tissuePaths = {f"{kind}_path": str(write_nrrd(le.with_array(mask.astype(np.uint8)),
                                                                  tmp / f"{caseId}_{kind}.nrrd"))
                                   for kind, mask in tissue.items()}
            window = {f"{role}_window_{part}": f"{img.meta[f'window_{part}']:g}"
                      for role, img in (("le", le), ("des", des)) for part in ("center", "width")
                      if f"window_{part}" in img.meta}
            rows.append(Case(case_id=caseId, patient_id=le.meta.get("patient_id", caseId), le_path=str(paths["LE"]),
                             des_path=str(paths["DES"]), lesion_path=lesionPath, **tissuePaths,
                             laterality=le.meta.get("laterality", ""), view=le.meta.get("view", ""), **window))
        write_manifest(tmp / "manifest.csv", rows)
    # write_manifest stored paths relative to the manifest, so the rename keeps them valid.
    return folder / "manifest.csv"


def trainArguments(preset: str, manifestPath, outputFolder, device: str = "auto", resume: bool = False,
                   epochs: int | None = None, batchSize: int | None = None, learningRate: float | None = None,
                   gamma: float | None = None, imageSize: int | None = None) -> list[str]:
    """The `virtual-contrast train` command line for the Train panel's fields (None = the preset's)."""
    args = ["train", "--manifest", str(manifestPath), "--out", str(outputFolder), "--device", device]
    if preset and not resume:
        args += ["--preset", preset]
    if resume:
        args.append("--resume")
    for option, value in (("--epochs", epochs), ("--batch-size", batchSize), ("--lr", learningRate),
                          ("--gamma", gamma), ("--image-size", imageSize)):
        if value is not None:
            args += [option, repr(value) if isinstance(value, float) else str(value)]
    return args


class LossChart:
    """A table of losses per training step and a plot chart with one line per loss, filled live."""

    def __init__(self, name: str, scene=None, chartNode=None):
        self.name = name
        self._columns: list[str] = []
        self._lastRefresh = -math.inf
        self._newNodes(scene or slicer.mrmlScene, chartNode)

    def _newNodes(self, scene, chartNode=None) -> None:
        """An empty table and a chart (`chartNode` reused when given) in `scene`."""
        self.scene = scene
        self.table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{self.name} losses")
        self.chart = chartNode or scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{self.name} loss chart")
        self.chart.RemoveAllPlotSeriesNodeIDs()
        self.chart.SetTitle(f"{self.name}: training losses")
        self.chart.SetXAxisTitle("step")
        self.chart.SetYAxisTitle("loss")

    def _addColumn(self, name: str) -> vtk.vtkDoubleArray:
        table = self.table.GetTable()
        column = vtk.vtkDoubleArray()
        column.SetName(name)
        column.SetNumberOfTuples(table.GetNumberOfRows())
        column.Fill(np.nan)
        table.AddColumn(column)
        self._columns.append(name)
        if name != "step":
            series = self.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{self.table.GetName()} {name}")
            series.SetAndObserveTableNodeID(self.table.GetID())
            series.SetXColumnName("step")
            series.SetYColumnName(name)
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeLine)
            series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
            series.SetColor(*LOSS_COLORS[(len(self._columns) - 2) % len(LOSS_COLORS)])
            self.chart.AddAndObservePlotSeriesNodeID(series.GetID())
        return column

    def add(self, step: float, losses: dict[str, float]) -> None:
        """One row: the step and each loss (a loss first seen now gets its own column and line)."""
        table = self.table.GetTable()
        if not self._columns:
            self._addColumn("step")
        for name in losses:
            if name not in self._columns:
                self._addColumn(name)
        row = table.InsertNextBlankRow()
        table.SetValueByName(row, "step", float(step))
        for name in self._columns[1:]:
            value = losses.get(name)
            table.SetValueByName(row, name, float(value) if value is not None else np.nan)
        # A training step can take milliseconds on a GPU: redraw the chart at most every REFRESH_S.
        if time.monotonic() - self._lastRefresh >= REFRESH_S:
            self.refresh()

    def refresh(self) -> None:
        self._lastRefresh = time.monotonic()
        self.table.Modified()

    def moveTo(self, scene) -> None:
        """Rebuild the table, its series and the chart in `scene` (the scene after a close), rows kept.

        Closing a scene removes these nodes while the training goes on; without this the chart would be
        filled on a table that no scene holds."""
        rows = vtk.vtkTable()
        rows.DeepCopy(self.table.GetTable())
        columns, self._columns = self._columns, []
        self._newNodes(scene)
        for column in columns:
            self._addColumn(column)
        self.table.GetTable().DeepCopy(rows)
        self.refresh()

    def follow(self, job: Job) -> None:
        """Fill the chart from the job's progress events."""
        def onEvent(_job, event):
            if event["event"] == "progress" and event.get("losses"):
                self.add(event.get("step", 0), event["losses"])
        job.onEvent(onEvent)
        job.onDone(lambda _job: self.refresh())
