"""Hostile data (issue 14): bad pixels, bad header values, bad manifest values and absurd sizes, through the real CLI.

Every case is generated here from the phantom (no binary fixtures): pydicom edits the tags of a phantom LE,
SimpleITK and numpy write NRRD and PNG files, a PNG or NRRD header alone claims a huge size. Each case asserts
the outcome through Testing/hostile.py: a clear error (exit 2, one line naming the file and the problem, nothing
written or changed under the case's folder) or handled (exit 0 and the right result). The guards fire where the
data enters (the readers, the manifest, the config), so every refused case stops before any training starts.
"""

from __future__ import annotations

import csv
import shutil
import struct
import warnings
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from conftest import make_tiny_model
from hostile import expect_clear_error, expect_handled, run_cli, snapshot
from VirtualContrastTraining.data.image import MAX_SIDE
from VirtualContrastTraining.data.manifest import read_manifest, write_manifest
from VirtualContrastTraining.data.preprocessing import MAX_NETWORK_SIZE

TINY_TRAIN = ("--preset", "demo", "--epochs", "1", "--set", "image_size=32", "--set", "ngf=4", "--set", "n_blocks=1",
              "--set", "batch_size=2", "--device", "cpu")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("hostile_model") / "run")


@pytest.fixture(scope="module")
def cases(small_phantom) -> list:
    return read_manifest(small_phantom)


@pytest.fixture
def case_dir(tmp_path) -> Path:
    """The folder a case writes its corpus into and watches: nothing in it may change when the CLI refuses."""
    folder = tmp_path / "case"
    folder.mkdir()
    return folder


# --- corpus builders -------------------------------------------------------------------------------------------

def edited_dicom(source: str, target: Path, **tags) -> Path:
    """A copy of the DICOM `source` with `tags` (keyword -> value; None deletes) set, written to `target`."""
    ds = pydicom.dcmread(source)
    with warnings.catch_warnings():  # pydicom warns when a DS such as 'NaN' is set: the case is for that
        warnings.simplefilter("ignore")
        for keyword, value in tags.items():
            if keyword == "TransferSyntaxUID":
                ds.file_meta.TransferSyntaxUID = value
            elif value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(target)
    return target


def dicom_with_pixels(source: str, target: Path, pixels: np.ndarray, **tags) -> Path:
    """A copy of `source` whose pixel data is `pixels` (uint8 or uint16), with `tags` set."""
    ds = pydicom.dcmread(source)
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(target)
    return target


def nrrd(target: Path, pixels: np.ndarray) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(target))
    return target


def nrrd_header(target: Path, cols: int, rows: int) -> Path:
    """A detached NRRD header that claims cols x rows pixels over a 16-byte data file: only its header is read."""
    target.with_suffix(".raw").write_bytes(b"\0" * 16)
    target.write_text(f"NRRD0004\ntype: uint8\ndimension: 2\nsizes: {cols} {rows}\nencoding: raw\n"
                      f"data file: {target.with_suffix('.raw').name}\n")
    return target


