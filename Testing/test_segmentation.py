"""Lesion masks as Slicer .seg.nrrd and labelmaps, on the LE's pixel grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import write_nrrd
from VirtualContrastTraining.data.phantom import simulate_case
from VirtualContrastTraining.data.segmentation import read_lesion_mask, read_segments, write_lesion_segmentation
from VirtualContrastTraining.errors import InputError


@pytest.fixture
def reference():
    """A non-square LE grid with anisotropic spacing and an offset origin: transpositions cannot hide."""
    return Image(np.zeros((40, 30), np.uint16), spacing=(0.2, 0.3), origin=(5.0, -2.0, 0.0))


def masks_on(shape):
    a = np.zeros(shape, bool)
    a[5:9, 20:27] = True            # wide, near the right edge
    b = np.zeros(shape, bool)
    b[25:38, 2:5] = True            # tall, near the left edge
    return {"Lesion 1 - enhancing mass (rim)": a, "Lesion 2 - calcifications": b}


def test_slicerio_reads_one_segment_per_lesion_on_the_le_grid(tmp_path, reference):
    masks = masks_on(reference.shape)
    path = write_lesion_segmentation(tmp_path / "case.seg.nrrd", masks, reference)
    seg = slicerio.read_segmentation(str(path))
    assert seg["voxels"].shape[-3:] == (30, 40, 1)          # IJK = (col, row, slice)
    assert np.allclose(seg["ijkToLPS"][:3, :3], np.diag([0.2, 0.3, 1.0]))
    assert np.allclose(seg["ijkToLPS"][:3, 3], [5.0, -2.0, 0.0])
    assert [s["id"] for s in seg["segments"]] == ["Segment_1", "Segment_2"]
    assert [s["name"] for s in seg["segments"]] == list(masks)
    assert len({tuple(s["color"]) for s in seg["segments"]}) == 2
    for s, mask in zip(seg["segments"], masks.values()):
        assert np.array_equal(slicerio.segment_mask(seg, s["id"])[:, :, 0].T, mask)
    header = path.read_bytes()[:2000].decode("latin-1")
    for field in ("Segment0_ID:=Segment_1", "Segment0_LabelValue:=", "Segment0_Layer:=", "Segment0_Extent:=",
                  "Segment1_Color:=", "Segmentation_MasterRepresentation:=Binary labelmap"):
        assert field in header
    assert [(n, m.tolist()) for n, m in read_segments(path)] == [(n, m.tolist()) for n, m in masks.items()]


def test_union_of_segments_including_overlaps(tmp_path, reference):
    masks = masks_on(reference.shape)
    overlap = np.zeros(reference.shape, bool)
    overlap[6:30, 3:22] = True
    masks["Lesion 3 - non-mass enhancement"] = overlap
    path = write_lesion_segmentation(tmp_path / "case.seg.nrrd", masks, reference)
    expected = np.logical_or.reduce(list(masks.values()))
    assert np.array_equal(read_lesion_mask(path, reference), expected)
    assert [n for n, _ in read_segments(path)] == list(masks)


def test_labelmaps_nrrd_and_nifti(tmp_path, reference):
    labels = np.zeros(reference.shape, np.uint8)
    labels[10:20, 4:9] = 1
    labels[30:33, 20:25] = 2
    nrrd_path = write_nrrd(reference.with_array(labels), tmp_path / "labels.nrrd")
    nii_path = tmp_path / "labels.nii.gz"
    sitk.WriteImage(reference.with_array(labels).to_sitk(), str(nii_path))
    for path in (nrrd_path, nii_path):
        assert np.array_equal(read_lesion_mask(path, reference), labels > 0)


def test_slicer_cropped_segmentation_is_placed_on_the_le_grid(tmp_path, reference):
    """Slicer may save a segmentation cropped to its extent: same grid, shifted origin."""
    full = masks_on(reference.shape)["Lesion 2 - calcifications"]
    crop = Image(np.zeros((15, 6), np.uint8), spacing=reference.spacing,
                 origin=(reference.origin[0] + 1 * 0.2, reference.origin[1] + 24 * 0.3, 0.0))
    path = write_lesion_segmentation(tmp_path / "crop.seg.nrrd", {"Segment": full[24:39, 1:7]}, crop)
    assert np.array_equal(read_lesion_mask(path, reference), full)


@pytest.mark.parametrize("other", [
    dict(spacing=(0.25, 0.3)), dict(origin=(5.1, -2.0, 0.0)), dict(shape=(40, 31)),
    dict(direction=(-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))])
def test_geometry_mismatch_names_the_file_and_both_geometries(tmp_path, reference, other):
    shape = other.pop("shape", reference.shape)
    grid = Image(np.zeros(shape, np.uint8), **{"spacing": reference.spacing, "origin": reference.origin, **other})
    mask = np.zeros(shape, bool)
    mask[:3, :3] = True
    for path in (write_lesion_segmentation(tmp_path / "m.seg.nrrd", {"x": mask}, grid),
                 write_nrrd(grid.with_array(mask.astype(np.uint8)), tmp_path / "m.nrrd")):
        with pytest.raises(InputError, match="geometry does not match the LE") as err:
            read_lesion_mask(path, reference)
        assert err.value.path == str(path)
        assert grid.geometry_text() in err.value.problem and reference.geometry_text() in err.value.problem


def test_unreadable_or_missing_files(tmp_path, reference):
    bad = tmp_path / "broken.seg.nrrd"
    bad.write_bytes(b"NRRD0004\nthis is not a header\n")
    with pytest.raises(InputError, match="cannot read segmentation") as err:
        read_lesion_mask(bad, reference)
    assert err.value.path == str(bad)
    with pytest.raises(InputError, match="no such file"):
        read_lesion_mask(tmp_path / "absent.seg.nrrd", reference)
    junk = tmp_path / "junk.nrrd"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(InputError) as err:
        read_lesion_mask(junk, reference)
    assert err.value.path == str(junk)


def test_phantom_masks_round_trip_aligned_with_the_le(tmp_path):
    case = simulate_case(np.random.default_rng(4), pixel_mm=1.5, laterality="R", view="MLO",
                         lesions=["mass_rim", "calcifications", "nme"])
    le = case.image(case.le)
    path = write_lesion_segmentation(tmp_path / "c.seg.nrrd", case.lesion_masks, le)
    segments = read_segments(path)
    assert [n for n, _ in segments] == list(case.lesion_masks) and len(segments) == 3
    for (_, mask), simulated in zip(segments, case.lesion_masks.values()):
        assert np.array_equal(mask, simulated) and mask.any()
    assert np.array_equal(read_lesion_mask(path, le), np.logical_or.reduce(list(case.lesion_masks.values())))
    # Same bytes for the same masks: no write time in the header.
    again = write_lesion_segmentation(tmp_path / "d.seg.nrrd", case.lesion_masks, le)
    assert path.read_bytes() == again.read_bytes()


def test_mask_shape_must_match_the_reference(tmp_path, reference):
    with pytest.raises(ValueError, match="shape"):
        write_lesion_segmentation(tmp_path / "x.seg.nrrd", {"a": np.zeros((3, 3), bool)}, reference)
    assert list(tmp_path.iterdir()) == []
