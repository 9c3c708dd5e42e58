"""The CESM phantom: anatomy, physics (tissue cancellation, iodine, calcium), files, CLI.

Physics checks compare two simulations from the same generator state, with and
without one lesion: anatomy and quantum noise are identical, so the difference
is exactly what the lesion adds to LE and to DES.
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from VirtualContrastTraining.cli import main
from VirtualContrastTraining.data.dicom_write import MG_FOR_PRESENTATION, write_mg_dicom
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.data.phantom import CALIBRATION, PHYSICS, generate_dataset, simulate_case
from VirtualContrastTraining.data.segmentation import read_lesion_mask
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import parse_event


def case(seed=0, pixel_mm=1.0, **kw):
    kw.setdefault("lesions", [])
    return simulate_case(np.random.default_rng(seed), pixel_mm=pixel_mm, **kw)


def cnr(img, adipose, fibro):
    """Zormpas-Petridis 2026: |mean_adipose - mean_fg| / (std_adipose + std_fg)."""
    img = img.astype(float)
    return abs(img[adipose].mean() - img[fibro].mean()) / (img[adipose].std() + img[fibro].std())


def noise_sd(img, region):
    """Quantum noise sd from neighbour differences (texture is smooth at the pixel scale)."""
    diff = np.diff(img.astype(float), axis=1)
    return diff[region[:, 1:] & region[:, :-1]].std() / np.sqrt(2)


def paired(kind, seed, pixel_mm=1.0):
    with_lesion = case(seed, pixel_mm, lesions=[kind], density="c")
    without = case(seed, pixel_mm, lesions=[], density="c")
    (mask,) = with_lesion.lesion_masks.values()
    d_le = with_lesion.le.astype(float) - without.le
    d_des = with_lesion.des.astype(float) - without.des
    return with_lesion, mask, d_le, d_des


# ---------------------------------------------------------------- anatomy and geometry


@pytest.mark.parametrize("laterality,view", [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")])
def test_breast_side_and_pectoral_muscle(laterality, view):
    c = case(3, laterality=laterality, view=view)
    assert c.le.shape == (285, 239) and c.le.dtype == np.uint16 and c.des.dtype == np.uint16
    chest, far = (0, -1) if laterality == "L" else (-1, 0)
    assert c.breast[:, chest].sum() > 100      # the breast sits on the chest wall ...
    assert not c.breast[:, far].any()          # ... and air lies on the other side
    if view == "CC":
        assert not c.pectoral.any()
    else:
        rows, cols = np.nonzero(c.pectoral)
        assert rows.size > 100
        assert rows.max() < c.le.shape[0] * 0.75                            # upper part
        assert np.abs(cols - (0 if laterality == "L" else c.le.shape[1] - 1)).max() < c.le.shape[1] * 0.6
        assert c.pectoral[0, chest]                                         # upper corner at the chest wall
    assert not (c.adipose & c.fibroglandular).any()
    assert not (c.adipose & c.pectoral).any()


def test_full_detector_size_at_default_pixel():
    rows, cols = (int(np.floor(s / p + 0.5)) for s, p in zip((285.0, 239.4), (0.4, 0.4)))
    assert (rows, cols) == (713, 599)
    assert case(0, pixel_mm=2.0).le.shape == (143, 120)


def test_same_seed_same_pixels_other_seed_other_pixels():
    a, b, c = case(5, lesions=["mass_rim", "nme"]), case(5, lesions=["mass_rim", "nme"]), case(6)
    for name in ("le", "des", "he", "iodine", "breast", "fibroglandular", "adipose"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert list(a.lesion_masks) == list(b.lesion_masks)
    assert not np.array_equal(a.le, c.le)


# ---------------------------------------------------------------- intensities and physics


@pytest.mark.parametrize("seed,density,bpe,view", [
    (0, "a", "minimal", "CC"), (1, "b", "mild", "MLO"), (2, "c", "moderate", "CC"), (3, "d", "marked", "MLO")])
def test_pristina_ranges_inside_breast_and_dark_background(seed, density, bpe, view):
    c = case(seed, density=density, bpe=bpe, view=view, lesions=None)
    le_lo, le_hi = np.percentile(c.le[c.breast], [2, 98])
    des_lo, des_hi = np.percentile(c.des[c.breast], [2, 98])
    assert 1800 <= le_lo and le_hi <= 2900
    assert 1700 <= des_lo and des_hi <= 2400
    outside = ~ndimage.binary_dilation(c.breast, iterations=3)
    assert np.median(c.le[outside]) < 1000 and np.median(c.des[outside]) < 1700
    assert c.des[outside].std() < 10           # uniform background in DES, as on real systems
    assert c.le.max() < 2**CALIBRATION.bits_stored


def test_des_cancels_adipose_glandular_contrast():
    c = case(1, density="c", bpe="minimal")
    assert c.fibroglandular.sum() > 500 and c.adipose.sum() > 500
    le_contrast = c.le[c.fibroglandular].mean() - c.le[c.adipose].mean()
    des_contrast = c.des[c.fibroglandular].mean() - c.des[c.adipose].mean()
    assert le_contrast > 150
    assert abs(des_contrast) < 0.2 * le_contrast
    # Table 2 of Zormpas-Petridis 2026: tissue CNR clearly lower in DES than in LE.
    assert cnr(c.le, c.adipose, c.fibroglandular) > 3 * cnr(c.des, c.adipose, c.fibroglandular)
    # w is the ratio of the adipose/glandular attenuation differences (HE over LE).
    assert PHYSICS.weight == pytest.approx(
        (PHYSICS.mu_glandular[1] - PHYSICS.mu_adipose[1]) / (PHYSICS.mu_glandular[0] - PHYSICS.mu_adipose[0]))


def test_background_parenchymal_enhancement_grows_with_level():
    contrast = []
    for bpe in ("minimal", "mild", "moderate", "marked"):
        c = case(2, density="c", bpe=bpe)
        contrast.append(c.des[c.fibroglandular].mean() - c.des[c.adipose].mean())
    assert contrast == sorted(contrast) and contrast[-1] - contrast[0] > 30


def test_peripheral_halo_in_des():
    """The thickness roll-off is compensated imperfectly: a bright band inside the skin line."""
    c = case(4, bpe="minimal")
    dist = ndimage.distance_transform_edt(c.breast)
    band = c.breast & (dist > 4) & (dist <= 12)
    centre = c.adipose
    assert c.des[band].mean() - c.des[centre].mean() > 20


@pytest.mark.parametrize("kind", ["mass_homogeneous", "mass_rim", "mass_heterogeneous", "nme"])
@pytest.mark.parametrize("seed", [0, 2])
def test_enhancing_lesions_bright_in_des(kind, seed):
    c, mask, d_le, d_des = paired(kind, seed)
    ring = ndimage.binary_dilation(mask, iterations=3) & ~mask & c.breast
    contrast = c.des[mask].mean() - c.des[ring].mean()
    assert contrast > 4 * noise_sd(c.des, c.adipose)
    assert np.abs(d_des[~mask]).max() <= 3     # the lesion stays inside its mask
    if kind == "nme":   # iodine only: barely any trace in LE
        assert d_le[mask].mean() < 0.2 * d_des[mask].mean()
        assert d_le[mask].mean() < 2 * noise_sd(c.le, c.adipose) + 10
    if kind == "mass_rim":
        cy, cx = (int(round(v.mean())) for v in np.nonzero(mask))
        assert d_des[cy, cx] < 0.75 * np.percentile(d_des[mask], 95)


def test_non_enhancing_mass_visible_in_le_only():
    c, mask, d_le, d_des = paired("mass_nonenhancing", 1)
    assert d_le[mask].mean() > 40
    assert abs(d_des[mask].mean()) < 0.05 * d_le[mask].mean()


@pytest.mark.parametrize("seed", [0, 3])
def test_calcifications_bright_in_le_not_in_des(seed):
    c, mask, d_le, d_des = paired("calcifications", seed, pixel_mm=0.5)
    assert d_le[mask].max() > max(40, 3 * noise_sd(c.le, c.adipose))
    assert d_des[mask].max() <= 1 and d_des[mask].mean() <= 0.5
    assert c.iodine[mask].max() == pytest.approx(case(seed, 0.5, density="c").iodine[mask].max())


def test_iodine_truth_covers_lesions():
    c = case(2, lesions=["mass_homogeneous", "nme"])
    for mask in c.lesion_masks.values():
        assert c.iodine[mask].mean() > 3 * c.iodine[c.adipose].mean()
    assert c.iodine.dtype == np.float32 and not c.iodine[~c.breast].any()


def test_bad_parameters_raise():
    with pytest.raises(ValueError):
        case(0, view="LM")
    with pytest.raises(ValueError, match="unknown lesion kind"):
        case(0, lesions=["tumour"])


# ---------------------------------------------------------------- files and CLI


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "ds"
    assert main(["phantom", "--out", str(out), "--cases", "7", "--seed", "11", "--pixel-mm", "1.5"]) == 0
    return out


def test_cli_events_and_manifest(dataset, capsys):
    cases = read_manifest(dataset / "manifest.csv", require_des=True)
    assert len(cases) == 7
    info = json.loads((dataset / "phantom.json").read_text())
    assert info["seed"] == 11 and info["pixel_mm"] == 1.5 and info["cases"] == 7
    assert info["calibration"]["des_window"] == [2050.0, 700.0]
    by_patient = {}
    for c in cases:
        assert c.case_id == f"{c.patient_id}_{c.laterality}_{c.view}"
        assert c.density in "abcd" and c.bpe in ("minimal", "mild", "moderate", "marked")
        assert (c.lesion_path != "") == (c.lesion_types != "")
        assert (c.le_window_center, c.le_window_width, c.des_window_center, c.des_window_width) == ("2350", "1100", "2050", "700")
        assert datetime.fromisoformat(c.des_time) > datetime.fromisoformat(c.le_time)
        by_patient.setdefault(c.patient_id, []).append(c)
    assert any(len(v) == 2 for v in by_patient.values())
    for views in by_patient.values():   # one breast per patient: same side, density, BPE, study
        assert len({(c.laterality, c.density, c.bpe, c.study_uid, c.lesion_types) for c in views}) == 1
        assert len({c.view for c in views}) == len(views)


def test_dicom_tags_and_spacing(dataset):
    c = read_manifest(dataset / "manifest.csv")[0]
    le, des = pydicom.dcmread(c.le_path), pydicom.dcmread(c.des_path)
    for ds in (le, des):
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == MG_FOR_PRESENTATION and ds.Modality == "MG"
        assert ds.StudyInstanceUID == c.study_uid and ds.PatientID == c.patient_id
        assert ds.ImageLaterality == c.laterality and ds.ViewPosition == c.view
        assert [float(v) for v in ds.ImagerPixelSpacing] == [1.5, 1.5] == [float(v) for v in ds.PixelSpacing]
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 14, 13, 0)
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.PatientSex == "F"
        assert ds.PresentationIntentType == "FOR PRESENTATION" and ds.PixelIntensityRelationship == "LOG"
        assert ds.Manufacturer == "VirtualContrast phantom" and ds.BodyPartExamined == "BREAST"
        assert str(ds.PatientName).startswith("PHANTOM^")
        image = sitk.ReadImage(str(c.le_path if ds is le else c.des_path))
        assert image.GetSpacing()[:2] == pytest.approx((1.5, 1.5))
        assert np.array_equal(sitk.GetArrayFromImage(image).reshape(ds.pixel_array.shape), ds.pixel_array)
    assert list(le.ImageType) == ["ORIGINAL", "PRIMARY", "", "LOW_ENERGY"]
    assert list(des.ImageType) == ["DERIVED", "PRIMARY", "", "RECOMBINED"]
    assert (le.AcquisitionDeviceProcessingCode, des.AcquisitionDeviceProcessingCode) == ("GEMS_FFDM_PV", "GEMS_CESM_1")
    assert (float(le.WindowCenter), float(le.WindowWidth), float(des.WindowCenter), float(des.WindowWidth)) == (2350, 1100, 2050, 700)
    assert le.SeriesInstanceUID != des.SeriesInstanceUID and le.SOPInstanceUID != des.SOPInstanceUID
    assert des.SourceImageSequence[0].ReferencedSOPInstanceUID == le.SOPInstanceUID
    assert des.AcquisitionTime > le.AcquisitionTime


def test_truth_and_masks_share_the_le_geometry(dataset):
    for c in read_manifest(dataset / "manifest.csv"):
        le = sitk.ReadImage(c.le_path)
        shape = (le.GetSize()[1], le.GetSize()[0])
        truth = {}
        for name in ("breast", "fibroglandular", "adipose", "iodine"):
            img = sitk.ReadImage(str(dataset / c.patient_id / "truth" / f"{c.case_id}_{name}.nrrd"))
            assert img.GetSpacing()[:2] == pytest.approx(le.GetSpacing()[:2]) and img.GetOrigin() == (0, 0, 0)
            truth[name] = sitk.GetArrayFromImage(img).reshape(shape)
        assert truth["iodine"].dtype == np.float32
        assert not (truth["adipose"] & truth["fibroglandular"]).any()
        if c.lesion_path:
            from VirtualContrastTraining.data.image import Image

            mask = read_lesion_mask(c.lesion_path, Image(np.zeros(shape), spacing=(1.5, 1.5)))
            assert mask.any() and not (mask & ~truth["breast"].astype(bool)).any()


def test_dataset_is_byte_identical_per_seed(dataset, tmp_path):
    again = generate_dataset(tmp_path / "again", 7, 11, 1.5).parent
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (dataset / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_unwritable_out_is_one_line_error_and_leaves_nothing(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    before = sorted(tmp_path.rglob("*"))
    assert main(["phantom", "--out", str(blocker / "ds"), "--cases", "1", "--pixel-mm", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err and str(blocker) in err
    assert sorted(tmp_path.rglob("*")) == before


def test_refuses_to_replace_a_folder_that_is_not_a_phantom(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a phantom dataset"):
        generate_dataset(tmp_path, 1, 0, 3.0)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_failure_midway_leaves_no_half_written_dataset(tmp_path):
    def boom(done, total, case_id):
        if done == 2:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        generate_dataset(tmp_path / "ds", 4, 0, 3.0, progress=boom)
    assert list(tmp_path.iterdir()) == []


def test_progress_events_on_stdout(tmp_path, capsys):
    assert main(["phantom", "--out", str(tmp_path / "ds"), "--cases", "2", "--seed", "1", "--pixel-mm", "3",
                 "--json"]) == 0
    events = [e for e in map(parse_event, capsys.readouterr().out.splitlines()) if e]
    assert [e["event"] for e in events] == ["started", "progress", "progress", "finished"]
    assert events[-1]["manifest"].endswith("manifest.csv")


def test_write_mg_dicom_rejects_bad_input(tmp_path):
    ok = dict(spacing_mm=(0.1, 0.1), image_type=["ORIGINAL", "PRIMARY"], patient_id="P", patient_name="P^1",
              study_uid="1.2.3")
    with pytest.raises(ValueError, match="uint16"):
        write_mg_dicom(tmp_path / "a.dcm", np.zeros((4, 4), np.float32), **ok)
    with pytest.raises(ValueError, match="12 bits"):
        write_mg_dicom(tmp_path / "a.dcm", np.full((4, 4), 5000, np.uint16), bits_stored=12, **ok)
    with pytest.raises(ValueError, match="not a DICOM keyword"):
        write_mg_dicom(tmp_path / "a.dcm", np.zeros((4, 4), np.uint16), extra={"Colour": "red"}, **ok)
    assert list(tmp_path.iterdir()) == []
    path = write_mg_dicom(tmp_path / "b.dcm", np.arange(12, dtype=np.uint16).reshape(3, 4),
                          spacing_mm=(0.07, 0.1), image_type=["DERIVED", "PRIMARY"], patient_id="P",
                          patient_name="P^1", study_uid="1.2.3", extra={"DerivationDescription": "synthetic"})
    ds = pydicom.dcmread(path)
    assert [float(v) for v in ds.PixelSpacing] == [0.1, 0.07] and ds.DerivationDescription == "synthetic"
    assert sitk.ReadImage(str(path)).GetSpacing()[:2] == pytest.approx((0.07, 0.1))
