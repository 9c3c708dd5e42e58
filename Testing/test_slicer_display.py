"""Heatmaps, the comparison layout, loss charts and headless rendering of slice views to PNG."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from PIL import Image as PILImage

from VirtualContrastLib import display, nodes, rendering
from VirtualContrastLib.training import LossChart
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.preprocessing import breast_mask

ROWS, COLS = 80, 64


def _breast_images():
    """An LE-like image (bright half-disc on black air), a real DES and a synthetic DES that differs
    from it by +40 inside a square."""
    rr, cc = np.mgrid[0:ROWS, 0:COLS]
    breast = (rr - ROWS / 2) ** 2 + cc ** 2 < (0.8 * COLS) ** 2
    rng = np.random.default_rng(1)
    le = np.where(breast, 2400 + rng.normal(0, 40, (ROWS, COLS)), 0).astype(np.float32)
    real = np.where(breast, 2000 + rng.normal(0, 20, (ROWS, COLS)), 1700).astype(np.float32)
    synthetic = real.copy()
    synthetic[30:40, 10:20] += 40
    return le, real, synthetic, breast


@pytest.fixture
def comparison(mrml_scene, vc_logic):
    le, real, synthetic, breast = _breast_images()
    grid = Image(le, spacing=(0.5, 0.5), origin=(0.0, 0.0, 0.0), meta={"window_center": 2400, "window_width": 800})
    le_node = nodes.volumeFromImage(grid, "LE", mrml_scene)
    des_node = nodes.volumeFromImage(grid.with_array(real, window_center=2000, window_width=600), "DES", mrml_scene)
    synth_node = nodes.volumeFromImage(grid.with_array(synthetic, window_center=2000, window_width=600,
                                                       Synthetic="true"), "LE \u2013 synthetic DES", mrml_scene)
    heat = vc_logic.differenceHeatmap(des_node, synth_node, le_node)
    return dict(le=le_node, des=des_node, synth=synth_node, heat=heat, breast=breast)


def test_heatmaps_hold_the_difference_inside_the_breast_only(comparison):
    le, real, synthetic, breast = _breast_images()
    absolute = slicer.util.arrayFromVolume(comparison["heat"].absolute)[0]
    signed = slicer.util.arrayFromVolume(comparison["heat"].signed)[0]
    inside = breast_mask(le)
    np.testing.assert_allclose(signed[inside], (synthetic - real)[inside])
    assert np.all(signed[~inside] == 0) and np.array_equal(absolute, np.abs(signed))
    assert absolute[30:40, 10:20].min() == pytest.approx(40.0, abs=1e-3)  # float32 pixels near 2000
    assert comparison["heat"].absolute.GetName() == "LE \u2013 synthetic DES \u2013 |difference|"
    assert nodes.imageFromVolume(comparison["heat"].absolute).same_geometry(nodes.imageFromVolume(comparison["synth"]))
    assert nodes.isSynthetic(comparison["synth"]) and not nodes.isSynthetic(comparison["des"])


def test_heatmap_display_has_colour_map_window_and_legend(comparison):
    for node, signed in ((comparison["heat"].absolute, False), (comparison["heat"].signed, True)):
        shown = node.GetDisplayNode()
        assert shown.GetColorNode().GetName() == f"VirtualContrast {'RdBu_r' if signed else 'inferno'}"
        scale = comparison["heat"].scaleMax
        window = (shown.GetWindowLevelMin(), shown.GetWindowLevelMax())
        assert window == pytest.approx(((-scale if signed else 0), scale))
        legends = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())
                   if node.GetNthDisplayNode(i).IsA("vtkMRMLColorLegendDisplayNode")]
        assert len(legends) == 1 and legends[0].GetPrimaryDisplayNode() is shown


def test_real_des_on_another_grid_is_resampled(mrml_scene, vc_logic, comparison):
    le, real, _, _ = _breast_images()
    coarse = Image(real[::2, ::2].copy(), spacing=(1.0, 1.0), origin=(0.25, 0.25, 0.0))
    other = nodes.volumeFromImage(coarse, "coarse DES", mrml_scene)
    heat = vc_logic.differenceHeatmap(other, comparison["synth"], comparison["le"])
    assert heat.absolute.GetAttribute("VirtualContrast.ResampledRealDES") == "true"
    assert slicer.util.arrayFromVolume(heat.absolute).shape == (1, ROWS, COLS)


def test_comparison_layout_links_four_views(mrml_scene, vc_logic, comparison):
    vc_logic.showComparison(comparison["le"], comparison["des"], comparison["synth"], comparison["heat"].absolute)
    assert display.layoutNode(mrml_scene).GetViewArrangement() == display.LAYOUT_ID
    backgrounds = []
    for tag, label, _ in display.VIEWS:
        view = display.sliceNode(tag, mrml_scene)
        composite = display.compositeNode(tag, mrml_scene)
        assert view.GetLayoutLabel() == label and view.GetViewGroup() == display.VIEW_GROUP
        assert composite.GetLinkedControl() and composite.GetHotLinkedControl()
        backgrounds.append(composite.GetBackgroundVolumeID())
    assert backgrounds == [comparison[k].GetID() for k in ("le", "des", "synth", "le")]
    heat_view = display.compositeNode(display.VIEWS[3][0], mrml_scene)
    assert heat_view.GetForegroundVolumeID() == comparison["heat"].absolute.GetID()
    assert heat_view.GetForegroundOpacity() > 0


def _showFibroglandularBox(scene, le):
    """A 4 mm ROI as the fibroglandular region, shown as the LE view's label layer the way display sets it up."""
    fibro = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "fibroglandular")
    fibro.SetCenter(*(nodes.ijkToRasArray(le) @ [10, 60, 0, 1])[:3])
    fibro.SetSize(4, 4, 4)
    labels = rendering.regionsLabelmap({"fibroglandular": fibro}, le, scene=scene)
    display.showRegions(display.VIEWS[0][0], labels, scene=scene)
    return labels


