"""The papers' per-image analyses beyond pixel similarity: 003's three settings and 000's LE-change and tissue CNR.

They fill the groups "setting", "change" and "tissue" of columns.py, the
registry of per_image.csv. Every value is a float, or None where undefined for
that image (no lesion mask, no tissue regions, a uniform region).

003 (Hosseinipour et al. 2024), section 6.2, on images scaled to 0-255 as the
paper reports them: L1 = mean |y - yhat|, L2 = mean (y - yhat)^2, PSNR with
the target's maximum, in two regions:
- breast_*: the segmented breast (Otsu on the LE). An image with a lesion mask
  belongs to the "breast with mass" setting, one without to "breast without mass";
- mass_*: the lesion pixels only ("mass only").
CNR: breast CNR of eqs. 10-11 (64x64 patches at 003's 512x512, stride a quarter
patch, each against its 8 neighbours; the patch scales with the evaluated size so
that it covers the same share of the breast: 32 pixels at 256) and mass CNR of
eq. 9 (lesion against a ring around it), each on the real and the synthetic DES;
dCNR = CNR_synthetic - CNR_real (eq. 12).

000 (Zormpas-Petridis et al. 2026): MAE and SSIM between LE and real DES and
between LE and synthetic DES (the change the contrast makes, per image; the
report gives Pearson r between the two series), and tissue CNR
|mean_adipose - mean_fibroglandular| / (std_adipose + std_fibroglandular) with
the regions' means, for LE, real DES and synthetic DES (its Table 2).
"""

from __future__ import annotations

import numpy as np

from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.evaluation.metrics import (BREAST_CNR_PATCH, EIGHT_BIT, breast_cnr, cnr, lesion_cnr, mae,
                                                        region_errors, ring_around, ssim)

# 003's mass CNR compares the mass with "its surrounding region"; at the evaluated 256x256 of a full-field
# mammogram a pixel is about 1 mm, so this ring is about the 5 mm the Slicer module uses by default.
MASS_RING_PX = 5.0
# 003 trains and measures at 512x512 (its U-Net 512), where its breast-CNR patch is 64 pixels.
PAPER_SIZE_003 = 512
MIN_PATCH = 8
# Automatic tissue regions when none were drawn: LE quartiles inside the breast (bright = fibroglandular).
AUTO_TISSUE_PERCENTILES = (25.0, 75.0)


def _mass_errors(y: np.ndarray, yhat: np.ndarray, mass: np.ndarray) -> tuple[float, float, float | None]:
    """003's mass-only (L1, L2, PSNR) on the 0-255 scale (the breast setting's are the breast region's)."""
    abs_err, sq_err, peak_snr = region_errors(y, yhat, mass)
    return EIGHT_BIT * abs_err, EIGHT_BIT**2 * sq_err, peak_snr


def _or_none(compute, *args) -> float | None:
    """A CNR that is undefined on this image (uniform region, nothing around) is None, not an error."""
    try:
        return compute(*args)
    except ValueError:
        return None


def breast_cnr_patch(shape: tuple[int, int]) -> int:
    """003's 64-pixel patch at 512x512, scaled to an image of `shape` (its longer side)."""
    return max(MIN_PATCH, round(BREAST_CNR_PATCH * max(shape) / PAPER_SIZE_003))


def setting_metrics(des: np.ndarray, synthetic: np.ndarray, breast: np.ndarray,
                    mass: np.ndarray | None) -> dict[str, float | None]:
    """003's values of one image (the "setting" columns): breast CNR always, mass_* with a non-empty mass mask.
    The breast setting's L1, L2 and PSNR are the breast region's "image" columns (metrics.breast_metrics)."""
    des, synthetic = np.asarray(des, np.float64), np.asarray(synthetic, np.float64)
    out: dict[str, float | None] = dict.fromkeys(columns.keys("setting"))
    patch = breast_cnr_patch(des.shape)
    real, fake = breast_cnr(des, breast, patch), breast_cnr(synthetic, breast, patch)
    out["breast_CNR_real"], out["breast_CNR_synthetic"] = real, fake
    out["breast_dCNR"] = None if real is None or fake is None else fake - real
    mass = None if mass is None else np.asarray(mass) > 0.5
    if mass is None or not mass.any():
        return out
    out["mass_L1"], out["mass_L2"], out["mass_PSNR"] = _mass_errors(des, synthetic, mass)
    ring = ring_around(mass, MASS_RING_PX) & breast
    real, fake = _or_none(lesion_cnr, des, mass, ring), _or_none(lesion_cnr, synthetic, mass, ring)
    out["mass_CNR_real"], out["mass_CNR_synthetic"] = real, fake
    out["mass_dCNR"] = None if real is None or fake is None else fake - real
    return out


def change_metrics(le: np.ndarray, des: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    """000's LE-to-DES change (the "change" columns): MAE and SSIM of LE vs real DES and of LE vs synthetic DES."""
    return {"LE_DES_MAE": mae(le, des), "LE_DES_SSIM": ssim(le, des),
            "LE_synthetic_MAE": mae(le, synthetic), "LE_synthetic_SSIM": ssim(le, synthetic)}


def automatic_tissue_regions(le: np.ndarray, breast: np.ndarray,
                             lesion: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(fibroglandular, adipose) when no regions were drawn: the brightest and darkest quarter of the
    LE inside the breast, lesion excluded (000's readers left enhancing areas out). A stand-in for a
    reader's regions, reported as "automatic"; empty masks for an empty breast."""
    inside = np.asarray(breast, bool).copy()
    if lesion is not None:
        inside &= ~(np.asarray(lesion) > 0.5)
    if not inside.any():
        return np.zeros_like(inside), np.zeros_like(inside)
    low, high = np.percentile(le[inside], AUTO_TISSUE_PERCENTILES)
    return inside & (le >= high), inside & (le <= low)


def tissue_metrics(images: dict[str, np.ndarray], fibroglandular: np.ndarray,
                   adipose: np.ndarray) -> dict[str, float | None]:
    """000's tissue CNR and region means for each of columns.TISSUE_IMAGES present in `images` (the "tissue"
    columns).

    None where a region is empty or both are uniform: that image has no defined CNR.
    """
    out: dict[str, float | None] = {}
    fibro, fat = np.asarray(fibroglandular, bool), np.asarray(adipose, bool)
    for name, image in images.items():
        pixels = np.asarray(image, np.float64)
        out[f"tissue_CNR_{name}"] = _or_none(cnr, pixels[fat], pixels[fibro])
        out[f"fibroglandular_mean_{name}"] = float(pixels[fibro].mean()) if fibro.any() else None
        out[f"adipose_mean_{name}"] = float(pixels[fat].mean()) if fat.any() else None
    return out
