"""The HTML report's figures, each rendered to PNG bytes in memory (report.py embeds them as data URIs).

Box plots show the spread of the per-image values behind the tables' mean ±
sd (001 compares models and ACR densities by their per-image distributions);
the intensity histogram compares real and synthetic DES pixel values over the
breast, as 003's Fig. 5 ("colour distribution matching").
Uses matplotlib's object API with the Agg canvas, like heatmap_panels.py: no pyplot,
no display, no global figure state, so it runs in a headless process.
"""

from __future__ import annotations

import inspect
import io
import math
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 80
PANEL_WIDTH_INCHES = 3.0
BOX_HEIGHT_INCHES = 0.42     # per box: the figure grows with the number of models, labels never overlap
LABEL_CHARS = 28             # longer model names are shortened on the axis (the tables carry them in full)
# matplotlib 3.10 renamed boxplot's vert=False to orientation="horizontal" (vert is deprecated there).
_HORIZONTAL = ({"orientation": "horizontal"} if "orientation" in inspect.signature(Axes.boxplot).parameters
               else {"vert": False})


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def box_plots(values: dict[str, dict[str, Sequence[float]]], metrics: Sequence[tuple[str, str]], *,
              title: str = "") -> bytes:
    """Horizontal box plots, one panel per metric, one box per group (model or density).

    `values[group][metric]` are that group's per-image values; non-finite ones
    (PSNR of a perfect prediction) are left out, like the tables' means. A
    group without values for a metric gets an empty row, so rows line up
    across panels. Horizontal boxes keep long model names readable.
    """
    groups = list(values)
    fig = Figure(figsize=(PANEL_WIDTH_INCHES * len(metrics) + 1.8, 1.1 + BOX_HEIGHT_INCHES * max(len(groups), 2)),
                 dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0])
    positions = np.arange(len(groups))[::-1] + 1.0   # first group on top
    for ax, (key, name) in zip(axes, metrics):
        data = [[v for v in values[g].get(key, ()) if v is not None and math.isfinite(v)] for g in groups]
        shown = [(d, p) for d, p in zip(data, positions) if d]
        if shown:
            ax.boxplot([d for d, _ in shown], positions=[p for _, p in shown], **_HORIZONTAL,
                       widths=0.6, patch_artist=True, showfliers=True,
                       boxprops={"facecolor": "#c6dbef", "edgecolor": "#2b5d8a"},
                       medianprops={"color": "#b2182b", "linewidth": 1.5},
                       flierprops={"markersize": 3, "markeredgecolor": "#555555"})
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes, color="#777777")
        ax.set_title(name, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))   # readable tick labels in narrow panels
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(positions, [_short(g) for g in groups])
    axes[0].set_ylim(0.4, len(groups) + 0.6)
    if title:
        fig.suptitle(title, fontsize=10)
    return _png(fig)


def histogram_figure(bin_lo: Sequence[float], bin_hi: Sequence[float], counts: dict[str, Sequence[float]], *,
                     reference: str, title: str = "") -> bytes:
    """Step histograms of pixel-intensity frequency (each series sums to 1), log y, `reference` drawn in black.

    Frequencies rather than counts, so series over different numbers of pixels
    compare; empty bins are not drawn on the log axis.
    """
    edges = np.append(np.asarray(bin_lo, dtype=np.float64), float(bin_hi[-1]))
    fig = Figure(figsize=(8.0, 4.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, series in counts.items():
        c = np.asarray(series, dtype=np.float64)
        total = c.sum()
        if total <= 0:
            continue
        freq = np.where(c > 0, c / total, np.nan)
        style = {"color": "black", "linewidth": 2.0} if name == reference else {"linewidth": 1.3}
        ax.stairs(freq, edges, label=_short(name), **style)
    ax.set_yscale("log")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("intensity (preprocessed, [0, 1])")
    ax.set_ylabel("fraction of breast pixels")
    ax.grid(color="#dddddd", linewidth=0.6)
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    return _png(fig)
