"""Import: pairing LE with DES by patient/study/side/view and time, skip reasons, DICOMDIR, lesion masks, CLI."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.fileset import FileSet

from test_dicom_read import write_mg
from VirtualContrastTraining.data.importer import import_dicom
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.errors import InputError

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 3, 1, 10, 0, 0)
TISSUE_REASON = "not a lesion mask: its name says tissue or ground truth (breast, adipose, iodine, truth, ...)"


def write_compression(folder: Path, patient: str, side: str, view: str, t: datetime, study: str = "1.2.3",
                      roles=("LE", "HE", "DES"), tag: str = "", **kw) -> dict[str, Path]:
    """The images of one CESM compression: LE, HE 1 s later, DES with the HE's time."""
    stem = f"{patient}_{side}_{view}{tag}"
    times = {"LE": t, "HE": t + timedelta(seconds=1), "DES": t + timedelta(seconds=1)}
    return {
        role: write_mg(folder / f"{stem}_{role}.dcm", role=role, patient_id=patient, study_uid=study,
                       laterality=side, view=view, time=times[role], **kw)
        for role in roles
    }


def write_labelmap(path: Path, rows=64, cols=48, spacing=(0.1, 0.1), dtype=np.uint8, values=None, meta=None) -> Path:
    arr = np.zeros((1, rows, cols), dtype=dtype) if values is None else values[np.newaxis]
    arr[0, 5:10, 5:10] = 1 if values is None else arr[0, 5:10, 5:10]
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((spacing[0], spacing[1], 1.0))
    for key, value in (meta or {}).items():
        img.SetMetaData(key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)
    return path


def by_id(report):
    return {c.case_id: c for c in report.cases}


def reasons(report) -> dict[str, str]:
    return {Path(p).name: r for p, r in report.skipped}


def test_pairs_two_patients_two_views_both_sides(tmp_path):
    written = {}
    for k, patient in enumerate(("P1", "P2")):
        t = T0 + timedelta(days=k)
        for side in ("L", "R"):
            for view in ("CC", "MLO"):
                t += timedelta(minutes=1)
                written[f"{patient}_{side}_{view}"] = write_compression(
                    tmp_path / patient / f"series_{side}{view}", patient, side, view, t, study=f"1.2.{k}")
    report = import_dicom(tmp_path, tmp_path / "manifest.csv", ids_from_patient_id=True)
    cases = by_id(report)
    assert sorted(cases) == sorted(written)
    for case_id, files in written.items():
        c = cases[case_id]
        assert Path(c.le_path) == files["LE"].resolve() and Path(c.des_path) == files["DES"].resolve()
        patient, side, view = case_id.split("_")
        assert (c.patient_id, c.laterality, c.view) == (patient, side, view)
        assert c.le_window_center == "2000" and c.des_window_width == "1000"
        assert datetime.fromisoformat(c.des_time) - datetime.fromisoformat(c.le_time) == timedelta(seconds=1)
    # HE images are not used, each with the reason
    assert [r for p, r in report.skipped] == ["high-energy image: not used"] * 8
    # the manifest reads back with the same pairs, paths relative to its folder
    back = read_manifest(report.manifest_path, require_des=True)
    assert {c.case_id: (c.le_path, c.des_path) for c in back} == {i: (c.le_path, c.des_path) for i, c in cases.items()}
    assert ",P1/series_LCC/P1_L_CC_LE.dcm," in report.manifest_path.read_text()


