"""Synthetic images carry their intensity units, and `evaluate --synthetic` refuses one whose range does not fit
the real DES window it is scored against (issue 15: a phantom model's 1700..2400 stretched with an 8-bit DES's
window clipped every pixel, silently). Also: provenance records the device actually used."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from conftest import make_tiny_model
from hostile import expect_clear_error, expect_handled, run_cli
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import bitmap_text, read_image, write_nrrd
from VirtualContrastTraining.data.manifest import Case, read_manifest, write_manifest
from VirtualContrastTraining.devices import resolve_device
from VirtualContrastTraining.evaluation.run import evaluate_run, synthetic_range, units_problem
from VirtualContrastTraining.synthesis import Synthesizer
from VirtualContrastTraining.synthetic_export import write_synthetic_bitmap, write_synthetic_dicom, write_synthetic_nrrd
from VirtualContrastTraining.synthetic_wording import UNITS_FIELD, intensity_units

PHANTOM_UNITS = intensity_units(1700, 2400)


@pytest.fixture(scope="module")
def phantom_split(small_phantom, tmp_path_factory):
    """The small phantom with train / test splits (2 test cases)."""
    cases = read_manifest(small_phantom)
    splits = ["train"] * 4 + ["test"] * 2
    return write_manifest(tmp_path_factory.mktemp("split") / "manifest.csv",
                          [replace(c, split=s) for c, s in zip(cases, splits)])


def _listing(path, files: dict[str, object]):
    path.write_text("case_id,synthetic_path\n" + "".join(f"{case},{file}\n" for case, file in files.items()))
    return path


# ---------------------------------------------------------------- every format states its units


def test_every_output_format_states_its_units(small_phantom, tmp_path):
    synth = Synthesizer.load(make_tiny_model(tmp_path / "run"), device="cpu")
    synthetic = synth.synthesize(read_image(read_manifest(small_phantom)[0].le_path))
    nrrd = write_synthetic_nrrd(synthetic, tmp_path / "a_SYNTHETIC.nrrd")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(nrrd))
    reader.ReadImageInformation()
    assert reader.GetMetaData(UNITS_FIELD) == PHANTOM_UNITS == "DES units of the training set, window 1700..2400"
    ds = pydicom.dcmread(write_synthetic_dicom(synthetic, tmp_path / "a_SYNTHETIC.dcm"))
    assert f"Intensity units: {PHANTOM_UNITS}" in ds.DerivationDescription
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (2050, 700)
    for fmt in ("png", "tiff"):
        out = write_synthetic_bitmap(synthetic, tmp_path / f"a_SYNTHETIC.{fmt}", fmt)
        assert bitmap_text(out)[UNITS_FIELD] == PHANTOM_UNITS
        back = read_image(out)  # the units and the window come back into meta, as from an NRRD
        assert back.meta[UNITS_FIELD] == PHANTOM_UNITS and float(back.meta["window_center"]) == 2050
        assert back.array.dtype == np.uint16 and 1700 <= back.array.min() and back.array.max() <= 2400


# ---------------------------------------------------------------- the rule, on both sides


def test_half_of_the_range_inside_the_real_window_is_the_limit():
    assert units_problem((0, 100), (50, 300)) == ""                       # exactly half inside: scored
    assert "49% of it lies inside the real DES window 51..300" in units_problem((0, 100), (51, 300))
    assert units_problem((1700, 2400), (1700, 2400)) == ""
    assert "0%" in units_problem((1700, 2400), (3, 136))                  # the issue's case
    assert units_problem((60, 60), (3, 136)) == "" and "0%" in units_problem((200, 200), (3, 136))


def test_range_from_the_metadata_else_from_the_breast_pixels():
    rows, cols = np.mgrid[:80, :60]
    breast = (rows - 40) ** 2 + (cols * 1.5) ** 2 < 35**2                  # a half-disc against the left edge
    pixels = np.where(breast, 100 + cols, 0).astype(np.float32)             # tissue 100..~130 on air 0
    low, high, source = synthetic_range(Image(pixels))
    assert 100 <= low < high <= 131 and "percentile of its breast pixels" in source  # the air is not in it
    stated = Image(pixels, meta={"window_center": 2050, "window_width": 700, UNITS_FIELD: PHANTOM_UNITS})
    assert synthetic_range(stated) == (1700, 2400, f"its metadata: {PHANTOM_UNITS}")


# ---------------------------------------------------------------- evaluate --synthetic, real CLI


def test_evaluate_refuses_other_units_from_metadata_and_scores_the_same_units(phantom_split, tmp_path):
    """predict's output of a model trained on 8-bit DES (window 0..255) against the phantom's 1700..2400: refused,
    naming both files and both ranges; the phantom model's output (its window 1700..2400) is scored."""
    test = [c for c in read_manifest(phantom_split) if c.split == "test"]
    outputs = {}
    for name, window in (("eight_bit", (0.0, 255.0)), ("phantom", (1700.0, 2400.0))):
        model = make_tiny_model(tmp_path / name, des_window=window)
        expect_handled(run_cli("predict", "--model", model, "--input", phantom_split, "--split", "test",
                               "--out", tmp_path / f"{name}_out", "--device", "cpu"))
        outputs[name] = {c.case_id: tmp_path / f"{name}_out" / f"{c.case_id}_SYNTHETIC-DES.nrrd" for c in test}

    listing = _listing(tmp_path / "eight_bit.csv", outputs["eight_bit"])
    first = test[0]
    outcome = run_cli("evaluate", "--synthetic", listing, "--manifest", phantom_split, "--out", tmp_path / "e1")
    expect_clear_error(outcome, names=outputs["eight_bit"][first.case_id],
                       says=(first.des_path, "range 0..255", "its metadata: DES units of the training set, window "
                             "0..255", "0% of it lies inside the real DES window 1700..2400"))
    assert not (tmp_path / "e1").exists()

    listing = _listing(tmp_path / "phantom.csv", outputs["phantom"])
    expect_handled(run_cli("evaluate", "--synthetic", listing, "--manifest", phantom_split, "--out", tmp_path / "e2"))
    assert (tmp_path / "e2" / "summary.md").is_file()


