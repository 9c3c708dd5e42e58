"""Preprocessing (pad, stretch, resize), its inverse, mask alignment and augmentation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.preprocessing import (
    PreprocessConfig,
    PreprocessParams,
    breast_side,
    postprocess,
    preprocess,
    preprocess_mask,
)
from VirtualContrastTraining.errors import InputError


def half_disc(rows=120, cols=80, side="left", value=1000.0):
    """A breast as a half-disc against the chest wall (column 0 for left, last column for right)."""
    yy, xx = np.mgrid[:rows, :cols]
    wall = 0 if side == "left" else cols - 1
    inside = (yy - rows / 2) ** 2 + (xx - wall) ** 2 < (0.45 * rows) ** 2
    return np.where(inside, value + 0.5 * yy, 0.0).astype(np.float32)


@pytest.mark.parametrize("laterality, pad_side", [("L", "right"), ("R", "left")])
def test_pads_away_from_the_breast(laterality, pad_side):
    arr = half_disc(side="left" if laterality == "L" else "right")
    out, params = preprocess(Image(arr), laterality=laterality, config=PreprocessConfig(size=60))
    assert out.shape == (60, 60) and out.dtype == np.float32
    assert params.pad_side == pad_side and params.padded_size == 120 and params.original_shape == (120, 80)
    assert 0.0 <= out.min() and out.max() <= 1.0
    # The padded third of the square (40 of 120 columns -> 20 of 60) is empty; the chest wall is not.
    padded = out[:, -18:] if pad_side == "right" else out[:, :18]
    wall = out[:, :3] if pad_side == "right" else out[:, -3:]
    assert padded.max() == 0.0
    assert wall[25:35].min() > 0.3


def test_laterality_from_meta_or_image_content():
    right = half_disc(side="right")
    assert breast_side(right, "") == "right"
    assert breast_side(half_disc(side="left"), "") == "left"
    assert breast_side(right, "L") == "left"  # a given laterality wins over the content
    _, params = preprocess(Image(right, meta={"laterality": "R"}), config=PreprocessConfig(size=32))
    assert params.pad_side == "left"


def test_landscape_images_pad_at_the_bottom_and_invert():
    arr = np.random.default_rng(0).uniform(0, 100, (40, 64)).astype(np.float32)
    out, params = preprocess(Image(arr), laterality="L", window=(50, 100), config=PreprocessConfig(size=64))
    assert params.pad_side == "bottom" and out[40:].max() == 0.0
    back = postprocess(out, params, Image(arr), (0.0, 100.0))
    np.testing.assert_allclose(back.array, np.clip(arr, 0, 100), atol=1e-3)


def test_window_stretching_exact():
    # Square image at the output size: no padding, no resampling, only the stretch.
    arr = np.array([[-10.0, 0.0, 50.0, 100.0] * 2, [150.0, 200.0, 250.0, 100.0] * 2] * 4, dtype=np.float32)
    out, params = preprocess(Image(arr), laterality="L", window=(100.0, 200.0), config=PreprocessConfig(size=8))
    assert params.window == (0.0, 200.0) and params.window_source == "dicom" and params.pad_side == "none"
    expected = np.array([[0.0, 0.0, 0.25, 0.5] * 2, [0.75, 1.0, 1.0, 0.5] * 2] * 4, dtype=np.float32)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_window_from_image_meta_multivalued():
    arr = np.linspace(0, 4000, 64, dtype=np.float32).reshape(8, 8)
    img = Image(arr, meta={"window_center": "2000\\1500", "window_width": [1000, 3000]})
    _, params = preprocess(img, config=PreprocessConfig(size=8))
    assert params.window == (1500.0, 2500.0) and params.window_source == "dicom"


def test_percentile_fallback_ignores_background():
    arr = np.zeros((50, 50), np.float32)
    arr[:, :20] = np.arange(1, 1001, dtype=np.float32).reshape(50, 20)  # breast 1..1000, air 0
    _, params = preprocess(Image(arr), laterality="L", config=PreprocessConfig(size=16, percentiles=(0, 100)))
    assert params.window == (1.0, 1000.0) and params.window_source == "percentile"
    _, params = preprocess(Image(arr), laterality="L", config=PreprocessConfig(size=16))
    lo, hi = np.percentile(np.arange(1, 1001), (0.5, 99.5))
    assert params.window == pytest.approx((lo, hi))


def test_bad_windows_and_constant_images_name_the_file():
    with pytest.raises(InputError, match="invalid intensity window"):
        preprocess(Image(np.ones((4, 4), np.float32)), window=(10, 0))
    with pytest.raises(InputError, match="constant") as err:
        preprocess(Image(np.full((4, 4), 7, np.float32), meta={"source": "/data/le.nrrd"}))
    assert err.value.path == "/data/le.nrrd"
    with pytest.raises(InputError, match="percentiles"):
        PreprocessConfig(percentiles=(99, 1))


def test_postprocess_restores_geometry_and_maps_ones_to_hi():
    theta = math.radians(30)
    direction = (math.cos(theta), -math.sin(theta), 0, math.sin(theta), math.cos(theta), 0, 0, 0, 1)
    le = Image(half_disc(90, 60, "right"), spacing=(0.1, 0.2), origin=(5.0, -3.0, 2.0), direction=direction,
               meta={"source": "le.nrrd"})
    _, params = preprocess(le, laterality="R", config=PreprocessConfig(size=32))
    out = postprocess(np.ones((32, 32), np.float32), params, le, (1700.0, 2400.0))
    assert out.shape == le.shape and out.array.dtype == np.float32
    assert out.spacing == le.spacing and out.origin == le.origin and out.direction == le.direction
    np.testing.assert_array_equal(out.array, 2400.0)
    with pytest.raises(InputError, match="preprocessing parameters"):
        postprocess(np.ones((32, 32)), params, Image(np.zeros((10, 10))), (0, 1))


def test_round_trip_of_a_smooth_image_is_close():
    rows, cols = 300, 200
    yy, xx = np.mgrid[:rows, :cols]
    arr = (1000 + 800 * np.exp(-((yy - 150) ** 2 + (xx - 60) ** 2) / (2 * 50.0 ** 2))).astype(np.float32)
    le = Image(arr)
    window = (1400.0, 600.0)  # clips part of the image on both ends
    out, params = preprocess(le, laterality="L", window=window, config=PreprocessConfig(size=128))
    back = postprocess(out, params, le, params.window)
    stretched = np.clip(arr, 1100, 1700)
    err = np.abs(back.array - stretched) / 600.0
    assert err.mean() < 0.002 and err.max() < 0.02


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_mask_stays_aligned_and_small_lesions_survive(laterality):
    rows, cols, size = 300, 200, 128
    arr = half_disc(rows, cols, "left" if laterality == "L" else "right")
    yy, xx = np.mgrid[:rows, :cols]
    r0, c0 = 100, (40 if laterality == "L" else 159)
    disc = (yy - r0) ** 2 + (xx - c0) ** 2 <= 6 ** 2
    dot = np.zeros_like(disc)
    dot[200, c0] = True  # one pixel: 0.18 of an output pixel
    _, params = preprocess(Image(arr), laterality=laterality, config=PreprocessConfig(size=size))
    out = preprocess_mask(disc, params, PreprocessConfig(size=size))
    assert set(np.unique(out)) == {0.0, 1.0}
    shift = 0 if laterality == "L" else 100  # padding on the left moves columns right
    scale = size / 300
    expected = ((r0 + 0.5) * scale - 0.5, (c0 + shift + 0.5) * scale - 0.5)
    centroid = np.argwhere(out > 0).mean(axis=0)
    assert np.hypot(*(centroid - expected)) < 1.0
    tiny = preprocess_mask(dot, params, PreprocessConfig(size=size))
    assert tiny.sum() == 1.0
    assert np.hypot(*(np.argwhere(tiny)[0] - ((200.5) * scale - 0.5, expected[1]))) <= 1.0


def test_config_and_params_survive_json():
    config = PreprocessConfig(size=128, percentiles=(1.0, 99.0))
    assert PreprocessConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    _, params = preprocess(Image(half_disc()), laterality="L", config=config)
    again = PreprocessParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert again == params and isinstance(again.window, tuple) and isinstance(again.original_shape, tuple)


# --- augmentation ---------------------------------------------------------------------------

def _blob_sample(size=64):
    yy, xx = np.mgrid[:size, :size]
    blob = (((yy - 24) ** 2 + (xx - 20) ** 2) < 100).astype(np.float32)[None]
    return {"le": blob.copy(), "des": blob.copy(), "mask": blob.copy(), "index": 3}


def test_augmentation_identical_on_all_keys_and_mask_binary():
    import torch

    from VirtualContrastTraining.data.augment import make_augmentation

    aug = make_augmentation(prob=1.0, size=64)
    for seed in range(4):
        out = aug(_blob_sample(), seed=seed)
        assert out["index"] == 3 and out["le"].shape == (1, 64, 64) and out["le"].dtype == torch.float32
        assert torch.equal(out["le"], out["des"])
        assert set(torch.unique(out["mask"]).tolist()) <= {0.0, 1.0}
        image_region, mask_region = out["le"] > 0.5, out["mask"] > 0.5
        iou = (image_region & mask_region).sum() / (image_region | mask_region).sum()
        assert iou > 0.85
        assert not torch.equal(out["mask"], torch.from_numpy(_blob_sample()["mask"]))  # it did move


def test_augmentation_deterministic_per_seed_and_varies_across_seeds():
    import torch

    from VirtualContrastTraining.data.augment import make_augmentation, sample_seed

    aug = make_augmentation(prob=0.3, size=64)
    first = aug(_blob_sample(), seed=sample_seed(7, 2, 5))
    aug(_blob_sample(), seed=123)  # drawing in between must not matter
    again = make_augmentation(prob=0.3, size=64)(_blob_sample(), seed=sample_seed(7, 2, 5))
    assert torch.equal(first["le"], again["le"]) and torch.equal(first["mask"], again["mask"])
    outputs = {aug(_blob_sample(), seed=sample_seed(7, e, 5))["le"].numpy().tobytes() for e in range(12)}
    assert len(outputs) >= 4  # with p=0.3 per transform, most seeds change something
    assert sample_seed(7, 2, 5) != sample_seed(7, 5, 2)


def test_real_cdd_cesm_images_side_from_content(cdd_sample):
    """Every sample is a left breast: content alone must find it, and its mirror image is a right one."""
    from VirtualContrastTraining.data.imageio import read_image

    for path in sorted(cdd_sample.glob("P*_L_*")):
        arr = read_image(path).array
        assert breast_side(arr, "") == "left", path.name
        assert breast_side(arr[:, ::-1], "") == "right", path.name
        out, params = preprocess(read_image(path), config=PreprocessConfig(size=64))
        assert params.pad_side in ("right", "none") and 0.05 < out.mean() < 0.5


def test_params_from_a_foreign_sidecar_are_checked():
    bad = {"original_shape": [4, 4], "pad_side": "top", "padded_size": 4, "window": [0, 1], "window_source": "dicom"}
    with pytest.raises(InputError, match="unknown pad side 'top'"):
        PreprocessParams.from_dict(bad)