def png_header(target: Path, cols: int, rows: int) -> Path:
    """A PNG whose header claims cols x rows grey pixels, with one row of data: decoding it would need the memory
    of the whole image, reading its header does not."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    target.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0))
                       + chunk(b"IDAT", zlib.compress(b"\0" * (cols + 1))) + chunk(b"IEND", b""))
    return target


def le_pixels(cases) -> np.ndarray:
    return pydicom.dcmread(cases[0].le_path).pixel_array


def manifest_of(folder: Path, cases, **changes) -> Path:
    """A manifest in `folder` of `cases`, the first one changed by `changes` (Case fields)."""
    rows = [replace(cases[0], **changes), *cases[1:]]
    return write_manifest(folder / "manifest.csv", rows)


def predict_file(model: Path, image: Path, *extra: str):
    return run_cli("predict", "--model", model, "--input", image, "--out", image.parent / "out", *extra)


# --- 1. DICOM header values: refused when the file is read (predict of one LE) --------------------------------

NO_WINDOW = {"WindowCenter": None, "WindowWidth": None}
DICOM_TAG_CASES = {
    # name: (tags, words of the message)
    "slope-nan": ({"RescaleSlope": "NaN"}, ("RescaleSlope", "finite non-zero")),
    "slope-zero": ({"RescaleSlope": "0"}, ("RescaleSlope", "non-zero")),
    "slope-inf": ({"RescaleSlope": "inf"}, ("RescaleSlope",)),
    "intercept-nan": ({"RescaleIntercept": "NaN"}, ("RescaleIntercept",)),
    "bits-stored-8-lies": ({"BitsStored": 8, "HighBit": 7, **NO_WINDOW}, ("BitsStored 8", "exceed")),
    "bits-stored-10-lies": ({"BitsStored": 10, "HighBit": 9, **NO_WINDOW}, ("BitsStored 10", "exceed")),
    "bits-stored-8-with-window": ({"BitsStored": 8, "HighBit": 7}, ("WindowCenter", "BitsStored")),
    "window-centre-beyond-bits": ({"WindowCenter": "60000", "WindowWidth": "1000"}, ("WindowCenter", "BitsStored")),
    "window-centre-negative": ({"WindowCenter": "-5000", "WindowWidth": "1000"}, ("WindowCenter", "outside")),
    "window-width-zero": ({"WindowWidth": "0"}, ("invalid window",)),
    "window-width-negative": ({"WindowWidth": "-100"}, ("invalid window",)),
    "window-nan": ({"WindowCenter": "NaN"}, ("invalid window",)),
    "window-holds-no-pixel": ({"WindowCenter": "16000", "WindowWidth": "200"}, ("holds no pixel",)),
    "unknown-transfer-syntax": ({"TransferSyntaxUID": "1.2.3.4.5.6"}, ("Transfer Syntax UID", "1.2.3.4.5.6")),
    "rows-columns-huge": ({"Rows": 30000, "Columns": 30000}, ("30000x30000", str(MAX_SIDE))),
    "columns-over-limit": ({"Columns": MAX_SIDE + 1}, (str(MAX_SIDE),)),
}


@pytest.mark.parametrize("name", DICOM_TAG_CASES)
def test_dicom_header_value_is_refused_at_read(name, cases, model, case_dir):
    tags, says = DICOM_TAG_CASES[name]
    le = edited_dicom(cases[0].le_path, case_dir / "le.dcm", **tags)
    before = snapshot(case_dir)
    expect_clear_error(predict_file(model, le), names=le, says=says, before=before, watched=(case_dir,))


def test_8bit_image_that_kept_its_16bit_window(cases, model, case_dir):
    """An 8-bit export (0..255) that kept the 14-bit original's window (centre 2350) stretches to all zeros."""
    pixels = (le_pixels(cases) >> 4).astype(np.uint8)
    le = dicom_with_pixels(cases[0].le_path, case_dir / "le8.dcm", pixels)
    before = snapshot(case_dir)
    expect_clear_error(predict_file(model, le), names=le, says=("WindowCenter 2350", "0..255"), before=before,
                       watched=(case_dir,))


@pytest.mark.parametrize("value", [0, 1000])
def test_constant_dicom_le_is_refused(value, cases, model, case_dir):
    pixels = np.full(le_pixels(cases).shape, value, np.uint16)
    le = dicom_with_pixels(cases[0].le_path, case_dir / "flat.dcm", pixels, BitsStored=14, HighBit=13)
    before = snapshot(case_dir)
    expect_clear_error(predict_file(model, le), names=le, says="constant", before=before, watched=(case_dir,))


# --- 2. pixels of NRRD/PNG files: NaN, inf, constant, windows (predict of one LE) -----------------------------

def _image(kind: str, shape) -> np.ndarray:
    rng = np.random.default_rng(0)
    arr = rng.uniform(100, 1000, shape).astype(np.float32)
    if kind == "one-nan":
        arr[3, 4] = np.nan
    elif kind == "all-nan":
        arr[:] = np.nan
    elif kind == "plus-inf":
        arr[0, 0] = np.inf
    elif kind == "minus-inf":
        arr[-1, -1] = -np.inf
    elif kind == "zeros":
        arr[:] = 0
    elif kind == "constant":
        arr[:] = 7
    return arr


PIXEL_CASES = {"one-nan": "NaN or infinite", "all-nan": "NaN or infinite", "plus-inf": "NaN or infinite",
               "minus-inf": "NaN or infinite", "zeros": "constant", "constant": "constant"}


@pytest.mark.parametrize("kind", PIXEL_CASES)
def test_bad_nrrd_pixels_are_refused(kind, model, case_dir):
    le = nrrd(case_dir / "le.nrrd", _image(kind, (96, 80)))
    before = snapshot(case_dir)
    expect_clear_error(predict_file(model, le), names=le, says=PIXEL_CASES[kind], before=before, watched=(case_dir,))


@pytest.mark.parametrize("window", ["100000,10", "-50000,100", "0,150"])
def test_le_window_that_holds_no_pixel(window, model, case_dir):
    le = nrrd(case_dir / "le.nrrd", _image("fine", (96, 80)))
    before = snapshot(case_dir)
    expect_clear_error(predict_file(model, le, f"--le-window={window}"), names=le, says="holds no pixel",
                       before=before, watched=(case_dir,))


