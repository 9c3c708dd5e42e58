"""What a run shows while it trains: progress.png, a few validation cases per epoch, TensorBoard event files.

A researcher should see a run learn before it ends: nnU-Net writes
`progress.png` (loss curves), pix2pix an HTML page of sample images per
epoch. These are outputs, never state: resume rewrites progress.png from
history.csv, adds the epochs it trains to samples/, and appends to the
TensorBoard files. Figures use matplotlib's object API with the Agg canvas (no
pyplot, no display), so a headless run never touches global figure state.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np

from VirtualContrastTraining.atomic import atomic_path, write_text_atomic
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.synthetic_wording import FIGURE_NOTE

PROGRESS_PNG = "progress.png"
SAMPLES_DIR = "samples"
SAMPLES_INDEX = "index.html"
TENSORBOARD_DIR = "tensorboard"
#: How many validation cases are rendered each epoch: the first ones by case id, the same every epoch.
N_SAMPLES = 3
# Columns of history.csv that are not a training loss.
_NOT_LOSSES = ("epoch", "steps", "val_l1", "lr", "epoch_time_s")
_SAMPLE_NAME = re.compile(r"epoch_(\d+)_(.+)\.png$")


def write_progress_png(path: Path, history: list[dict[str, Any]]) -> Path:
    """Losses, validation L1 and learning rate per epoch (history.csv's rows), one panel each, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib
    from matplotlib.figure import Figure  # lazy: matplotlib
    from matplotlib.ticker import MaxNLocator  # lazy: matplotlib

    epochs = [row["epoch"] for row in history]
    # fixed margins, not a constrained layout, and a legend at a fixed place: a few times faster, every epoch
    fig = Figure(figsize=(12.0, 3.6), dpi=100)
    fig.subplots_adjust(left=0.065, right=0.98, bottom=0.14, top=0.9, wspace=0.25)
    FigureCanvasAgg(fig)
    losses, val, lr = fig.subplots(1, 3)
    for name in dict.fromkeys(k for row in history for k in row if k not in _NOT_LOSSES):
        losses.plot(epochs, [row.get(name, np.nan) for row in history], marker=".", label=name)
    losses.set(title="training losses (epoch means)", xlabel="epoch")
    if all(v > 0 for line in losses.get_lines() for v in line.get_ydata() if np.isfinite(v)):
        losses.set_yscale("log")  # the total generator loss is tens of times its smallest terms
    losses.legend(fontsize=7, ncol=2, loc="upper right")
    validated = [(row["epoch"], row["val_l1"]) for row in history if row.get("val_l1") is not None]
    if validated:
        val.plot(*zip(*validated), marker="o", color="tab:red")
        best = min(validated, key=lambda pair: pair[1])
        val.annotate(f"best {best[1]:.4g} (epoch {best[0]})", best, textcoords="offset points", xytext=(0, 8),
                     fontsize=8, ha="center")
    val.set(title="validation L1 |G(LE) - DES|", xlabel="epoch")
    rates = [row["lr"] for row in history]
    lr.plot(epochs, rates, marker=".", color="tab:green")
    # from 0: a constant rate reads as constant, not as a line inside a 1e-6-wide axis
    lr.set(title="learning rate", xlabel="epoch", ylim=(0, 1.15 * max(max(rates), 1e-12)))
    lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    for ax in (losses, val, lr):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def sample_file_name(epoch: int, case_id: str) -> str:
    """samples/epoch_NNN_<case>.png; characters a file name cannot hold in the case id become "_"."""
    return f"epoch_{epoch:03d}_{re.sub(r'[^A-Za-z0-9._-]', '_', case_id)}.png"


def write_sample_png(path: Path, le: np.ndarray, synthetic: np.ndarray, des: np.ndarray, *, title: str,
                     value_range: tuple[float, float]) -> Path:
    """LE | synthetic DES | DES of one validation case, marked synthetic, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib
    from matplotlib.figure import Figure  # lazy: matplotlib

    fig = Figure(figsize=(7.5, 2.9), dpi=80)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.82, wspace=0.04)
    FigureCanvasAgg(fig)
    for ax, img, name in zip(fig.subplots(1, 3), (le, synthetic, des), ("LE", "synthetic DES", "DES (target)")):
        ax.imshow(img, cmap="gray", vmin=value_range[0], vmax=value_range[1])
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"{title}  {FIGURE_NOTE}", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def write_samples_index(samples_dir: Path) -> Path:
    """samples/index.html: every sample PNG in the folder, newest epoch first, with relative links.

    Built from the folder's files, so a resumed run lists the epochs of
    both processes without keeping any state.
    """
    rows: dict[int, list[str]] = {}
    for png in samples_dir.glob("epoch_*.png"):
        match = _SAMPLE_NAME.match(png.name)
        if match:
            rows.setdefault(int(match.group(1)), []).append(png.name)
    sections = []
    for epoch in sorted(rows, reverse=True):
        images = "".join(f'<figure><a href="{html.escape(name)}"><img src="{html.escape(name)}" alt="'
                         f'{html.escape(name)}"></a><figcaption>{html.escape(name)}</figcaption></figure>'
                         for name in sorted(rows[epoch]))
        sections.append(f"<h2>Epoch {epoch}</h2>\n<div>{images}</div>")
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Validation samples</title>\n"
            "<style>body{font-family:sans-serif} figure{display:inline-block;margin:4px} img{max-width:600px}"
            "</style></head>\n<body><h1>Validation samples per epoch</h1>\n"
            f"<p>LE | synthetic DES | DES of fixed validation cases. {html.escape(FIGURE_NOTE)}</p>\n"
            + "\n".join(sections) + "\n</body></html>\n")
    path = samples_dir / SAMPLES_INDEX
    write_text_atomic(path, page)
    return path


def require_tensorboard():
    """torch's SummaryWriter; InputError naming the package when it is not installed (checked before a run
    writes anything)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # lazy: torch
    except ImportError:
        raise InputError(None, "--tensorboard needs the tensorboard package (pip install tensorboard)") from None
    return SummaryWriter


def tensorboard_writer(run_dir: Path, purge_step: int):
    """A SummaryWriter on <run>/tensorboard; `purge_step` drops what a killed run logged after its checkpoint."""
    return require_tensorboard()(log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=purge_step or None)
