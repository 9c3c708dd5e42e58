"""Metrics: hand-computed cases, agreement with scikit-image, and VIF against sewar's reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from VirtualContrastTraining.evaluation import columns, metrics
from VirtualContrastTraining.evaluation.metrics import cnr, image_metrics, mae, masked_mae, mse, psnr, ssim, vif

Y = np.array([[0.0, 1.0], [1.0, 0.5]])
YHAT = np.array([[0.0, 0.5], [1.0, 1.0]])


def smooth_image(shape=(64, 72), seed=0, sigma=2.0, top=1.0):
    """A textured image in [0, top]: smoothed noise, stretched."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape), sigma)
    return top * (img - img.min()) / (img.max() - img.min())


def test_hand_computed_mse_mae_psnr():
    assert mse(Y, YHAT) == pytest.approx(0.125)          # (0 + 0.25 + 0 + 0.25) / 4
    assert mae(Y, YHAT) == pytest.approx(0.25)           # (0 + 0.5 + 0 + 0.5) / 4
    assert psnr(Y, YHAT) == pytest.approx(10 * math.log10(1.0 / 0.125))
    # eq. 10 uses the target's maximum: halving the target's peak lowers PSNR accordingly
    y2 = np.array([[0.0, 0.5], [0.5, 0.25]])
    assert psnr(y2, y2 + 0.1) == pytest.approx(10 * math.log10(0.25 / 0.01))


def test_psnr_edge_cases():
    assert psnr(Y, Y) == math.inf
    with pytest.raises(ValueError, match="positive"):
        psnr(np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="shape"):
        mse(Y, np.zeros((3, 2)))


def test_psnr_and_ssim_equal_scikit_image():
    y = smooth_image(top=0.8, seed=1)
    yhat = np.clip(y + np.random.default_rng(2).normal(0, 0.05, y.shape), 0, 1)
    assert psnr(y, yhat) == pytest.approx(peak_signal_noise_ratio(y, yhat, data_range=y.max()), rel=1e-12)
    assert ssim(y, yhat) == pytest.approx(structural_similarity(y, yhat, data_range=1.0), rel=1e-12)
    assert ssim(y, y) == pytest.approx(1.0)


def test_vif_is_one_for_identical_images():
    y = smooth_image()
    assert vif(y, y) == pytest.approx(1.0, abs=1e-9)


def test_vif_decreases_with_noise_and_blur():
    y = smooth_image(seed=3)
    rng = np.random.default_rng(4)
    noise = rng.normal(0, 1, y.shape)
    noisy = [vif(y, np.clip(y + s * noise, 0, 1)) for s in (0.005, 0.02, 0.08, 0.3)]
    blurred = [vif(y, ndimage.gaussian_filter(y, s)) for s in (0.5, 1.0, 2.0, 4.0)]
    for values in (noisy, blurred):
        assert values[0] < 1.0
        assert all(a > b for a, b in zip(values, values[1:])), values


def test_vif_matches_sewar_reference():
    """sewar.full_ref.vifp is the straight port of vifp_mscale.m; it expects the 0-255 scale."""
    from sewar import full_ref as sewar_full_ref  # a declared test dependency: no skip hides this check
    y = smooth_image(shape=(60, 70), seed=5)
    rng = np.random.default_rng(6)
    for yhat in (np.clip(y + rng.normal(0, 0.03, y.shape), 0, 1), ndimage.gaussian_filter(y, 1.5), 0.7 * y + 0.1):
        expected = sewar_full_ref.vifp(y * metrics.VIF_SCALE, yhat * metrics.VIF_SCALE, sigma_nsq=metrics.VIF_SIGMA_NSQ)
        assert vif(y, yhat) == pytest.approx(expected, rel=1e-9)


def test_vif_rejects_small_or_constant_reference():
    assert 0 < vif(smooth_image((41, 41)), smooth_image((41, 41), seed=9)) < 1
    with pytest.raises(ValueError, match="41x41"):
        vif(smooth_image((40, 40)), smooth_image((40, 40)))
    with pytest.raises(ValueError, match="constant"):
        vif(np.full((48, 48), 0.5), smooth_image((48, 48)))


def test_masked_mae():
    mask = np.array([[0, 1], [0, 1]], dtype=np.float32)      # pixels (0,1) and (1,1): errors 0.5 and 0.5
    assert masked_mae(Y, YHAT, mask) == pytest.approx(0.5)
    assert masked_mae(Y, YHAT, np.zeros((2, 2))) is None
    assert masked_mae(Y, YHAT, np.full((2, 2), 0.3)) is None  # soft mask below 0.5 is outside
    assert masked_mae(Y, YHAT, None) is None
    with pytest.raises(ValueError, match="mask shape"):
        masked_mae(Y, YHAT, np.ones((3, 3)))


def test_cnr_hand_computed_and_errors():
    # a: mean 2, std 1; b: mean 5, std 1 -> |2 - 5| / (1 + 1)
    assert cnr([1.0, 3.0], np.array([[4.0], [6.0]])) == pytest.approx(1.5)
    assert cnr([2.0, 2.0], [4.0, 6.0]) == pytest.approx(3.0)   # one uniform region is fine
    with pytest.raises(ValueError, match="empty"):
        cnr([], [1.0, 2.0])
    with pytest.raises(ValueError, match="zero variance"):
        cnr([1.0, 1.0], [3.0, 3.0])
    with pytest.raises(ValueError, match="non-finite"):
        cnr([1.0, np.nan], [3.0, 4.0])


def test_image_metrics_bundle():
    y = smooth_image(seed=7)
    yhat = np.clip(y + 0.05, 0, 1)
    mask = np.zeros(y.shape)
    mask[10:20, 10:20] = 1
    values = image_metrics(y, yhat, mask)
    assert set(values) == set(columns.keys("image"))
    assert values["MSE"] == pytest.approx(mse(y, yhat))
    assert values["VIF"] == pytest.approx(vif(y, yhat))
    assert values["lesion_MAE"] == pytest.approx(np.mean(np.abs(y - yhat)[10:20, 10:20]))
    assert image_metrics(y, yhat)["lesion_MAE"] is None


def test_metrics_import_without_torch():
    """The Slicer GUI measures CNR before torch is installed: metrics must not pull torch in."""
    import subprocess
    import sys

    code = "import sys, VirtualContrastTraining.evaluation.metrics; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_bright_mae_counts_only_the_brightest_breast_pixels():
    y = np.zeros((20, 20))
    breast = np.zeros((20, 20), bool)
    breast[:, :10] = True
    y[:, :10] = np.linspace(0, 1, 200).reshape(20, 10)   # 200 breast pixels, 10 above the 95th percentile
    y[:, 10:] = 5.0                                       # brighter but outside the breast: ignored
    yhat = y.copy()
    yhat[y >= np.percentile(y[breast], 95)] += 0.25        # error only on the bright breast pixels...
    yhat[:, :10][y[:, :10] < 0.5] += 0.1                   # ...and a different one on dark ones
    assert metrics.bright_mae(y, yhat, breast) == pytest.approx(0.25)
    assert metrics.bright_mae(y, yhat, None) is None
    assert metrics.bright_mae(y, yhat, np.zeros_like(breast)) is None
    assert metrics.bright_mae(np.ones((4, 4)), np.ones((4, 4)), np.ones((4, 4), bool)) is None  # flat DES
    with pytest.raises(ValueError, match="breast mask shape"):
        metrics.bright_mae(y, yhat, breast[:5])
