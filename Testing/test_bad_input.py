"""Every bad input of the issue, through the real CLI: exit code 2, one line on stderr naming
the file and the problem, and no output (partial or otherwise) left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from test_dicom_read import write_mg
from VirtualContrastTraining.cli import main
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import read_image, write_nrrd
from VirtualContrastTraining.data.manifest import read_manifest, write_manifest
from VirtualContrastTraining.data.segmentation import write_lesion_segmentation
from VirtualContrastTraining.events import EXIT_BAD_INPUT


def _fails_cleanly(capsys, argv: list[str], *, names: list[str | Path], says: str, out: Path) -> str:
    parent_existed = out.parent.exists()
    before = sorted(out.parent.rglob("*")) if parent_existed else []
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert str(name) in err, err
    assert says.lower() in err.lower(), err
    assert not out.exists() or not any(out.iterdir()) if out.is_dir() else not out.exists()
    assert sorted(out.parent.rglob("*")) == before  # nothing else written beside it
    assert out.parent.exists() == parent_existed  # not even an empty folder
    return err


def _predict(model, le, out) -> list[str]:
    return ["predict", "--model", str(model), "--input", str(le), "--out", str(out), "--device", "cpu"]


@pytest.mark.parametrize("kind, says", [
    ("text", "not a DICOM"),
    ("no_pixels", "without pixel data"),
    ("rgb", "RGB"),
    ("multiframe", "frames"),
])
def test_unusable_le_files(kind, says, tiny_model, tmp_path, capsys):
    src = tmp_path / "in" / f"{kind}.dcm"
    src.parent.mkdir()
    if kind == "text":
        src.write_text("patient notes, not an image\n")
    elif kind == "no_pixels":
        write_mg(src, extra={"PixelData": None})
    elif kind == "rgb":
        rgb = np.zeros((64, 48, 3), np.uint8)
        write_mg(src, extra={"SamplesPerPixel": 3, "PhotometricInterpretation": "RGB", "PlanarConfiguration": 0,
                             "BitsAllocated": 8, "BitsStored": 8, "HighBit": 7, "PixelData": rgb.tobytes()})
    else:
        write_mg(src, pixels=np.zeros((3, 64, 48), np.uint16), extra={"NumberOfFrames": 3})
    _fails_cleanly(capsys, _predict(tiny_model, src, tmp_path / "out" / "x_SYNTHETIC.nrrd"),
                   names=[src], says=says, out=tmp_path / "out" / "x_SYNTHETIC.nrrd")


def _copy_phantom(small_phantom: Path, dest: Path) -> list:
    shutil.copytree(small_phantom.parent, dest)
    return read_manifest(dest / small_phantom.name)


def _train(manifest, out) -> list[str]:
    return ["train", "--preset", "demo", "--manifest", str(manifest), "--out", str(out), "--device", "cpu",
            "--epochs", "1", "--image-size", "32"]


def test_le_and_des_of_different_sizes(small_phantom, tmp_path, capsys):
    cases = _copy_phantom(small_phantom, tmp_path / "data")
    des = read_image(cases[0].des_path)
    small = tmp_path / "data" / "small_des.nrrd"
    write_nrrd(Image(des.array[:-3, :-2], des.spacing), small)
    cases[0].des_path = str(small)
    manifest = write_manifest(tmp_path / "data" / "manifest.csv", cases)
    run = tmp_path / "runs" / "r"
    _fails_cleanly(capsys, _train(manifest, run), names=[cases[0].le_path, small], says="size", out=run)


def test_segmentation_geometry_does_not_match_its_le(small_phantom, tmp_path, capsys):
    cases = _copy_phantom(small_phantom, tmp_path / "data")
    le = read_image(cases[0].le_path)
    shifted = Image(np.zeros(le.shape, np.float32), spacing=(le.spacing[0] * 2, le.spacing[1] * 2))
    mask = np.zeros(le.shape, bool)
    mask[5:9, 5:9] = True
    seg = write_lesion_segmentation(tmp_path / "data" / "wrong.seg.nrrd", {"Lesion 1": mask}, shifted)
    cases[0].lesion_path = str(seg)
    manifest = write_manifest(tmp_path / "data" / "manifest.csv", cases)
    run = tmp_path / "runs" / "r"
    _fails_cleanly(capsys, _train(manifest, run), names=[seg], says="geometry", out=run)


def test_empty_manifest(tmp_path, capsys, tiny_model):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("")
    run = tmp_path / "runs" / "r"
    _fails_cleanly(capsys, _train(manifest, run), names=[manifest], says="empty", out=run)
    manifest.write_text("case_id,patient_id,le_path,des_path\n")
    out = tmp_path / "eval"
    _fails_cleanly(capsys, ["evaluate", "--model", str(tiny_model), "--manifest", str(manifest), "--out", str(out)],
                   names=[manifest], says="no rows", out=out)


def test_pickled_and_corrupt_checkpoints(small_phantom, tiny_model, tmp_path, capsys):
    le = read_manifest(small_phantom)[0].le_path
    pickled = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(3)}, pickled)
    out = tmp_path / "out" / "x_SYNTHETIC.nrrd"
    _fails_cleanly(capsys, _predict(pickled, le, out), names=[pickled], says="pickled checkpoint refused", out=out)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_model, corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _fails_cleanly(capsys, _predict(corrupt, le, out), names=[weights], says="", out=out)


def test_unwritable_output_folder(small_phantom, tiny_model, tmp_path, capsys):
    """A path under a regular file cannot be a folder (read-only folders do not stop root, this does)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    le = read_manifest(small_phantom)[0].le_path
    for argv, out in [
        (_predict(tiny_model, le, blocker / "out"), blocker / "out"),
        (_train(small_phantom, blocker / "run"), blocker / "run"),
        (["phantom", "--out", str(blocker / "ph"), "--cases", "1", "--pixel-mm", "4"], blocker / "ph"),
        (["import", str(small_phantom.parent), "--out", str(blocker / "m.csv")], blocker / "m.csv"),
    ]:
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == EXIT_BAD_INPUT and len(err.splitlines()) == 1 and str(blocker) in err, (argv, err)
        assert blocker.is_file() and blocker.read_text().startswith("a file")


def test_a_patient_in_two_splits(small_phantom, tmp_path, capsys):
    cases = _copy_phantom(small_phantom, tmp_path / "data")
    for i, case in enumerate(cases):
        case.split = ("train", "val", "test")[i % 3]
    manifest = write_manifest(tmp_path / "data" / "manifest.csv", cases)
    run = tmp_path / "runs" / "r"
    _fails_cleanly(capsys, _train(manifest, run), names=[manifest, cases[0].patient_id],
                   says="more than one split", out=run)
