"""CNR over regions the user draws, for LE, real DES and synthetic DES, into a table node.

Two measures, both computed by the engine's metrics so that the module and
the command line give the same numbers on the same pixels:
- tissue CNR (Zormpas-Petridis et al. 2026): fibroglandular against adipose,
  |mean_a - mean_f| / (std_a + std_f);
- lesion CNR (Hosseinipour et al., eq. 9): the lesion against a ring of
  `ringWidthMm` around it, (mean_lesion - mean_ring) / std_ring.
ΔCNR = CNR(synthetic DES) - CNR(real DES) (Hosseinipour et al., eq. 12) when
both are measured. Regions are rasterised on each volume's own grid, and the
CNR is taken on its raw intensities at full resolution: the measure names say
so, because `evaluate`'s tissue CNR (normalised, at the evaluated size) is
another value for the same regions.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer
import vtk

from VirtualContrastLib.nodes import ijkToRasArray
from VirtualContrastLib.regions import RegionError, regionMask, regionName
from VirtualContrastTraining.atomic import write_text_atomic
from VirtualContrastTraining.evaluation.metrics import cnr, lesion_cnr, ring_around

LE, REAL_DES, SYNTHETIC_DES = "LE", "real DES", "synthetic DES"
# Measured on the volumes' raw intensities at full resolution: not the evaluation's tissue CNR, which is
# normalised and at the evaluated size (evaluation/columns.py, TISSUE_UNITS), so the names differ.
TISSUE = "tissue CNR (raw intensities, full resolution; fibroglandular vs adipose)"
LESION = "lesion CNR (raw intensities, full resolution; lesion vs ring)"
DELTA = "ΔCNR (synthetic − real)"


@dataclass
class CNRResult:
    """values[measure][image label] -> CNR; delta[measure] when real and synthetic DES were both given."""

    values: dict[str, dict[str, float]]
    delta: dict[str, float] = field(default_factory=dict)
    # Per image label: mean, std and pixel count of each region (for a reader who wants to check).
    regionStats: dict[str, dict[str, tuple[float, float, int]]] = field(default_factory=dict)
    table: object = None


def _spacing(volume) -> tuple[float, float]:
    spacing = volume.GetSpacing()
    return float(spacing[0]), float(spacing[1])


def _masks(label: str, volume, fibroglandular, adipose, lesion, ringWidthMm: float) -> dict[str, np.ndarray]:
    masks = {"fibroglandular": regionMask(fibroglandular, volume), "adipose": regionMask(adipose, volume)}
    if lesion is not None:
        masks["lesion"] = regionMask(lesion, volume)
        try:
            masks["ring"] = ring_around(masks["lesion"], ringWidthMm, _spacing(volume))
        except ValueError as exc:
            raise RegionError(f"{label}: {exc}") from None
    return masks


def _gridKey(volume) -> tuple:
    return (slicer.util.arrayFromVolume(volume).shape, tuple(np.round(ijkToRasArray(volume), 9).ravel()))


def _measure(label: str, volume, fibroglandular, adipose, lesion, ringWidthMm: float, maskCache: dict):
    """(tissue CNR, lesion CNR or None, region stats) of one volume; RegionError naming what is wrong.
    Volumes on one grid (LE and synthetic DES always are) share their masks through `maskCache`."""
    if volume is None or volume.GetImageData() is None:
        raise RegionError(f"{label}: no volume selected")
    pixels = slicer.util.arrayFromVolume(volume)[0].astype(np.float64)
    key = _gridKey(volume)
    if key not in maskCache:
        maskCache[key] = _masks(label, volume, fibroglandular, adipose, lesion, ringWidthMm)
    masks = maskCache[key]
    stats = {name: (float(pixels[m].mean()), float(pixels[m].std()), int(m.sum())) for name, m in masks.items()}
    overlap = masks["fibroglandular"] & masks["adipose"]
    if overlap.any():
        raise RegionError(f"the fibroglandular ({regionName(fibroglandular)}) and adipose ({regionName(adipose)}) "
                          f"regions share {int(overlap.sum())} pixels: draw them apart")
    try:
        tissue = cnr(pixels[masks["adipose"]], pixels[masks["fibroglandular"]])
        lesionValue = lesion_cnr(pixels, masks["lesion"], masks["ring"]) if lesion is not None else None
    except ValueError as exc:
        raise RegionError(f"{label} ({volume.GetName()!r}): {exc}") from None
    return tissue, lesionValue, stats


def computeCNR(fibroglandular, adipose, volumes: dict[str, object], lesion=None, ringWidthMm: float = 5.0,
               tableNode=None, scene=None) -> CNRResult:
    """Measure every volume of `volumes` (label -> volume node) with the same regions.

    Labels are free text; ΔCNR is computed when the labels REAL_DES and
    SYNTHETIC_DES are both present. The table (rows: measures; columns: one
    per label, then ΔCNR) is written into `tableNode`, or a new table node.
    Raises RegionError for empty, overlapping or degenerate regions.
    """
    if not volumes:
        raise RegionError("no volume to measure: select at least the LE")
    values: dict[str, dict[str, float]] = {TISSUE: {}}
    stats, maskCache = {}, {}
    for label, volume in volumes.items():
        tissue, lesionValue, stats[label] = _measure(label, volume, fibroglandular, adipose, lesion, ringWidthMm,
                                                     maskCache)
        values[TISSUE][label] = tissue
        if lesionValue is not None:
            values.setdefault(LESION, {})[label] = lesionValue
    delta = {}
    if REAL_DES in volumes and SYNTHETIC_DES in volumes:
        delta = {measure: row[SYNTHETIC_DES] - row[REAL_DES] for measure, row in values.items()}
    result = CNRResult(values, delta, stats)
    result.table = fillTable(result, list(volumes), tableNode, scene, ringWidthMm if lesion is not None else None)
    return result


def fillTable(result: CNRResult, labels: list[str], tableNode=None, scene=None, ringWidthMm: float | None = None):
    """Write the result into a table node (cleared first): column 'measure', one per label, ΔCNR."""
    scene = scene or slicer.mrmlScene
    if tableNode is None:
        tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName("CNR"))
    table = tableNode.GetTable()
    table.Initialize()
    measures = list(result.values)
    names = vtk.vtkStringArray()
    names.SetName("measure")
    for measure in measures:
        names.InsertNextValue(measure.replace("ring", f"{ringWidthMm:g} mm ring") if ringWidthMm else measure)
    table.AddColumn(names)
    columns = labels + ([DELTA] if result.delta else [])
    for label in columns:
        column = vtk.vtkDoubleArray()
        column.SetName(label)
        for measure in measures:
            column.InsertNextValue(result.delta[measure] if label == DELTA else result.values[measure][label])
        table.AddColumn(column)
    tableNode.Modified()
    return tableNode


def saveTable(tableNode, path: str | os.PathLike) -> Path:
    """Write a table node as CSV (header row, then one row per table row), atomically."""
    path = Path(path)
    table = tableNode.GetTable()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([table.GetColumnName(c) for c in range(table.GetNumberOfColumns())])
    for r in range(table.GetNumberOfRows()):
        writer.writerow([_cell(table.GetColumn(c), r) for c in range(table.GetNumberOfColumns())])
    write_text_atomic(path, buffer.getvalue())
    return path


def _cell(column, row: int) -> str:
    if column.IsA("vtkStringArray"):
        return column.GetValue(row)
    return repr(float(column.GetValue(row)))
