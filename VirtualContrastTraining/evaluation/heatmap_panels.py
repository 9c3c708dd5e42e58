"""Error heatmap panels: LE | DES | synthetic | |synthetic - DES|, one PNG per case.

Rofena et al. 2025 show such heatmaps to make visible where a model errs, in
particular inside the lesion (outlined here in cyan, which stands out on the
inferno colour map, when a mask exists).
Uses matplotlib's object API with the Agg canvas (no pyplot, no display), so it
runs in a headless process and never touches global figure state.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from VirtualContrastTraining.atomic import atomic_path
from VirtualContrastTraining.synthetic_wording import FIGURE_NOTE

PANEL_INCHES = (10.0, 3.0)   # four images side by side plus a colour bar
PANEL_DPI = 80


def write_heatmap_panel(
    path: str | os.PathLike,
    le: np.ndarray,
    des: np.ndarray,
    synthetic: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    title: str = "",
    error_vmax: float | None = None,
    dpi: int = PANEL_DPI,
) -> Path:
    """Write the panel atomically as PNG; images in [0,1], all of one shape.

    `error_vmax` fixes the top of the heatmap colour scale, so panels of one
    report can be compared; by default it is this case's largest error.
    """
    error = np.abs(np.asarray(synthetic, dtype=np.float64) - np.asarray(des, dtype=np.float64))
    vmax = float(error_vmax) if error_vmax else max(float(error.max()), 1e-6)

    fig = Figure(figsize=PANEL_INCHES, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 4)
    for ax, img, name in zip(axes[:3], (le, des, synthetic), ("LE", "DES (target)", "synthetic DES")):
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(name, fontsize=9)
    heat = axes[3].imshow(error, cmap="inferno", vmin=0.0, vmax=vmax)
    axes[3].set_title("|synthetic - DES|", fontsize=9)
    if mask is not None and np.any(np.asarray(mask) > 0.5):
        axes[3].contour(np.asarray(mask, dtype=np.float64), levels=[0.5], colors="cyan", linewidths=1.0)
    for ax in axes:
        ax.set_axis_off()
    fig.colorbar(heat, ax=axes[3], fraction=0.046)
    fig.suptitle(f"{title}  {FIGURE_NOTE}".strip(), fontsize=9)

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
