"""The papers' per-image analyses beyond pixel similarity: 003's three settings and 000's LE-change and tissue CNR.

Column names of per_image.csv (evaluate.py writes them, report.py reads them).
Every value is a float, or None where undefined for that image (no lesion
mask, no tissue regions, a uniform region).

003 (Hosseinipour et al. 2024), section 6.2, on images scaled to 0-255 as the
paper reports them: L1 = mean |y - yhat|, L2 = mean (y - yhat)^2, PSNR with
the target's maximum, in two regions:
- breast_*: the segmented breast (Otsu on the LE). An image with a lesion mask
  belongs to the "breast with mass" setting, one without to "breast without mass";
- mass_*: the lesion pixels only ("mass only").
CNR: breast CNR of eqs. 10-11 (64x64 patches, stride 16, each against its 8
neighbours) and mass CNR of eq. 9 (lesion against a ring around it), each on the
real and the synthetic DES; dCNR = CNR_synthetic - CNR_real (eq. 12).

000 (Zormpas-Petridis et al. 2026): MAE and SSIM between LE and real DES and
between LE and synthetic DES (the change the contrast makes, per image; the
report gives Pearson r between the two series), and tissue CNR
|mean_adipose - mean_fibroglandular| / (std_adipose + std_fibroglandular) with
the regions' means, for LE, real DES and synthetic DES (its Table 2).
"""

from __future__ import annotations

SETTING_COLUMNS = ("breast_L1", "breast_L2", "breast_PSNR", "breast_CNR_real", "breast_CNR_synthetic", "breast_dCNR",
                   "mass_L1", "mass_L2", "mass_PSNR", "mass_CNR_real", "mass_CNR_synthetic", "mass_dCNR")
CHANGE_COLUMNS = ("LE_DES_MAE", "LE_DES_SSIM", "LE_synthetic_MAE", "LE_synthetic_SSIM")
TISSUE_IMAGES = ("LE", "DES", "synthetic")
TISSUE_COLUMNS = tuple(f"{what}_{image}" for what in ("tissue_CNR", "fibroglandular_mean", "adipose_mean")
                       for image in TISSUE_IMAGES)
