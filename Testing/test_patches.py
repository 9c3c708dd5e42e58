"""The patch pipeline of 000: preprocessing and its inverse, patch datasets, sliding-window synthesis, and a
tiny training run through train() -> Synthesizer -> evaluate_run with pipeline "patches"."""

from __future__ import annotations

import io
from dataclasses import replace
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.manifest import read_manifest, write_manifest
from VirtualContrastTraining.data.patches import (
    PatchPipeline,
    RandomPatchDataset,
    TilePatchDataset,
    breast_box,
    postprocess_patches,
    prepare_patch_case,
    preprocess_patches,
    sliding_overlap,
)
from VirtualContrastTraining.data.preprocessing import breast_mask
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EXIT_OK, EventWriter
from VirtualContrastTraining.synthesis import Synthesizer
from VirtualContrastTraining.synthetic_wording import METADATA_WARNING

LE_WINDOW, DES_WINDOW = (1800.0, 2900.0), (1700.0, 2400.0)
DIRECTION = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # rows and columns swapped, as a rotated detector


def breast_image(shape=(96, 80), spacing=(0.5, 0.5), seed=0) -> Image:
    """Air at 250 and a smooth 'breast' (1850-2850) against the left edge, with a non-trivial origin/direction."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    arr = np.full(shape, 250.0, np.float32)
    yy, xx = np.mgrid[:rows, :cols]
    inside = ((yy - rows / 2) / (0.4 * rows)) ** 2 + (xx / (0.7 * cols)) ** 2 < 1
    tissue = ndimage.gaussian_filter(rng.random(shape), 5)
    tissue = 1850 + 1000 * (tissue - tissue.min()) / np.ptp(tissue)
    arr[inside] = tissue[inside]
    return Image(arr, spacing=spacing, origin=(-12.5, 40.0, 3.0), direction=DIRECTION, meta={"laterality": "L"})


def patch_sidecar(pipeline: PatchPipeline, des_window=DES_WINDOW) -> dict:
    return {"pipeline": "patches", "preprocessing": pipeline.to_dict(), "des_output_window": list(des_window),
            "config": {"preset": "test"}}


# --- preprocessing ------------------------------------------------------------------------------

def test_inverse_of_forward_gives_the_image_back_inside_the_breast_with_the_exact_geometry():
    image = breast_image()
    pipeline = PatchPipeline(spacing_mm=1.0, le_window=LE_WINDOW, patch_size=32)
    box, params = preprocess_patches(image, pipeline)
    assert params.box == breast_box(image) and params.window_source == "config"
    assert box.shape == params.resampled_shape and box.dtype == np.float32

    back = postprocess_patches(box, params, image, LE_WINDOW)
    assert back.shape == image.shape and back.spacing == image.spacing
    assert back.origin == image.origin and back.direction == image.direction
    # Away from the breast's edge (where interpolation mixes in the air), down to 1 mm and back up from
    # 0.5 mm pixels only smooths the texture a little: no shift, no flip, no scaling error.
    inner = ndimage.binary_erosion(breast_mask(image), iterations=3)
    error = np.abs(back.array - np.clip(image.array, *LE_WINDOW))[inner]
    assert error.mean() < 0.005 * 1100 and error.max() < 0.02 * 1100
    r0, r1, c0, c1 = params.box
    outside = np.ones(image.shape, bool)
    outside[r0:r1, c0:c1] = False
    assert outside.any() and np.all(back.array[outside] == LE_WINDOW[0])
    with pytest.raises(InputError, match="resampled box"):
        postprocess_patches(box[1:], params, image, LE_WINDOW)


def test_resampling_to_1_mm_with_anisotropic_pixels():
    """A 12 mm (columns) x 20 mm (rows) square of 0.5 x 0.25 mm pixels becomes 12 x 20 pixels of 1 mm."""
    arr = np.full((200, 100), 250.0, np.float32)
    arr[20:180, 10:90] = 2000.0                          # breast: 80 x 40 mm
    arr[60:140, 30:54] = 2800.0                          # rows 80 x 0.25 = 20 mm, columns 24 x 0.5 = 12 mm
    image = Image(arr, spacing=(0.5, 0.25))
    box, params = preprocess_patches(image, PatchPipeline(spacing_mm=1.0, le_window=LE_WINDOW))
    assert params.box == (20, 180, 10, 90)
    assert params.resampled_shape == (40, 40) == box.shape
    bright = box > (_scaled(2000) + _scaled(2800)) / 2
    rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
    assert (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == (20, 12)
    assert (rows[0], cols[0]) == (10, 10)                # 40 rows of 0.25 mm, 20 columns of 0.5 mm into the box


def _scaled(value: float, window=LE_WINDOW) -> float:
    return 2 * (value - window[0]) / (window[1] - window[0]) - 1


def test_truncation_clips_to_the_window_and_scales_to_minus_one_one():
    arr = np.full((60, 60), 250.0, np.float32)
    arr[5:55, 5:55] = 1000.0                              # inside the breast but below the window
    arr[10:30, 10:50] = 5000.0                            # above it
    arr[35:50, 10:50] = 2350.0                            # its centre
    box, _ = preprocess_patches(Image(arr, spacing=(1.0, 1.0)), PatchPipeline(spacing_mm=1.0, le_window=LE_WINDOW),
                                box=(5, 55, 5, 55))
    assert box.shape == (50, 50) and box.min() >= -1 and box.max() <= 1
    assert np.all(box[6:24, 6:44] == 1.0) and np.all(box[31:44, 6:44] == pytest.approx(0.0, abs=1e-6))
    assert box[0, 0] == -1.0


def test_windows_come_from_the_config_else_the_dicom_window_else_percentiles():
    image = breast_image()
    derived = PatchPipeline(spacing_mm=1.0)
    _, given = preprocess_patches(image, derived, window=(2000.0, 400.0))
    assert given.window == (1800.0, 2200.0) and given.window_source == "dicom"
    _, percentile = preprocess_patches(image, derived)
    assert percentile.window_source == "percentile" and 1850 <= percentile.window[0] < percentile.window[1] <= 2850
    _, fixed = preprocess_patches(image, PatchPipeline(le_window=LE_WINDOW), window=(2000.0, 400.0))
    assert fixed.window == LE_WINDOW and fixed.window_source == "config"
    with pytest.raises(InputError, match="no breast"):
        breast_box(Image(np.zeros((20, 20), np.float32)))


def test_pipeline_round_trips_through_the_sidecar_dict():
    pipeline = PatchPipeline(spacing_mm=0.5, le_window=LE_WINDOW, des_window=None, patch_size=64, sw_stride=8)
    assert PatchPipeline.from_dict(pipeline.to_dict()) == pipeline
    with pytest.raises(InputError, match="malformed"):
        PatchPipeline.from_dict({"spacing_mm": 1.0}, where="model.safetensors")


# --- datasets -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared(small_phantom):
    pipeline = PatchPipeline(spacing_mm=1.0, le_window=LE_WINDOW, des_window=DES_WINDOW, patch_size=32)
    return [prepare_patch_case(c, pipeline) for c in read_manifest(small_phantom)[:3]]


def test_prepared_cases_share_the_les_box(prepared):
    for p in prepared:
        assert p.le.shape == p.des.shape == p.mask.shape == p.params.resampled_shape
        assert p.des_params.box == p.params.box and p.des_params.window == DES_WINDOW
        # 2 mm phantom pixels at 1 mm: twice as many pixels as the box
        assert p.params.resampled_shape == tuple(2 * n for n in p.params.box_shape)
        assert p.has_mask == bool(p.case.lesion_path) and set(np.unique(p.mask)) <= {0.0, 1.0}
    assert any(p.mask.any() for p in prepared)


def test_without_fixed_windows_each_image_keeps_its_dicom_window(small_phantom):
    from VirtualContrastTraining.data.prepared import des_output_window

    cases = read_manifest(small_phantom)[:2]
    derived = [prepare_patch_case(c, PatchPipeline(spacing_mm=2.0, patch_size=32)) for c in cases]
    # The phantom's manifest records DICOM windows (centre, width) of 2350/1100 (LE) and 2050/700 (DES).
    assert all(p.params.window == LE_WINDOW and p.params.window_source == "dicom" for p in derived)
    assert all(p.des_params.window == DES_WINDOW for p in derived)
    assert des_output_window(derived) == DES_WINDOW


def test_random_patches_lie_in_the_box_and_are_reproducible(prepared):
    data = RandomPatchDataset(prepared, 32, patches_per_image=4, seed=5)
    assert len(data) == 12
    data.set_epoch(3)
    positions = [data.position(i) for i in range(len(data))]
    for i, (number, row, col) in enumerate(positions):
        p = prepared[number]
        assert number == i // 4
        assert 0 <= row <= p.le.shape[0] - 32 and 0 <= col <= p.le.shape[1] - 32
        item = data[i]
        assert item["le"].shape == item["des"].shape == item["mask"].shape == (1, 32, 32)
        assert item["index"] == i and item["has_mask"] == p.has_mask
        for key in ("le", "des", "mask"):
            assert np.array_equal(item[key][0].numpy(), getattr(p, key)[row:row + 32, col:col + 32])
    again = RandomPatchDataset(prepared, 32, patches_per_image=4, seed=5)
    again.set_epoch(3)
    assert [again.position(i) for i in range(12)] == positions
    again.set_epoch(4)
    assert [again.position(i) for i in range(12)] != positions
    other_seed = RandomPatchDataset(prepared, 32, patches_per_image=4, seed=6)
    other_seed.set_epoch(3)
    assert [other_seed.position(i) for i in range(12)] != positions


def test_validation_tiles_cover_each_box_and_small_boxes_are_padded(prepared):
    tiles = TilePatchDataset(prepared, 32)
    covered = [np.zeros(p.le.shape, int) for p in prepared]
    for i in range(len(tiles)):
        number, row, col = tiles.position(i)
        covered[number][row:row + 32, col:col + 32] += 1
    assert all(c.min() >= 1 and c.max() <= 4 for c in covered)
    assert [tiles.position(i) for i in range(len(tiles))] == [TilePatchDataset(prepared, 32).position(i)
                                                              for i in range(len(tiles))]
    big = TilePatchDataset(prepared[:1], 256)                 # larger than the box: one padded tile
    assert len(big) == 1
    item = big[0]
    rows, cols = prepared[0].le.shape
    assert item["le"].shape == (1, 256, 256)
    assert np.array_equal(item["le"][0, :rows, :cols].numpy(), prepared[0].le)
    assert torch.all(item["le"][0, rows:] == -1) and torch.all(item["mask"][0, :, cols:] == 0)


# --- sliding window -----------------------------------------------------------------------------

class WindowMean(torch.nn.Module):
    """Each window's output is that window's mean, everywhere in the window; counts the windows it sees."""

    def __init__(self):
        super().__init__()
        self.windows = 0

    def forward(self, x):
        self.windows += len(x)
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()


def _starts(length: int, size: int, stride: int) -> list[int]:
    return sorted({min(i * stride, length - size) for i in range(math.ceil((length - size) / stride) + 1)})


@pytest.mark.parametrize("size, stride, shape", [(32, 16, (70, 53)), (20, 2, (40, 30)), (28, 3, (28, 61))])
def test_sliding_window_steps_by_the_stride_and_averages_overlaps_equally(size, stride, shape):
    pipeline = PatchPipeline(patch_size=size, sw_stride=stride)
    net = WindowMean()
    synth = Synthesizer(net, patch_sidecar(pipeline), torch.device("cpu"))
    rows, cols = shape
    box = (np.add.outer(np.arange(rows), 3 * np.arange(cols)) / (rows + 3 * cols)).astype(np.float32)
    out = synth.predict_patches(box)
    # By hand: windows at multiples of the stride (the last flush with the edge), each weighing the same.
    total, count = np.zeros(shape), np.zeros(shape)
    for r in _starts(rows, size, stride):
        for c in _starts(cols, size, stride):
            total[r:r + size, c:c + size] += box[r:r + size, c:c + size].mean()
            count[r:r + size, c:c + size] += 1
    assert net.windows == len(_starts(rows, size, stride)) * len(_starts(cols, size, stride))
    np.testing.assert_allclose(out, total / count, atol=1e-5)
    assert sliding_overlap(size, size) == 0.0


def test_sliding_window_of_an_identity_network_gives_the_input_back():
    pipeline = PatchPipeline(spacing_mm=1.0, le_window=LE_WINDOW, patch_size=32, sw_stride=16)
    synth = Synthesizer(torch.nn.Identity(), patch_sidecar(pipeline, des_window=LE_WINDOW), torch.device("cpu"))
    rng = np.random.default_rng(1)
    for shape in ((70, 53), (20, 45)):                   # the second is smaller than a window: padded
        box = rng.uniform(-1, 1, shape).astype(np.float32)
        np.testing.assert_allclose(synth.predict_patches(box), box, atol=1e-6)

    image = breast_image()
    out = synth.synthesize(image)
    assert out.same_geometry(image) and out.direction == image.direction
    assert out.meta["Synthetic"] == "true" and out.meta["VirtualContrast.Warning"] == METADATA_WARNING
    assert out.meta["role"] == "SYNTHETIC" and out.meta["window_center"] == 2350.0
    _, params = preprocess_patches(image, pipeline)
    expected = postprocess_patches(preprocess_patches(image, pipeline)[0], params, image, LE_WINDOW)
    np.testing.assert_allclose(out.array, expected.array, atol=1e-3)


def test_a_sidecar_with_an_unknown_pipeline_is_refused():
    with pytest.raises(InputError, match="unknown pipeline 'tiles'"):
        Synthesizer(torch.nn.Identity(), {**patch_sidecar(PatchPipeline()), "pipeline": "tiles"}, torch.device("cpu"))


# --- end to end ---------------------------------------------------------------------------------

TINY_PATCHES = {"pipeline": "patches", "ngf": 4, "ndf": 4, "n_blocks": 1, "patch_size": 32, "sw_stride": 16,
                "patches_per_image": 2, "batch_size": 4, "epochs": 1, "spacing_mm": 2.0, "lr": 1e-3,
                "le_window": "1800,2900", "des_window": "1700,2400"}


@pytest.fixture(scope="module")
def patch_run(small_phantom, tmp_path_factory):
    """A 1-epoch patch cycle-GAN on the 6-image phantom: patients 1-2 train, 3 val, 4 test."""
    from VirtualContrastTraining.config.presets import resolve_config
    from VirtualContrastTraining.train import train

    root = tmp_path_factory.mktemp("patchrun")
    splits = {"PHANTOM-0001": "train", "PHANTOM-0002": "train", "PHANTOM-0003": "val", "PHANTOM-0004": "test"}
    cases = [replace(c, split=splits[c.patient_id]) for c in read_manifest(small_phantom)]
    manifest = write_manifest(root / "manifest.csv", cases)
    config = resolve_config("demo", TINY_PATCHES)
    events = io.StringIO()
    assert train(config, manifest, root / "run", device="cpu", events=EventWriter(events)) == EXIT_OK
    return manifest, root / "run", events.getvalue()


def test_patch_training_then_synthesis_in_the_le_geometry(patch_run):
    import json

    from VirtualContrastTraining.checkpoints import read_pair
    from VirtualContrastTraining.data.imageio import read_image

    manifest, run, events = patch_run
    started = json.loads(events.splitlines()[0])
    # 4 training images x 2 patches, batches of 4: 2 steps per epoch
    assert (started["n_train"], started["steps_per_epoch"], started["total_steps"]) == (4, 2, 2)
    _, sidecar = read_pair(run / "model.safetensors")
    assert sidecar["pipeline"] == "patches" and sidecar["des_output_window"] == list(DES_WINDOW)
    assert PatchPipeline.from_dict(sidecar["preprocessing"]) == PatchPipeline(
        spacing_mm=2.0, le_window=LE_WINDOW, des_window=DES_WINDOW, patch_size=32, sw_stride=16)

    synth = Synthesizer.load(run, device="cpu")
    assert synth.pipeline == "patches"
    test_case = next(c for c in read_manifest(manifest) if c.split == "test")
    le = read_image(test_case.le_path)
    des = synth.synthesize(le, laterality=test_case.laterality)
    assert des.same_geometry(le) and des.direction == le.direction and des.array.dtype == np.float32
    assert des.meta["Synthetic"] == "true" and des.meta["role"] == "SYNTHETIC"
    r0, r1, c0, c1 = breast_box(le)
    inside = des.array[r0:r1, c0:c1]
    assert DES_WINDOW[0] <= inside.min() and inside.max() <= DES_WINDOW[1] and inside.std() > 0
    assert np.all(des.array[:r0] == DES_WINDOW[0]) and np.all(des.array[r1:] == DES_WINDOW[0])


def test_evaluate_run_measures_a_patch_model_in_the_resize_comparison_space(patch_run, tmp_path):
    from VirtualContrastTraining.data.prepared import prepare_cases
    from VirtualContrastTraining.data.preprocessing import PreprocessConfig
    from VirtualContrastTraining.evaluation.evaluate import COMPARISON_SIZE, IDENTITY_NAME
    from VirtualContrastTraining.evaluation.run import evaluate_run

    manifest, run, _ = patch_run
    result = evaluate_run(run, manifest, split="test", out_dir=tmp_path / "eval", device="cpu")
    model_rows = [r for r in result.rows if r["model"] == result.model_name]
    assert [r["case_id"] for r in model_rows] == ["PHANTOM-0004_R_CC"]
    # The identity baseline is the LE as a resize model at 256 would see it: the same comparison space.
    test_cases = [c for c in read_manifest(manifest) if c.split == "test"]
    prepared = prepare_cases(test_cases, PreprocessConfig(size=COMPARISON_SIZE))
    identity = next(r for r in result.rows if r["model"] == IDENTITY_NAME)
    assert identity["MSE"] == pytest.approx(float(np.mean((prepared[0].le - prepared[0].des) ** 2)))
    assert 0 < model_rows[0]["MSE"] < 1 and np.isfinite(model_rows[0]["SSIM"])
    text = result.summary_md.read_text()
    assert f"{COMPARISON_SIZE}x{COMPARISON_SIZE}" in text and "patch model" in text
    assert len(result.heatmaps) == 1 and result.heatmaps[0].is_file()
