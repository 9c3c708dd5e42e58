"""A 2-D image that carries its geometry, so geometry is never guessed again downstream.

Conventions (those of ITK/SimpleITK, DICOM and NRRD files on disk):
- `array` is (rows, cols); row index = y, column index = x.
- `spacing` is (x, y) = (column spacing, row spacing) in mm.
- `origin` is the (x, y, z) position in mm of the centre of pixel (0, 0), LPS.
- `direction` is the 3x3 direction cosine matrix, row-major, as a 9-tuple.
A mammogram is one slice; a 2-D image is handled by SimpleITK as a 3-D image
with one slice so that its origin and direction survive NRRD round trips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import SimpleITK as sitk

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
# The largest side, in pixels, of an image any reader accepts: three times the largest mammography detector
# (about 4800 x 6000 at 50 um) and digitised films, yet small enough that the float copies the pipelines make
# fit in memory. Checked from the file's header, before its pixels are decoded.
MAX_SIDE = 16384


def size_problem(cols: int, rows: int) -> str | None:
    """Why an image of cols x rows pixels cannot be read, or None when it can."""
    if cols > MAX_SIDE or rows > MAX_SIDE:
        return f"image is {cols}x{rows} pixels, larger than the {MAX_SIDE} pixels per side this reader accepts"
    if cols < 1 or rows < 1:
        return f"image is {cols}x{rows} pixels: no pixels"
    return None


def finite_problem(array: np.ndarray) -> str | None:
    """Why pixels that are NaN or infinite cannot be used (None when every pixel is finite): a NaN stretched,
    resized and averaged spreads over the whole synthetic image or turns a validation loss into NaN."""
    if not np.issubdtype(array.dtype, np.floating):
        return None
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    return f"{bad} of {array.size} pixels are NaN or infinite" if bad else None


def window_problem(array: np.ndarray, lo: float, hi: float) -> str | None:
    """Why the intensity window [lo, hi] cannot stretch these pixels, or None when it can: a constant image
    has nothing to stretch, and a window with every pixel on one side of it maps the whole image to 0 or to 1
    (pixels on both edges still stretch to 0 and 1)."""
    problem = constant_problem(array)
    if problem:
        return problem
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        return f"invalid intensity window {lo:g}..{hi:g}"
    if np.all(array <= lo) or np.all(array >= hi):  # every pixel on one side: the stretch gives one value
        return (f"intensity window {lo:g}..{hi:g} holds no pixel "
                f"(the pixels span {float(np.min(array)):g}..{float(np.max(array)):g})")
    return None


def constant_problem(array: np.ndarray) -> str | None:
    """An image whose pixels are all one value (an all-zero LE) has nothing to learn from or to predict."""
    low = array.flat[0]
    if np.all(array == low):
        return f"image is constant (every pixel is {float(low):g}): nothing to learn from or to predict"
    return None


@dataclass
class Image:
    array: np.ndarray
    spacing: tuple[float, float] = (1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY
    # Acquisition facts that travel with the pixels: laterality ("L"/"R"), view
    # ("CC"/"MLO"), window_center/window_width, source path, ...
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 2:
            raise ValueError(f"Image expects a 2-D array, got shape {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin) + (0.0,) * (3 - len(self.origin))
        self.direction = tuple(float(d) for d in self.direction)

    @property
    def shape(self) -> tuple[int, int]:
        return self.array.shape  # type: ignore[return-value]

    def ijk_to_lps(self) -> np.ndarray:
        """The 4x4 matrix from pixel indices (I = column, J = row, K = slice) to LPS millimetres: the one
        place both halves get pixel geometry from (Slicer's segmentations and volume nodes, slicerio)."""
        m = np.eye(4)
        m[:3, :3] = np.asarray(self.direction, float).reshape(3, 3) * np.array([self.spacing[0], self.spacing[1], 1.0])
        m[:3, 3] = self.origin
        return m

    @classmethod
    def from_ijk_to_lps(cls, array: np.ndarray, ijk_to_lps: np.ndarray, meta: dict[str, Any] | None = None) -> "Image":
        """`array` on the grid an IJK -> LPS matrix describes (the inverse of `ijk_to_lps`)."""
        m = np.asarray(ijk_to_lps, float)
        spacing = np.linalg.norm(m[:3, :3], axis=0)
        direction = m[:3, :3] / np.where(spacing > 0, spacing, 1.0)
        return cls(array, spacing=tuple(spacing[:2]), origin=tuple(m[:3, 3]), direction=tuple(direction.ravel()),
                   meta=dict(meta or {}))

    def with_array(self, array: np.ndarray, **meta: Any) -> "Image":
        """Same geometry, new pixels (e.g. a prediction in the LE's geometry)."""
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} does not match the reference {self.array.shape}")
        return replace(self, array=array, meta={**self.meta, **meta})

    def same_geometry(self, other: "Image", tol: float = 1e-3) -> bool:
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, rtol=0, atol=tol)
            and np.allclose(self.origin, other.origin, rtol=0, atol=tol * max(self.spacing))
            and np.allclose(self.direction, other.direction, rtol=0, atol=tol)
        )

    def geometry_text(self) -> str:
        return (
            f"size {self.shape[1]}x{self.shape[0]}, spacing {self.spacing[0]:g}x{self.spacing[1]:g} mm, "
            f"origin ({', '.join(f'{o:g}' for o in self.origin)})"
        )

    def to_sitk(self):
        """SimpleITK image with one slice (keeps origin and direction in 3-D)."""
        img = sitk.GetImageFromArray(self.array[np.newaxis])
        img.SetSpacing((self.spacing[0], self.spacing[1], 1.0))
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img

    @classmethod
    def from_sitk(cls, img, meta: dict[str, Any] | None = None) -> "Image":
        """From a SimpleITK image with 2 dimensions, or 3 with one slice."""
        arr = sitk.GetArrayFromImage(img)
        if img.GetDimension() == 2:
            spacing = img.GetSpacing()
            origin = (*img.GetOrigin(), 0.0)
            d = img.GetDirection()
            direction = (d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0)
        elif img.GetDimension() == 3 and img.GetSize()[2] == 1:
            arr = arr[0]
            spacing = img.GetSpacing()[:2]
            origin = img.GetOrigin()
            direction = img.GetDirection()
        else:
            raise ValueError(f"expected a 2-D image or one slice, got size {img.GetSize()}")
        return cls(arr, spacing, origin, direction, dict(meta or {}))
