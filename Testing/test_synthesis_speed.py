"""Issue 17's cheaper synthesis: the same numbers as before, in less time.

The resize to the network's input is the separable-weights form of
scikit-image's anti-aliased bilinear resize (training sees the same input as
before, within float32 rounding); the resize back runs only over the LE's
rows and columns, on the synthesizer's device; the sliding window of patch
models is unchanged on the CPU (SW_BATCH_SIZE windows, float32, no autocast).
Tolerances: 1e-5 on [0, 1] for the resize, 0.01 intensity units (of a 700-wide
DES window) for a whole synthesis against the scikit-image pipeline it replaced.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from skimage.transform import resize

from conftest import make_tiny_model
from VirtualContrastTraining.config.presets import resolve_config
from VirtualContrastTraining.data import preprocessing
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.data.patches import BACKGROUND, sliding_overlap
from VirtualContrastTraining.data.prepared import prepare_case
from VirtualContrastTraining.data.preprocessing import PreprocessConfig, PreprocessParams, postprocess, preprocess
from VirtualContrastTraining.synthesis import SW_BATCH_SIZE, Synthesizer


def _skimage_resize(arr, size):
    """The resize of the code before issue 17 (preprocessing._resize then)."""
    out = resize(arr, (size, size), order=1, mode="edge", anti_aliasing=size < arr.shape[0], preserve_range=True)
    return out.astype(np.float32)


def _skimage_postprocess(pred, params, reference, out_window):
    """postprocess of the code before issue 17: scikit-image's resize of the whole padded square, then the crop."""
    size = params.padded_size
    full = resize(np.asarray(pred, np.float64), (size, size), order=1, mode="edge",
                  anti_aliasing=size < pred.shape[0], preserve_range=True)
    rows, cols = params.original_shape
    kept = full[:, size - cols:] if params.pad_side == "left" else full[:rows, :cols]
    lo, hi = out_window
    return lo + np.clip(kept, 0, 1) * (hi - lo)