def test_repeated_late_phase_acquisitions_pair_by_nearest_time(tmp_path):
    # three compressions of the same breast and view, minutes apart; written out of order,
    # with DES times that are nearer to their own LE than to any other
    files = {}
    for tag, minutes in (("c", 7), ("a", 0), ("b", 3)):
        files[tag] = write_compression(tmp_path, "P1", "L", "CC", T0 + timedelta(minutes=minutes), tag=f"_{tag}",
                                       roles=("LE", "DES"))
    extra_des = write_mg(tmp_path / "late_des.dcm", role="DES", time=T0 + timedelta(minutes=20))
    report = import_dicom(tmp_path, tmp_path / "m.csv", ids_from_patient_id=True)
    cases = by_id(report)
    assert sorted(cases) == ["P1_L_CC", "P1_L_CC_2", "P1_L_CC_3"]
    for case_id, tag in (("P1_L_CC", "a"), ("P1_L_CC_2", "b"), ("P1_L_CC_3", "c")):
        assert Path(cases[case_id].le_path).name == f"P1_L_CC_{tag}_LE.dcm"
        assert Path(cases[case_id].des_path).name == f"P1_L_CC_{tag}_DES.dcm"
    assert reasons(report) == {extra_des.name: "unpaired DES: no LE of the same study, side and view within 120 s"}


def test_greedy_nearest_is_one_to_one(tmp_path):
    # LE1 at 0 s and LE2 at 50 s, DES at 40 s and 90 s: the 40 s DES is nearer to LE2 (10 s) than to
    # LE1 (40 s), so LE2 takes it and LE1 gets the 90 s one only if within tolerance (here not).
    le1 = write_mg(tmp_path / "le1", role="LE", time=T0)
    le2 = write_mg(tmp_path / "le2", role="LE", time=T0 + timedelta(seconds=50))
    d40 = write_mg(tmp_path / "d40", role="DES", time=T0 + timedelta(seconds=40))
    d90 = write_mg(tmp_path / "d90", role="DES", time=T0 + timedelta(seconds=90))
    report = import_dicom(tmp_path, tmp_path / "m.csv", time_tolerance_s=60, ids_from_patient_id=True)
    assert [(Path(c.le_path).name, Path(c.des_path).name) for c in report.cases] == [("le2", "d40")]
    assert set(reasons(report)) == {le1.name, d90.name}
    wide = import_dicom(tmp_path, tmp_path / "m.csv", time_tolerance_s=100, ids_from_patient_id=True)
    assert sorted((Path(c.le_path).name, Path(c.des_path).name) for c in wide.cases) == [("le1", "d90"), ("le2", "d40")]


def test_everything_unusable_is_reported_not_fatal(tmp_path):
    write_compression(tmp_path, "P1", "L", "CC", T0)
    write_mg(tmp_path / "syn.dcm", role="SYNTHETIC", time=T0 + timedelta(seconds=1))
    write_mg(tmp_path / "lonely_le.dcm", role="LE", view="MLO")
    write_mg(tmp_path / "other_study_des.dcm", role="DES", study_uid="9.9", view="MLO")
    write_mg(tmp_path / "no_role.dcm", role=None, view="MLO")
    write_mg(tmp_path / "no_side.dcm", role="DES", laterality=None, view="MLO")
    write_mg(tmp_path / "sr.dcm", extra={"PixelData": None, "Modality": "SR"})
    write_mg(tmp_path / "mf.dcm", pixels=np.zeros((2, 64, 48), np.uint16), extra={"NumberOfFrames": 2})
    write_mg(tmp_path / "rgb.dcm", pixels=np.zeros((64, 48), np.uint16), extra={
        "SamplesPerPixel": 3, "PhotometricInterpretation": "RGB", "PlanarConfiguration": 0,
        "BitsAllocated": 8, "BitsStored": 8, "HighBit": 7, "PixelData": bytes(64 * 48 * 3)})
    (tmp_path / "notes.txt").write_text("not an image")
    truncated = write_mg(tmp_path / "truncated.dcm", role="DES", view="MLO")
    truncated.write_bytes(truncated.read_bytes()[:400])
    report = import_dicom(tmp_path, tmp_path / "m.csv", ids_from_patient_id=True)
    assert list(by_id(report)) == ["P1_L_CC"]
    r = reasons(report)
    assert r["P1_L_CC_HE.dcm"] == "high-energy image: not used"
    assert r["syn.dcm"] == "synthetic image: never paired as a real DES"
    assert r["lonely_le.dcm"].startswith("unpaired LE")
    assert r["other_study_des.dcm"].startswith("unpaired DES")
    assert r["no_role.dcm"].startswith("role unknown")
    assert r["no_side.dcm"].startswith("laterality unknown")
    assert "without pixel data" in r["sr.dcm"]
    assert r["mf.dcm"].startswith("multi-frame image (2 frames)")
    assert r["rgb.dcm"].startswith("colour image")
    assert r["notes.txt"] == "not a DICOM file"
    assert r["truncated.dcm"].startswith("DICOM without pixel data")
    assert len(report.skipped) == 11


