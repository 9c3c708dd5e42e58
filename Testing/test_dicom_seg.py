"""DICOM SEG of lesion masks: write and read with highdicom, checked against dcmqi (the converter 3D Slicer's
DICOM SEG plugin runs) and a slicer-core scene, read_lesion_mask, import by SOP reference, wrong images refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from test_synthetic_export import dciodvfy_problems, ijk_to_ras, load_like_slicer_dicom
from VirtualContrastTraining.data.cases import case_lesion_mask
from VirtualContrastTraining.data.dicom_read import read_mg_dicom
from VirtualContrastTraining.data.dicom_seg import (
    SEG_SOP_CLASS,
    read_dicom_seg,
    referenced_instances,
    write_dicom_seg,
)
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.importer import import_dicom
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.data.segmentation import lesion_segments, read_lesion_mask, seg_nrrd_to_dicom_seg
from VirtualContrastTraining.errors import InputError


@pytest.fixture(scope="module")
def cases(small_phantom):
    return {c.case_id: c for c in read_manifest(small_phantom)}


@pytest.fixture(scope="module")
def le_cc(cases):
    """(path, Image) of the phantom's PHANTOM-0001 right CC LE (143 x 120 at 2 mm)."""
    path = Path(cases["PHANTOM-0001_R_CC"].le_path)
    return path, read_mg_dicom(path)


def _masks(shape) -> dict[str, np.ndarray]:
    """Two overlapping lesions, one at the image corner, and an empty segment: drawn by hand."""
    a, b, corner = (np.zeros(shape, bool) for _ in range(3))
    a[10:20, 30:45] = True            # 10 x 15 = 150 pixels
    b[15:30, 40:44] = True            # 15 x 4 = 60 pixels, 5 x 4 = 20 of them inside a
    corner[-3:, -2:] = True           # 6 pixels
    return {"mass A": a, "non-mass enhancement": b, "corner": corner, "empty": np.zeros(shape, bool)}


def test_roundtrip_keeps_every_segment_exactly(le_cc, tmp_path):
    path, le = le_cc
    masks = _masks(le.shape)
    out = write_dicom_seg(masks, path, tmp_path / "lesions.dcm")
    assert [p.name for p in tmp_path.iterdir()] == ["lesions.dcm"]  # atomic: no temporary left
    back = read_dicom_seg(out, le)
    assert list(back) == list(masks)
    for name, mask in masks.items():
        assert back[name].dtype == bool and np.array_equal(back[name], mask), name
    union = read_lesion_mask(out, le)
    assert union.sum() == 150 + 60 - 20 + 6 and np.array_equal(union, np.logical_or.reduce(list(masks.values())))


def test_the_object_is_a_valid_binary_seg_of_the_le(le_cc, tmp_path):
    path, le = le_cc
    out = write_dicom_seg(_masks(le.shape), path, tmp_path / "lesions.dcm")
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == SEG_SOP_CLASS and ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == pydicom.dcmread(path).StudyInstanceUID
    assert [s.SegmentLabel for s in ds.SegmentSequence] == list(_masks(le.shape))
    for segment in ds.SegmentSequence:
        assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"  # SCT abnormal structure
        assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"      # SCT lesion
        assert segment.SegmentAlgorithmType == "MANUAL"
    assert referenced_instances(out) == {le.meta["sop_uid"]}
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [2.0, 2.0] and float(measures.SliceThickness) == 1.0
    assert dciodvfy_problems(out) == []
    automatic = pydicom.dcmread(write_dicom_seg({"x": _masks(le.shape)["mass A"]}, path, tmp_path / "auto.dcm",
                                                algorithm="Seg-CycleGAN lesion head"))
    segment = automatic.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "Seg-CycleGAN lesion head"