@pytest.mark.parametrize("shape, size", [((700, 700), 256), ((513, 513), 64), ((300, 300), 128), ((48, 48), 200)])
def test_resize_gives_scikit_image_numbers(shape, size):
    """Shrinking (anti-aliased, sizes that do not divide) and enlarging: the previous resize within rounding."""
    arr = np.random.default_rng(0).random(shape).astype(np.float32)
    arr[:, shape[1] // 2:] = 0  # padding beside the breast, as preprocess makes it
    assert np.abs(preprocessing._resize(arr, size) - _skimage_resize(arr, size)).max() < 1e-5


def test_resize_is_anti_aliased():
    """Stripes finer than the output pixels (a period of 2.3 pixels, 8 to an output pixel) shrink to their mean,
    where plain bilinear sampling aliases them into a coarse beat."""
    columns = np.arange(2048)
    stripes = np.tile((0.5 + 0.5 * np.sin(2 * np.pi * columns / 2.3)).astype(np.float32), (2048, 1))
    shrunk = preprocessing._resize(stripes, 256)
    plain = torch.nn.functional.interpolate(torch.from_numpy(stripes)[None, None], size=(256, 256), mode="bilinear",
                                            align_corners=False)[0, 0].numpy()
    assert np.abs(shrunk - 0.5).max() < 0.01
    assert plain.std() > 0.05  # what aliasing looks like: a beat of period 23 output pixels


def test_training_input_is_what_the_previous_resize_gave(small_phantom, monkeypatch):
    """Training's prepared cases: LE and DES within rounding, lesion masks (resized, thresholded at 0.5) equal."""
    cases = [c for c in read_manifest(small_phantom) if c.lesion_path][:3]
    assert cases
    config = PreprocessConfig(size=64)
    for case in cases:
        new = prepare_case(case, config)
        with monkeypatch.context() as patched:
            patched.setattr(preprocessing, "_resize", _skimage_resize)
            old = prepare_case(case, config)
        assert np.abs(new.le - old.le).max() < 1e-5 and np.abs(new.des - old.des).max() < 1e-5
        assert new.mask.any() and np.array_equal(new.mask, old.mask)


@pytest.mark.parametrize("laterality, shape", [("L", (330, 250)), ("R", (300, 340))])
def test_synthesis_in_the_le_geometry_close_to_the_previous_pipeline(tmp_path, laterality, shape):
    """A whole synthesis: the LE's geometry, and the previous pipeline's DES within 0.01 intensity units."""
    rng = np.random.default_rng(1)
    arr = np.zeros(shape, np.float32)
    tissue = slice(0, shape[1] * 2 // 3) if laterality == "L" else slice(shape[1] // 3, shape[1])
    arr[:, tissue] = 1800 + 600 * rng.random((shape[0], arr[:, tissue].shape[1]))
    le = Image(arr, spacing=(0.1, 0.1), origin=(3.0, -2.0), meta={"laterality": laterality})
    synth = Synthesizer.load(make_tiny_model(tmp_path / "run", image_size=64), device="cpu")
    out = synth.synthesize(le)
    assert out.same_geometry(le) and out.array.dtype == np.float32

    le01, params = preprocess(le, config=synth.preprocess_config)
    with torch.inference_mode():
        pred = synth.predict01(le01)
    before = _skimage_postprocess(pred, params, le, synth.des_window)
    assert np.abs(out.array - before).max() < 0.01
    assert np.abs(postprocess(pred, params, le, synth.des_window).array - before).max() < 0.01


def test_postprocess_shrinks_when_the_le_is_smaller_than_the_network_input():
    """An LE smaller than the model's input: the resize back is the previous anti-aliased one, too."""
    pred = np.random.default_rng(2).random((64, 64)).astype(np.float32)
    reference = Image(np.zeros((40, 30), np.float32))
    params = PreprocessParams((40, 30), "right", 40, (0.0, 1.0), "dicom")
    before = _skimage_postprocess(pred, params, reference, (0.0, 1.0))
    assert np.abs(postprocess(pred, params, reference, (0.0, 1.0)).array - before).max() < 1e-5


def test_patch_path_on_the_cpu_is_monai_with_the_cpu_batch():
    """On the CPU: SW_BATCH_SIZE windows per pass, float32 without autocast, the same numbers as MONAI's
    sliding_window_inference called as before issue 17."""
    config = resolve_config("zormpas2026-cyclegan-patch", {"ngf": 4, "n_blocks": 1, "patch_size": 32, "sw_stride": 8})
    torch.manual_seed(0)
    synth = Synthesizer.untrained(config, (1700.0, 2400.0), "cpu")
    assert synth.sw_batch_size() == SW_BATCH_SIZE
    seen = []
    synth.generator.register_forward_pre_hook(
        lambda module, args: seen.append((len(args[0]), torch.is_autocast_enabled("cpu"), args[0].dtype)))
    box = np.random.default_rng(3).uniform(-1, 1, (70, 90)).astype(np.float32)
    out = synth.predict_patches(box)
    assert seen[0] == (SW_BATCH_SIZE, False, torch.float32)
    with torch.inference_mode():
        before = sliding_window_inference(torch.from_numpy(box)[None, None], (32, 32), SW_BATCH_SIZE, synth.generator,
                                          overlap=sliding_overlap(32, 8), mode="constant", padding_mode="constant",
                                          cval=BACKGROUND)
    np.testing.assert_array_equal(out, before[0, 0].clamp(-1, 1).numpy())


@pytest.mark.parametrize("free_mib, expected", [(2, SW_BATCH_SIZE), (100, 200), (80_000, 256)])
def test_cuda_windows_per_pass_follow_free_memory(monkeypatch, free_mib, expected):
    """On CUDA (its free memory stubbed: no GPU here), a quarter of the free memory at 8 float32 maps of ngf
    channels per window, between the CPU's 8 and 256."""
    config = resolve_config("zormpas2026-cyclegan-patch", {"ngf": 4, "n_blocks": 1, "patch_size": 32, "sw_stride": 8})
    cpu = Synthesizer.untrained(config, (1700.0, 2400.0), "cpu")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free_mib * 2 ** 20, 80 * 2 ** 30))
    synth = Synthesizer(cpu.generator, cpu.sidecar, torch.device("cuda"))
    assert synth.sw_batch_size() == expected  # 100 MiB / 4 / (8 * 4 * 32² * 4 bytes) = 200