def test_dicomdir_with_extensionless_files_is_not_double_counted(tmp_path):
    src = tmp_path / "src"
    fs = FileSet()
    for side in ("L", "R"):
        for path in write_compression(src, "P7", side, "MLO", T0 + timedelta(minutes=side == "R"),
                                      roles=("LE", "DES")).values():
            fs.add(pydicom.dcmread(path))
    media = tmp_path / "media"
    fs.write(media)
    assert (media / "DICOMDIR").is_file() and not list(media.rglob("*.dcm"))
    report = import_dicom(media, tmp_path / "m.csv", ids_from_patient_id=True)
    assert sorted(by_id(report)) == ["P7_L_MLO", "P7_R_MLO"]
    assert report.skipped == []
    for c in report.cases:
        assert Path(c.le_path).is_relative_to(media.resolve()) and "." not in Path(c.le_path).name


def test_dicomdir_reference_to_missing_file_is_reported(tmp_path):
    fs = FileSet()
    for path in write_compression(tmp_path / "src", "P8", "L", "CC", T0, roles=("LE", "DES", "HE")).values():
        fs.add(pydicom.dcmread(path))
    fs.write(tmp_path / "media")
    he = next(p for p in (tmp_path / "media").rglob("IM*") if read_role(p) == "HE")
    he.unlink()
    report = import_dicom(tmp_path / "media", tmp_path / "m.csv", ids_from_patient_id=True)
    assert list(by_id(report)) == ["P8_L_CC"]
    assert report.skipped == [(str(he), "referenced by DICOMDIR but missing")]


def read_role(path: Path) -> str:
    return pydicom.dcmread(path, stop_before_pixels=True).ImageType[3].split("_")[0].replace("LOW", "LE").replace("HIGH", "HE")


