"""Integer translation of a DES onto its LE by maximal mutual information: 004's two-level search.

Why: in CDD-CESM the LE (DM) and DES (CM) JPEGs of one breast are not
pixel-aligned; 004 (Perre et al., "Image Registration") found the mismatch to
be a pure translation of at most 10 px in x and y and registered each pair by
mutual information with the LE as reference and the DES floating: level 1
searches -10..+10 px in steps of 5 in both axes (25 points), level 2 searches
exhaustively the 5x5 pixel neighbourhood of the best level-1 point. Offsets
are whole pixels, so the aligned DES is a copy of shifted pixels, never an
interpolation.

The offset (x, y) means aligned DES[r, c] = DES[r + y, c + x]: the convention
of the manifest's des_offset_x/_y. Each candidate is scored on
`cases.shift_to_le(des, offset)`, the very function that applies the stored
offset when a case is read, so the offset found and its use cannot disagree.

The metric is SimpleITK's Mattes mutual information (which returns -MI; MI is
reported positive), evaluated on the same pixels for every candidate: the image
less a margin of `search` px on each side (inside it every candidate has real
DES pixels), every `stride`-th row and column of it. The stride is 1 up to
MAX_SAMPLES pixels and grows for larger images (4 for a 2000x3000 image):
a fixed subsample of full-resolution pixels, not a downsampled image, so the
search still resolves single pixels, and the result is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from VirtualContrastTraining.data.cases import shift_to_le
from VirtualContrastTraining.errors import InputError

SEARCH_PX = 10         # 004: the mismatch never exceeded 10 px in x or y
COARSE_STEP_PX = 5     # 004: level-1 grid step; level 2 is the step x step neighbourhood of the best point
HISTOGRAM_BINS = 50    # Mattes joint histogram bins (SimpleITK's usual choice)
MAX_SAMPLES = 500_000  # pixels scored per candidate; above this, every stride-th row and column


@dataclass(frozen=True)
class RegistrationResult:
    offset: tuple[int, int]  # (x, y): aligned DES[r, c] = DES[r + y, c + x], as Case.des_offset / shift_to_le
    mi: float                # mutual information (nats, Mattes estimate) at `offset`
    mi_unregistered: float   # the same at (0, 0)
    stride: int              # every stride-th row and column of the scored window was sampled
    evaluations: int         # candidate offsets scored


def on_bound(offset: tuple[int, int], search: int = SEARCH_PX) -> bool:
    """The best offset lies on the edge of a +-`search` search: the true one may lie beyond (search wider)."""
    return search in (abs(offset[0]), abs(offset[1]))


def sample_stride(shape: tuple[int, int], search: int = SEARCH_PX) -> int:
    """Row and column step that keeps the scored window at or below MAX_SAMPLES pixels."""
    rows, cols = shape
    n = max(rows - 2 * search, 1) * max(cols - 2 * search, 1)
    return max(1, math.ceil(math.sqrt(n / MAX_SAMPLES)))


class _MutualInformation:
    """Mattes MI between the fixed LE window and a shifted DES, on fixed sample pixels."""

    def __init__(self, fixed: np.ndarray, moving: np.ndarray, search: int, bins: int):
        self.sitk = sitk
        self.moving = moving
        self.shape = fixed.shape
        rows, cols = fixed.shape
        self.stride = sample_stride(fixed.shape, search)
        self.window = (slice(search, rows - search, self.stride), slice(search, cols - search, self.stride))
        sampled = fixed[self.window]
        if np.ptp(sampled) == 0:
            raise InputError(None, "the LE is uniform: no structure to register on")
        self.fixed = sitk.GetImageFromArray(np.ascontiguousarray(sampled, dtype=np.float32))
        self.method = sitk.ImageRegistrationMethod()
        self.method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
        self.method.SetMetricSamplingStrategy(self.method.NONE)  # every pixel of the (strided) window
        self.method.SetInterpolator(sitk.sitkNearestNeighbor)    # identity transform: pixel onto pixel
        self.method.SetInitialTransform(sitk.TranslationTransform(2))
        self.values: dict[tuple[int, int], float] = {}

    def __call__(self, offset: tuple[int, int]) -> float:
        if offset not in self.values:
            sampled = shift_to_le(self.moving, offset, self.shape)[self.window]
            if np.ptp(sampled) == 0:
                raise InputError(None, "the DES is uniform: no structure to register on")
            moving = self.sitk.GetImageFromArray(np.ascontiguousarray(sampled, dtype=np.float32))
            try:
                self.values[offset] = -float(self.method.MetricEvaluate(self.fixed, moving))
            except RuntimeError as exc:  # ITK's message, last line: the reason without the C++ trace
                raise InputError(None, f"mutual information failed ({str(exc).strip().splitlines()[-1][:160]})") \
                    from None
        return self.values[offset]


def register_translation(fixed_le: np.ndarray, moving_des: np.ndarray, search: int = SEARCH_PX,
                         coarse: int = COARSE_STEP_PX, bins: int = HISTOGRAM_BINS) -> RegistrationResult:
    """The integer (x, y) within +-`search` px that maximises the MI of shift_to_le(moving_des, (x, y)) with
    fixed_le: level 1 on the grid {-k*coarse .. k*coarse}^2 (k = search // coarse), level 2 over the
    coarse x coarse neighbourhood of its best point, inside +-search (004). Ties go to the smaller shift.

    The DES may differ in size from the LE: both share their top-left corner
    (shift_to_le puts the DES on the LE's grid). InputError when an image is
    not 2-D, is too small for the search, or is uniform.
    """
    fixed_le, moving_des = np.asarray(fixed_le), np.asarray(moving_des)
    if fixed_le.ndim != 2 or moving_des.ndim != 2:
        raise InputError(None, f"LE {fixed_le.shape} and DES {moving_des.shape} must be 2-D images")
    if min(fixed_le.shape) <= 2 * search:
        raise InputError(None, f"image {fixed_le.shape} too small for a +-{search} px search")
    mi = _MutualInformation(fixed_le, moving_des, search, bins)

    def best(candidates) -> tuple[int, int]:
        return max(candidates, key=lambda o: (mi(o), -(abs(o[0]) + abs(o[1]))))

    k = search // coarse
    grid = [i * coarse for i in range(-k, k + 1)]
    bx, by = best([(x, y) for y in grid for x in grid])
    half = coarse // 2
    near = [(bx + dx, by + dy) for dy in range(-half, half + 1) for dx in range(-half, half + 1)
            if abs(bx + dx) <= search and abs(by + dy) <= search]
    offset = best(near)
    return RegistrationResult(offset=offset, mi=mi(offset), mi_unregistered=mi((0, 0)), stride=mi.stride,
                              evaluations=len(mi.values))
