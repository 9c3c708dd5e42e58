"""The papers' evaluation from Slicer: the same functions as `virtual-contrast evaluate` and `report`.

Nothing is measured here. One LE / real DES / synthetic DES triple of volume
nodes goes to the engine's `evaluate_images` (every per-image value of
per_image.csv, prepared exactly as evaluate prepares a case), a whole
manifest split to the engine's `evaluate` command as a background job, an
HTML report to `report.build_report`, a ratings file to
`reader_study.reader_study`. This module converts nodes and regions to
Images and masks on the LE's grid, and the engine's rows into table nodes
with the paper each number comes from (the engine's column registry,
evaluation/columns.py: 000 Zormpas-Petridis 2026, 001 Rofena 2024, 002 Rofena
2025, 003 Hosseinipour 2024), so the console, the GUI and the command line
give the same numbers for the same pixels.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import slicer
import vtk

from VirtualContrastLib.nodes import imageFromVolume, isSynthetic
from VirtualContrastLib.regions import RegionError, regionMask
from VirtualContrastLib.training import segmentMasks
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.evaluation.analyses import MASS_RING_PX
from VirtualContrastTraining.evaluation.evaluate import COMPARISON_SIZE, evaluate_images
from VirtualContrastTraining.evaluation.reader_study import reader_study
from VirtualContrastTraining.evaluation.report import build_report
from VirtualContrastTraining.synthetic_wording import NOT_FOR_DIAGNOSIS

TISSUE_SOURCES = {"manifest": "the regions given", "automatic": "automatic regions (brightest and darkest quarter "
                                                                  "of the LE in the breast, lesion left out)"}


@dataclass
class MeasureResult:
    """values: the engine's row (every column of evaluation/columns.py plus identifiers; None = undefined);
    table: a vtkMRMLTableNode with the columns measure, value, paper, note."""

    values: dict[str, Any]
    table: object = None


@dataclass
class ReaderStudyTables:
    """The engine's ReaderStudyResult and its rows (measures with CIs) and tests (Wilcoxon) as table nodes."""

    result: Any
    table: object = None
    testsTable: object = None


def fillTable(rows: list[dict[str, Any]], tableNode=None, name: str = "table", scene=None):
    """Rows (dicts) into a table node, cleared first: one column per key in order of first appearance,
    numbers as a double column (None -> NaN), anything else as text (None -> empty)."""
    scene = scene or slicer.mrmlScene
    if tableNode is None:
        tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    table = tableNode.GetTable()
    table.Initialize()
    for key in dict.fromkeys(k for row in rows for k in row):
        cells = [row.get(key) for row in rows]
        numeric = all(c is None or (isinstance(c, numbers.Real) and not isinstance(c, bool)) for c in cells)
        column = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        column.SetName(key)
        for cell in cells:
            if numeric:
                column.InsertNextValue(math.nan if cell is None else float(cell))
            else:
                column.InsertNextValue("" if cell is None else str(cell))
        table.AddColumn(column)
    tableNode.Modified()
    return tableNode


def _undefined(key: str, values: dict[str, Any]) -> str:
    """Why the engine left `key` undefined (None) for this image."""
    if key == "lesion_MAE" or key.startswith("mass_"):
        if not values.get("has_lesion_mask"):
            return "no lesion region given"
        if "CNR" in key:
            return f"undefined: the {MASS_RING_PX:g}-pixel ring around the lesion in the breast is empty or uniform"
    if key.startswith("breast_") and "CNR" in key:
        return ("undefined: no patch (64 pixels at 512, scaled with the image) lies inside the breast with "
                "non-uniform surroundings")
    if key == "bright_MAE":
        return "undefined: empty breast or a flat real DES"
    return "undefined for this image: an empty or uniform region, or a zero target"


def _note(key: str, value: Any, values: dict[str, Any]) -> str:
    if value is None:
        return _undefined(key, values)
    if isinstance(value, float) and math.isinf(value):
        return "infinite: the synthetic DES equals the real DES here"
    if key.startswith(("tissue_CNR", "fibroglandular_mean", "adipose_mean")):
        return TISSUE_SOURCES.get(values.get("tissue_rois"), "")
    return ""


