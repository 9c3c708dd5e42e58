"""003's settings (L1, L2, PSNR, breast and mass CNR, dCNR) and 000's change and tissue analyses, per image.

Checked against hand-computed cases and against a plain loop written
independently of the summed-area tables that `breast_cnr` uses.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.evaluation.analyses import (MASS_RING_PX, automatic_tissue_regions, change_metrics,
                                                         setting_metrics, tissue_metrics)
from VirtualContrastTraining.evaluation.metrics import (breast_cnr, breast_metrics, cnr, image_metrics, l1, l2,
                                                        lesion_cnr, psnr, ring_around, ssim, vif)

SETTING_COLUMNS, CHANGE_COLUMNS, TISSUE_COLUMNS = (columns.keys(g) for g in ("setting", "change", "tissue"))


def smooth(seed: int, shape=(96, 96)) -> np.ndarray:
    img = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 2.0)
    return (img - img.min()) / (img.max() - img.min())


def test_l1_l2_are_on_the_8_bit_scale_003_reports():
    y = np.zeros((4, 4))
    yhat = np.zeros((4, 4))
    yhat[0, :2] = 1.0                      # two pixels off by the full range: 255 each on 8 bits
    assert l1(y, yhat) == pytest.approx(2 * 255 / 16)
    assert l2(y, yhat) == pytest.approx(2 * 255**2 / 16)
    a, b = smooth(1), smooth(2)
    assert l2(a, b) == pytest.approx(255**2 * mean_squared_error(a, b))


def test_breast_cnr_hand_case():
    """One patch position: a 2x2 patch of 3 whose surroundings are a 0/2 checkerboard (mean 1, sd 1)."""
    image = (np.indices((4, 4)).sum(0) % 2) * 2.0
    image[:2, :2] = 3.0
    assert breast_cnr(image, np.ones((4, 4), bool), patch=2, stride=4) == pytest.approx((3 - 1) / 1)


def _loop_breast_cnr(image, breast, patch, stride):
    """The definition read literally (003 eqs. 10-11), one patch at a time."""
    values = []
    for r in range(0, image.shape[0] - patch + 1, stride):
        for c in range(0, image.shape[1] - patch + 1, stride):
            if not breast[r:r + patch, c:c + patch].all():
                continue
            around = np.zeros_like(breast)
            around[max(r - patch, 0):r + 2 * patch, max(c - patch, 0):c + 2 * patch] = True
            around[r:r + patch, c:c + patch] = False
            around &= breast
            if around.sum() < patch * patch or image[around].std() == 0:
                continue
            values.append((image[r:r + patch, c:c + patch].mean() - image[around].mean()) / image[around].std())
    return float(np.mean(values)) if values else None


@pytest.mark.parametrize("patch", [64, 16])
def test_breast_cnr_matches_the_literal_loop_on_an_irregular_breast(patch):
    image = smooth(3, (256, 224))
    image[120:150, 100:140] += 0.5                          # an enhancing spot
    yy, xx = np.mgrid[:256, :224]
    breast = (yy - 128) ** 2 / 120**2 + xx**2 / 200**2 < 1  # a half-ellipse against the left edge
    ours = breast_cnr(image, breast, patch=patch)
    assert ours == pytest.approx(_loop_breast_cnr(image, breast, patch, patch // 4), rel=1e-9)


def test_breast_cnr_undefined_cases_are_none_or_zero():
    assert breast_cnr(np.full((128, 128), 0.3), np.ones((128, 128), bool)) is None    # uniform: no spread
    small = np.zeros((128, 128), bool)
    small[10:40, 10:40] = True
    assert breast_cnr(smooth(4, (128, 128)), small) is None                            # breast below a patch
    noise = np.random.default_rng(0).normal(0.5, 0.1, (512, 512))
    assert abs(breast_cnr(noise, np.ones((512, 512), bool))) < 0.01                   # no structure: about 0
    with pytest.raises(ValueError, match="breast mask shape"):
        breast_cnr(noise, np.ones((4, 4), bool))


def test_setting_metrics_regions_and_delta_cnr():
    des = smooth(5, (160, 160))
    breast = np.zeros(des.shape, bool)
    breast[:, :130] = True
    mass = np.zeros(des.shape, bool)
    mass[60:72, 50:62] = True
    des[mass] += 0.4
    synthetic = des.copy()
    synthetic[mass] -= 0.2                                   # under-enhanced lesion
    synthetic[:, 130:] = 0.9                                 # errors outside the breast do not count
    values = setting_metrics(des, synthetic, breast, mass)
    assert set(values) == set(SETTING_COLUMNS)
    assert values["mass_L1"] == pytest.approx(0.2 * 255)
    assert values["mass_L2"] == pytest.approx((0.2 * 255) ** 2)
    region = breast_metrics(des, synthetic, breast)            # 003's breast setting: the breast region's values
    assert region["breast_L1"] == pytest.approx(0.2 * 255 * mass.sum() / breast.sum())
    assert region["breast_PSNR"] == pytest.approx(
        peak_signal_noise_ratio(des[breast], synthetic[breast], data_range=des[breast].max()))
    ring = ring_around(mass, MASS_RING_PX) & breast
    assert values["mass_CNR_real"] == pytest.approx(lesion_cnr(des, mass, ring))
    assert values["mass_dCNR"] == pytest.approx(lesion_cnr(synthetic, mass, ring) - lesion_cnr(des, mass, ring))
    assert values["mass_dCNR"] < 0                           # the fake lesion stands out less
    assert values["breast_dCNR"] < 0
    assert values["breast_dCNR"] == pytest.approx(values["breast_CNR_synthetic"] - values["breast_CNR_real"])
    without = setting_metrics(des, des, breast, None)
    assert without["breast_dCNR"] == 0
    same = breast_metrics(des, des, breast)
    assert same["breast_L1"] == 0 and same["breast_PSNR"] == math.inf and same["breast_SSIM"] == pytest.approx(1)
    assert all(without[k] is None for k in SETTING_COLUMNS if k.startswith("mass_"))


def test_change_metrics_are_000s_le_to_des_and_le_to_synthetic():
    le, des, fake = smooth(6), smooth(7), smooth(8)
    values = change_metrics(le, des, fake)
    assert tuple(values) == CHANGE_COLUMNS
    assert values["LE_DES_MAE"] == pytest.approx(np.abs(le - des).mean())
    assert values["LE_synthetic_SSIM"] == pytest.approx(structural_similarity(le, fake, data_range=1.0))


def test_tissue_metrics_table_2_values_and_automatic_regions():
    le = smooth(9)
    breast = np.ones(le.shape, bool)
    lesion = np.zeros(le.shape, bool)
    lesion[:10, :10] = True
    fibro, fat = automatic_tissue_regions(le, breast, lesion)
    assert not (fibro & fat).any() and not (fibro & lesion).any() and not (fat & lesion).any()
    assert le[fibro].min() > le[fat].max()                               # bright vs dark quarter
    assert fibro.sum() == pytest.approx(0.25 * (~lesion).sum(), rel=0.02)
    des = 1 - le
    values = tissue_metrics({"LE": le, "DES": des}, fibro, fat)
    assert set(values) == {c for c in TISSUE_COLUMNS if not c.endswith("synthetic")}
    assert values["tissue_CNR_LE"] == pytest.approx(cnr(le[fat], le[fibro]))
    assert values["tissue_CNR_DES"] == pytest.approx(values["tissue_CNR_LE"])   # |.| of an inverted image
    assert values["fibroglandular_mean_DES"] == pytest.approx(1 - values["fibroglandular_mean_LE"])
    empty = tissue_metrics({"synthetic": le}, np.zeros(le.shape, bool), fat)
    assert empty["tissue_CNR_synthetic"] is None and empty["fibroglandular_mean_synthetic"] is None


def test_padding_raises_the_whole_square_values_but_not_the_breasts():
    """The two regions of columns.REGIONS: padding a portrait image to a square with zeros (what preprocessing
    does) adds easy, correct pixels to the whole square; the breast region's values stay those of the breast."""
    des = smooth(11, (96, 96))
    synthetic = np.clip(des + 0.05 * smooth(12, des.shape), 0, 1)
    breast = np.ones(des.shape, bool)
    padded = [np.pad(image, ((0, 0), (0, 96))) for image in (des, synthetic, breast)]
    square, inside = image_metrics(*padded[:2], breast=padded[2]), image_metrics(des, synthetic, breast=breast)
    assert square["PSNR"] > psnr(des, synthetic) + 2.9 and square["SSIM"] > ssim(des, synthetic)
    for metric in ("MSE", "PSNR", "MAE", "L1", "L2"):
        assert square[f"breast_{metric}"] == pytest.approx(inside[metric])
    # SSIM: the map's mean over breast pixels; VIF: windows centred in the breast (all of them here)
    _, ssim_map = structural_similarity(*padded[:2], data_range=1.0, full=True)
    assert square["breast_SSIM"] == pytest.approx(ssim_map[padded[2]].mean())
    assert inside["breast_VIF"] == pytest.approx(vif(des, synthetic))
    assert square["breast_VIF"] == pytest.approx(vif(*padded[:2], region=padded[2]))
    assert square["breast_VIF"] != pytest.approx(square["VIF"])
    assert all(v is None for k, v in image_metrics(des, synthetic).items() if k.startswith("breast_"))
