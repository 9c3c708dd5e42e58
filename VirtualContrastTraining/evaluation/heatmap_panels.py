"""Error heatmap figures: LE | DES | synthetic | |synthetic - DES| of one case, as SVG, PDF and 300-dpi PNG.

Rofena et al. 2025 show such heatmaps to make visible where a model errs, in
particular inside the lesion. Made to go into a paper as they are: the breast
cropped at its native aspect ratio (not the network's padded square), the
side and view marked, a scale bar in mm when the pixel spacing is known (the
caption says so when it is not), both colour bars labelled with their units,
the error scale's clip level stated with the share of pixels above it, and the
lesion outlined on every panel (cyan with a dark edge: visible on grey and on
inferno). One Figure is built and saved three times, each file atomically.
Uses matplotlib's object API with the Agg canvas (no pyplot, no display), so it
runs in a headless process and never touches global figure state.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import patheffects, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from VirtualContrastTraining.atomic import atomic_path
from VirtualContrastTraining.evaluation.panel_facts import PanelFacts
from VirtualContrastTraining.synthetic_wording import FIGURE_NOTE

FIGURE_WIDTH = 7.2           # inches: a two-column journal figure
PANEL_DPI = 300
FONT_SIZE = 7
CAPTION_CHARS = 150         # per caption line at FONT_SIZE - 0.5 across FIGURE_WIDTH
TITLE_CHARS = 115           # per title line at FONT_SIZE + 1: a modified preset's name runs over several
CONTOUR_COLOUR = "cyan"
PANEL_NAMES = ("LE", "DES (target)", "synthetic DES", "|synthetic \u2212 DES|")
# Scale bar lengths to choose from (mm): the longest that fits in a quarter of the panel.
SCALE_BAR_MM = (1, 2, 5, 10, 20, 50, 100)
NO_SCALE_BAR = "No scale bar: pixel spacing unknown."
ERROR_LABEL = "|synthetic \u2212 DES|\n(normalized DES intensity)"
# SVG text as <text> elements, editable (Inkscape, Illustrator) and searchable, and element ids from a fixed salt
# (random otherwise). The PDF keeps matplotlib's Type 3 fonts: embedding TrueType (pdf.fonttype 42) subsets the
# font with fontTools on every file, which took longer than drawing the figure in all three formats.
VECTOR_RC = {"svg.fonttype": "none", "svg.hashsalt": "VirtualContrast"}
# Per format: the PNG at zlib level 1 (about 12 % larger than level 6, and half the time to encode 3 megapixels);
# SVG and PDF without a creation date, so one evaluation gives the same bytes twice, and at 150 dpi for their only
# rasterized parts, the colour bars' gradients (matplotlib rasterizes those against white seams in some viewers,
# by rendering a whole canvas per bar at that dpi; the images are embedded at their own pixels at any dpi).
VECTOR_DPI = 150
SAVE_OPTIONS = {"png": {"pil_kwargs": {"compress_level": 1}},
                "svg": {"metadata": {"Date": None}, "dpi": VECTOR_DPI},
                "pdf": {"metadata": {"CreationDate": None}, "dpi": VECTOR_DPI}}
_OUTLINE = [patheffects.withStroke(linewidth=1.6, foreground="black")]
_MARKER_BOX = {"facecolor": "black", "alpha": 0.6, "edgecolor": "none", "pad": 1.5}


def figure_paths(png_path: str | os.PathLike) -> dict[str, Path]:
    """format -> file of one case's figure: the PNG named by the caller and the SVG and PDF beside it."""
    png_path = Path(png_path)
    return {fmt: png_path.with_suffix(f".{fmt}") for fmt in ("png", "svg", "pdf")}


def write_heatmap_panel(path: str | os.PathLike, le: np.ndarray, des: np.ndarray, synthetic: np.ndarray, *,
                        dpi: int = PANEL_DPI, **figure: Any) -> Path:
    """Write the figure (heatmap_figure, given `figure`'s keywords: mask, title, error_vmax, vmax_source,
    facts) as `path` (PNG at `dpi`) and as SVG and PDF of the same stem, each atomically; return the PNG's
    path."""
    fig = heatmap_figure(le, des, synthetic, **figure)
    paths = figure_paths(path)
    with rc_context(VECTOR_RC):
        for fmt, target in paths.items():
            with atomic_path(target) as tmp:
                fig.savefig(tmp, format=fmt, **{"dpi": dpi, **SAVE_OPTIONS[fmt]})
    return paths["png"]


