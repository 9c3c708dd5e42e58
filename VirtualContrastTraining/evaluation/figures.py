"""The HTML report's figures, each rendered to PNG bytes in memory (report.py embeds them as data URIs).

Box plots show the spread of the per-image values behind the tables' mean ±
sd (001 compares models and ACR densities by their per-image distributions);
the intensity histogram compares real and synthetic DES pixel values over the
breast, as 003's Fig. 5 ("colour distribution matching").
Names are never cut short: long model names wrap on the axis, and legends sit
below the axes, wrapped, so every model of a report is named in full.
Each function returns the Figure (tests read its labels back); `to_png` renders it.
Uses matplotlib's object API with the Agg canvas, like heatmap_panels.py: no pyplot,
no display, no global figure state, so it runs in a headless process.
"""

from __future__ import annotations

import inspect
import io
import math
import textwrap
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

DPI = 80
PANEL_WIDTH_INCHES = 3.0
BOX_HEIGHT_INCHES = 0.42     # per box: the figure grows with the number of models, labels never overlap
LABEL_CHARS = 28             # longer names wrap onto further lines, on the axis and in legends
# matplotlib 3.10 renamed boxplot's vert=False to orientation="horizontal" (vert is deprecated there).
_HORIZONTAL = ({"orientation": "horizontal"} if "orientation" in inspect.signature(Axes.boxplot).parameters
               else {"vert": False})


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def wrap(label: str) -> str:
    """A name in full, on lines of at most LABEL_CHARS characters (a longer word stays whole)."""
    return "\n".join(textwrap.wrap(label, LABEL_CHARS, break_long_words=False)) or label


def _finite(values: Sequence[float] | None) -> list[float]:
    return [v for v in values or () if v is not None and math.isfinite(v)]


def _panels(groups: int, metrics: Sequence[tuple[str, str]], extra_height: float = 0.0) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(PANEL_WIDTH_INCHES * len(metrics) + 1.8,
                          1.1 + extra_height + BOX_HEIGHT_INCHES * max(groups, 2)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, np.atleast_1d(fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0])


def _style(ax: Axes, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))   # readable tick labels in narrow panels
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8)


def _boxes(ax: Axes, data: Sequence[list[float]], positions: Sequence[float], colour: str, width: float) -> bool:
    """Horizontal boxes of the non-empty series at their positions; False when every series is empty."""
    shown = [(d, p) for d, p in zip(data, positions) if d]
    if shown:
        ax.boxplot([d for d, _ in shown], positions=[p for _, p in shown], **_HORIZONTAL,
                   widths=width, patch_artist=True, showfliers=True, manage_ticks=False,
                   boxprops={"facecolor": colour, "edgecolor": "#2b5d8a"},
                   medianprops={"color": "#b2182b", "linewidth": 1.5},
                   flierprops={"markersize": 3, "markeredgecolor": "#555555"})
    return bool(shown)


def _no_values(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes, color="#777777")


def box_plots(values: dict[str, dict[str, Sequence[float]]], metrics: Sequence[tuple[str, str]], *,
              title: str = "") -> Figure:
    """Horizontal box plots, one panel per metric, one box per group (model or density).

    `values[group][metric]` are that group's per-image values; non-finite ones
    (PSNR of a perfect prediction) are left out, like the tables' means. A
    group without values for a metric gets an empty row, so rows line up
    across panels. Horizontal boxes keep long model names readable.
    """
    groups = list(values)
    lines = sum(wrap(g).count("\n") for g in groups)
    fig, axes = _panels(len(groups) + lines // 2, metrics)
    positions = np.arange(len(groups))[::-1] + 1.0   # first group on top
    for ax, (key, name) in zip(axes, metrics):
        if not _boxes(ax, [_finite(values[g].get(key)) for g in groups], positions, "#c6dbef", 0.6):
            _no_values(ax)
        _style(ax, name)
    axes[0].set_yticks(positions, [wrap(g) for g in groups])
    axes[0].set_ylim(0.4, len(groups) + 0.6)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def grouped_box_plots(values: dict[str, dict[str, dict[str, Sequence[float]]]], metrics: Sequence[tuple[str, str]],
                      *, title: str = "") -> Figure:
    """Box plots of several series per category: one row per category (ACR density), one coloured box per
    series (model) within it, one panel per metric, and a legend below the panels naming every series in full.

    `values[category][series][metric]` are the per-image values; a series without values in a category
    leaves its slot empty, so the colours line up across rows and panels.
    """
    categories = list(values)
    series = list(dict.fromkeys(s for c in categories for s in values[c]))
    colours = [f"C{i % 10}" for i in range(len(series))]
    width = 0.8 / len(series)
    legend_lines = sum(wrap(s).count("\n") + 1 for s in series)
    fig, axes = _panels(len(categories) * max(1, len(series) // 2), metrics,
                        extra_height=0.18 * legend_lines / min(len(series), 3))
    centres = np.arange(len(categories))[::-1] + 1.0   # first category on top
    offsets = (np.arange(len(series))[::-1] - (len(series) - 1) / 2) * width   # first series on top in its row
    for ax, (key, name) in zip(axes, metrics):
        drawn = [_boxes(ax, [_finite(values[c].get(s, {}).get(key)) for c in categories], centres + offset, colour,
                        width * 0.85)
                 for s, colour, offset in zip(series, colours, offsets)]
        if not any(drawn):
            _no_values(ax)
        _style(ax, name)
    axes[0].set_yticks(centres, [wrap(c) for c in categories])
    axes[0].set_ylim(0.5, len(categories) + 0.5)
    handles = [Patch(facecolor=c, edgecolor="#2b5d8a", label=wrap(s)) for s, c in zip(series, colours)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(series), 3), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def histogram_figure(bin_lo: Sequence[float], bin_hi: Sequence[float], counts: dict[str, Sequence[float]], *,
                     reference: str, title: str = "") -> bytes:
    """Step histograms of pixel-intensity frequency (each series sums to 1), log y, `reference` drawn in black.

    Frequencies rather than counts, so series over different numbers of pixels
    compare; empty bins are not drawn on the log axis.
    """
    edges = np.append(np.asarray(bin_lo, dtype=np.float64), float(bin_hi[-1]))
    fig = Figure(figsize=(8.0, 4.0 + 0.16 * sum(wrap(n).count("\n") + 1 for n in counts) / 2), dpi=DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, series in counts.items():
        c = np.asarray(series, dtype=np.float64)
        total = c.sum()
        if total <= 0:
            continue
        freq = np.where(c > 0, c / total, np.nan)
        style = {"color": "black", "linewidth": 2.0} if name == reference else {"linewidth": 1.3}
        ax.stairs(freq, edges, label=wrap(name), **style)
    ax.set_yscale("log")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("intensity (preprocessed, [0, 1])")
    ax.set_ylabel("fraction of breast pixels")
    ax.grid(color="#dddddd", linewidth=0.6)
    fig.legend(loc="outside lower center", ncols=min(len(counts), 2), fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
