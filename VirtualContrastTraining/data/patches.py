"""The patch pipeline of Zormpas-Petridis et al. 2026 (000), forward and exact inverse, and its patch datasets.

000, "Patch-based training strategy and image preprocessing" and "Inference":
  1. breast mask by Otsu thresholding and its minimum bounding box (the box
     keeps patches off the background);
  2. resampling to 1.0 x 1.0 mm pixels with bilinear interpolation;
  3. truncation of the intensities to 1800-2900 (LE) and 1700-2400 (DES);
  4. linear scaling of the truncated range to [-1, 1] (the generator ends in tanh);
  5. training on random 128 x 128 patches of the resampled images;
  6. inference by a dense sliding window, stride 16, averaging the overlaps
     (synthesis.Synthesizer, with MONAI's sliding_window_inference).

Here the box is cut first and only the box is resampled: the same pixels at a
fraction of the cost on full 2850 x 2394 images. Resampling is SimpleITK's
linear interpolator, which is what "bilinear" means; 000 used MONAI for its
preprocessing, whose Spacing transform does not low-pass filter either, so a
0.1 mm image is point-sampled at 1 mm, noise included. (000 also says it
"downsampled the images by a factor of four", which does not match 1.0 mm
from 0.1 mm pixels; the explicit spacing is what the config keeps:
`spacing_mm`.) The box, the grids and the window of every image are recorded
(PatchParams), so `postprocess_patches` maps a prediction on the resampled box
back to the LE's own grid: linear interpolation back to the original pixels,
[-1, 1] to the DES window, the DES window's low end outside the box.

Windows: the config's fixed windows (000's numbers) when given; else each
image's own, as the resize pipeline derives it (preprocessing.intensity_window:
the manifest's or the file's DICOM window, else percentiles of the pixels above
the image's minimum, i.e. inside the breast).

Augmentation: 000 names none beyond the random patches themselves, so the
patch datasets do not augment (config.augment_prob is not used by this pipeline).

Pure numpy/SimpleITK/scikit-image except the datasets' __getitem__ (torch),
so Slicer can preprocess before torch is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from VirtualContrastTraining.data.cases import case_lesion_mask, case_window, read_case_images
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.manifest import Case
from VirtualContrastTraining.data.preprocessing import (
    PreprocessConfig, breast_mask, check_window, intensity_window, parse_window, size_range_problem,
)
from VirtualContrastTraining.errors import InputError

# Value of the background in the network's range: the low end of either window.
BACKGROUND = -1.0


@dataclass(frozen=True)
class PatchPipeline:
    """Dataset-wide settings of the 000 pipeline; the model sidecar's "preprocessing" entry, so predict repeats them."""

    spacing_mm: float = 1.0
    le_window: tuple[float, float] | None = None   # (low, high); None: each image's own window
    des_window: tuple[float, float] | None = None
    patch_size: int = 128
    sw_stride: int = 16
    # Percentiles of the pixels above the minimum, for images without a fixed or DICOM window.
    percentiles: tuple[float, float] = PreprocessConfig().percentiles

    @classmethod
    def from_config(cls, config) -> "PatchPipeline":
        """From a TrainConfig (config/schema.py), whose windows are "low,high" strings."""
        return cls(spacing_mm=float(config.spacing_mm), le_window=parse_window(config.le_window),
                   des_window=parse_window(config.des_window), patch_size=int(config.patch_size),
                   sw_stride=int(config.sw_stride))

    def to_dict(self) -> dict[str, Any]:
        return {"spacing_mm": self.spacing_mm, "le_window": _list(self.le_window), "des_window": _list(self.des_window),
                "patch_size": self.patch_size, "sw_stride": self.sw_stride, "percentiles": list(self.percentiles)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where=None) -> "PatchPipeline":
        try:
            pipeline = cls(spacing_mm=float(data["spacing_mm"]), le_window=_pair(data["le_window"]),
                           des_window=_pair(data["des_window"]), patch_size=int(data["patch_size"]),
                           sw_stride=int(data["sw_stride"]), percentiles=_pair(data["percentiles"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(where, f"patch pipeline parameters are incomplete or malformed ({exc!r})") from None
        if not (pipeline.spacing_mm > 0 and 1 <= pipeline.sw_stride <= pipeline.patch_size):
            raise InputError(where, f"invalid patch pipeline parameters {data}")
        problem = size_range_problem("patch_size", pipeline.patch_size)
        if problem:
            raise InputError(where, f"invalid patch pipeline parameters: {problem}")
        return pipeline


def _list(pair):
    return None if pair is None else [float(pair[0]), float(pair[1])]


def _pair(value):
    return None if value is None else (float(value[0]), float(value[1]))


@dataclass
class PatchParams:
    """What was done to one image, so that `postprocess_patches` can undo it exactly."""

    original_shape: tuple[int, int]            # (rows, cols) of the image
    original_spacing: tuple[float, float]      # (x, y) mm, Image convention
    box: tuple[int, int, int, int]             # (row0, row1, col0, col1), half-open, in the image's pixels
    spacing_mm: float                          # pixel size of the resampled box
    resampled_shape: tuple[int, int]           # (rows, cols) of the resampled box
    window: tuple[float, float]                # (low, high) mapped to -1 and 1
    window_source: str                         # "config", "dicom" or "percentile"

    @property
    def box_shape(self) -> tuple[int, int]:
        r0, r1, c0, c1 = self.box
        return r1 - r0, c1 - c0

    def resampled_origin(self) -> tuple[float, float]:
        """(x, y) mm of the resampled box's first pixel centre, relative to the box's first pixel centre.

        The resampled grid is centred on the box: both span the same extent
        up to the rounding of its size to whole pixels of spacing_mm.
        """
        (rows, cols), (m_rows, m_cols) = self.box_shape, self.resampled_shape
        sx, sy = self.original_spacing
        s = self.spacing_mm
        return ((cols - 1) * sx - (m_cols - 1) * s) / 2, ((rows - 1) * sy - (m_rows - 1) * s) / 2


def _source(image: Image):
    return image.meta.get("source")


def breast_box(image: Image) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1), half-open: the minimum bounding box of the Otsu breast mask (000)."""
    mask = breast_mask(image)
    if not mask.any():
        raise InputError(_source(image), "no breast found (the Otsu mask is empty): the image is blank or constant")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _resample(arr: np.ndarray, spacing, origin, shape: tuple[int, int], out_spacing, out_origin) -> np.ndarray:
    """`arr` on a grid (spacing, origin) linearly interpolated onto another (shape, out_spacing, out_origin).

    Points past the outermost source pixel centres (up to half a pixel at the
    edges) take the nearest pixel's value instead of a background value.
    """
    src = sitk.GetImageFromArray(np.ascontiguousarray(arr, dtype=np.float32))
    src.SetSpacing(tuple(float(s) for s in spacing))
    src.SetOrigin(tuple(float(o) for o in origin))
    out = sitk.Resample(src, (int(shape[1]), int(shape[0])), sitk.Transform(), sitk.sitkLinear,
                        tuple(float(o) for o in out_origin), tuple(float(s) for s in out_spacing), (1.0, 0.0, 0.0, 1.0),
                        0.0, sitk.sitkFloat32, True)
    return sitk.GetArrayFromImage(out)


def _to_resampled(arr: np.ndarray, params: PatchParams) -> np.ndarray:
    """The box of a full-size array of the image's grid, resampled to spacing_mm."""
    r0, r1, c0, c1 = params.box
    s = params.spacing_mm
    return _resample(arr[r0:r1, c0:c1], params.original_spacing, (0.0, 0.0), params.resampled_shape, (s, s),
                     params.resampled_origin())


def _scale(arr: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Truncate to the window, then scale it linearly to [-1, 1] (000)."""
    lo, hi = window
    return ((np.clip(arr, lo, hi) - lo) * (2.0 / (hi - lo)) - 1.0).astype(np.float32)


def _unscale(arr: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    return lo + (np.clip(arr, -1.0, 1.0) + 1.0) * ((hi - lo) / 2.0)


def preprocess_patches(image: Image, pipeline: PatchPipeline, *, which: str = "le",
                       window: tuple[float, float] | None = None,
                       box: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, PatchParams]:
    """The image's breast box at spacing_mm, truncated and scaled to [-1, 1], and the parameters to invert it.

    `which` ("le" or "des") picks the pipeline's fixed window; `window` is a
    (center, width) used when the pipeline has none (e.g. the manifest's DICOM
    window); `box` is the breast box to use: a DES must be cut with its LE's.
    """
    fixed = pipeline.le_window if which == "le" else pipeline.des_window
    if fixed is not None:
        check_window(image, fixed)
        lo_hi, source = fixed, "config"
    else:
        lo_hi, source = intensity_window(image, window, PreprocessConfig(percentiles=pipeline.percentiles))
    box = box or breast_box(image)
    rows, cols = box[1] - box[0], box[3] - box[2]
    sx, sy = image.spacing
    s = pipeline.spacing_mm
    shape = (max(1, round(rows * sy / s)), max(1, round(cols * sx / s)))
    params = PatchParams(tuple(image.shape), (sx, sy), tuple(int(b) for b in box), s, shape,
                         (float(lo_hi[0]), float(lo_hi[1])), source)
    return _scale(_to_resampled(np.asarray(image.array), params), params.window), params


def preprocess_patch_mask(mask: np.ndarray, params: PatchParams) -> np.ndarray:
    """A lesion mask of the image's grid on the resampled box: 1.0 where the interpolated mask is >= 0.5."""
    mask = np.asarray(mask) > 0
    if mask.shape != tuple(params.original_shape):
        raise InputError(None, f"lesion mask shape {mask.shape} does not match the image "
                               f"{tuple(params.original_shape)}")
    return (_to_resampled(mask.astype(np.float32), params) >= 0.5).astype(np.float32)


def postprocess_patches(pred: np.ndarray, params: PatchParams, reference: Image,
                        out_window: tuple[float, float]) -> Image:
    """A prediction on the resampled box ([-1, 1]) back on the reference LE's grid, in the DES window.

    Linear interpolation back to the box's pixels, [-1, 1] to `out_window`,
    and the window's low end outside the box. The result is
    `reference.with_array`: size, spacing, origin and direction are the LE's.
    """
    pred = np.asarray(pred, dtype=np.float32)
    if pred.shape != tuple(params.resampled_shape):
        raise InputError(_source(reference), f"prediction shape {pred.shape} is not the resampled box's "
                                             f"{tuple(params.resampled_shape)}")
    if tuple(reference.shape) != tuple(params.original_shape):
        raise InputError(_source(reference), f"image is {reference.shape} but the preprocessing parameters are "
                                             f"for {tuple(params.original_shape)}")
    s = params.spacing_mm
    back = _resample(pred, (s, s), params.resampled_origin(), params.box_shape, params.original_spacing, (0.0, 0.0))
    full = np.full(params.original_shape, out_window[0], dtype=np.float32)
    r0, r1, c0, c1 = params.box
    full[r0:r1, c0:c1] = _unscale(back, out_window)
    return reference.with_array(full)


def sliding_overlap(patch_size: int, stride: int) -> float:
    """The `overlap` that makes MONAI's sliding_window_inference step by exactly `stride` pixels.

    MONAI steps by int(patch_size * (1 - overlap)); 1 - stride / patch_size
    can land a hair below `stride` in floating point (e.g. 20 and 2 give 1),
    so aim half a pixel above it.
    """
    if not 1 <= stride <= patch_size:
        raise ValueError(f"stride {stride} must be between 1 and the patch size {patch_size}")
    return max(0.0, 1.0 - (stride + 0.5) / patch_size)


# --- prepared cases and the datasets ---------------------------------------------------------

@dataclass
class PreparedPatchCase:
    case: Case
    le: np.ndarray                       # (H, W) float32 in [-1, 1]: the LE's breast box at spacing_mm
    des: np.ndarray | None               # same grid, DES window; None for LE-only cases
    mask: np.ndarray                     # same grid, float32, 1 = lesion; zeros when no mask
    has_mask: bool
    params: PatchParams                  # of the LE: how to map a prediction back
    des_params: PatchParams | None = None  # of the DES: its window (dataset.des_output_window reads it)


def prepare_patch_case(case: Case, config: PatchPipeline) -> PreparedPatchCase:
    """Read and preprocess one case for the patch pipeline; the DES and the lesion mask are cut with the LE's box."""
    le_image, des_image = read_case_images(case)
    le, params = preprocess_patches(le_image, config, which="le", window=case_window(case, "le"))
    des = des_params = None
    if des_image is not None:
        des, des_params = preprocess_patches(des_image, config, which="des", window=case_window(case, "des"),
                                             box=params.box)
    if case.lesion_path:
        mask, has_mask = preprocess_patch_mask(case_lesion_mask(case, le_image), params), True
    else:
        mask, has_mask = np.zeros(params.resampled_shape, np.float32), False
    return PreparedPatchCase(case, le, des, mask, has_mask, params, des_params)


def _starts(length: int, patch: int) -> list[int]:
    """Tile starts covering [0, length): steps of `patch`, the last tile flush with the end."""
    last = max(0, length - patch)
    starts = list(range(0, last + 1, patch))
    return starts if starts[-1] == last else [*starts, last]


class _Patches:
    """Shared by both datasets: patch_size crops of prepared cases as the training loop's items.

    Items: le, des, mask as (1, P, P) float32 tensors, index, has_mask, like
    dataset.PairedDataset. A box narrower than P is padded on its far side
    with the background (-1; mask 0). Duck-typed (len + getitem) like PairedDataset.
    """

    def __init__(self, prepared: list[PreparedPatchCase], patch_size: int):
        missing = [p.case.le_path for p in prepared if p.des is None]
        if missing:
            raise InputError(missing[0], f"has no DES image: training needs LE/DES pairs ({len(missing)} such case(s))")
        self.prepared = prepared
        self.patch_size = int(patch_size)

    def position(self, index: int) -> tuple[int, int, int]:
        """(case number, first row, first column) of item `index`, on the case's resampled box."""
        raise NotImplementedError

    def _crop(self, arr: np.ndarray, row: int, col: int, fill: float) -> np.ndarray:
        size = self.patch_size
        crop = arr[row:row + size, col:col + size]
        return np.pad(crop, ((0, size - crop.shape[0]), (0, size - crop.shape[1])), constant_values=fill)

    def __getitem__(self, index: int) -> dict:
        import torch  # lazy: torch

        number, row, col = self.position(index)
        p = self.prepared[number]
        item = {k: torch.from_numpy(self._crop(a, row, col, fill).astype(np.float32))[None]
                for k, a, fill in (("le", p.le, BACKGROUND), ("des", p.des, BACKGROUND), ("mask", p.mask, 0.0))}
        return {**item, "index": index, "has_mask": p.has_mask}


class RandomPatchDataset(_Patches):
    """Training: `patches_per_image` random patches of each case per epoch (000), anywhere in its breast box.

    Item i is a patch of case i // patches_per_image at a position drawn from
    a seed derived from (seed, epoch, i) (augment.sample_seed), so any epoch
    of any run can be replayed exactly; call `set_epoch` at the start of each epoch.
    """

    def __init__(self, prepared: list[PreparedPatchCase], patch_size: int, patches_per_image: int, seed: int):
        super().__init__(prepared, patch_size)
        self.patches_per_image = int(patches_per_image)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.prepared) * self.patches_per_image

    def position(self, index: int) -> tuple[int, int, int]:
        from VirtualContrastTraining.data.augment import sample_seed  # lazy: monai, torch

        number = index // self.patches_per_image
        rows, cols = self.prepared[number].le.shape
        rng = np.random.default_rng(sample_seed(self.seed, self.epoch, index))
        return (number, int(rng.integers(0, max(0, rows - self.patch_size) + 1)),
                int(rng.integers(0, max(0, cols - self.patch_size) + 1)))


class TilePatchDataset(_Patches):
    """Validation: the same patches every epoch, so val_l1 compares between epochs.

    Each case's breast box is tiled by patch_size squares (the last row and
    column of tiles flush with the box's far edges), which covers every pixel
    of the box once or, at those edges, twice.
    """

    def __init__(self, prepared: list[PreparedPatchCase], patch_size: int):
        super().__init__(prepared, patch_size)
        self.tiles = [(number, row, col) for number, p in enumerate(prepared)
                      for row in _starts(p.le.shape[0], self.patch_size)
                      for col in _starts(p.le.shape[1], self.patch_size)]

    def __len__(self) -> int:
        return len(self.tiles)

    def position(self, index: int) -> tuple[int, int, int]:
        return self.tiles[index]