def measureRows(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The engine's row as the table's rows, one per column of the engine's registry (evaluation/columns.py)
    in its order: measure, value, paper, note (why a value is undefined or infinite, which tissue regions
    were used)."""
    return [{"measure": c.label, "value": values.get(c.key), "paper": c.paper,
             "note": _note(c.key, values.get(c.key), values)} for c in columns.COLUMNS]


def _mask(role: str, region, leNode):
    """A region (markups ROI, closed curve, (segmentation, segmentId)) or, for the lesion, a whole
    segmentation node (the union of its lesion segments) -> bool mask on the LE's grid; None for None."""
    if region is None:
        return None
    if not isinstance(region, tuple) and region.IsA("vtkMRMLSegmentationNode"):
        if role != "lesion":
            raise InputError(None, f"{role} region: choose one segment of {region.GetName()!r}, "
                                   "as (segmentation, segmentId)")
        masks = segmentMasks(region, leNode)[0]
        if not masks:
            raise InputError(None, f"lesion region: segmentation {region.GetName()!r} has no lesion segment "
                                   "with pixels on the LE")
        return np.logical_or.reduce(list(masks.values()))
    try:
        return regionMask(region, leNode)
    except RegionError as exc:
        raise InputError(None, f"{role} region: {exc}") from None


def _image(role: str, node):
    if node is None or node.GetImageData() is None:
        raise InputError(None, f"measure images: no {role} volume selected")
    if role != "synthetic DES" and isSynthetic(node):
        raise InputError(None, f"{node.GetName()!r} is marked synthetic: the {role} must be a real image")
    return imageFromVolume(node)


def measureImages(leNode, realDesNode, syntheticNode, lesion=None, fibroglandular=None, adipose=None,
                  size: int = COMPARISON_SIZE, tableNode=None, scene=None) -> MeasureResult:
    """Every per-image value of `virtual-contrast evaluate` for one LE / real DES / synthetic DES triple.

    The images are prepared as evaluate prepares a case (each with its own
    window, the synthetic one with the real DES's; padded; resized to `size`),
    so the numbers equal that case's row of per_image.csv. Regions, drawn on
    the LE's grid: `lesion` for lesion MAE and 003's mass setting; with both
    `fibroglandular` and `adipose` 000's tissue CNR uses them (tissue_rois
    "manifest"), otherwise automatic regions. An undefined value is None in
    `values`, NaN with a note in the table, never an exception.
    """
    scene = scene or slicer.mrmlScene
    images = {role: _image(role, node) for role, node in
              (("LE", leNode), ("real DES", realDesNode), ("synthetic DES", syntheticNode))}
    masks = {role: _mask(role, region, leNode) for role, region in
             (("lesion", lesion), ("fibroglandular", fibroglandular), ("adipose", adipose))}
    try:
        values = evaluate_images(images["LE"], images["real DES"], images["synthetic DES"], lesion=masks["lesion"],
                                 fibroglandular=masks["fibroglandular"], adipose=masks["adipose"], size=size,
                                 case_id=leNode.GetName(), model_name=syntheticNode.GetName())
    except ValueError as exc:  # e.g. a blank DES: the engine names what cannot be computed
        raise InputError(None, f"measure images ({leNode.GetName()!r}): {exc}") from None
    if tableNode is None:
        tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(
            f"{syntheticNode.GetName()} metrics"))
    fillTable(measureRows(values), tableNode, scene=scene)
    tableNode.SetDescription(f"{syntheticNode.GetName()} against {realDesNode.GetName()}, images prepared as "
                             f"`virtual-contrast evaluate` does ({size}x{size}, [0,1]). {NOT_FOR_DIAGNOSIS}")
    return MeasureResult(values, tableNode)


def evaluationArguments(manifestPath, outDir, modelPath=None, synthetic=None, split: str = "test",
                        device: str = "auto", readerStudy=None, name: str | None = None,
                        size: int | None = None) -> list[str]:
    """The `virtual-contrast evaluate` command line; InputError for a missing file or a model and a
    synthetic-image list given together (or neither)."""
    if (modelPath is None) == (synthetic is None):
        raise InputError(None, "evaluate needs either a trained model or a list of synthetic images, not both")
    for path, what in ((manifestPath, "manifest"), (synthetic, "synthetic image list"), (readerStudy, "ratings file")):
        if path is not None and not Path(path).is_file():
            raise InputError(path, f"no such {what}")
    args = ["evaluate", "--manifest", str(Path(manifestPath).resolve()), "--out", str(Path(outDir).resolve()),
            "--split", split, "--device", device]
    if modelPath is not None:
        args += ["--model", str(Path(modelPath).resolve())]
    else:
        args += ["--synthetic", str(Path(synthetic).resolve())]
    for option, value in (("--reader-study", readerStudy and Path(readerStudy).resolve()), ("--name", name),
                          ("--size", size)):
        if value is not None:
            args += [option, str(value)]
    return args


def buildReport(evaluationDirs, outPath, readerStudy=None) -> Path:
    """The engine's HTML report of one or more evaluation folders (one folder may be given alone)."""
    if isinstance(evaluationDirs, (str, os.PathLike)):
        evaluationDirs = [evaluationDirs]
    return build_report([Path(d) for d in evaluationDirs], Path(outPath), reader_study=readerStudy)


def readerStudy(ratingsPath, tableNode=None, testsTableNode=None, nResamples: int = 1000, seed: int = 0,
                scene=None) -> ReaderStudyTables:
    """000's reader-study analysis of a ratings file (engine reader_study.py), its rows and tests as tables."""
    result = reader_study(ratingsPath, n_resamples=nResamples, seed=seed)
    name = Path(ratingsPath).stem
    return ReaderStudyTables(result, fillTable(result.rows, tableNode, f"{name} reader study", scene),
                             fillTable(result.tests, testsTableNode, f"{name} reader study tests", scene))
