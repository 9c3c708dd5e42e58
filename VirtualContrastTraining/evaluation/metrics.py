"""Image-quality metrics between a target DES `y` and a synthetic DES `yhat`, plus tissue CNR.

numpy/scipy/scikit-image only (no torch): the Slicer GUI measures CNR and
error maps before torch is installed.

Images are 2-D arrays in [0, 1] (the preprocessed images the model sees), as
in Rofena et al. 2024 (CMIG), section on metrics:
- MSE, eq. 9: mean squared difference.
- PSNR, eq. 10: 10 log10(max(y)^2 / MSE) with the maximum of the TARGET, not
  the nominal range. Identical images have MSE 0 and PSNR +inf; that is the
  honest per-image answer, and summaries must leave such values out of means
  (evaluate.summarize does, and counts them).
- SSIM, eq. 12: scikit-image's structural_similarity with data_range=1.0 and
  its defaults (7x7 uniform window).
- VIF: pixel-domain multiscale VIF ("VIFp", Sheikh & Bovik 2006, the
  vifp_mscale.m reference also behind sewar.full_ref.vifp and piq.vif_p):
  4 scales with Gaussian windows of N = 17, 9, 5, 3 pixels (sigma N/5),
  visual noise variance sigma_nsq = 2 on images scaled to [0, 255], as the
  reference code assumes 8-bit images.
- MAE, L1 and L2: mean absolute and squared difference; L1 and L2 are on the
  0-255 scale that Hosseinipour et al. (003) report (L1 = 255 MAE,
  L2 = 255^2 MSE), so their tables and ours read alike.
Each of these is computed in two regions (columns.REGIONS): the whole padded
square, as the papers compute them, and the breast (the Otsu/LE mask: padding
and air excluded), where PSNR takes the target's maximum in the breast, SSIM
averages its map over breast pixels and VIF sums over windows centred in it.
Tissue CNR follows Zormpas-Petridis et al. 2026:
|mean_a - mean_b| / (std_a + std_b).
Lesion (mass) CNR follows Hosseinipour et al., eq. 9: (mean_mass - mean_ring) / std_ring,
the ring being the pixels within a given distance (mm) outside the lesion.
Breast CNR follows Hosseinipour et al., eqs. 10-11: 64x64 patches at stride 16,
each against its 8 neighbouring patches, averaged over the breast.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

# 003 reports L1 and L2 on 8-bit intensities.
EIGHT_BIT = 255.0
# 003, Breast CNR: square patches of 64 pixels, stride = patch size / 4.
BREAST_CNR_PATCH = 64
# Bright pixels: above this percentile of the real DES inside the breast (where exponential dampening, 003, aims).
BRIGHT_PERCENTILE = 95.0

VIF_SCALE = 255.0       # [0,1] images are scaled to [0,255], the range sigma_nsq was chosen for
VIF_SIGMA_NSQ = 2.0
_VIF_EPS = 1e-10


def _pair(y: np.ndarray, yhat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 2-D arrays of one shape; ValueError otherwise."""
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    if y.ndim != 2 or y.shape != yhat.shape:
        raise ValueError(f"expected two 2-D images of one shape, got {y.shape} and {yhat.shape}")
    return y, yhat


def mse(y: np.ndarray, yhat: np.ndarray) -> float:
    y, yhat = _pair(y, yhat)
    return float(np.mean((y - yhat) ** 2))


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    y, yhat = _pair(y, yhat)
    return float(np.mean(np.abs(y - yhat)))


def l1(y: np.ndarray, yhat: np.ndarray) -> float:
    """003's L1: mean |y - yhat| on the 0-255 scale."""
    return EIGHT_BIT * mae(y, yhat)


def l2(y: np.ndarray, yhat: np.ndarray) -> float:
    """003's L2: mean (y - yhat)^2 on the 0-255 scale."""
    return EIGHT_BIT**2 * mse(y, yhat)


def psnr(y: np.ndarray, yhat: np.ndarray) -> float:
    """PSNR in dB with the target's maximum (eq. 10); +inf for identical images."""
    y, yhat = _pair(y, yhat)
    err = mse(y, yhat)
    if err == 0.0:
        return math.inf
    peak = float(y.max())
    if peak <= 0.0:
        raise ValueError("PSNR is undefined for a target without any positive pixel")
    return 10.0 * math.log10(peak**2 / err)


