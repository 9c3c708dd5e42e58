"""How results look: the comparison layout, colour maps, legends, table and chart views.

Everything here is MRML: a layout description on the scene's layout node
(Slicer's layout manager, or vtkMRMLLayoutLogic in a bare scene, creates the
view nodes it names), slice composite nodes for what each view shows, colour
table nodes built from matplotlib's perceptual maps (the same maps the engine's
report panels use, and available in a bare scene where Slicer's colour files
are not), and colour legend display nodes on the heatmap and on a regions
labelmap.
"""

from __future__ import annotations

import numpy as np
import slicer

LAYOUT_ID = 26010  # custom layout ids live above Slicer's (< 1000); ours is fixed so that scenes reopen
VIEW_GROUP = 7     # the four slice views form one group: linked navigation moves them together

# (layout name, view label, view colour) of the four slice views.
VIEWS = (
    ("VirtualContrastLE", "LE", "#6e6e6e"),
    ("VirtualContrastDES", "DES", "#2f7ed8"),
    ("VirtualContrastSynthetic", "synthetic", "#c05bd6"),
    ("VirtualContrastHeatmap", "heatmap", "#e8a33b"),
)
TABLE_VIEW, PLOT_VIEW = "VirtualContrastTable", "VirtualContrastPlot"

ABSOLUTE_COLORMAP, SIGNED_COLORMAP = "inferno", "RdBu_r"
HEATMAP_OPACITY = 0.7
# A regions labelmap is a semi-transparent fill: the tissue under it stays readable, and the colour still shows
# on dark adipose and on bright glandular tissue alike.
REGION_OPACITY = 0.6


def _sliceView(tag: str, label: str, color: str) -> str:
    return (f'<item><view class="vtkMRMLSliceNode" singletontag="{tag}">'
            f'<property name="orientation" action="default">Axial</property>'
            f'<property name="viewlabel" action="default">{label}</property>'
            f'<property name="viewcolor" action="default">{color}</property>'
            f'<property name="viewgroup" action="default">{VIEW_GROUP}</property></view></item>')


LAYOUT_XML = (
    '<layout type="vertical" split="true">'
    '<item splitSize="700"><layout type="horizontal">' + "".join(_sliceView(*v) for v in VIEWS) + "</layout></item>"
    '<item splitSize="300"><layout type="horizontal">'
    f'<item><view class="vtkMRMLTableViewNode" singletontag="{TABLE_VIEW}">'
    '<property name="viewlabel" action="default">T</property></view></item>'
    f'<item><view class="vtkMRMLPlotViewNode" singletontag="{PLOT_VIEW}">'
    '<property name="viewlabel" action="default">P</property></view></item>'
    "</layout></item></layout>"
)


def layoutNode(scene=None):
    scene = scene or slicer.mrmlScene
    node = scene.GetSingletonNode("vtkMRMLLayoutNode", "vtkMRMLLayoutNode")
    if node is None:
        raise RuntimeError("the scene has no layout node (in a bare scene create a vtkMRMLLayoutLogic first, "
                           "see VirtualContrastLib.headless)")
    return node


def setComparisonLayout(scene=None) -> None:
    """Switch to LE | DES | synthetic | heatmap over a table and a chart view (registered once)."""
    node = layoutNode(scene)
    if not node.IsLayoutDescription(LAYOUT_ID):
        node.AddLayoutDescription(LAYOUT_ID, LAYOUT_XML)
    node.SetViewArrangement(LAYOUT_ID)


def sliceNode(tag: str, scene=None):
    scene = scene or slicer.mrmlScene
    node = scene.GetSingletonNode(tag, "vtkMRMLSliceNode")
    if node is None:
        raise RuntimeError(f"no slice view {tag!r}: call setComparisonLayout first")
    return node


def compositeNode(tag: str, scene=None):
    """The slice composite node of a view (created here when no slice logic has made it yet)."""
    scene = scene or slicer.mrmlScene
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        if node.GetLayoutName() == tag:
            return node
    node = slicer.vtkMRMLSliceCompositeNode()
    node.SetLayoutName(tag)
    return scene.AddNode(node)


def showInView(tag: str, background, foreground=None, foregroundOpacity: float = HEATMAP_OPACITY,
               label=None, scene=None) -> None:
    """What one view shows; every view of the group is linked (navigation moves all four)."""
    composite = compositeNode(tag, scene)
    composite.SetBackgroundVolumeID(background.GetID() if background else None)
    composite.SetForegroundVolumeID(foreground.GetID() if foreground else None)
    composite.SetForegroundOpacity(foregroundOpacity if foreground else 0.0)
    composite.SetLabelVolumeID(label.GetID() if label else None)
    composite.SetLinkedControl(True)
    composite.SetHotLinkedControl(True)
    view = sliceNode(tag, scene)
    view.SetViewGroup(VIEW_GROUP)
    if background is not None:
        view.RotateToVolumePlane(background)


