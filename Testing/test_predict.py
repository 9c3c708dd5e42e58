"""`virtual-contrast predict`: synthetic DES in the LE's exact geometry, marked synthetic everywhere."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image as PILImage

from conftest import make_tiny_model
from hostile import expect_clear_error, run_cli
from VirtualContrastTraining.cli import main
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import read_image, write_nrrd
from VirtualContrastTraining.data.importer import import_dicom
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.events import EXIT_BAD_INPUT, parse_event
from VirtualContrastTraining.synthesis import case_pseudonym, file_case_id, pseudonym_key
from VirtualContrastTraining.synthetic_wording import SERIES_DESCRIPTION


def _first_case(manifest):
    return read_manifest(manifest)[0]


def test_predict_dicom_le_to_nrrd_keeps_geometry_and_says_synthetic(small_phantom, tiny_model, tmp_path):
    case = _first_case(small_phantom)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "VirtualContrastTraining", "predict", "--model", str(tiny_model),
                           "--input", case.le_path, "--out", str(out), "--device", "cpu", "--json"],
                          capture_output=True, text=True, check=True)
    events = [parse_event(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["started", "progress", "finished"]
    written = sorted(out.iterdir())
    # One naming rule: the LE file P_L_CC_LE.dcm gives the name the manifest's case P_L_CC gives.
    assert [p.name for p in written] == [f"{case.case_id}_SYNTHETIC-DES.nrrd"]

    le, synthetic = read_image(case.le_path), read_image(written[0])
    assert synthetic.shape == le.shape
    assert synthetic.spacing == le.spacing and synthetic.origin == le.origin and synthetic.direction == le.direction
    assert 1700 <= synthetic.array.min() and synthetic.array.max() <= 2400  # the model's DES window
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(written[0]))
    reader.ReadImageInformation()
    assert reader.GetMetaData("Synthetic") == "true"
    assert "not for diagnosis" in reader.GetMetaData("VirtualContrast.Warning")
    assert reader.GetMetaData("VirtualContrast.Preset") == "demo"


def test_predict_nrrd_with_oblique_geometry(tiny_model, tmp_path):
    """Origin, spacing and direction of a non-DICOM LE survive unchanged (not only the size)."""
    rng = np.random.default_rng(0)
    arr = np.zeros((70, 50), np.float32)
    arr[:, :30] = 2000 + 300 * rng.random((70, 30))
    theta = np.deg2rad(10)
    direction = (np.cos(theta), -np.sin(theta), 0, np.sin(theta), np.cos(theta), 0, 0, 0, 1)
    le = Image(arr, spacing=(0.3, 0.45), origin=(12.5, -40.0, 3.0), direction=direction,
               meta={"laterality": "L"})
    write_nrrd(le, tmp_path / "le.nrrd")
    out = tmp_path / "case_synthetic_des.nrrd"
    assert main(["predict", "--model", str(tiny_model), "--input", str(tmp_path / "le.nrrd"), "--out", str(out),
                 "--device", "cpu"]) == 0
    synthetic = read_image(out)
    assert synthetic.shape == le.shape
    assert np.allclose(synthetic.spacing, le.spacing) and np.allclose(synthetic.origin, le.origin)
    assert np.allclose(synthetic.direction, le.direction)


def test_predict_dicom_output_is_marked_and_never_paired_as_real(small_phantom, tiny_model, tmp_path):
    """The synthetic series joins the LE's study, says SYNTHETIC, and `import` skips it."""
    manifest = tmp_path / "manifest.csv"
    cases = read_manifest(small_phantom)
    phantom_dir = small_phantom.parent
    work = tmp_path / "dicom"
    subprocess.run(["cp", "-r", str(phantom_dir), str(work)], check=True)
    le_path = work / cases[0].le_path[len(str(phantom_dir)) + 1:]
    out = work / cases[0].patient_id / "synthetic_des.dcm"
    le_ds = pydicom.dcmread(le_path)  # study attributes the phantom leaves empty, as a PACS fills them
    le_ds.AccessionNumber, le_ds.StudyID, le_ds.PatientBirthDate = "ACC-0042", "S7", "19700101"
    le_ds.save_as(le_path)
    assert main(["predict", "--model", str(tiny_model), "--input", str(le_path), "--out", str(out),
                 "--device", "cpu"]) == 0

    ds = pydicom.dcmread(out)
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] and "SYNTHETIC" in list(ds.ImageType)
    assert ds.SeriesDescription == SERIES_DESCRIPTION
    assert "not for diagnosis" in ds.DerivationDescription and "demo" in ds.DerivationDescription
    assert ds.StudyInstanceUID == le_ds.StudyInstanceUID and ds.PatientID == le_ds.PatientID
    # the same study, patient and acquisition as the LE: nothing in the new series contradicts them
    for keyword in ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                    "AccessionNumber", "AcquisitionDateTime"):
        assert ds.get(keyword) == le_ds.get(keyword) and le_ds.get(keyword), keyword
    assert ds.SeriesDate == ds.ContentDate >= le_ds.StudyDate  # made now, not acquired now
    assert ds.SeriesInstanceUID != le_ds.SeriesInstanceUID and ds.SOPInstanceUID != le_ds.SOPInstanceUID
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == le_ds.SOPInstanceUID
    assert (ds.Rows, ds.Columns) == (le_ds.Rows, le_ds.Columns)
    assert list(ds.PixelSpacing) == list(le_ds.PixelSpacing)
    assert ds.ImageLaterality == le_ds.ImageLaterality and ds.ViewPosition == le_ds.ViewPosition

    report = import_dicom(work, manifest)
    assert len(report.cases) == len(cases)
    assert all(str(out) not in (c.des_path, c.le_path) for c in report.cases)
    assert any(str(out) == str(path) and "synthetic" in reason for path, reason in report.skipped)


