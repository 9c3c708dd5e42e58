"""One case's images as the pipelines read them: the manifest's windows, the DES on the LE's pixel grid, the
lesion mask in the LE's geometry.

Shared by the resize pipeline (prepared.py), 000's patch pipeline (patches.py), CDD-CESM registration and
the Slicer module's case loading.
"""

from __future__ import annotations

import numpy as np

from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import read_image
from VirtualContrastTraining.data.manifest import Case
from VirtualContrastTraining.data.segmentation import read_lesion_mask
from VirtualContrastTraining.errors import InputError

# The share of the LE a registered DES must still cover after its des_offset: 004's registration moves a DES by
# at most 10 px, so a pair that covers less was given a wrong offset and would train on a blank target.
MIN_OFFSET_COVER = 0.5


def case_lesion_mask(case: Case, le_image: Image) -> np.ndarray:
    """The case's lesion mask (bool) on the LE's grid; shared by both pipelines."""
    return np.asarray(read_lesion_mask(case.lesion_path, reference=le_image)) > 0


def case_window(case: Case, which: str) -> tuple[float, float] | None:
    """The manifest's (center, width) window of the case's LE or DES; a malformed one is an InputError naming the file."""
    try:
        return case.window(which)
    except ValueError:
        center, width = getattr(case, f"{which}_window_center"), getattr(case, f"{which}_window_width")
        raise InputError(getattr(case, f"{which}_path"),
                         f"case {case.case_id}: window center/width {center!r}/{width!r} are not numbers") from None


def shift_to_le(des: np.ndarray, offset: tuple[int, int], shape: tuple[int, int] | None = None) -> np.ndarray:
    """The DES moved onto the LE's pixel grid (`shape`, default the DES's own) by the integer translation
    `offset` = (x, y): out[r, c] = des[r + y, c + x]; pixels that come from outside the DES get its
    minimum (its background). Both images share their top-left corner before the shift: CDD-CESM's LE
    and DES differ in size (004: 1393x2129 against 1390x2341) but by at most 10 px in position."""
    x, y = offset
    rows, cols = shape or des.shape
    if not (x or y) and (rows, cols) == des.shape:
        return des
    out = np.full((rows, cols), des.min(), dtype=des.dtype)
    r0, r1 = max(-y, 0), min(rows, des.shape[0] - y)
    c0, c1 = max(-x, 0), min(cols, des.shape[1] - x)
    if r0 < r1 and c0 < c1:
        out[r0:r1, c0:c1] = des[r0 + y:r1 + y, c0 + x:c1 + x]
    return out


def _check_offset_cover(case: Case, le_shape: tuple[int, int], des_shape: tuple[int, int]) -> None:
    """InputError naming the DES when its des_offset leaves less than MIN_OFFSET_COVER of the LE covered."""
    x, y = case.des_offset()
    rows = max(0, min(le_shape[0], des_shape[0] - y) - max(-y, 0))
    cols = max(0, min(le_shape[1], des_shape[1] - x) - max(-x, 0))
    cover = rows * cols / (le_shape[0] * le_shape[1])
    if cover < MIN_OFFSET_COVER:
        raise InputError(case.des_path, f"case {case.case_id}: des_offset ({x}, {y}) leaves {cover:.0%} of the LE "
                                        f"covered by the DES (at least {MIN_OFFSET_COVER:.0%} needed)")


def read_case_images(case: Case) -> tuple[Image, Image | None]:
    """(LE, DES or None) of one case. A registered pair (des_offset set: CDD-CESM, whose LE and DES are
    neither pixel-aligned nor of one size) gets its DES moved onto the LE's grid by the offset; any other
    DES must be the LE's size (every pipeline needs that), else InputError."""
    le_image = read_image(case.le_path)
    if not case.des_path:
        return le_image, None
    des_image = read_image(case.des_path)
    if case.des_offset_x or case.des_offset_y:
        _check_offset_cover(case, le_image.shape, des_image.shape)
        aligned = shift_to_le(des_image.array, case.des_offset(), le_image.shape)
        return le_image, Image(aligned, le_image.spacing, le_image.origin, le_image.direction, dict(des_image.meta))
    if des_image.shape != le_image.shape:
        (lr, lc), (dr, dc) = le_image.shape, des_image.shape
        raise InputError(
            case.des_path,
            f"DES is {dc}x{dr} pixels but its LE {case.le_path} is {lc}x{lr}: a pair must have the same size",
        )
    return le_image, des_image