def heatmap_figure(
    le: np.ndarray,
    des: np.ndarray,
    synthetic: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    title: str = "",
    error_vmax: float | None = None,
    vmax_source: str = "",
    facts: PanelFacts | None = None,
) -> Figure:
    """The figure of one case; images in [0,1], all of one shape (the network's square).

    `error_vmax` fixes the top of the heatmap colour scale, so the figures of
    one evaluation compare (`vmax_source` says how it was chosen); by default
    it is this case's largest error. `facts` (panel_facts.py) crop, mark and
    scale the panels; without them the whole square is shown, unmarked.
    """
    facts = facts or PanelFacts(box=(0, le.shape[0], 0, le.shape[1]))
    r0, r1, c0, c1 = facts.box
    crop = (slice(r0, r1), slice(c0, c1))
    error = np.abs(np.asarray(synthetic, np.float64) - np.asarray(des, np.float64))[crop]
    vmax = float(error_vmax) if error_vmax else max(float(error.max()), 1e-6)
    above = float(np.mean(error > vmax))
    aspect = facts.spacing[1] / facts.spacing[0] if facts.spacing else 1.0
    lesion = mask is not None and bool(np.any(np.asarray(mask)[crop] > 0.5))
    caption = textwrap.wrap(_caption(vmax, error_vmax, vmax_source, above, facts, lesion), CAPTION_CHARS)

    heading = textwrap.wrap(f"{title}  {FIGURE_NOTE}".strip(), TITLE_CHARS)
    layout = _Layout((r1 - r0) * aspect / (c1 - c0), len(caption), len(heading))
    fig = Figure(figsize=(FIGURE_WIDTH, layout.height), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_axes(layout.panel(i)) for i in range(4)]
    grey = [ax.imshow(np.asarray(img)[crop], cmap="gray", vmin=0.0, vmax=1.0, interpolation="none", aspect=aspect)
            for ax, img in zip(axes[:3], (le, des, synthetic))]
    heat = axes[3].imshow(error, cmap="inferno", vmin=0.0, vmax=vmax, interpolation="none", aspect=aspect)
    for ax, name in zip(axes, PANEL_NAMES):
        ax.set_title(name, fontsize=FONT_SIZE + 1, pad=3, y=1.0)  # y given: no search for room on every save
        ax.set_axis_off()
        if lesion:
            outline = ax.contour(np.asarray(mask, np.float64)[crop], levels=[0.5], colors=CONTOUR_COLOUR,
                                 linewidths=0.8)
            outline.set_path_effects(_OUTLINE)
        if facts.marker:
            _mark(ax, facts.marker, facts.chest_wall)
    if facts.spacing:
        _scale_bar(axes[0], facts.spacing[0], c1 - c0, facts.chest_wall)

    grey_bar = fig.colorbar(grey[1], cax=fig.add_axes(layout.bar(0, 3)), orientation="horizontal")
    grey_bar.set_label(_grey_label(facts), fontsize=FONT_SIZE)
    heat_bar = fig.colorbar(heat, cax=fig.add_axes(layout.bar(3, 4)), orientation="horizontal",
                            extend="max" if above else "neither")
    heat_bar.set_label(ERROR_LABEL, fontsize=FONT_SIZE)
    for bar in (grey_bar, heat_bar):
        bar.ax.tick_params(labelsize=FONT_SIZE - 1, length=2, pad=1)
        bar.ax.xaxis.labelpad = 1
    fig.text(0.5, 1 - layout.TOP / layout.height, "\n".join(heading), ha="center", va="top",
             fontsize=FONT_SIZE + 1, linespacing=1.2)
    fig.text(layout.MARGIN / FIGURE_WIDTH, layout.MARGIN / layout.height, "\n".join(caption), ha="left",
             va="bottom", fontsize=FONT_SIZE - 0.5, linespacing=1.3)
    return fig


