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
# Orange, sky blue and reddish purple of Okabe & Ito's colour-blind-safe palette: told apart with every common colour
# vision deficiency, and saturated enough to show through a semi-transparent fill on grey tissue, dark or bright.
REGION_COLORS = {value: tuple(c / 255 for c in rgb) for value, rgb in
                 ((1, (230, 159, 0)), (2, (86, 180, 233)), (3, (204, 121, 167)))}  # #E69F00, #56B4E9, #CC79A7
HEATMAP_UNITS = "raw intensity of the real DES (not normalised)"


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


def labelLegend(tag: str, scene=None) -> list[tuple[str, tuple[float, float, float]]]:
    """(name, colour) of each region the label layer of view `tag` shows, from its colour table: what the legend
    of the rendered view names (empty when the view has no label layer)."""
    scene = scene or slicer.mrmlScene
    label = scene.GetNodeByID(display.compositeNode(tag, scene).GetLabelVolumeID() or "")
    if label is None:
        return []
    colors = label.GetDisplayNode().GetColorNode()
    rgba = [0.0] * 4
    entries = []
    for value in np.unique(slicer.util.arrayFromVolume(label)):
        if value > 0:
            colors.GetColor(int(value), rgba)
            entries.append((colors.GetColorName(int(value)), tuple(rgba[:3])))
    return entries


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
                       heatmap=None, table=None, title: str | None = None, scene=None) -> Path:
    """The four comparison views side by side in one PNG, titled (`title` above them all: the case shown), with a
    legend of the regions on each view that has a label layer, the heatmap's colour bar (units and clip level
    stated) and, when given, the CNR table (a vtkMRMLTableNode) printed underneath."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib
    from matplotlib.cm import ScalarMappable  # lazy: matplotlib
    from matplotlib.colors import Normalize  # lazy: matplotlib
    from matplotlib.figure import Figure  # lazy: matplotlib
    from matplotlib.patches import Patch  # lazy: matplotlib

    titles = titles or [label for _, label, _ in display.VIEWS]
    views = [renderView(tag, size, scene) for tag, _, _ in display.VIEWS]
    rows = 2 if table is not None else 1
    height = size[1] / 100 + (1.6 if table is not None else 0.4) + (0.3 if title else 0.0)
    fig = Figure(figsize=(4 * size[0] / 100 + 1.3, height), dpi=100)
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, fontsize=12)
    grid = fig.add_gridspec(rows, 5, width_ratios=[1, 1, 1, 1, 0.06], height_ratios=[size[1], 140][:rows],
                            left=0.01, right=0.93, top=1.0 - 0.45 / height - (0.3 / height if title else 0.0),
                            bottom=0.02, wspace=0.03, hspace=0.08)
    for k, ((tag, _, _), view, viewTitle) in enumerate(zip(display.VIEWS, views, titles)):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(view)
        ax.set_title(viewTitle, fontsize=11)
        ax.set_axis_off()
        regions = labelLegend(tag, scene)
        if regions:
            ax.legend(handles=[Patch(facecolor=rgb, edgecolor="white", label=name) for name, rgb in regions],
                      loc="lower center", ncol=len(regions), fontsize=9, framealpha=0.85, handlelength=1.2)
    if heatmap is not None:
        display_node = heatmap.GetDisplayNode()
        lo, hi = display_node.GetWindowLevelMin(), display_node.GetWindowLevelMax()
        cmap = display.SIGNED_COLORMAP if lo < 0 else display.ABSOLUTE_COLORMAP
        bar = fig.colorbar(ScalarMappable(Normalize(lo, hi), cmap), cax=fig.add_subplot(grid[0, 4]), extend="max")
        difference = "synthetic \u2212 real DES" if lo < 0 else "|synthetic \u2212 real DES|"
        # The top of the scale is the heatmap's scaleMax, the 99th percentile of |error| inside the breast.
        bar.set_label(f"{difference}, {HEATMAP_UNITS}\nclipped at {hi:.0f}, the 99th percentile inside the breast",
                      fontsize=9)
    if table is not None:
        ax = fig.add_subplot(grid[1, :4])
        ax.set_axis_off()
        t = table.GetTable()
        header = [t.GetColumnName(c) for c in range(t.GetNumberOfColumns())]
        cells = [[t.GetValue(r, c).ToString() if c == 0 else f"{t.GetValue(r, c).ToDouble():.3f}"
                  for c in range(t.GetNumberOfColumns())] for r in range(t.GetNumberOfRows())]
        first = 0.34  # the measure's name is the long column
        shown = ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="center",
                         colWidths=[first] + [(1.0 - first) / (len(header) - 1)] * (len(header) - 1))
        shown.auto_set_font_size(False)
        shown.set_fontsize(9)
        shown.scale(1.0, 1.5)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
