"""Prepared cases from real NRRD/DICOM files, the DES output window and the torch dataset."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from VirtualContrastTraining.data.dataset import PairedDataset

from VirtualContrastTraining.data.prepared import des_output_window, prepare_case, prepare_cases
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import write_nrrd
from VirtualContrastTraining.data.manifest import Case
from VirtualContrastTraining.data.preprocessing import PreprocessConfig
from VirtualContrastTraining.errors import InputError

CONFIG = PreprocessConfig(size=32)


def breast(rows=96, cols=64, side="left", base=1000.0):
    yy, xx = np.mgrid[:rows, :cols]
    wall = 0 if side == "left" else cols - 1
    inside = (yy - rows / 2) ** 2 + (xx - wall) ** 2 < (0.45 * rows) ** 2
    return np.where(inside, base + 4.0 * yy, 0.0).astype(np.float32)


def write_pair(folder, name, side="left", des_shape=None, **case_fields):
    le = breast(side=side)
    des = breast(*(des_shape or le.shape), side=side, base=500.0)
    le_path = write_nrrd(Image(le, spacing=(0.1, 0.1)), folder / f"{name}_le.nrrd")
    des_path = write_nrrd(Image(des, spacing=(0.1, 0.1)), folder / f"{name}_des.nrrd")
    return Case(case_id=name, patient_id=name, le_path=str(le_path), des_path=str(des_path), **case_fields)


def write_mg_dicom(path, array, *, laterality, center, width):
    """A minimal one-frame MG DICOM written with pydicom."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.ImageLaterality = "MG", "P1", laterality
    ds.Rows, ds.Columns = array.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.ImagerPixelSpacing = [0.1, 0.1]
    ds.WindowCenter, ds.WindowWidth = center, width
    ds.PixelData = array.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_prepare_nrrd_pair_with_manifest_windows(tmp_path):
    case = write_pair(tmp_path, "c1", laterality="L", le_window_center="1200", le_window_width="400",
                      des_window_center="700", des_window_width="400")
    p = prepare_case(case, CONFIG)
    assert p.le.shape == p.des.shape == p.mask.shape == (32, 32)
    assert p.le.dtype == p.des.dtype == p.mask.dtype == np.float32
    assert p.params.window == (1000.0, 1400.0) and p.des_params.window == (500.0, 900.0)
    assert p.params.pad_side == p.des_params.pad_side == "right" and p.le_image_shape == (96, 64)
    assert not p.has_mask and p.mask.max() == 0.0
    # Same padding geometry: the empty (padded + air) region is the same in LE and DES.
    np.testing.assert_array_equal(p.le == 0, p.des == 0)


def test_des_follows_the_les_side_when_laterality_is_unknown(tmp_path):
    case = write_pair(tmp_path, "c2", side="right")
    p = prepare_case(case, CONFIG)
    assert p.params.pad_side == p.des_params.pad_side == "left"
    assert p.params.window_source == "percentile"


def test_prepare_dicom_pair_uses_the_dicom_window_and_laterality(tmp_path):
    le = write_mg_dicom(tmp_path / "le.dcm", breast(side="right"), laterality="R", center=1200, width=600)
    des = write_mg_dicom(tmp_path / "des.dcm", breast(side="right", base=500), laterality="R", center=800, width=200)
    p = prepare_case(Case(case_id="d", patient_id="d", le_path=str(le), des_path=str(des)), CONFIG)
    assert p.params.window == (900.0, 1500.0) and p.params.window_source == "dicom"
    assert p.des_params.window == (700.0, 900.0)
    assert p.params.pad_side == "left"


def test_le_and_des_of_different_sizes_name_both_files(tmp_path):
    case = write_pair(tmp_path, "bad", des_shape=(96, 60))
    with pytest.raises(InputError) as err:
        prepare_cases([case], CONFIG)
    message = str(err.value)
    assert case.le_path in message and case.des_path in message
    assert "60x96" in message and "64x96" in message


def test_unreadable_files_name_the_file(tmp_path):
    missing = Case(case_id="m", patient_id="m", le_path=str(tmp_path / "nope.nrrd"))
    with pytest.raises(InputError) as err:
        prepare_case(missing, CONFIG)
    assert err.value.path == str(tmp_path / "nope.nrrd")
    garbage = tmp_path / "garbage.nrrd"
    garbage.write_bytes(b"NRRD0004\nnot really\n")
    with pytest.raises(InputError) as err:
        prepare_case(Case(case_id="g", patient_id="g", le_path=str(garbage)), CONFIG)
    assert err.value.path == str(garbage)
    case = write_pair(tmp_path, "w", des_window_center="high", des_window_width="400")
    with pytest.raises(InputError, match="not numbers") as err:
        prepare_case(case, CONFIG)
    assert err.value.path == case.des_path


