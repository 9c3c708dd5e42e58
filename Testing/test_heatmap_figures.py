"""Publication heatmap figures (evaluation/heatmap_panels.py, panel_facts.py): three formats written and read back,
the breast cropped at its native aspect, side/view markers, scale bar or the reason for its absence, labelled
colour bars with the clip level stated, the lesion outlined on every panel."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib.contour import ContourSet
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
from PIL import Image as PILImage
from scipy import ndimage

from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import write_bitmap, write_nrrd
from VirtualContrastTraining.data.manifest import Case
from VirtualContrastTraining.data.prepared import PreparedCase
from VirtualContrastTraining.data.preprocessing import PreprocessConfig, preprocess
from VirtualContrastTraining.evaluation.heatmap_panels import (ERROR_LABEL, NO_SCALE_BAR, heatmap_figure,
                                                               write_heatmap_panel)
from VirtualContrastTraining.evaluation.panel_facts import (PanelFacts, content_box, native_spacing,
                                                            network_spacing, panel_facts)

SIZE = 64
ROWS, COLS = 120, 60          # a portrait image: the network pads it to a 120-pixel square
SVG_TEXT = "{http://www.w3.org/2000/svg}text"


def _native_case() -> tuple[np.ndarray, np.ndarray]:
    """(LE, DES) of a left breast: a half-ellipse against column 0 spanning rows 10..110 and 45 columns."""
    rr, cc = np.mgrid[0:ROWS, 0:COLS]
    breast = (cc / 45.0) ** 2 + ((rr - 60) / 50.0) ** 2 < 1
    texture = ndimage.gaussian_filter(np.random.default_rng(0).random((ROWS, COLS)), 2)
    le = np.where(breast, 1000 + 2000 * texture, 50.0).astype(np.float32)
    des = np.where(breast, 1500 + 1500 * texture[::-1], 50.0).astype(np.float32)
    return le, des


@pytest.fixture(scope="module")
def case() -> dict:
    """One prepared case as evaluate has it: network arrays, a lesion, the facts at 0.2 mm native spacing."""
    le_native, des_native = _native_case()
    config = PreprocessConfig(size=SIZE)
    le, params = preprocess(Image(le_native), laterality="L", config=config)
    des, des_params = preprocess(Image(des_native), laterality="L", config=config, side="left")
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[28:36, 8:16] = 1
    row = Case(case_id="P1_L_CC", patient_id="P1", le_path="le.nrrd", laterality="L", view="CC")
    prepared = PreparedCase(row, le, des, mask, True, params, (ROWS, COLS), des_params)
    synthetic = np.clip(des + 0.08 * np.random.default_rng(1).standard_normal(des.shape), 0, 1).astype(np.float32)
    return {"le": le, "des": des, "synthetic": synthetic, "mask": mask, "params": params,
            "facts": panel_facts(prepared, SIZE, (0.2, 0.2))}


def _svg_text(path) -> str:
    return " ".join("".join(t.itertext()) for t in ET.parse(path).getroot().iter(SVG_TEXT))


def test_three_formats_written_and_read_back(case, tmp_path):
    png = write_heatmap_panel(tmp_path / "P1_L_CC.png", case["le"], case["des"], case["synthetic"],
                              mask=case["mask"], title="P1_L_CC - demo", error_vmax=0.1,
                              vmax_source="the 99.5th percentile of the pixel errors of all 3 images",
                              facts=case["facts"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P1_L_CC.pdf", "P1_L_CC.png", "P1_L_CC.svg"]  # no temp
    with PILImage.open(png) as img:
        assert [round(d) for d in img.info["dpi"]] == [300, 300]
        assert img.width == round(7.2 * 300)
    text = _svg_text(tmp_path / "P1_L_CC.svg")
    for needed in ("normalized intensity [0, 1]", "DES window", "|synthetic \u2212 DES|", "(normalized DES intensity)",
                   "L CC", "mm", "P1_L_CC - demo", "not for diagnosis", "Error scale clipped at 0.1",
                   "99.5th percentile"):
        assert needed in text, needed
    assert (tmp_path / "P1_L_CC.pdf").read_bytes().startswith(b"%PDF")
    again = write_heatmap_panel(tmp_path / "again" / "P1_L_CC.png", case["le"], case["des"], case["synthetic"],
                                mask=case["mask"], title="P1_L_CC - demo", error_vmax=0.1,
                                vmax_source="the 99.5th percentile of the pixel errors of all 3 images",
                                facts=case["facts"])
    for fmt in ("png", "svg", "pdf"):                                  # no date, no random ids: the same bytes
        assert again.with_suffix(f".{fmt}").read_bytes() == (tmp_path / f"P1_L_CC.{fmt}").read_bytes(), fmt


def test_panel_facts_crop_to_the_breast_and_scale_the_spacing(case):
    params, facts = case["params"], case["facts"]
    assert params.pad_side == "right" and params.padded_size == ROWS
    assert content_box(params, SIZE) == (0, SIZE, 0, 32)                 # 60 of 120 columns hold the image
    r0, r1, c0, c1 = facts.box
    assert c0 == 0 and 22 <= c1 <= 28 and 2 <= r0 <= 5 and 59 <= r1 <= 62    # 45 x 100 native pixels of breast
    assert facts.spacing == pytest.approx((0.2 * ROWS / SIZE,) * 2)       # native spacing x resize factor
    assert network_spacing(None, params, SIZE) is None
    assert (facts.marker, facts.chest_wall) == ("L CC", "left")
    assert facts.des_window is not None and facts.le_window == params.window


def test_crop_shows_the_breast_at_its_aspect_not_the_padded_square(case, tmp_path):
    """The LE panel of the PNG: as tall/wide as the breast box, little black; the padded square is half black."""
    def le_panel(facts):
        fig = heatmap_figure(case["le"], case["des"], case["synthetic"], facts=facts)
        path = tmp_path / "f.png"
        fig.savefig(path, dpi=100)
        box = fig.axes[0].get_window_extent()          # display pixels at the figure's dpi, origin bottom left
        pixels = np.asarray(PILImage.open(path).convert("L"), np.float64)
        top = pixels.shape[0] - box.y1
        panel = pixels[round(top) + 2: round(top + box.height) - 2, round(box.x0) + 2: round(box.x1) - 2]
        return box.height / box.width, float(np.mean(panel < 10))

    r0, r1, c0, c1 = case["facts"].box
    ratio, black = le_panel(case["facts"])
    assert ratio == pytest.approx((r1 - r0) / (c1 - c0), rel=0.03) and ratio > 1.8
    padded_ratio, padded_black = le_panel(None)
    assert padded_ratio == pytest.approx(1.0, rel=0.03)
    assert black < 0.3 < 0.5 < padded_black


def test_without_spacing_no_scale_bar_and_the_caption_says_so(case, tmp_path):
    unknown = PanelFacts(box=case["facts"].box, laterality="R", view="MLO")
    fig = heatmap_figure(case["le"], case["des"], case["synthetic"], facts=unknown)
    assert not [a for a in fig.axes[0].artists if isinstance(a, AnchoredSizeBar)]
    write_heatmap_panel(tmp_path / "u.png", case["le"], case["des"], case["synthetic"], facts=unknown)
    text = _svg_text(tmp_path / "u.svg")
    assert NO_SCALE_BAR in text and "R MLO" in text and " mm" not in text

    fig = heatmap_figure(case["le"], case["des"], case["synthetic"], facts=case["facts"])
    bars = [a for a in fig.axes[0].artists if isinstance(a, AnchoredSizeBar)]
    assert len(bars) == 1 and bars[0].txt_label.get_text() == "2 mm"    # 32 columns x 0.375 mm: a quarter is 3 mm
    assert NO_SCALE_BAR not in " ".join(t.get_text() for t in fig.texts)


def test_lesion_outlined_on_all_four_panels(case):
    def outlines(mask):
        fig = heatmap_figure(case["le"], case["des"], case["synthetic"], mask=mask, facts=case["facts"])
        return [sum(isinstance(c, ContourSet) for c in ax.collections) for ax in fig.axes[:4]], fig

    counts, fig = outlines(case["mask"])
    assert counts == [1, 1, 1, 1]
    assert "Lesion outlined in cyan." in fig.texts[-1].get_text()
    assert outlines(None)[0] == [0, 0, 0, 0]
    assert outlines(np.zeros_like(case["mask"]))[0] == [0, 0, 0, 0]


def test_clip_level_and_the_share_above_it_are_stated(case):
    r0, r1, c0, c1 = case["facts"].box
    error = np.abs(case["synthetic"] - case["des"])[r0:r1, c0:c1]
    fig = heatmap_figure(case["le"], case["des"], case["synthetic"], error_vmax=0.05,
                         vmax_source="the 99.5th percentile", facts=case["facts"])
    caption = fig.texts[-1].get_text().replace("\n", " ")
    share = 100 * np.mean(error > 0.05)
    assert 5 < share < 95
    assert f"Error scale clipped at 0.05 (the 99.5th percentile): {share:.1f} % of this image's shown pixels" in caption
    heat_bar = fig.axes[3].images[0].colorbar
    assert heat_bar.extend == "max" and heat_bar.ax.get_xlabel() == ERROR_LABEL

    unclipped = heatmap_figure(case["le"], case["des"], case["synthetic"], facts=case["facts"])
    assert f"Error scale 0 to {error.max():.3g}, this image's largest error." in unclipped.texts[-1].get_text()
    assert unclipped.axes[3].images[0].colorbar.extend == "neither"


def test_native_spacing_only_where_the_file_states_one(tmp_path):
    pixels = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_nrrd(Image(pixels, spacing=(0.07, 0.08)), tmp_path / "a.nrrd")
    assert native_spacing(tmp_path / "a.nrrd") == pytest.approx((0.07, 0.08))
    write_bitmap(pixels.astype(np.uint16), tmp_path / "b.png", "png", spacing=(0.07, 0.07), text={})
    assert native_spacing(tmp_path / "b.png") is None                   # SimpleITK reads no spacing from a PNG
    write_bitmap(pixels.astype(np.uint16), tmp_path / "c.tif", "tiff", spacing=(0.1, 0.1), text={})
    assert native_spacing(tmp_path / "c.tif") == pytest.approx((0.1, 0.1), rel=1e-3)
    write_bitmap(pixels.astype(np.uint16), tmp_path / "d.tif", "tiff", spacing=None, text={})
    assert native_spacing(tmp_path / "d.tif") is None


def test_native_spacing_of_dicom(phantom_1mm):
    from VirtualContrastTraining.data.manifest import read_manifest

    case = read_manifest(phantom_1mm)[0]
    assert native_spacing(case.le_path) == pytest.approx((1.0, 1.0))