def ssim(y: np.ndarray, yhat: np.ndarray, region: np.ndarray | None = None) -> float:
    """scikit-image SSIM with data_range 1.0: images must be in [0,1] and at least 7x7. With a region
    (non-empty bool mask), the mean of SSIM's map over the region's pixels."""
    from skimage.metrics import structural_similarity  # lazy: skimage

    y, yhat = _pair(y, yhat)
    if region is None:
        return float(structural_similarity(y, yhat, data_range=1.0))
    _, ssim_map = structural_similarity(y, yhat, data_range=1.0, full=True)
    return float(ssim_map[region].mean())


def _gauss_window_1d(n: int) -> np.ndarray:
    """1-D factor of MATLAB's fspecial('gaussian', n, n/5); the 2-D window is its outer product."""
    x = np.arange(n) - (n - 1) / 2
    g = np.exp(-(x**2) / (2 * (n / 5) ** 2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    """MATLAB filter2(win, img, 'valid') for a separable symmetric window."""
    r = (len(w) - 1) // 2
    out = ndimage.correlate1d(ndimage.correlate1d(img, w, axis=0), w, axis=1)
    return out[r:img.shape[0] - r, r:img.shape[1] - r]


def vif(y: np.ndarray, yhat: np.ndarray, region: np.ndarray | None = None) -> float:
    """Pixel-domain VIF of `yhat` against the reference `y` (1 for identical images).

    Images in [0,1], at least 41x41 (the 4th scale needs a 3x3 window after
    three filter-and-halve steps). With a region (bool mask), the sums run
    over the windows whose weight lies mostly in the region, at every scale.
    ValueError for a constant reference (or region), which carries no
    information to preserve.
    """
    ref, dist = _pair(y, yhat)
    ref, dist = ref * VIF_SCALE, dist * VIF_SCALE
    inside = np.ones(ref.shape) if region is None else np.asarray(region, np.float64)
    num = den = 0.0
    for scale in range(4):
        n = 2 ** (4 - scale) + 1
        w = _gauss_window_1d(n)
        if scale > 0:
            ref = _filter_valid(ref, w)[::2, ::2]
            dist = _filter_valid(dist, w)[::2, ::2]
            inside = _filter_valid(inside, w)[::2, ::2]
        if min(ref.shape) < n:
            raise ValueError(f"VIF needs images of at least 41x41 pixels, got {y.shape}")
        mu1, mu2 = _filter_valid(ref, w), _filter_valid(dist, w)
        s1 = np.maximum(_filter_valid(ref * ref, w) - mu1 * mu1, 0)
        s2 = np.maximum(_filter_valid(dist * dist, w) - mu2 * mu2, 0)
        s12 = _filter_valid(ref * dist, w) - mu1 * mu2

        g = s12 / (s1 + _VIF_EPS)
        sv = s2 - g * s12
        flat_ref = s1 < _VIF_EPS
        g[flat_ref] = 0
        sv[flat_ref] = s2[flat_ref]
        s1[flat_ref] = 0
        flat_dist = s2 < _VIF_EPS
        g[flat_dist] = 0
        sv[flat_dist] = 0
        negative = g < 0
        sv[negative] = s2[negative]
        g[negative] = 0
        sv = np.maximum(sv, _VIF_EPS)

        counted = _filter_valid(inside, w) > 0.5
        num += float(np.sum(np.log10(1 + g * g * s1 / (sv + VIF_SIGMA_NSQ))[counted]))
        den += float(np.sum(np.log10(1 + s1 / VIF_SIGMA_NSQ)[counted]))
    if den == 0.0:
        raise ValueError("VIF is undefined for a constant reference image" + ("" if region is None else " region"))
    return num / den


def masked_mae(y: np.ndarray, yhat: np.ndarray, mask: np.ndarray | None) -> float | None:
    """Mean |y - yhat| over mask pixels (mask > 0.5); None when there is no mask or it is empty."""
    y, yhat = _pair(y, yhat)
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != y.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the image shape {y.shape}")
    inside = mask > 0.5
    if not inside.any():
        return None
    return float(np.mean(np.abs(y[inside] - yhat[inside])))


def cnr(values_a: np.ndarray, values_b: np.ndarray) -> float:
    """Tissue CNR |mean_a - mean_b| / (std_a + std_b) of two pixel samples (population std).

    ValueError (never NaN) when a region is empty, holds non-finite values, or
    both regions are perfectly uniform.
    """
    a = np.asarray(values_a, dtype=np.float64).ravel()
    b = np.asarray(values_b, dtype=np.float64).ravel()
    for name, v in (("first", a), ("second", b)):
        if v.size == 0:
            raise ValueError(f"CNR: the {name} region is empty")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"CNR: the {name} region holds non-finite values")
    spread = float(a.std() + b.std())
    if spread == 0.0:
        raise ValueError("CNR: both regions have zero variance (uniform), CNR is undefined")
    return abs(float(a.mean()) - float(b.mean())) / spread


def ring_around(mask: np.ndarray, width_mm: float, spacing: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Pixels outside `mask` within `width_mm` of it (Euclidean, in mm; spacing is (x, y)).

    The distance transform runs on the lesion's bounding box grown by the
    ring width only, so a small lesion on a full-size mammogram costs little.
    """
    mask = np.asarray(mask) > 0.5
    if not width_mm > 0:
        raise ValueError(f"ring width must be positive (got {width_mm:g} mm)")
    if not mask.any():
        raise ValueError("the lesion region is empty: no ring can surround it")
    rows, cols = np.nonzero(mask)
    grow = (int(np.ceil(width_mm / spacing[1])) + 1, int(np.ceil(width_mm / spacing[0])) + 1)
    box = (slice(max(rows.min() - grow[0], 0), rows.max() + grow[0] + 1),
           slice(max(cols.min() - grow[1], 0), cols.max() + grow[1] + 1))
    distance = ndimage.distance_transform_edt(~mask[box], sampling=(spacing[1], spacing[0]))
    ring = np.zeros(mask.shape, dtype=bool)
    ring[box] = (distance > 0) & (distance <= width_mm)
    return ring


def lesion_cnr(image: np.ndarray, lesion: np.ndarray, ring: np.ndarray) -> float:
    """Signed mass CNR (mean_lesion - mean_ring) / std_ring; ValueError (never NaN) when undefined."""
    image = np.asarray(image, dtype=np.float64)
    inside, around = image[np.asarray(lesion) > 0.5], image[np.asarray(ring) > 0.5]
    for name, v in (("lesion", inside), ("surrounding ring", around)):
        if v.size == 0:
            raise ValueError(f"lesion CNR: the {name} region is empty")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"lesion CNR: the {name} region holds non-finite values")
    spread = float(around.std())
    if spread == 0.0:
        raise ValueError("lesion CNR: the surrounding ring has zero variance (uniform), CNR is undefined")
    return (float(inside.mean()) - float(around.mean())) / spread


def _box_sums(values: np.ndarray, top: np.ndarray, left: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sums of `values` over the boxes [top, top+height) x [left, left+width), clipped to the image,
    from one summed-area table (so every patch of an image costs O(1))."""
    table = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
    table[1:, 1:] = values.cumsum(0).cumsum(1)
    r0, c0 = np.clip(top, 0, values.shape[0]), np.clip(left, 0, values.shape[1])
    r1, c1 = np.clip(top + height, 0, values.shape[0]), np.clip(left + width, 0, values.shape[1])
    return table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]


def breast_cnr(image: np.ndarray, breast: np.ndarray, patch: int = BREAST_CNR_PATCH,
               stride: int | None = None) -> float | None:
    """003's breast CNR (eqs. 10-11): the mean over patches of (mean_patch - mean_around) / std_around.

    Patches of `patch` x `patch` pixels at `stride` (default patch / 4) that
    lie wholly inside the breast; "around" is the union of the 8 neighbouring
    patches (the 3x3 block of patches minus the centre), restricted to breast
    pixels so that the air outside cannot inflate the spread. A patch whose
    surroundings hold fewer than one patch of breast pixels, or are uniform,
    is skipped. None when no patch qualifies (a breast smaller than a patch).
    """
    image = np.asarray(image, dtype=np.float64)
    breast = np.asarray(breast, dtype=bool)
    if breast.shape != image.shape:
        raise ValueError(f"breast mask shape {breast.shape} does not match the image shape {image.shape}")
    stride = stride or patch // 4
    rows = np.arange(0, image.shape[0] - patch + 1, stride)
    cols = np.arange(0, image.shape[1] - patch + 1, stride)
    if rows.size == 0 or cols.size == 0:
        return None
    top, left = np.meshgrid(rows, cols, indexing="ij")
    weight = breast.astype(np.float64)
    inside = _box_sums(weight, top, left, patch, patch) == patch * patch
    top, left = top[inside], left[inside]
    if top.size == 0:
        return None
    # Centred on the breast mean: CNR does not change, and the summed-area tables lose no precision.
    image = image - image[breast].mean()
    sums = [_box_sums(v, top, left, patch, patch) for v in (weight * image, weight * image**2)]
    blocks = [_box_sums(v, top - patch, left - patch, 3 * patch, 3 * patch) for v in (weight, weight * image,
                                                                                        weight * image**2)]
    n_around = blocks[0] - patch * patch
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_around = (blocks[1] - sums[0]) / n_around
        var_around = (blocks[2] - sums[1]) / n_around - mean_around**2
        std_around = np.sqrt(np.maximum(var_around, 0.0))
        values = (sums[0] / (patch * patch) - mean_around) / std_around
    # Spread below round-off of the image's range is no spread (a uniform region).
    usable = (n_around >= patch * patch) & (std_around > 1e-9 * float(np.ptp(image[breast])))
    return float(values[usable].mean()) if usable.any() else None


def bright_mae(y: np.ndarray, yhat: np.ndarray, breast: np.ndarray | None,
               percentile: float = BRIGHT_PERCENTILE) -> float | None:
    """Mean |y - yhat| over the breast pixels whose real DES is above its `percentile` inside the breast.

    Hosseinipour et al. (003) dampen the loss of dark pixels so that the
    bright, enhancing ones weigh more; this is the error where that should
    show. None without a breast mask or when it is empty.
    """
    y, yhat = _pair(y, yhat)
    if breast is None:
        return None
    breast = np.asarray(breast, dtype=bool)
    if breast.shape != y.shape:
        raise ValueError(f"breast mask shape {breast.shape} does not match the image shape {y.shape}")
    if not breast.any():
        return None
    bright = breast & (y > np.percentile(y[breast], percentile))
    if not bright.any():  # a flat DES: no pixel is above its own percentile
        return None
    return float(np.mean(np.abs(y[bright] - yhat[bright])))


def region_errors(y: np.ndarray, yhat: np.ndarray, region: np.ndarray) -> tuple[float, float, float | None]:
    """(MAE, MSE, PSNR) over a non-empty region's pixels; PSNR with the target's maximum in the region
    (+inf for equal pixels, None for a region without a positive target pixel)."""
    diff = y[region] - yhat[region]
    err = float(np.mean(diff**2))
    peak = float(y[region].max())
    value = None if peak <= 0 else (math.inf if err == 0 else 10.0 * math.log10(peak**2 / err))
    return float(np.mean(np.abs(diff))), err, value


def _vif_or_none(y: np.ndarray, yhat: np.ndarray, region: np.ndarray) -> float | None:
    """VIF in a region that may be too small or flat for it: None there (the image's row still has a value)."""
    try:
        return vif(y, yhat, region)
    except ValueError:
        return None


def breast_metrics(y: np.ndarray, yhat: np.ndarray, breast: np.ndarray | None) -> dict[str, float | None]:
    """The "image" columns of the breast region (`breast_<metric>`): the square's metrics over the breast
    pixels only, so that padding and air, which any model gets right, do not count. Nones without a breast."""
    y, yhat = _pair(y, yhat)
    names = ("MSE", "PSNR", "SSIM", "VIF", "MAE", "L1", "L2")
    if breast is None or not np.asarray(breast, bool).any():
        return {f"breast_{m}": None for m in names}
    breast = np.asarray(breast, dtype=bool)
    if breast.shape != y.shape:
        raise ValueError(f"breast mask shape {breast.shape} does not match the image shape {y.shape}")
    abs_err, sq_err, peak_snr = region_errors(y, yhat, breast)
    values = (sq_err, peak_snr, ssim(y, yhat, breast), _vif_or_none(y, yhat, breast), abs_err,
              EIGHT_BIT * abs_err, EIGHT_BIT**2 * sq_err)
    return {f"breast_{m}": v for m, v in zip(names, values)}


def image_metrics(y: np.ndarray, yhat: np.ndarray, mask: np.ndarray | None = None,
                  breast: np.ndarray | None = None) -> dict[str, float | None]:
    """The "image" columns of columns.py (pixel similarity), in both regions: the breast's (breast_metrics)
    and the whole square's; lesion_MAE is None without a non-empty mask, bright_MAE without a breast mask."""
    return {
        **breast_metrics(y, yhat, breast),
        "lesion_MAE": masked_mae(y, yhat, mask),
        "bright_MAE": bright_mae(y, yhat, breast),
        "MSE": mse(y, yhat),
        "PSNR": psnr(y, yhat),
        "SSIM": ssim(y, yhat),
        "VIF": vif(y, yhat),
        "MAE": mae(y, yhat),
        "L1": l1(y, yhat),
        "L2": l2(y, yhat),
    }