def test_evaluate_refuses_other_units_from_the_pixels(phantom_split, tmp_path):
    """A file without a window (another tool's output): the 1st-99th percentile of its breast pixels decides."""
    case = next(c for c in read_manifest(phantom_split) if c.split == "test")
    des = read_image(case.des_path)
    files = {}
    for c in read_manifest(phantom_split):
        if c.split == "test":
            image = read_image(c.des_path)
            files[c.case_id] = write_nrrd(Image(image.array / 16.0, image.spacing), tmp_path / f"{c.case_id}.nrrd")
    outcome = run_cli("evaluate", "--synthetic", _listing(tmp_path / "s.csv", files), "--manifest", phantom_split,
                      "--out", tmp_path / "e")
    low, high, _ = synthetic_range(Image(des.array / 16.0))
    expect_clear_error(outcome, names=files[case.case_id],
                       says=(case.des_path, f"range {low:g}..{high:g}", "1st-99th percentile of its breast pixels",
                             "window 1700..2400"))


def test_the_issues_case_a_phantom_model_on_real_cdd_cesm(cdd_sample, tmp_path):
    """A phantom model's synthetic of a real 8-bit CDD-CESM LE (PNG in, 16-bit PNG out in 1700..2400), scored
    against the real 8-bit DES: refused, not 5 dB of clipped pixels."""
    le, des = cdd_sample / "P10_L_DM_CC.png", cdd_sample / "P10_L_CM_CC.png"
    manifest = write_manifest(tmp_path / "manifest.csv", [Case(case_id="P10_L_CC", patient_id="P10", le_path=str(le),
                                                               des_path=str(des), laterality="L", split="test")])
    synthetic = tmp_path / "P10_L_CC_SYNTHETIC-DES.png"
    expect_handled(run_cli("predict", "--model", make_tiny_model(tmp_path / "run"), "--input", le,
                           "--out", synthetic, "--device", "cpu"))
    outcome = run_cli("evaluate", "--synthetic", _listing(tmp_path / "s.csv", {"P10_L_CC": synthetic}),
                      "--manifest", manifest, "--out", tmp_path / "e")
    expect_clear_error(outcome, names=synthetic, says=(str(des), "range 1700..2400", "0% of it lies inside"))


# ---------------------------------------------------------------- the device actually used


def test_provenance_records_the_resolved_device(phantom_split, tmp_path):
    out = tmp_path / "evaluation"
    evaluate_run(make_tiny_model(tmp_path / "run", image_size=64), phantom_split, out_dir=out, device="auto")
    device = json.loads((out / "provenance.json").read_text())["device"]
    assert device == str(resolve_device("auto")) and device != "auto"