@pytest.mark.parametrize("maker,cols,rows", [
    (png_header, 30000, 30000), (png_header, MAX_SIDE + 4, 100), (png_header, 100, 20000),
    (nrrd_header, 30000, 30000), (nrrd_header, 40000, 10)])
def test_huge_image_is_refused_from_its_header(maker, cols, rows, model, case_dir):
    """Refused before decoding (a 30000^2 PNG used to end in MemoryError); the limit is in the message."""
    le = maker(case_dir / ("big.png" if maker is png_header else "big.nhdr"), cols, rows)
    before = snapshot(case_dir)
    expect_clear_error(predict_file(model, le), names=le, says=(f"{cols}x{rows}", str(MAX_SIDE)), before=before,
                       watched=(case_dir,))


# --- 3. manifest values: refused when the manifest is read (predict, train) -----------------------------------

MANIFEST_CASES = {
    # Case field changes -> words of the message; each names the manifest.
    "laterality-X": ({"laterality": "X"}, ("laterality 'X'", "L, R or empty")),
    "laterality-left": ({"laterality": "left"}, ("laterality 'left'",)),
    "window-width-zero": ({"le_window_width": "0"}, ("le_window_width", "> 0")),
    "window-width-negative": ({"des_window_width": "-3"}, ("des_window_width", "> 0")),
    "window-center-nan": ({"le_window_center": "nan"}, ("le_window_center", "finite")),
    "window-width-inf": ({"le_window_width": "inf"}, ("le_window_width", "finite")),
    "window-not-a-number": ({"des_window_center": "abc"}, ("des_window_center", "not a number")),
    "offset-not-integer": ({"des_offset_x": "1.5"}, ("des_offset_x", "whole number")),
}


@pytest.mark.parametrize("command", ["predict", "train"])
@pytest.mark.parametrize("name", MANIFEST_CASES)
def test_bad_manifest_value(name, command, cases, model, case_dir):
    changes, says = MANIFEST_CASES[name]
    manifest = manifest_of(case_dir, cases, **changes)
    before = snapshot(case_dir)
    if command == "predict":
        outcome = run_cli("predict", "--model", model, "--input", manifest, "--out", case_dir / "out")
    else:
        outcome = run_cli("train", *TINY_TRAIN, "--manifest", manifest, "--out", case_dir / "run")
    expect_clear_error(outcome, names=manifest, says=says, before=before, watched=(case_dir,))


@pytest.mark.parametrize("offset", [("100000", ""), ("", "-100000"), ("200", "0"), ("70", "80")])
def test_des_offset_that_leaves_a_blank_target(offset, cases, case_dir):
    """des_offset beyond the image trained on a blank target; now refused naming the DES (train stops at data)."""
    manifest = manifest_of(case_dir, cases, des_offset_x=offset[0], des_offset_y=offset[1])
    before = snapshot(case_dir)
    outcome = run_cli("train", *TINY_TRAIN, "--manifest", manifest, "--out", case_dir / "run")
    expect_clear_error(outcome, names=cases[0].des_path, says=("des_offset", "covered"), before=before,
                       watched=(case_dir,))


@pytest.mark.parametrize("which", ["le", "des"])
def test_all_zero_image_in_a_training_manifest(which, cases, case_dir):
    flat = nrrd(case_dir / f"{which}.nrrd", np.zeros(le_pixels(cases).shape, np.uint16))
    manifest = manifest_of(case_dir, cases, **{f"{which}_path": str(flat)})
    before = snapshot(case_dir)
    outcome = run_cli("train", *TINY_TRAIN, "--manifest", manifest, "--out", case_dir / "run")
    expect_clear_error(outcome, names=flat, says="constant", before=before, watched=(case_dir,))


def test_nan_le_in_the_validation_split_is_named(cases, case_dir):
    """Used to end in "training ended without any validation"; now the file is named before training."""
    bad = nrrd(case_dir / "le_nan.nrrd", _image("one-nan", le_pixels(cases).shape))
    rows = [replace(c, split="train") for c in cases]
    rows[-1] = replace(rows[-1], split="val", le_path=str(bad))
    manifest = write_manifest(case_dir / "manifest.csv", rows)
    before = snapshot(case_dir)
    outcome = run_cli("train", *TINY_TRAIN, "--manifest", manifest, "--out", case_dir / "run")
    expect_clear_error(outcome, names=bad, says="NaN", before=before, watched=(case_dir,))


@pytest.mark.parametrize("center", ["100000", "-40000"])
def test_manifest_window_that_holds_no_pixel(center, cases, case_dir):
    manifest = manifest_of(case_dir, cases, le_window_center=center, le_window_width="100")
    before = snapshot(case_dir)
    outcome = run_cli("train", *TINY_TRAIN, "--manifest", manifest, "--out", case_dir / "run")
    expect_clear_error(outcome, names=cases[0].le_path, says="holds no pixel", before=before, watched=(case_dir,))


