"""What a heatmap figure needs to know about its case beyond the pixels: where the breast lies in the
network's padded square, how large a pixel is, the side and view, and the intensity windows.

The network sees each image padded to a square on the side away from the
breast, then resized (data/preprocessing.py). A figure of that square is mostly
black padding and has no physical size; these facts let it show the breast
alone, at its native aspect ratio, with a scale bar in mm when the pixel
spacing is known. No matplotlib here: evaluate computes the facts while its
data are at hand, heatmap_panels.py draws them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from VirtualContrastTraining.data.dicom_read import read_header
from VirtualContrastTraining.data.imageio import BITMAP_SUFFIXES, is_dicom_file
from VirtualContrastTraining.data.preprocessing import PreprocessParams, breast_mask

# Kept around the breast's bounding box, as a share of the network's image side: the skin line stays visible.
CROP_MARGIN = 0.03
# What SimpleITK reports for a bitmap without a resolution (every PNG, JPEG, BMP): no physical size at all.
READER_DEFAULT_SPACING = (1.0, 1.0)


@dataclass(frozen=True)
class PanelFacts:
    box: tuple[int, int, int, int]                 # rows r0:r1, columns c0:c1 of the network image to show
    spacing: tuple[float, float] | None = None     # mm (x, y) of one network pixel; None: unknown
    laterality: str = ""                           # "L" / "R" / "" (unknown)
    view: str = ""                                 # "CC" / "MLO" / "" (unknown)
    chest_wall: str = "left"                       # image side of the chest wall: markers go to the other
    le_window: tuple[float, float] | None = None   # LE intensities shown as 0 and 1
    des_window: tuple[float, float] | None = None  # DES intensities shown as 0 and 1

    @property
    def marker(self) -> str:
        """The radiographic marker, e.g. "L CC"; "" when neither side nor view is known."""
        return " ".join(part for part in (self.laterality, self.view) if part)


def native_spacing(path: str | os.PathLike) -> tuple[float, float] | None:
    """The pixel spacing (mm, x then y) an image file states, read from its header, or None when it states
    none: a DICOM without (Imager)PixelSpacing, and a bitmap whose reader gives the 1 mm default (PNG and
    JPEG carry no spacing SimpleITK reads; a TIFF may carry a resolution)."""
    path = Path(path)
    if is_dicom_file(path):
        info = read_header(path)
        return tuple(info.spacing) if info.spacing_source and info.spacing else None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    spacing = tuple(float(s) for s in reader.GetSpacing()[:2])
    if path.name.lower().endswith(BITMAP_SUFFIXES) and spacing == READER_DEFAULT_SPACING:
        return None
    return spacing


def network_spacing(native: tuple[float, float] | None, params: PreprocessParams,
                    size: int) -> tuple[float, float] | None:
    """The spacing of one pixel of the image the network saw: the native spacing times the resize factor
    (padded square side / network side); None stays None."""
    if native is None:
        return None
    factor = params.padded_size / size
    return native[0] * factor, native[1] * factor


def content_box(params: PreprocessParams, size: int) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1): the part of the network's square that holds the image, not the padding."""
    rows, cols = params.original_shape
    scale = size / params.padded_size
    if params.pad_side == "left":
        return 0, size, min(size - 1, round((params.padded_size - cols) * scale)), size
    if params.pad_side == "right":
        return 0, size, 0, max(1, round(cols * scale))
    if params.pad_side == "bottom":
        return 0, max(1, round(rows * scale)), 0, size
    return 0, size, 0, size


def breast_box(le: np.ndarray, params: PreprocessParams) -> tuple[int, int, int, int]:
    """The breast's bounding box (Otsu on the LE, as the "breast" metrics region) with CROP_MARGIN, inside
    the content box; the content box alone when the LE shows no breast."""
    size = le.shape[-1]
    r0, r1, c0, c1 = content_box(params, size)
    inside = np.zeros(le.shape, bool)
    inside[r0:r1, c0:c1] = breast_mask(le)[r0:r1, c0:c1]
    if not inside.any():
        return r0, r1, c0, c1
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    margin = round(CROP_MARGIN * size)
    return (max(r0, rows[0] - margin), min(r1, rows[-1] + 1 + margin),
            max(c0, cols[0] - margin), min(c1, cols[-1] + 1 + margin))


def _chest_wall(pad_side: str, laterality: str) -> str:
    """The image side of the chest wall: opposite the padding; for an unpadded or bottom-padded image the
    display convention of the laterality (R: right), left when that is unknown too."""
    if pad_side in ("left", "right"):
        return "left" if pad_side == "right" else "right"
    return "right" if laterality == "R" else "left"


def panel_facts(prepared, size: int, native: tuple[float, float] | None) -> PanelFacts:
    """The facts of one prepared case (data/prepared.PreparedCase) at network side `size`, with the native
    spacing of its LE file (native_spacing)."""
    case, params = prepared.case, prepared.params
    lat = (case.laterality or "").strip().upper()[:1]
    return PanelFacts(
        box=breast_box(prepared.le, params),
        spacing=network_spacing(native, params, size),
        laterality=lat if lat in ("L", "R") else "",
        view=(case.view or "").strip().upper(),
        chest_wall=_chest_wall(params.pad_side, lat),
        le_window=params.window,
        des_window=prepared.des_params.window if prepared.des_params else None,
    )
