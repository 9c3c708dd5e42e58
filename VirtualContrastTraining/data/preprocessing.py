"""Preprocessing of the papers (Rofena et al. 2024, 2025) and its exact inverse.

Forward (LE and DES for training, LE for prediction):
  1. contrast stretching: clip to the intensity window [c - w/2, c + w/2] and
     scale it to [0, 1] (the DICOM window when one is known, else percentiles
     of the non-background pixels);
  2. zero padding to a square on the side away from the breast (right for a
     left breast, whose chest wall is at column 0; left for a right breast);
  3. anti-aliased bilinear resize to `size` x `size` (256 in the papers).
Stretching before padding is the same as padding with the window's low end:
either way the padding is 0 in the network's input.

The public code rescales each image by its own min and max after clipping;
here the window itself is the scale. The two agree whenever the image reaches
both ends of the window, and only the window version can be inverted, which
`postprocess` needs to give a prediction back the LE's intensities and
geometry.

Pure numpy/scipy, and scikit-image or torch only where they are used:
Slicer's own process imports this module when the module loads (breast_mask
for the difference heatmaps), before the engine's packages are installed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from VirtualContrastTraining.data.image import Image, constant_problem, window_problem
from VirtualContrastTraining.errors import InputError

PAD_SIDES = ("left", "right", "bottom", "none")
# The largest network input side (image_size, patch_size, a sidecar's size): four times the largest any paper uses
# (512), and small enough that a batch of such images fits in memory.
MAX_NETWORK_SIZE = 2048


def size_range_problem(name: str, size: int) -> str | None:
    """Why `size` (image_size, patch_size) cannot be a network input side, or None: the one place of this rule."""
    if size < 16 or size % 4 or size > MAX_NETWORK_SIZE:
        return f"{name} {size} must be a multiple of 4 between 16 and {MAX_NETWORK_SIZE}"
    return None


def parse_window(text: str) -> tuple[float, float] | None:
    """"1800,2900" -> (1800.0, 2900.0); "" -> None (the window then comes from the data)."""
    if not str(text).strip():
        return None
    parts = str(text).split(",")
    try:
        lo, hi = (float(v) for v in parts)
    except ValueError:
        raise ValueError(f"expected 'low,high' intensities, got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"expected finite low < high, got {text!r}")
    return lo, hi


@dataclass
class PreprocessConfig:
    """Dataset-wide settings; saved in the checkpoint sidecar so predict repeats them."""

    size: int = 256
    # Window (low, high percentile) of the non-background pixels, used when no
    # DICOM window is known (NRRD, JPEG inputs).
    percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        self.size = int(self.size)
        self.percentiles = (float(self.percentiles[0]), float(self.percentiles[1]))
        if not 8 <= self.size <= MAX_NETWORK_SIZE:
            raise InputError(None, f"preprocessing size must be between 8 and {MAX_NETWORK_SIZE} pixels, "
                                   f"got {self.size}")
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise InputError(None, f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "percentiles": list(self.percentiles)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessConfig":
        return cls(size=data["size"], percentiles=tuple(data["percentiles"]))


@dataclass
class PreprocessParams:
    """What was done to one image, so that `postprocess` can undo it exactly."""

    original_shape: tuple[int, int]   # (rows, cols) before padding
    pad_side: str                     # where zeros were added: left / right / bottom / none
    padded_size: int                  # side of the square after padding
    window: tuple[float, float]       # (lo, hi) intensities mapped to 0 and 1
    window_source: str                # "dicom" (given or from the file) or "percentile"

    def to_dict(self) -> dict[str, Any]:
        return {
            "original_shape": list(self.original_shape),
            "pad_side": self.pad_side,
            "padded_size": self.padded_size,
            "window": list(self.window),
            "window_source": self.window_source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessParams":
        if data.get("pad_side") not in PAD_SIDES:
            raise InputError(None, f"unknown pad side {data.get('pad_side')!r} in preprocessing parameters")
        return cls(
            original_shape=(int(data["original_shape"][0]), int(data["original_shape"][1])),
            pad_side=str(data["pad_side"]),
            padded_size=int(data["padded_size"]),
            window=(float(data["window"][0]), float(data["window"][1])),
            window_source=str(data["window_source"]),
        )


def _source(image: Image | np.ndarray) -> str | None:
    return image.meta.get("source") if isinstance(image, Image) else None


def breast_side(image_or_array: Image | np.ndarray, laterality: str = "") -> str:
    """Which side of the image holds the breast: "left" or "right".

    Display convention: a left breast (L) has its chest wall at column 0, a
    right breast (R) at the last column. Without a laterality, the outer
    quarter (of the columns holding tissue) with more tissue wins: tissue
    (above 5 % of the intensity range) covers the chest-wall edge from top to
    bottom, while the far edge is mostly air. Coverage rather than brightness,
    because in a recombined image the brightest parts need not be near the
    chest wall.
    """
    lat = (laterality or "").strip().upper()[:1]
    if lat == "L":
        return "left"
    if lat == "R":
        return "right"
    arr = np.asarray(getattr(image_or_array, "array", image_or_array), dtype=np.float64)
    tissue = arr > arr.min() + 0.05 * (arr.max() - arr.min())
    columns = np.flatnonzero(tissue.any(axis=0))
    if columns.size:  # quarters of the tissue's own extent, not of a letterboxed frame
        tissue = tissue[:, columns[0]: columns[-1] + 1]
    quarter = max(1, tissue.shape[1] // 4)
    return "left" if tissue[:, :quarter].mean() >= tissue[:, -quarter:].mean() else "right"


def breast_mask(image_or_array: Image | np.ndarray) -> np.ndarray:
    """The breast (and pectoral muscle) against the background air: Otsu's threshold, the largest
    connected component, holes filled. Used to keep difference maps and statistics inside the breast."""
    from skimage.filters import threshold_otsu  # lazy: skimage

    arr = np.asarray(image_or_array.array if isinstance(image_or_array, Image) else image_or_array, dtype=np.float64)
    if arr.max() <= arr.min():
        return np.zeros(arr.shape, dtype=bool)
    labels, n = ndimage.label(arr > threshold_otsu(arr))
    if n == 0:
        return np.zeros(arr.shape, dtype=bool)
    largest = 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(arr), labels, index=range(1, n + 1))))
    return ndimage.binary_fill_holes(labels == largest)


def _first_number(value: Any) -> float | None:
    """DICOM windows may be multi-valued ("2047\\4095", lists); the first one is the default."""
    if value in (None, ""):
        return None
    if isinstance(value, (list, tuple)):
        return _first_number(value[0]) if value else None
    try:
        return float(str(value).split("\\")[0])
    except ValueError:
        return None


def intensity_window(
    image: Image, window: tuple[float, float] | None, config: PreprocessConfig
) -> tuple[tuple[float, float], str]:
    """(lo, hi) for contrast stretching, and where it came from.

    Order: the (center, width) given, else the file's window_center/width,
    else the configured percentiles of the pixels above the image minimum (the
    background of a mammogram is its darkest value, and counting it would pull
    the low percentile into air). InputError naming the image when the window
    cannot stretch it (check_window).
    """
    (lo, hi), source = _window(image, window, config)
    check_window(image, (lo, hi))
    return (lo, hi), source


def check_window(image: Image, lo_hi: tuple[float, float]) -> None:
    """InputError naming the image when (lo, hi) cannot stretch it: a constant image (an all-zero LE), or a
    window that holds no pixel (a window from another image). Every window used, given or derived, passes here."""
    problem = window_problem(np.asarray(image.array), float(lo_hi[0]), float(lo_hi[1]))
    if problem:
        raise InputError(_source(image), problem)


def _window(
    image: Image, window: tuple[float, float] | None, config: PreprocessConfig
) -> tuple[tuple[float, float], str]:
    """The (lo, hi) intensity_window describes, and its source, before check_window."""
    if window is None:
        center = _first_number(image.meta.get("window_center"))
        width = _first_number(image.meta.get("window_width"))
        window = None if center is None or width is None else (center, width)
    if window is not None:
        center, width = float(window[0]), float(window[1])
        if not np.isfinite(center) or not np.isfinite(width) or width <= 0:
            raise InputError(_source(image), f"invalid intensity window (center {center:g}, width {width:g})")
        return (center - width / 2.0, center + width / 2.0), "dicom"
    arr = np.asarray(image.array)  # native dtype: percentiles of uint16 pixels are twice as fast
    foreground = arr[arr > arr.min()]
    if foreground.size == 0:
        raise InputError(_source(image), constant_problem(arr))
    lo, hi = np.percentile(foreground, config.percentiles)
    if hi <= lo:
        # Nearly binary content: stretch over the full range instead.
        lo, hi = arr.min(), arr.max()
    return (float(lo), float(hi)), "percentile"


def _pad_geometry(shape: tuple[int, int], side: str) -> tuple[str, int]:
    rows, cols = shape
    if rows == cols:
        return "none", rows
    if cols > rows:
        # Landscape images are rare (rotated scans): the breast spans the width,
        # so pad below it.
        return "bottom", cols
    return ("right" if side == "left" else "left"), rows


def _pad(arr: np.ndarray, params: PreprocessParams) -> np.ndarray:
    rows, cols = params.original_shape
    extra_cols, extra_rows = params.padded_size - cols, params.padded_size - rows
    widths = {
        "none": ((0, 0), (0, 0)),
        "left": ((0, 0), (extra_cols, 0)),
        "right": ((0, 0), (0, extra_cols)),
        "bottom": ((0, extra_rows), (0, 0)),
    }[params.pad_side]
    return np.pad(arr, widths, mode="constant", constant_values=0)


def _kept(params: PreprocessParams) -> tuple[slice, slice]:
    """The rows and columns of the padded square that hold the image (what the crop keeps)."""
    rows, cols = params.original_shape
    if params.pad_side == "left":
        return slice(0, rows), slice(params.padded_size - cols, params.padded_size)
    return slice(0, rows), slice(0, cols)


def _gaussian_rows(n: int, rows: np.ndarray, sigma: float) -> np.ndarray:
    """Rows `rows` of the (n, n) matrix of scipy's gaussian_filter1d along an axis of n pixels (truncate 4,
    mode "nearest": the edge pixel repeats)."""
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.zeros((len(rows), n))
    taps = np.clip(rows[:, np.newaxis] + offsets, 0, n - 1)
    np.add.at(out, (np.repeat(np.arange(len(rows)), len(offsets)), taps.ravel()), np.tile(kernel, len(rows)))
    return out


@functools.lru_cache(maxsize=16)
def resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32 weights of scikit-image's resize along one axis, as `_resize` used it: order 1
    (bilinear, pixel centres at half-pixels, edge pixels repeated) after, when shrinking, its Gaussian
    anti-aliasing prefilter of sigma (n_in / n_out - 1) / 2.

    Resize is separable, so a 2-D resize is two small products (`_resize`): the prefilter is evaluated only
    where the bilinear taps read it instead of over every pixel of a full mammogram, which made the resize
    of a 2850-pixel LE 7x cheaper with the same numbers (within float32 rounding, Testing/test_preprocessing.py).
    """
    centres = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    first = np.floor(centres).astype(np.intp)
    frac = centres - first
    outputs = np.arange(n_out)
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (outputs, first), 1.0 - frac)
    np.add.at(weights, (outputs, np.minimum(first + 1, n_in - 1)), frac)
    if n_out < n_in:
        read = np.flatnonzero(weights.any(axis=0))
        weights = weights[:, read] @ _gaussian_rows(n_in, read, (n_in / n_out - 1) / 2)
    weights = weights.astype(np.float32)
    weights.flags.writeable = False  # shared by every caller of the cache
    return weights