def test_dcmqi_converts_it_onto_the_grid_slicer_gives_the_le(le_cc, tmp_path, mrml_scene):
    """dcmqi's segimage2itkimage (an independent DCMTK reader, and what Slicer's DICOMSegmentationPlugin
    runs) gives each segment on the LE's voxel grid as Slicer loads the LE; the labelmaps import into a
    segmentation node with the hand-drawn pixels."""
    import dcmqi
    import slicer

    path, le = le_cc
    masks = _masks(le.shape)
    out = write_dicom_seg(masks, path, tmp_path / "lesions.dcm")
    converted = tmp_path / "dcmqi"
    converted.mkdir()
    proc = subprocess.run([str(Path(dcmqi.__file__).parent / "bin" / "segimage2itkimage"), "--inputDICOM", str(out),
                           "--outputDirectory", str(converted), "--outputType", "nrrd"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    le_node, _ = load_like_slicer_dicom(path)
    segmentation = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(le_node)
    for number, (name, mask) in enumerate(masks.items(), start=1):
        # loading options: labelmap (1) | single file (4), else 1.nrrd, 2.nrrd, ... load as one series
        label = slicer.modules.volumes.logic().AddArchetypeVolume(str(converted / f"{number}.nrrd"), name, 1 | 4)
        assert label.IsA("vtkMRMLLabelMapVolumeNode") and np.allclose(ijk_to_ras(label), ijk_to_ras(le_node))
        assert np.array_equal(slicer.util.arrayFromVolume(label)[0] > 0, mask), name
        if mask.any():  # an empty labelmap adds no segment
            assert slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(label, segmentation)
            segment_id = segmentation.GetSegmentation().GetNthSegmentID(number - 1)
            imported = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, le_node)[0]
            assert np.array_equal(imported > 0, mask), name


def test_a_seg_of_another_image_is_refused(le_cc, cases, tmp_path):
    path, le = le_cc
    out = write_dicom_seg(_masks(le.shape), path, tmp_path / "lesions.dcm")
    other = read_mg_dicom(cases["PHANTOM-0004_R_CC"].le_path)  # same size, another image
    assert other.shape == le.shape
    for read in (read_dicom_seg, read_lesion_mask):
        with pytest.raises(InputError, match="segments another image") as err:
            read(out, other)
        assert err.value.path == str(out)
    no_uid = Image(np.zeros((100, 100)), meta={})  # an LE from NRRD: only its size can be checked
    with pytest.raises(InputError, match="143x120 pixels"):
        read_dicom_seg(out, no_uid)
    assert np.array_equal(read_dicom_seg(out, Image(np.zeros(le.shape)))["mass A"], _masks(le.shape)["mass A"])


def test_bad_input_is_a_clear_error(le_cc, tmp_path):
    path, le = le_cc
    with pytest.raises(InputError, match="not a DICOM SEG \\(Modality MG\\)"):
        read_dicom_seg(path, le)
    with pytest.raises(InputError, match="'mass' is 10x10 pixels"):
        write_dicom_seg({"mass": np.zeros((10, 10), bool)}, path, tmp_path / "x.dcm")
    with pytest.raises(InputError, match="at least one segment"):
        write_dicom_seg({}, path, tmp_path / "x.dcm")
    with pytest.raises(InputError, match="no such file"):
        write_dicom_seg({"m": np.zeros(le.shape, bool)}, tmp_path / "missing.dcm", tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def test_a_seg_as_highdicom_writes_it_for_a_mammogram_reads(le_cc, tmp_path):
    """Another tool's SEG of the same LE, as highdicom makes it for an image without frame of reference
    (no plane position, no slice thickness): read_dicom_seg reads it despite highdicom's own reader."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    path, le = le_cc
    mask = _masks(le.shape)["mass A"]
    seg = hd.seg.Segmentation(
        source_images=[pydicom.dcmread(path)], pixel_array=mask[np.newaxis].astype(np.uint8),
        segmentation_type="BINARY", segment_descriptions=[hd.seg.SegmentDescription(
            1, "from PACS", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Mass, "MANUAL")],
        series_instance_uid=hd.UID(), series_number=5, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="other", manufacturer_model_name="other", software_versions="1", device_serial_number="1")
    assert "SliceThickness" not in seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    seg.save_as(tmp_path / "pacs.dcm")
    with pytest.raises(AttributeError):  # the highdicom limitation the reader works around
        hd.seg.segread(tmp_path / "pacs.dcm")
    assert np.array_equal(read_dicom_seg(tmp_path / "pacs.dcm", le)["from PACS"], mask)


def test_seg_nrrd_becomes_a_dicom_seg_with_the_same_segments(le_cc, cases, tmp_path):
    path, le = le_cc
    seg_nrrd = cases["PHANTOM-0001_R_CC"].lesion_path
    out = seg_nrrd_to_dicom_seg(seg_nrrd, path, tmp_path / "from_nrrd.dcm")
    original, converted = lesion_segments(seg_nrrd, le), lesion_segments(out, le)
    assert list(original) == list(converted) and original
    assert all(np.array_equal(original[k], converted[k]) for k in original)
    assert np.array_equal(read_lesion_mask(out, le), read_lesion_mask(seg_nrrd, le))


def test_import_attaches_a_dicom_seg_to_the_le_it_references(small_phantom, cases, tmp_path):
    """Phantom folder, the .seg.nrrd masks of PHANTOM-0001 replaced by DICOM SEGs under unrelated names in
    another folder: each goes to its case by SOP Instance UID. A SEG of a DES, and one of an image not in
    the folder, are skipped with their reasons."""
    data = tmp_path / "data"
    shutil.copytree(small_phantom.parent, data)
    exports = data / "seg_exports"
    exports.mkdir()
    expected = {}
    for number, case_id in enumerate(("PHANTOM-0001_R_CC", "PHANTOM-0001_R_MLO"), start=1):
        case = cases[case_id]
        le_path = data / Path(case.le_path).relative_to(small_phantom.parent)
        seg_nrrd = data / Path(case.lesion_path).relative_to(small_phantom.parent)
        seg_path = seg_nrrd_to_dicom_seg(seg_nrrd, le_path, exports / f"export_{number}.dcm")
        seg_nrrd.unlink()
        expected[case_id] = (seg_path, read_lesion_mask(seg_path, read_mg_dicom(le_path)))
    des_case = cases["PHANTOM-0002_L_CC"]
    des_path = data / Path(des_case.des_path).relative_to(small_phantom.parent)
    of_des = write_dicom_seg({"x": np.ones(read_mg_dicom(des_path).shape, bool)}, des_path, exports / "of_des.dcm")
    outside = tmp_path / "outside_LE.dcm"
    shutil.copy(des_path, outside)
    ds = pydicom.dcmread(outside)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(outside)
    of_outside = write_dicom_seg({"x": np.ones((ds.Rows, ds.Columns), bool)}, outside, exports / "of_outside.dcm")

    report = import_dicom(data, tmp_path / "manifest.csv", ids_from_patient_id=True)
    by_id = {c.case_id: c for c in report.cases}
    for case_id, (seg_path, mask) in expected.items():
        case = by_id[case_id]
        assert Path(case.lesion_path) == seg_path.resolve()
        assert np.array_equal(case_lesion_mask(case, read_mg_dicom(case.le_path)), mask) and mask.any()
    assert by_id["PHANTOM-0002_L_CC"].lesion_path.endswith("PHANTOM-0002_L_CC_lesions.seg.nrrd")  # unchanged
    skipped = dict(report.skipped)
    assert skipped[str(of_des.resolve())] == "DICOM SEG of a DES image: a case's lesion mask must segment its LE"
    assert "no LE of an imported pair" in skipped[str(of_outside.resolve())]
    assert len(report.cases) == len(cases)


def test_the_slicer_logic_loads_a_dicom_seg_onto_its_le(le_cc, cases, tmp_path, vc_logic):
    """loadCase with a DICOM SEG: one segment per lesion, the exact pixels on the LE volume's grid."""
    import slicer

    path, le = le_cc
    masks = {k: v for k, v in _masks(le.shape).items() if v.any()}
    out = write_dicom_seg(masks, path, tmp_path / "lesions.dcm")
    case = vc_logic.loadCase(str(path), segmentationPath=str(out))
    segments = case.segmentation.GetSegmentation()
    names = [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())]
    assert names == list(masks)
    for i, name in enumerate(names):
        array = slicer.util.arrayFromSegmentBinaryLabelmap(case.segmentation, segments.GetNthSegmentID(i), case.le)
        assert np.array_equal(np.asarray(array)[0] > 0, masks[name]), name
    with pytest.raises(InputError, match="give its LE volume"):
        vc_logic.loadSegmentation(str(out))
    other = cases["PHANTOM-0001_R_MLO"].le_path
    with pytest.raises(InputError, match="lesions.dcm"):
        vc_logic.loadCase(other, segmentationPath=str(out))


def test_the_seg_command_converts_both_ways(cases, tmp_path, capsys):
    """A phantom .seg.nrrd -> DICOM SEG -> .seg.nrrd keeps every lesion by name, pixel for pixel."""
    from VirtualContrastTraining.cli import main

    case = next(c for c in cases.values() if c.lesion_path)
    le = read_mg_dicom(case.le_path)
    dcm, back = tmp_path / "lesions.dcm", tmp_path / "lesions.seg.nrrd"
    assert main(["seg", "--to-dicom", case.lesion_path, "--le", case.le_path, "--out", str(dcm)]) == 0
    assert main(["seg", "--to-nrrd", str(dcm), "--le", case.le_path, "--out", str(back)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {dcm}", f"wrote {back}"]
    original, again = lesion_segments(case.lesion_path, le), lesion_segments(back, le)
    assert list(again) == list(original) and all(np.array_equal(again[k], original[k]) for k in original)
    assert pydicom.dcmread(dcm).Modality == "SEG"