@pytest.mark.parametrize("fmt, suffix", [("dicom", ".dcm"), ("png", ".png")])
def test_predict_manifest_writes_one_marked_output_per_case(fmt, suffix, small_phantom, tiny_model, tmp_path):
    cases = read_manifest(small_phantom)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tiny_model), "--input", str(small_phantom), "--out", str(out),
                 "--device", "cpu", "--format", fmt]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{c.case_id}_SYNTHETIC-DES{suffix}" for c in cases)
    if fmt == "png":
        assert all(_png_text(p)["Synthetic"] == "true" for p in out.iterdir())


def test_predict_png_le(cdd_sample, tiny_model, tmp_path):
    """A real CDD-CESM JPEG/PNG LE (8-bit, no window): percentile stretching, same pixel grid out."""
    le_path = cdd_sample / "P207_L_DM_MLO.jpg"
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tiny_model), "--input", str(le_path), "--out", str(out),
                 "--device", "cpu"]) == 0
    synthetic = read_image(out / "P207_L_DM_MLO_SYNTHETIC-DES.nrrd")
    assert synthetic.shape == read_image(le_path).shape


def test_output_name_must_say_synthetic(tiny_model, small_phantom, tmp_path, capsys):
    target = tmp_path / "des.nrrd"
    code = main(["predict", "--model", str(tiny_model), "--input", _first_case(small_phantom).le_path,
                 "--out", str(target), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT and len(err.splitlines()) == 1
    assert str(target) in err and "SYNTHETIC" in err
    assert not target.exists()


@pytest.mark.parametrize("device", ["cuda:7", "tpu"])
def test_unavailable_device_is_a_clear_error(tiny_model, small_phantom, tmp_path, capsys, device):
    code = main(["predict", "--model", str(tiny_model), "--input", _first_case(small_phantom).le_path,
                 "--out", str(tmp_path / "o"), "--device", device])
    assert code == EXIT_BAD_INPUT and device in capsys.readouterr().err


def test_case_ids_cannot_write_outside_the_output_folder(small_phantom, tiny_model, tmp_path):
    from VirtualContrastTraining.data.manifest import write_manifest

    case = _first_case(small_phantom)
    case.case_id = "../../escaped"
    manifest = write_manifest(tmp_path / "data" / "manifest.csv", [case])
    out = tmp_path / "deep" / "out"
    assert main(["predict", "--model", str(tiny_model), "--input", str(manifest), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert [p.name for p in out.iterdir()] == ["_.._escaped_SYNTHETIC-DES.nrrd"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]


@pytest.mark.parametrize("flags", [["--burn-in"], ["--deidentify"], ["--burn-in", "--deidentify"]])
def test_burn_in_and_deidentify_are_for_dicom_output(tiny_model, small_phantom, tmp_path, capsys, flags):
    out = tmp_path / "out"
    code = main(["predict", "--model", str(tiny_model), "--input", _first_case(small_phantom).le_path,
                 "--out", str(out), "--device", "cpu", *flags])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT and len(err.splitlines()) == 1
    assert all(flag in err for flag in flags) and "--format dicom" in err
    assert not out.exists()


def test_predict_manifest_burn_in_deidentified_one_pseudonymous_study_per_patient(small_phantom, tiny_model, tmp_path):
    """One Anonymizer for the run: the images of a patient share one pseudonymous patient and study; the
    files are named after pseudonyms of the case ids (keyed by the manifest's bytes), never the ids."""
    cases = read_manifest(small_phantom)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tiny_model), "--input", str(small_phantom), "--out", str(out),
                 "--device", "cpu", "--format", "dicom", "--burn-in", "--deidentify"]) == 0
    key = pseudonym_key(small_phantom)
    written = {c.case_id: pydicom.dcmread(out / f"{case_pseudonym(key, c.case_id)}_SYNTHETIC-DES.dcm") for c in cases}
    assert len(list(out.iterdir())) == len(cases) and not any("PHANTOM" in p.name for p in out.iterdir())
    for case in cases:
        ds = written[case.case_id]
        assert ds.BurnedInAnnotation == "YES" and ds.PatientIdentityRemoved == "YES"
        assert ds.PatientID != case.patient_id and "SYNTHETIC" in list(ds.ImageType)
    by_patient = {}
    for case in cases:
        by_patient.setdefault(case.patient_id, set()).add(
            (written[case.case_id].PatientID, written[case.case_id].StudyInstanceUID))
    assert all(len(pseudonyms) == 1 for pseudonyms in by_patient.values())
    assert len({next(iter(p)) for p in by_patient.values()}) == len(by_patient)  # different patients stay apart


# ---------------------------------------------------------------- PNG and TIFF


def _png_text(path):
    with PILImage.open(path) as im:
        assert im.format == "PNG"
        return dict(im.text)


def _tiff_text(path):
    with PILImage.open(path) as im:
        assert im.format == "TIFF"
        return json.loads(im.tag_v2[270])


@pytest.mark.parametrize("name, read_text", [("case_SYNTHETIC.png", _png_text), ("case_SYNTHETIC.tif", _tiff_text),
                                             ("case_SYNTHETIC.tiff", _tiff_text)])
def test_predict_one_png_or_tiff_by_extension_marked_synthetic(small_phantom, tiny_model, tmp_path, name, read_text):
    """--out x.png is one PNG file (it was a folder named x.png), 16-bit in the model's DES units, its text
    saying synthetic and not for diagnosis."""
    case = _first_case(small_phantom)
    out = tmp_path / "o" / name
    assert main(["predict", "--model", str(tiny_model), "--input", case.le_path, "--out", str(out),
                 "--device", "cpu"]) == 0
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == [name]
    text = read_text(out)
    assert text["Synthetic"] == "true" and text["Description"] == SERIES_DESCRIPTION
    assert "not for diagnosis" in text["Warning"] and "not for diagnosis" in text["VirtualContrast.Warning"]
    assert text["VirtualContrast.Preset"] == "demo" and "window 1700..2400" in text["VirtualContrast.IntensityUnits"]
    le, synthetic = read_image(case.le_path), read_image(out)
    assert synthetic.shape == le.shape and synthetic.array.dtype == np.uint16
    if read_text is _tiff_text:  # the resolution (dpi) carries the spacing; SimpleITK reads it from TIFF only
        assert synthetic.spacing == pytest.approx(le.spacing, rel=1e-3)
    assert 1700 <= synthetic.array.min() and synthetic.array.max() <= 2400




def test_a_model_of_8_bit_des_writes_8_bit_pngs(cdd_sample, tmp_path):
    """A model whose DES window lies in 0..255 (trained on 8-bit DES such as CDD-CESM's) on an 8-bit LE: an
    8-bit PNG holding the DES values themselves."""
    model = make_tiny_model(tmp_path / "run", des_window=(3.0, 136.0))
    out = tmp_path / "P10_SYNTHETIC-DES.png"
    assert main(["predict", "--model", str(model), "--input", str(cdd_sample / "P10_L_DM_CC.png"), "--out", str(out),
                 "--device", "cpu"]) == 0
    with PILImage.open(out) as im:
        assert im.mode == "L"
        pixels = np.asarray(im)
    assert 3 <= pixels.min() and pixels.max() <= 136
    assert "window 3..136" in _png_text(out)["VirtualContrast.IntensityUnits"]


@pytest.mark.parametrize("name, flags, says", [
    ("des.png", [], "SYNTHETIC"),
    ("x_SYNTHETIC.jpg", [], "not .jpg"),
    ("x_SYNTHETIC.png", ["--format", "tiff"], "--format tiff but the file name ends in .png"),
])
def test_bitmap_output_names_that_cannot_be_written(small_phantom, tiny_model, tmp_path, capsys, name, flags, says):
    out = tmp_path / "o" / name
    code = main(["predict", "--model", str(tiny_model), "--input", _first_case(small_phantom).le_path,
                 "--out", str(out), "--device", "cpu", *flags])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT and len(err.splitlines()) == 1 and str(out) in err and says in err
    assert not out.parent.exists()


@pytest.mark.parametrize("name, case", [("P1_L_CC_LE.dcm", "P1_L_CC"), ("P1.2_R_MLO-le.nii.gz", "P1.2_R_MLO"),
                                        ("P10_L_DM_CC.png", "P10_L_DM_CC"), ("SINGLE.nrrd", "SINGLE")])
def test_one_file_is_named_for_its_case(name, case):
    """The stem of one LE file's output is its case as a manifest names it: no extension, no trailing LE word."""
    assert file_case_id(f"/data/{name}") == case


def test_predict_refuses_a_des_naming_what_it_is(small_phantom, tiny_model, tmp_path):
    des = _first_case(small_phantom).des_path
    outcome = run_cli("predict", "--model", tiny_model, "--input", des, "--out", tmp_path / "o", "--device", "cpu")
    expect_clear_error(outcome, names=des, says=("is a DES", "low-energy (LE)"))
    assert not (tmp_path / "o").exists()


def test_predict_refuses_synthetic_images_by_name_metadata_and_dicom_tags(small_phantom, tiny_model, tmp_path):
    """predict's own outputs given back as input: by the file name, and renamed, by the NRRD Synthetic field
    and by the DICOM ImageType (the markers of synthetic_export)."""
    le = _first_case(small_phantom).le_path
    for fmt in ("nrrd", "dicom"):
        assert main(["predict", "--model", str(tiny_model), "--input", le, "--out", str(tmp_path / fmt),
                     "--format", fmt, "--device", "cpu", "--json"]) == 0
    nrrd, dcm = next((tmp_path / "nrrd").iterdir()), next((tmp_path / "dicom").iterdir())
    plain_nrrd, plain_dcm = tmp_path / "plain.nrrd", tmp_path / "plain.dcm"
    plain_nrrd.write_bytes(nrrd.read_bytes())
    plain_dcm.write_bytes(dcm.read_bytes())
    for path, marker in ((nrrd, "file name"), (plain_nrrd, "Synthetic metadata"), (plain_dcm, "DICOM ImageType")):
        outcome = run_cli("predict", "--model", tiny_model, "--input", path, "--out", tmp_path / "again",
                          "--device", "cpu")
        expect_clear_error(outcome, names=path, says=("is a synthetic image", marker))


def test_predict_split_of_a_manifest_without_splits_points_to_the_split_command(small_phantom, tiny_model, tmp_path):
    outcome = run_cli("predict", "--model", tiny_model, "--input", small_phantom, "--split", "test",
                      "--out", tmp_path / "o", "--device", "cpu")
    expect_clear_error(outcome, names=small_phantom,
                       says=("split column is empty", f"virtual-contrast split --manifest {small_phantom}"))