def _resize(arr: np.ndarray, size: int) -> np.ndarray:
    """Bilinear, anti-aliased (Gaussian prefilter) when shrinking, values kept as they are: `resample_matrix`
    along each axis."""
    rows, cols = resample_matrix(arr.shape[0], size), resample_matrix(arr.shape[1], size)
    return rows @ np.asarray(arr, dtype=np.float32) @ cols.T


def preprocess(
    image: Image,
    *,
    laterality: str = "",
    window: tuple[float, float] | None = None,
    config: PreprocessConfig | None = None,
    side: str | None = None,
) -> tuple[np.ndarray, PreprocessParams]:
    """Network input (size x size float32 in [0, 1]) and the parameters to invert it.

    `laterality` ("L"/"R") defaults to image.meta["laterality"], then to the
    image content. `window` is (center, width). `side` ("left"/"right") says
    where the breast is when it is already known, e.g. a DES must be padded
    exactly like its LE.
    """
    config = config or PreprocessConfig()
    side = side or breast_side(image, laterality or str(image.meta.get("laterality", "")))
    (lo, hi), source = intensity_window(image, window, config)
    pad_side, padded_size = _pad_geometry(image.shape, side)
    params = PreprocessParams(image.shape, pad_side, padded_size, (lo, hi), source)
    # float32 halves the memory and triples the speed of the anti-aliased resize of a full mammogram.
    stretched = (np.clip(np.asarray(image.array, dtype=np.float32), lo, hi) - np.float32(lo)) / np.float32(hi - lo)
    out = np.clip(_resize(_pad(stretched, params), config.size), 0.0, 1.0)
    return out, params