def colorTable(name: str, scene=None):
    """A 256-entry colour table node from a matplotlib colormap (reused when already in the scene)."""
    from matplotlib import colormaps  # lazy: matplotlib

    scene = scene or slicer.mrmlScene
    nodeName = f"VirtualContrast {name}"
    existing = scene.GetFirstNodeByName(nodeName)
    if existing is not None and existing.IsA("vtkMRMLColorTableNode"):
        return existing
    node = slicer.vtkMRMLColorTableNode()
    node.SetName(nodeName)
    node.SetTypeToUser()
    node.SetNumberOfColors(256)
    node.SetNamesInitialised(True)
    rgba = colormaps[name](np.linspace(0.0, 1.0, 256))
    for i, (r, g, b, a) in enumerate(rgba):
        node.SetColor(i, f"{i}", float(r), float(g), float(b), float(a))
    node.SetAttribute("Category", "VirtualContrast")
    return scene.AddNode(node)


def showHeatmap(volumeNode, *, signed: bool, scaleMax: float, scene=None) -> None:
    """Colour map, fixed window (0..scaleMax, or symmetric for the signed map), pixels equal to 0 (outside
    the breast) transparent when the map is a foreground, and a colour legend."""
    scene = scene or slicer.mrmlScene
    if volumeNode.GetDisplayNode() is None:
        volumeNode.CreateDefaultDisplayNodes()
    display = volumeNode.GetDisplayNode()
    display.SetAndObserveColorNodeID(colorTable(SIGNED_COLORMAP if signed else ABSOLUTE_COLORMAP, scene).GetID())
    display.AutoWindowLevelOff()
    if signed:
        display.SetWindowLevelMinMax(-scaleMax, scaleMax)
    else:
        display.SetWindowLevelMinMax(0.0, scaleMax)
        display.SetApplyThreshold(True)
        display.SetLowerThreshold(np.finfo(np.float32).tiny)
        display.SetUpperThreshold(np.finfo(np.float32).max)
    addColorLegend(volumeNode, "synthetic \u2212 real DES" if signed else "|synthetic \u2212 real DES|", scene)


def addColorLegend(volumeNode, title: str, scene=None):
    """A colour legend display node (shown by Slicer's slice views beside the heatmap)."""
    scene = scene or slicer.mrmlScene
    legend = None
    for i in range(volumeNode.GetNumberOfDisplayNodes()):
        node = volumeNode.GetNthDisplayNode(i)
        if node is not None and node.IsA("vtkMRMLColorLegendDisplayNode"):
            legend = node
    if legend is None:
        legend = scene.AddNewNodeByClass("vtkMRMLColorLegendDisplayNode")
        volumeNode.AddAndObserveDisplayNodeID(legend.GetID())
    legend.SetAndObservePrimaryDisplayNode(volumeNode.GetDisplayNode())
    legend.SetTitleText(title)
    legend.SetLabelFormat("%.0f")
    legend.SetVisibility(True)
    return legend


def showRegions(tag: str, labelmapNode, scene=None) -> None:
    """A regions labelmap as the label layer of view `tag`: semi-transparent (REGION_OPACITY) and filled, not
    outlined (glandular strands a few pixels wide would be all outline, opaque), with a colour legend naming each
    region (Slicer's slice view draws it beside the image, rendering.writeComparisonPNG draws the same one)."""
    composite = compositeNode(tag, scene)
    composite.SetLabelVolumeID(labelmapNode.GetID())
    composite.SetLabelOpacity(REGION_OPACITY)
    sliceNode(tag, scene).SetUseLabelOutline(False)
    legend = addColorLegend(labelmapNode, "regions", scene)
    legend.SetUseColorNamesForLabels(True)


def showComparison(leNode, desNode, syntheticNode, heatmapNode, scene=None) -> None:
    """The four linked views: LE | real DES | synthetic DES | LE with the heatmap as coloured foreground."""
    setComparisonLayout(scene)
    shown = (leNode, desNode, syntheticNode, leNode or syntheticNode)
    for (tag, _, _), background in zip(VIEWS, shown):
        showInView(tag, background, foreground=heatmapNode if tag == VIEWS[3][0] else None, scene=scene)


def _viewNode(tag: str, className: str, scene):
    """A view node of the comparison layout (the layout is switched to when the view does not exist yet)."""
    scene = scene or slicer.mrmlScene
    view = scene.GetSingletonNode(tag, className)
    if view is None:
        setComparisonLayout(scene)
        view = scene.GetSingletonNode(tag, className)
    return view


def showTable(tableNode, scene=None) -> None:
    _viewNode(TABLE_VIEW, "vtkMRMLTableViewNode", scene).SetTableNodeID(tableNode.GetID())


def showChart(chartNode, scene=None) -> None:
    _viewNode(PLOT_VIEW, "vtkMRMLPlotViewNode", scene).SetPlotChartNodeID(chartNode.GetID())