# --- 4. sizes in the config: refused before anything is read --------------------------------------------------

@pytest.mark.parametrize("option", [("--image-size", "1000000"), ("--image-size", str(MAX_NETWORK_SIZE + 4)),
                                    ("--set", "patch_size=100000"), ("--image-size", "8")])
def test_network_size_out_of_range(option, small_phantom, case_dir):
    before = snapshot(case_dir)
    outcome = run_cli("train", *TINY_TRAIN, *option, "--manifest", small_phantom, "--out", case_dir / "run")
    expect_clear_error(outcome, names=None, says=("size", str(MAX_NETWORK_SIZE)), before=before, watched=(case_dir,))


# --- 5. evaluate --synthetic: the synthetic images are read through the same guards --------------------------

@pytest.mark.parametrize("kind", ["one-nan", "plus-inf", "huge-header"])
def test_evaluate_synthetic_bad_image(kind, cases, case_dir):
    rows = [replace(c, split="test") for c in cases]
    manifest = write_manifest(case_dir / "manifest.csv", rows)
    shape = le_pixels(cases).shape
    bad = (nrrd_header(case_dir / "syn.nhdr", 30000, 30000) if kind == "huge-header"
           else nrrd(case_dir / "syn.nrrd", _image(kind, shape)))
    with open(case_dir / "synthetic.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case_id", "synthetic_path"])
        for c in rows:
            writer.writerow([c.case_id, bad if c is rows[0] else c.des_path])
    before = snapshot(case_dir)
    outcome = run_cli("evaluate", "--synthetic", case_dir / "synthetic.csv", "--manifest", manifest,
                      "--out", case_dir / "eval", "--size", "32")
    expect_clear_error(outcome, names=bad, says="30000x30000" if kind == "huge-header" else "NaN or infinite",
                       before=before, watched=(case_dir,))


# --- 6. import: one hostile file among good pairs is skipped, the good pairs are imported ---------------------

IMPORT_CASES = {
    "unknown-transfer-syntax": {"TransferSyntaxUID": "1.2.3.4.5.6"},
    "slope-zero": {"RescaleSlope": "0"},
    "slope-nan": {"RescaleSlope": "NaN"},
    "window-beyond-bits": {"WindowCenter": "60000"},
    "rows-huge": {"Rows": 30000, "Columns": 30000},
}


@pytest.mark.parametrize("name", IMPORT_CASES)
def test_import_skips_the_hostile_file(name, cases, tmp_path):
    folder = tmp_path / "dicom"
    folder.mkdir()
    for case in cases[1:]:  # good pairs
        for path in (case.le_path, case.des_path):
            shutil.copy(path, folder / Path(path).name)
    bad = edited_dicom(cases[0].le_path, folder / "hostile.dcm", **IMPORT_CASES[name])
    shutil.copy(cases[0].des_path, folder / Path(cases[0].des_path).name)
    outcome = run_cli("import", folder, "--out", tmp_path / "manifest.csv")
    expect_handled(outcome)
    imported = read_manifest(tmp_path / "manifest.csv")
    les = {Path(c.le_path).name for c in imported}
    assert les >= {Path(c.le_path).name for c in cases[1:]} and bad.name not in les


# --- 7. valid data at the edges is handled -------------------------------------------------------------------

def test_8bit_png_le_predicts(model, case_dir):
    pixels = (np.linspace(0, 255, 96 * 80).reshape(96, 80)).astype(np.uint8)
    le = case_dir / "le.png"
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(le))
    expect_handled(predict_file(model, le))
    assert list((case_dir / "out").glob("*SYNTHETIC*"))


def test_float_nrrd_le_with_a_window_predicts(model, case_dir):
    le = nrrd(case_dir / "le.nrrd", _image("fine", (96, 80)))
    expect_handled(predict_file(model, le, "--le-window", "550,900"))
    out = sitk.GetArrayFromImage(sitk.ReadImage(str(next((case_dir / "out").glob("*SYNTHETIC*")))))
    assert np.isfinite(out).all() and out.size == 96 * 80


def test_small_des_offset_and_laterality_train(cases, case_dir):
    """A registered pair (offset of a few pixels) and lower-case-free L/R lateralities train as before."""
    manifest = manifest_of(case_dir, cases, des_offset_x="3", des_offset_y="-2")
    expect_handled(run_cli("train", *TINY_TRAIN, "--manifest", manifest, "--out", case_dir / "run"))
    assert (case_dir / "run" / "model.safetensors").is_file()