def preprocess_mask(mask: np.ndarray, params: PreprocessParams, config: PreprocessConfig | None = None) -> np.ndarray:
    """The lesion mask in the network's geometry: 1.0 lesion, 0.0 elsewhere.

    Area-weighted resize thresholded at 0.5 keeps outlines where they were.
    A lesion smaller than half an output pixel would vanish that way, and a
    Seg-CycleGAN loss can only weigh a lesion it sees, so each lesion left
    without any pixel gets the one at its centroid.
    """
    config = config or PreprocessConfig()
    mask = np.asarray(mask) > 0
    if mask.shape != tuple(params.original_shape):
        raise InputError(None, f"lesion mask shape {mask.shape} does not match the image "
                               f"{tuple(params.original_shape)}")
    padded = _pad(mask.astype(np.float32), params)
    out = _resize(padded, config.size) >= 0.5
    labels, _ = ndimage.label(padded > 0)
    scale = config.size / params.padded_size
    for number, box in enumerate(ndimage.find_objects(labels), start=1):
        if out[tuple(slice(int(b.start * scale), int(np.ceil(b.stop * scale))) for b in box)].any():
            continue
        centroid = ndimage.center_of_mass(labels[box] == number)
        out[tuple(min(config.size - 1, max(0, round((b.start + x + 0.5) * scale - 0.5)))
                  for b, x in zip(box, centroid))] = True
    return out.astype(np.float32)