def test_lesion_labelmap_is_read_in_the_le_geometry(tmp_path):
    case = write_pair(tmp_path, "les", laterality="L")
    label = np.zeros((96, 64), np.uint8)
    yy, xx = np.mgrid[:96, :64]
    label[(yy - 40) ** 2 + (xx - 16) ** 2 <= 25] = 1
    case.lesion_path = str(write_nrrd(Image(label, spacing=(0.1, 0.1)), tmp_path / "les_label.nrrd"))
    p = prepare_case(case, CONFIG)
    assert p.has_mask and set(np.unique(p.mask)) == {0.0, 1.0}
    centroid = np.argwhere(p.mask).mean(axis=0)
    scale = 32 / 96
    assert np.hypot(centroid[0] - (40.5 * scale - 0.5), centroid[1] - (16.5 * scale - 0.5)) < 1.0
    wrong = write_nrrd(Image(np.ones((96, 64), np.uint8), spacing=(0.2, 0.2)), tmp_path / "wrong_label.nrrd")
    case.lesion_path = str(wrong)
    with pytest.raises(InputError) as err:
        prepare_case(case, CONFIG)
    assert err.value.path == str(wrong)


def test_parallel_preparation_matches_serial_and_des_window_is_the_median(tmp_path, monkeypatch):
    import VirtualContrastTraining.data.prepared as prepared

    monkeypatch.setattr(prepared, "PARALLEL_MIN_SECONDS", 0.0)  # tiny images: force the worker processes
    cases = [write_pair(tmp_path, f"c{i}", laterality="L", des_window_center=str(c), des_window_width=str(w))
             for i, (c, w) in enumerate([(700, 400), (800, 200), (1000, 600)])]
    serial = prepare_cases(cases, CONFIG)
    parallel = prepare_cases(cases, CONFIG, workers=2)
    assert [p.case.case_id for p in parallel] == ["c0", "c1", "c2"]
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a.le, b.le)
        np.testing.assert_array_equal(a.des, b.des)
    # lo in (500, 700, 700) and hi in (900, 900, 1300)
    assert des_output_window(serial) == (700.0, 900.0)
    le_only = prepare_case(Case(case_id="x", patient_id="x", le_path=cases[0].le_path), CONFIG)
    with pytest.raises(InputError, match="no DES"):
        des_output_window([le_only])
    with pytest.raises(InputError, match="has no DES"):
        PairedDataset([le_only], augment=False, seed=0)


def test_paired_dataset_items_and_seeded_augmentation(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    prepared = prepare_cases([write_pair(tmp_path, f"c{i}", laterality="L") for i in range(3)], CONFIG)
    plain = PairedDataset(prepared, augment=False, seed=0)
    item = plain[1]
    assert len(plain) == 3 and item["index"] == 1 and item["has_mask"] is False
    assert item["le"].shape == item["des"].shape == item["mask"].shape == (1, 32, 32)
    assert torch.equal(item["le"][0], torch.from_numpy(prepared[1].le))

    def run(epoch):
        ds = PairedDataset(prepared, augment=True, seed=11, prob=1.0)
        ds.set_epoch(epoch)
        return [ds[i]["le"] for i in range(3)]

    first, again, other = run(4), run(4), run(5)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not any(torch.equal(a, b) for a, b in zip(first, other))
    assert not torch.equal(first[1][0], torch.from_numpy(prepared[1].le))

    batch = next(iter(DataLoader(plain, batch_size=3)))
    assert batch["le"].shape == (3, 1, 32, 32) and batch["index"].tolist() == [0, 1, 2]


def test_real_cdd_cesm_pair(cdd_sample):
    case = Case(case_id="P10_L_CC", patient_id="P10", laterality="L",
                le_path=str(cdd_sample / "P10_L_DM_CC.png"), des_path=str(cdd_sample / "P10_L_CM_CC.png"))
    p = prepare_case(case, PreprocessConfig(size=64))
    assert p.params.pad_side == p.des_params.pad_side == "right" and p.le_image_shape == (512, 256)
    assert p.params.window_source == p.des_params.window_source == "percentile"
    assert p.le[:, 40:].max() == 0.0 and p.des[:, 40:].max() == 0.0  # padded half (32 of 64 columns) + margin
    assert p.le[:, :32].mean() > 0.05 and p.des[:, :32].mean() > 0.05


def test_des_offset_moves_the_des_onto_the_le(tmp_path):
    """des_offset_x/_y (CDD-CESM registration): aligned DES[r, c] = DES[r + y, c + x], background elsewhere."""
    from dataclasses import replace

    from VirtualContrastTraining.data.cases import read_case_images

    case = write_pair(tmp_path, "c1", laterality="L")
    _, des = read_case_images(case)
    _, moved = read_case_images(replace(case, des_offset_x="3", des_offset_y="-2"))
    assert np.array_equal(moved.array[2:, :-3], des.array[:-2, 3:])
    assert (moved.array[:2] == des.array.min()).all() and (moved.array[:, -3:] == des.array.min()).all()
    assert moved.spacing == des.spacing


def test_manifest_rejects_a_fractional_offset(tmp_path):
    from VirtualContrastTraining.data.manifest import read_manifest, write_manifest

    manifest = write_manifest(tmp_path / "m.csv", [write_pair(tmp_path, "c1", des_offset_x="1.5")])
    with pytest.raises(InputError, match=r"line 2: des_offset_x '1.5' is not a whole number of pixels"):
        read_manifest(manifest)
