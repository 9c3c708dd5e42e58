"""Slice views rendered to images without a screen, through Slicer's own vtkMRMLSliceLogic.

The slice logic reslices and blends background, foreground (with its colour
map, window and threshold) and label layers exactly as a slice view does, and
needs no OpenGL. Used for the README screenshot and the tests; inside Slicer a
user takes screenshots with the Screen Capture module instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from VirtualContrastLib import display
from VirtualContrastLib.regions import regionMask
from VirtualContrastTraining.atomic import atomic_path

REGION_LABELS = {"fibroglandular": 1, "adipose": 2, "lesion": 3}  # values in the regions labelmap
REGION_COLORS = {1: (0.2, 0.85, 0.3), 2: (0.25, 0.55, 1.0), 3: (1.0, 0.25, 0.25)}


def regionsLabelmap(regions: dict[str, object], reference, name: str = "CNR regions", scene=None):
    """A labelmap volume on `reference`'s grid holding the CNR regions (1 fibroglandular, 2 adipose, 3 lesion),
    with a colour table naming them, to overlay as the label layer of a view."""
    scene = scene or slicer.mrmlScene
    labels = np.zeros(slicer.util.arrayFromVolume(reference).shape, dtype=np.uint8)
    for key, region in regions.items():
        if region is not None:
            labels[0][regionMask(region, reference)] = REGION_LABELS[key]
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName(name))
    matrix = vtk.vtkMatrix4x4()
    reference.GetIJKToRASMatrix(matrix)
    node.SetIJKToRASMatrix(matrix)
    slicer.util.updateVolumeFromArray(node, labels)
    node.CreateDefaultDisplayNodes()
    colors = slicer.vtkMRMLColorTableNode()
    colors.SetName(scene.GenerateUniqueName("CNR region colours"))
    colors.SetTypeToUser()
    colors.SetNumberOfColors(4)
    colors.SetNamesInitialised(True)
    colors.SetColor(0, "background", 0, 0, 0, 0)
    for key, value in REGION_LABELS.items():
        colors.SetColor(value, key, *REGION_COLORS[value], 1.0)
    scene.AddNode(colors)
    node.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
    return node


def renderView(tag: str, size: tuple[int, int] = (512, 512), scene=None) -> np.ndarray:
    """RGB (rows, cols, 3) uint8 of what view `tag` shows, fitted to the view."""
    scene = scene or slicer.mrmlScene
    sliceNode = display.sliceNode(tag, scene)
    sliceNode.SetDimensions(size[0], size[1], 1)
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLScene(scene)
    logic.SetSliceNode(sliceNode)
    logic.FitSliceToBackground(size[0], size[1])
    logic.UpdatePipeline()
    port = logic.GetImageDataConnection()
    producer = port.GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(0)
    rows, cols = image.GetDimensions()[1], image.GetDimensions()[0]
    pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(rows, cols, -1)
    # VTK images start at the bottom row.
    return np.ascontiguousarray(pixels[::-1, :, :3])


def writeComparisonPNG(path: str | os.PathLike, titles: list[str] | None = None, size: tuple[int, int] = (400, 560),
                       heatmap=None, table=None, scene=None) -> Path:
    """The four comparison views side by side in one PNG, titled, with the heatmap's colour bar and, when
    given, the CNR table (a vtkMRMLTableNode) printed underneath."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib
    from matplotlib.cm import ScalarMappable  # lazy: matplotlib
    from matplotlib.colors import Normalize  # lazy: matplotlib
    from matplotlib.figure import Figure  # lazy: matplotlib

    titles = titles or [label for _, label, _ in display.VIEWS]
    views = [renderView(tag, size, scene) for tag, _, _ in display.VIEWS]
    rows = 2 if table is not None else 1
    fig = Figure(figsize=(4 * size[0] / 100 + 1.0, size[1] / 100 + (1.6 if table is not None else 0.4)), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, 5, width_ratios=[1, 1, 1, 1, 0.06], height_ratios=[size[1], 140][:rows],
                            left=0.01, right=0.95, top=0.95, bottom=0.02, wspace=0.03, hspace=0.08)
    for k, (view, title) in enumerate(zip(views, titles)):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(view)
        ax.set_title(title, fontsize=11)
        ax.set_axis_off()
    if heatmap is not None:
        display_node = heatmap.GetDisplayNode()
        lo, hi = display_node.GetWindowLevelMin(), display_node.GetWindowLevelMax()
        cmap = display.SIGNED_COLORMAP if lo < 0 else display.ABSOLUTE_COLORMAP
        bar = fig.colorbar(ScalarMappable(Normalize(lo, hi), cmap), cax=fig.add_subplot(grid[0, 4]))
        bar.set_label("|synthetic \u2212 real DES| (DES units)", fontsize=9)
    if table is not None:
        ax = fig.add_subplot(grid[1, :4])
        ax.set_axis_off()
        t = table.GetTable()
        header = [t.GetColumnName(c) for c in range(t.GetNumberOfColumns())]
        cells = [[t.GetValue(r, c).ToString() if c == 0 else f"{t.GetValue(r, c).ToDouble():.3f}"
                  for c in range(t.GetNumberOfColumns())] for r in range(t.GetNumberOfRows())]
        ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="center").scale(1.0, 1.4)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