def postprocess(
    pred: np.ndarray, params: PreprocessParams, reference: Image, out_window: tuple[float, float], device="cpu"
) -> Image:
    """A network output back in the LE's own geometry and the DES intensity scale.

    Resize to the padded square, crop the padding, map [0, 1] to
    [lo, hi] of `out_window`. The result is `reference.with_array`, so size,
    spacing, origin and direction are exactly the LE's.

    The resize is `resample_matrix` along each axis (the numbers of
    scikit-image's resize it replaced), only for the rows and columns the crop
    keeps, as two matrix products in torch on `device` (the synthesizer's): on
    a GPU the full-size image is computed there and copied back once.
    """
    pred = np.asarray(pred, dtype=np.float32)
    if pred.ndim != 2 or pred.shape[0] != pred.shape[1]:
        raise InputError(_source(reference), f"prediction must be a square 2-D array, got shape {pred.shape}")
    if tuple(reference.shape) != tuple(params.original_shape):
        raise InputError(
            _source(reference),
            f"image is {reference.shape} but the preprocessing parameters are for {tuple(params.original_shape)}",
        )
    import torch  # lazy: torch

    rows, cols = _kept(params)
    enlarge = resample_matrix(pred.shape[0], params.padded_size)
    left, square, right = (torch.tensor(m, device=device) for m in (enlarge[rows], pred, enlarge[cols]))
    full = left @ square @ right.T
    lo, hi = float(out_window[0]), float(out_window[1])
    values = lo + full.clamp(0.0, 1.0) * (hi - lo)
    return reference.with_array(values.cpu().numpy())