def test_regions_label_layer_is_semi_transparent_filled_and_has_a_named_legend(mrml_scene, vc_logic, comparison):
    vc_logic.showComparison(comparison["le"], comparison["des"], comparison["synth"], comparison["heat"].absolute)
    labels = _showFibroglandularBox(mrml_scene, comparison["le"])
    tag = display.VIEWS[0][0]
    composite = display.compositeNode(tag, mrml_scene)
    assert composite.GetLabelVolumeID() == labels.GetID()
    assert 0 < composite.GetLabelOpacity() == display.REGION_OPACITY < 1
    assert not display.sliceNode(tag, mrml_scene).GetUseLabelOutline()
    legends = [labels.GetNthDisplayNode(i) for i in range(labels.GetNumberOfDisplayNodes())
               if labels.GetNthDisplayNode(i).IsA("vtkMRMLColorLegendDisplayNode")]
    assert len(legends) == 1 and legends[0].GetUseColorNamesForLabels() and legends[0].GetVisibility()
    fibroglandular = rendering.REGION_LABELS["fibroglandular"]
    assert rendering.labelLegend(tag, mrml_scene) == [
        ("fibroglandular", pytest.approx(rendering.REGION_COLORS[fibroglandular], abs=1 / 255))]
    assert rendering.labelLegend(display.VIEWS[1][0], mrml_scene) == []  # no label layer, no legend


def test_rendered_views_show_grey_images_coloured_heatmap_and_blended_regions(mrml_scene, vc_logic, comparison):
    vc_logic.showComparison(comparison["le"], comparison["des"], comparison["synth"], comparison["heat"].absolute)
    _showFibroglandularBox(mrml_scene, comparison["le"])

    le_view = rendering.renderView(display.VIEWS[0][0], (128, 160), mrml_scene).astype(int)
    heat_view = rendering.renderView(display.VIEWS[3][0], (128, 160), mrml_scene)
    assert le_view.shape == (160, 128, 3)
    spread = lambda rgb: rgb.max(axis=2).astype(int) - rgb.min(axis=2)  # noqa: E731  (0 for grey pixels)
    tinted = spread(le_view) > 20
    assert tinted.sum() > 20, "the fibroglandular ROI is drawn in its label colour"
    assert (spread(le_view)[~tinted] < 3).mean() > 0.95 and le_view.std() > 10, "LE is grey with content"
    # Blended, not opaque: over grey g, a pixel of the region is (1 - a) g + a colour, so its channels differ by
    # a times the colour's own differences, and the tissue still shows through.
    color = 255 * np.asarray(rendering.REGION_COLORS[rendering.REGION_LABELS["fibroglandular"]])
    a = display.REGION_OPACITY
    np.testing.assert_allclose(np.median(le_view[tinted] - le_view[tinted].min(axis=1, keepdims=True), axis=0),
                               a * (color - color.min()), atol=6)
    assert (spread(heat_view) > 60).sum() > 50, "the heatmap overlay is coloured where the error is"


def test_comparison_png_has_a_legend_of_the_region_colours_and_the_case_title(mrml_scene, vc_logic, comparison,
                                                                             tmp_path):
    vc_logic.showComparison(comparison["le"], comparison["des"], comparison["synth"], comparison["heat"].absolute)
    _showFibroglandularBox(mrml_scene, comparison["le"])
    path = rendering.writeComparisonPNG(tmp_path / "views.png", size=(128, 160), title="case P1_L_CC",
                                        heatmap=comparison["heat"].absolute, scene=mrml_scene)
    with PILImage.open(path) as png:
        rgb = np.asarray(png.convert("RGB")).astype(int)
    assert rgb.shape[1] > 4 * 128 and rgb.std() > 20
    # The views blend the colour with the tissue; only the legend's swatch shows it pure, inside the LE panel.
    color = np.round(255 * np.asarray(rendering.REGION_COLORS[rendering.REGION_LABELS["fibroglandular"]]))
    rows, cols = np.nonzero(np.abs(rgb - color).max(axis=2) <= 4)
    assert len(cols) > 15, "the legend shows the fibroglandular colour"
    assert cols.max() < rgb.shape[1] / 4 and rows.min() > rgb.shape[0] * 0.1, "the legend lies on the LE view"

    untitled = rendering.writeComparisonPNG(tmp_path / "untitled.png", size=(128, 160), scene=mrml_scene)
    with PILImage.open(untitled) as png:
        assert png.size[1] < rgb.shape[0], "the title takes a line of its own"


def test_loss_chart_collects_one_line_per_loss(mrml_scene):
    chart = LossChart("run", mrml_scene)
    chart.add(1, {"G": 2.0, "D_X": 0.5})
    chart.add(2, {"G": 1.5, "D_X": 0.4, "cycle": 0.3})
    table = chart.table.GetTable()
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == ["step", "G", "D_X", "cycle"]
    assert table.GetNumberOfRows() == 2 and table.GetValue(1, 1).ToDouble() == 1.5
    assert np.isnan(table.GetValue(0, 3).ToDouble())  # a loss first seen at step 2 has no value at step 1
    assert chart.chart.GetNumberOfPlotSeriesNodes() == 3
    display.showChart(chart.chart, mrml_scene)
    assert mrml_scene.GetSingletonNode("VirtualContrastPlot", "vtkMRMLPlotViewNode").GetPlotChartNodeID() == \
        chart.chart.GetID()