class _Layout:
    """Fixed positions (inches, turned into figure fractions): the title of `title_lines` lines, four panels
    of height/width `ratio`, the colour bars under them, the caption of `lines` lines. Computed, not found by constrained layout,
    which measured every text twice per file and took longer than drawing the figure."""

    MARGIN, GAP, TOP, TITLE, PANEL_TITLE = 0.08, 0.08, 0.06, 0.2, 0.18
    BAR_GAP, BAR, BAR_TEXT, LINE = 0.08, 0.08, 0.4, 0.115

    def __init__(self, ratio: float, lines: int, title_lines: int = 1) -> None:
        self.panel_width = (FIGURE_WIDTH - 2 * self.MARGIN - 3 * self.GAP) / 4
        self.panel_height = self.panel_width * min(max(ratio, 0.4), 2.5)  # a sliver or strip within reason
        self.caption = self.MARGIN + lines * self.LINE
        self.bar_bottom = self.caption + self.BAR_TEXT
        self.panel_bottom = self.bar_bottom + self.BAR + self.BAR_GAP
        self.height = (self.panel_bottom + self.panel_height + self.PANEL_TITLE + self.TITLE * max(title_lines, 1)
                       + self.TOP)

    def _box(self, left: float, bottom: float, width: float, height: float) -> list[float]:
        return [left / FIGURE_WIDTH, bottom / self.height, width / FIGURE_WIDTH, height / self.height]

    def panel(self, i: int) -> list[float]:
        return self._box(self.MARGIN + i * (self.panel_width + self.GAP), self.panel_bottom,
                         self.panel_width, self.panel_height)

    def bar(self, first: int, stop: int) -> list[float]:
        """Under panels first..stop-1, inset by a tenth of a panel on each side."""
        left = self.MARGIN + first * (self.panel_width + self.GAP) + 0.1 * self.panel_width
        width = (stop - first) * self.panel_width + (stop - first - 1) * self.GAP - 0.2 * self.panel_width
        return self._box(left, self.bar_bottom, width, self.BAR)


def _mark(ax, marker: str, chest_wall: str) -> None:
    """The side and view in the top corner away from the chest wall, where there is air; on a dark box rather
    than outlined, since an outline would turn the text into paths in the SVG."""
    right = chest_wall == "left"
    ax.text(0.97 if right else 0.03, 0.97, marker, transform=ax.transAxes, ha="right" if right else "left",
            va="top", color="white", fontsize=FONT_SIZE, fontweight="bold", bbox=_MARKER_BOX)


def _scale_bar(ax, mm_per_pixel: float, width_pixels: int, chest_wall: str) -> None:
    """The longest SCALE_BAR_MM length within a quarter of the panel, at its bottom, away from the chest wall."""
    fits = [mm for mm in SCALE_BAR_MM if mm / mm_per_pixel <= width_pixels / 4]
    mm = fits[-1] if fits else SCALE_BAR_MM[0]
    bar = AnchoredSizeBar(ax.transData, mm / mm_per_pixel, f"{mm} mm", "lower right" if chest_wall == "left"
                          else "lower left", pad=0.3, color="white", frameon=False, size_vertical=0,
                          fontproperties={"size": FONT_SIZE})
    ax.add_artist(bar)


def _grey_label(facts: PanelFacts) -> str:
    """What the grey panels show: each image's intensity window mapped to [0, 1], with the windows known."""
    if not (facts.des_window and facts.le_window):
        return "normalized intensity [0, 1]\neach image by its intensity window"
    (dlo, dhi), (llo, lhi) = facts.des_window, facts.le_window
    return (f"normalized intensity [0, 1]\nDES and synthetic: DES window {dlo:g}..{dhi:g}; "
            f"LE: LE window {llo:g}..{lhi:g}")


def _caption(vmax: float, error_vmax: float | None, vmax_source: str, above: float, facts: PanelFacts,
             lesion: bool) -> str:
    """The figure's small print: the error scale and how much of it clips, and what is not shown."""
    if error_vmax:
        scale = (f"Error scale clipped at {vmax:.3g} ({vmax_source or 'one scale for all images'}): "
                 f"{100 * above:.1f} % of this image's shown pixels lie above.")
    else:
        scale = f"Error scale 0 to {vmax:.3g}, this image's largest error."
    notes = [scale, "Lesion outlined in cyan." if lesion else ""]
    notes.append("" if facts.spacing else NO_SCALE_BAR)
    notes.append("" if facts.marker else "Side and view unknown.")
    return " ".join(n for n in notes if n)