def test_segmentations_by_name_then_by_geometry(tmp_path):
    a = tmp_path / "a"
    write_compression(a, "P1", "L", "CC", T0)
    write_compression(a, "P1", "L", "MLO", T0 + timedelta(minutes=1), rows=80)
    write_compression(a, "P1", "L", "CC", T0 + timedelta(minutes=5), tag="_late", roles=("LE", "DES"), rows=72)
    b = tmp_path / "b"
    write_compression(b, "P2", "R", "CC", T0, pixel_spacing=(0.07, 0.07))
    c = tmp_path / "c"
    write_compression(c, "P3", "R", "CC", T0)
    write_compression(c, "P3", "R", "MLO", T0 + timedelta(minutes=1))
    segs = tmp_path / "segs"
    by_name = write_labelmap(segs / "P1_L_CC.seg.nrrd", meta={"Segment0_ID": "Segment_1", "Segment0_LabelValue": "1"})
    by_le_stem = write_labelmap(segs / "P1_L_CC_late_LE_lesion.nii.gz", rows=72)
    # a Slicer segmentation cropped to its segment, full geometry in the conversion parameters (RAS: -x, -y)
    cropped = write_labelmap(b / "annotation.seg.nrrd", rows=10, cols=12, spacing=(0.07, 0.07), meta={
        "Segment0_ID": "Segment_1",
        "Segmentation_ConversionParameters": "Collapse labelmaps|1|desc&Reference image geometry|"
        "-0.07;0;0;0;0;-0.07;0;0;0;0;1;0;0;0;0;1;0;47;0;63;0;0;|Image geometry description&",
    })
    ambiguous = write_labelmap(c / "mask.nrrd")
    # two labelmaps name P3_R_MLO: the lesion one is taken, the tissue mask (found first) never is
    tissue = write_labelmap(tmp_path / "a0" / "P3_R_MLO_breast.nrrd")
    lesion = write_labelmap(tmp_path / "zz" / "P3_R_MLO_lesion.nrrd")
    vague_name = write_labelmap(segs / "P1_L.nrrd")  # prefix of three cases' names, equally
    not_a_prefix = write_labelmap(segs / "P1_L_C.nrrd", rows=33)  # "P1_L_C" is no separated prefix of "P1_L_CC"
    float_image = segs / "P1_L_MLO_LE.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.rand(1, 80, 48).astype(np.float32)), str(float_image))
    many_values = write_labelmap(segs / "P1_L_MLO.nrrd", rows=80, dtype=np.uint16,
                                 values=np.arange(80 * 48, dtype=np.uint16).reshape(80, 48))
    report = import_dicom(tmp_path, tmp_path / "m.csv", ids_from_patient_id=True)
    cases = by_id(report)
    assert cases["P1_L_CC"].lesion_path == str(by_name.resolve())
    assert cases["P1_L_CC_2"].lesion_path == str(by_le_stem.resolve())
    assert cases["P2_R_CC"].lesion_path == str(cropped.resolve())
    assert cases["P3_R_MLO"].lesion_path == str(lesion.resolve())
    assert not cases["P1_L_MLO"].lesion_path and not cases["P3_R_CC"].lesion_path
    assert report.n_with_lesion == 4
    r = reasons(report)
    assert r[tissue.name] == TISSUE_REASON
    assert r[vague_name.name].startswith("segmentation name matches several cases (P1_L_")
    assert r[not_a_prefix.name] == "segmentation matches no case by name and no LE of its folder by geometry"
    assert r[ambiguous.name] == "segmentation matches no case by name and 2 LEs of its folder by geometry"
    assert r[float_image.name].startswith("ignored: not a segmentation or labelmap (32-bit float")
    assert r[many_values.name] == f"ignored: not a labelmap ({80 * 48} distinct values)"
    back = {c.case_id: c for c in read_manifest(report.manifest_path)}
    assert back["P2_R_CC"].lesion_path == str(cropped.resolve())


def test_tissue_masks_and_vague_names_are_never_lesion_masks(tmp_path):
    """A lesion-free case keeps no mask even when tissue labelmaps or loosely named files name it."""
    write_compression(tmp_path, "P1", "L", "CC", T0, roles=("LE", "DES"))
    write_compression(tmp_path, "P1", "R", "CC", T0 + timedelta(minutes=1), roles=("LE", "DES"))
    write_compression(tmp_path, "P1", "L", "MLO", T0 + timedelta(minutes=2), roles=("LE", "DES"))
    write_compression(tmp_path, "SKINNER", "L", "CC", T0 + timedelta(minutes=3), roles=("LE", "DES"))
    truth = tmp_path / "truth"
    tissue = {name: write_labelmap(truth / f"P1_L_CC_{name}.nrrd")
              for name in ("breast", "adipose", "fibroglandular", "pectoral_muscle", "skin-line", "groundtruth")}
    fat = write_labelmap(truth / "fatmask_P1_L_CC.nii.gz")
    beside = write_labelmap(tmp_path / "breast_mask.nrrd")  # would fit P1 by geometry: still not a lesion
    notes = write_labelmap(tmp_path / "P1_R_CC_v2.nrrd")  # extends the name, says nothing about a lesion
    labelled = write_labelmap(tmp_path / "P1_L_MLO_label.nrrd")  # extends the name with a lesion word
    patient_word = write_labelmap(tmp_path / "SKINNER_L_CC.nrrd")  # "skin" is the patient's, not the file's
    report = import_dicom(tmp_path, tmp_path / "m.csv", ids_from_patient_id=True)
    cases = by_id(report)
    assert cases["P1_L_CC"].lesion_path == "" and cases["P1_R_CC"].lesion_path == ""
    assert cases["P1_L_MLO"].lesion_path == str(labelled.resolve())
    assert cases["SKINNER_L_CC"].lesion_path == str(patient_word.resolve())
    r = reasons(report)
    for name, path in tissue.items():
        assert r[path.name] == TISSUE_REASON, name
    assert r[fat.name] == TISSUE_REASON
    assert r[beside.name] == TISSUE_REASON
    assert r[notes.name].startswith("not taken as a lesion mask: its name shares only a prefix or suffix with case P1_R_CC")


def test_monochrome1_pair_imports_and_prepares_like_monochrome2(tmp_path):
    """The manifest window of a MONOCHROME1 file is in the inverted (bright = dense) scale that
    read_mg_dicom gives its pixels, so prepare_case, which applies the manifest window, gets the
    same image as from the MONOCHROME2 file of the same pair, not a blank one."""
    from VirtualContrastTraining.data.prepared import prepare_case
    from VirtualContrastTraining.data.preprocessing import PreprocessConfig

    rows, cols = 64, 48
    rng = np.random.default_rng(3)
    breast = np.zeros((rows, cols), np.int64)
    breast[:, :32] = np.linspace(1400, 2600, rows)[:, None] + rng.integers(-50, 50, (rows, 32))  # left breast
    images = {"LE": breast, "DES": breast // 2 + 900}
    windows = {"LE": (2000, 1000), "DES": (1900, 600)}
    prepared = {}
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        folder = tmp_path / photometric
        for k, (role, pixels) in enumerate(images.items()):
            center, width = windows[role]
            if photometric == "MONOCHROME1":  # what such a device stores: values and window centre inverted
                pixels, center = 16383 - pixels, 16383 - center
            write_mg(folder / f"P1_L_CC_{role}.dcm", role=role, time=T0 + timedelta(seconds=k), pixels=pixels,
                     extra={"PhotometricInterpretation": photometric, "WindowCenter": center, "WindowWidth": width,
                            "BitsStored": 14, "HighBit": 13})
        report = import_dicom(folder, tmp_path / f"{photometric}.csv", ids_from_patient_id=True)
        (case,) = read_manifest(report.manifest_path)
        prepared[photometric] = (case, prepare_case(case, PreprocessConfig(size=32)))
    (case1, m1), (case2, m2) = prepared["MONOCHROME1"], prepared["MONOCHROME2"]
    assert (case1.le_window_center, case1.le_window_width) == ("2000", "1000")
    assert (case1.des_window_center, case1.des_window_width) == ("1900", "600")
    breast_pixels = m1.le[m1.le > 0]
    assert breast_pixels.min() < 0.1 and breast_pixels.max() > 0.9 and np.ptp(np.unique(breast_pixels)) > 0.8
    assert np.allclose(m1.le, m2.le, atol=1e-6) and np.allclose(m1.des, m2.des, atol=1e-6)


def test_no_pairs_is_one_input_error_and_no_manifest(tmp_path):
    write_mg(tmp_path / "le.dcm", role="LE")
    (tmp_path / "readme.md").write_text("x")
    out = tmp_path / "m.csv"
    with pytest.raises(InputError) as err:
        import_dicom(tmp_path, out, ids_from_patient_id=True)
    assert err.value.path == str(tmp_path)
    assert "no LE/DES pairs found; skipped 2 files" in str(err.value) and "not a DICOM file (1)" in str(err.value)
    assert not out.exists()
    with pytest.raises(InputError, match="not a folder"):
        import_dicom(tmp_path / "absent", out, ids_from_patient_id=True)


def test_phantom_dataset_imports_to_its_own_pairs(tmp_path):
    """The phantom writes DICOMs, lesion .seg.nrrd and tissue truth labelmaps plus the true manifest."""
    from VirtualContrastTraining.data.phantom import generate_dataset

    truth_manifest = generate_dataset(tmp_path / "phantom", n_cases=8, seed=1, pixel_mm=2.0)
    report = import_dicom(tmp_path / "phantom", tmp_path / "imported.csv", ids_from_patient_id=True)
    truth = {c.case_id: c for c in read_manifest(truth_manifest)}
    got = {c.case_id: c for c in read_manifest(report.manifest_path)}
    assert sorted(got) == sorted(truth) and len(got) == 8
    # lesion-free cases are part of the check: their tissue truth masks must not stand in for a lesion mask
    assert any(not t.lesion_path for t in truth.values()) and any(t.lesion_path for t in truth.values())
    for case_id, t in truth.items():
        g = got[case_id]
        assert (g.le_path, g.des_path, g.lesion_path) == (t.le_path, t.des_path, t.lesion_path), case_id
        assert (g.patient_id, g.study_uid, g.laterality, g.view) == (t.patient_id, t.study_uid, t.laterality, t.view)
        assert (g.le_window_center, g.le_window_width) == (t.le_window_center, t.le_window_width)
    assert report.n_with_lesion == sum(1 for t in truth.values() if t.lesion_path) > 0
    tissue = {Path(p).name: r for p, r in report.skipped if "/truth/" in Path(p).as_posix() and "_iodine" not in p}
    assert len(tissue) == 3 * len(truth)  # breast, fibroglandular, adipose of every case
    assert set(tissue.values()) == {TISSUE_REASON}


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "VirtualContrastTraining", "import", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cli_import(tmp_path):
    data = tmp_path / "data"
    write_compression(data, "P1", "L", "CC", T0)
    write_compression(data, "P1", "R", "CC", T0 + timedelta(minutes=1))
    write_labelmap(data / "P1_R_CC.seg.nrrd", meta={"Segment0_ID": "Segment_1"})
    out = tmp_path / "manifest.csv"
    done = run_cli(data, "--out", out, "--ids-from-patient-id")
    assert done.returncode == 0, done.stderr
    assert [c.case_id for c in read_manifest(out)] == ["P1_L_CC", "P1_R_CC"]
    assert "2 LE/DES pairs, 1 with a lesion mask" in done.stdout
    assert "2 x high-energy image: not used" in done.stdout and "P1_L_CC_HE.dcm" in done.stdout

    empty = tmp_path / "empty"
    empty.mkdir()
    out2 = tmp_path / "none.csv"
    done = run_cli(empty, "--out", out2)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no LE/DES pairs found" in done.stderr and str(empty) in done.stderr
    assert not out2.exists()


def test_one_tissue_vocabulary_names_regions_and_keeps_them_out_of_lesions():
    """Every word that names a CNR region is a tissue word (so never a lesion), in the engine and in Slicer."""
    from VirtualContrastTraining.data.importer import TISSUE_REGION_WORDS, is_tissue_name, tissue_region

    for region, words in TISSUE_REGION_WORDS.items():
        for word in words:
            assert tissue_region(f"my {word} roi") == region and is_tissue_name(word), word
    assert tissue_region("Fibro 2") == "fibroglandular" and tissue_region("fatty") == "adipose"
    assert tissue_region("breast") is None and is_tissue_name("breast")
    assert tissue_region("mass 1") is None and not is_tissue_name("mass 1")


def test_default_ids_are_pseudonyms_stable_for_the_folder(tmp_path):
    """Without --ids-from-patient-id no case or patient id holds the PatientID; the same folder gives the
    same ids again; a segmentation named after the PatientID-based id still finds its case."""
    data = tmp_path / "data"
    write_compression(data, "MRN-123", "L", "CC", T0)
    write_compression(data, "MRN-123", "L", "CC", T0 + timedelta(minutes=10), tag="late")
    write_labelmap(data / "MRN-123_L_CC_2_lesion.nrrd")
    first = import_dicom(data, tmp_path / "a.csv")
    again = import_dicom(data, tmp_path / "b.csv")
    assert [c.case_id for c in first.cases] == [c.case_id for c in again.cases]
    assert len(first.cases) == 2 and len({c.patient_id for c in first.cases}) == 1
    for case in first.cases:
        assert "MRN" not in case.case_id and "MRN" not in case.patient_id
        assert case.case_id.startswith(case.patient_id + "_L_CC")
    assert [Path(c.lesion_path).name for c in first.cases] == ["", "MRN-123_L_CC_2_lesion.nrrd"]
    rows = (tmp_path / "a.csv").read_text().splitlines()
    assert rows[0].startswith("case_id,patient_id,") and all("MRN" not in ",".join(r.split(",")[:2]) for r in rows)
