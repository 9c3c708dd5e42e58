"""The phantom dataset on disk: patients with CC/MLO views as DICOM LE/DES, lesion .seg.nrrd, truth NRRDs,
the manifest and phantom.json. UIDs are derived from the seed, so reruns give identical files."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from VirtualContrastTraining import __version__
from VirtualContrastTraining.atomic import atomic_dir, ensure_writable_dir, write_text_atomic
from VirtualContrastTraining.data.dicom_write import MG_FOR_PRESENTATION, write_mg_dicom
from VirtualContrastTraining.data.imageio import write_nrrd
from VirtualContrastTraining.data.manifest import Case, write_manifest
from VirtualContrastTraining.data.phantom.anatomy import DENSITIES, VIEWS
from VirtualContrastTraining.data.phantom.lesions import random_lesion_kinds
from VirtualContrastTraining.data.phantom.physics import BPE_LEVELS, CALIBRATION, PHYSICS, PhantomCase, simulate_case
from VirtualContrastTraining.data.segmentation import write_lesion_segmentation
from VirtualContrastTraining.errors import InputError

GENERATOR_VERSION = "1"


def _uid(seed: int, pixel_mm: float, *parts: str) -> str:
    """Deterministic UID: reruns with the same seed and pixel size give identical files."""
    return generate_uid(entropy_srcs=["virtualcontrast-phantom", str(seed), f"{pixel_mm:g}", *parts])


def _write_case(folder: Path, case: PhantomCase, *, case_id: str, patient_id: str, patient_no: int,
                study_uid: str, seed: int, series_no: int, when: datetime):
    """LE and DES DICOMs, lesion .seg.nrrd (only when there are lesions) and truth NRRDs; returns the manifest row."""
    p, lat, view = case.meta["pixel_mm"], case.meta["laterality"], case.meta["view"]
    c = CALIBRATION
    # Row direction (increasing column) and column direction (increasing row) in patient terms.
    orientation = ["A" if lat == "L" else "P", ("R" if lat == "L" else "L") if view == "CC" else ("FR" if lat == "L" else "FL")]
    common = dict(spacing_mm=(p, p), patient_id=patient_id, patient_name=f"PHANTOM^{patient_no:04d}",
                  study_uid=study_uid, laterality=lat, view=view, bits_stored=c.bits_stored,
                  manufacturer="VirtualContrast phantom")
    le_sop = _uid(seed, p, case_id, "LE", "sop")
    le_path = write_mg_dicom(
        folder / f"{case_id}_LE.dcm", case.le, image_type=["ORIGINAL", "PRIMARY", "", "LOW_ENERGY"],
        series_uid=_uid(seed, p, case_id, "LE", "series"), sop_uid=le_sop, window=c.le_window,
        series_description=f"{lat} {view} Low Energy", series_number=series_no, acquisition_datetime=when,
        processing_code="GEMS_FFDM_PV", extra={"PatientOrientation": orientation}, **common)
    source = Dataset()
    source.ReferencedSOPClassUID = MG_FOR_PRESENTATION
    source.ReferencedSOPInstanceUID = le_sop
    des_when = when + timedelta(seconds=4)
    des_path = write_mg_dicom(
        folder / f"{case_id}_DES.dcm", case.des, image_type=["DERIVED", "PRIMARY", "", "RECOMBINED"],
        series_uid=_uid(seed, p, case_id, "DES", "series"), sop_uid=_uid(seed, p, case_id, "DES", "sop"),
        window=c.des_window, series_description=f"{lat} {view} Recombined", series_number=series_no + 1,
        acquisition_datetime=des_when, processing_code="GEMS_CESM_1",
        extra={"PatientOrientation": orientation, "SourceImageSequence": [source],
               "DerivationDescription": f"ln(HE) - {case.meta['des_weight']:.4f} ln(LE), thickness compensated"},
        **common)
    reference = case.image(case.le)
    lesion_path = ""
    if case.lesion_masks:
        lesion_path = str(write_lesion_segmentation(folder / f"{case_id}_lesions.seg.nrrd", case.lesion_masks, reference))
    truth = folder / "truth"
    truth_paths = {name: write_nrrd(reference.with_array(getattr(case, name).astype(np.uint8)),
                                    truth / f"{case_id}_{name}.nrrd")
                   for name in ("breast", "fibroglandular", "adipose")}
    write_nrrd(reference.with_array(case.iodine), truth / f"{case_id}_iodine.nrrd", {"units": "mg/cm2"})
    return Case(
        case_id=case_id, patient_id=patient_id, le_path=str(le_path), des_path=str(des_path),
        lesion_path=lesion_path, fibroglandular_path=str(truth_paths["fibroglandular"]),
        adipose_path=str(truth_paths["adipose"]), study_uid=study_uid, laterality=lat, view=view,
        le_time=when.isoformat(timespec="seconds"), des_time=des_when.isoformat(timespec="seconds"),
        le_window_center=f"{c.le_window[0]:g}", le_window_width=f"{c.le_window[1]:g}",
        des_window_center=f"{c.des_window[0]:g}", des_window_width=f"{c.des_window[1]:g}",
        density=case.meta["density"], bpe=case.meta["bpe"], lesion_types=";".join(case.lesion_types),
    )


def generate_dataset(out_dir: str | Path, n_cases: int, seed: int, pixel_mm: float = 0.1,
                     progress=None) -> Path:
    """Write `n_cases` images grouped into patients under `out_dir`; returns the manifest path.

    A patient has one breast imaged in CC and MLO (sometimes one view only):
    same laterality, density, BPE and lesion kinds, one StudyInstanceUID, so
    patient-level splits keep both views together. The dataset is built in a
    temporary folder and renamed at the end: a failure leaves no half-written
    dataset. `progress(done, total, case_id)` is called after each case.
    """
    out_dir = Path(out_dir)
    if n_cases < 1:
        raise InputError(None, f"--cases must be at least 1 (got {n_cases})")
    if seed < 0:
        raise InputError(None, f"--seed must be >= 0 (got {seed})")
    if not 0.05 <= pixel_mm <= 5.0:
        raise InputError(None, f"--pixel-mm must be within 0.05-5 mm (got {pixel_mm})")
    if out_dir.is_file() or (out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "phantom.json").is_file()):
        raise InputError(out_dir, "exists and is not a phantom dataset; choose a new or empty folder")
    ensure_writable_dir(out_dir.parent)
    rows = []
    with atomic_dir(out_dir) as tmp:
        patient_no = 0
        while len(rows) < n_cases:
            patient_no += 1
            rng = np.random.default_rng([seed, patient_no])
            laterality = str(rng.choice(["L", "R"]))
            density = str(rng.choice(DENSITIES, p=[0.1, 0.4, 0.4, 0.1]))
            bpe = str(rng.choice(BPE_LEVELS, p=[0.35, 0.35, 0.2, 0.1]))
            kinds = random_lesion_kinds(rng)
            size, t0 = rng.uniform(0.75, 1.2), rng.uniform(40.0, 65.0)
            both = rng.uniform() < 0.75 and n_cases - len(rows) >= 2
            views = list(VIEWS) if both else [str(rng.choice(VIEWS))]
            patient_id = f"PHANTOM-{patient_no:04d}"
            study_uid = _uid(seed, pixel_mm, patient_id, "study")
            start = datetime(2024, 1, 1, 8, 0) + timedelta(days=patient_no - 1, minutes=int(rng.integers(0, 480)))
            for v, view in enumerate(views):
                case = simulate_case(
                    np.random.default_rng([seed, patient_no, v]), pixel_mm=pixel_mm, laterality=laterality,
                    view=view, density=density, bpe=bpe, lesions=kinds, size=size,
                    thickness_mm=t0 + (4.0 if view == "MLO" else 0.0))
                case_id = f"{patient_id}_{laterality}_{view}"
                rows.append(_write_case(tmp / patient_id, case, case_id=case_id, patient_id=patient_id,
                                        patient_no=patient_no, study_uid=study_uid, seed=seed,
                                        series_no=1 + 2 * v, when=start + timedelta(seconds=90 * v)))
                if progress:
                    progress(len(rows), n_cases, case_id)

        write_manifest(tmp / "manifest.csv", rows)
        info = {
            "generator": "VirtualContrast phantom", "generator_version": GENERATOR_VERSION,
            "package_version": __version__, "seed": seed, "pixel_mm": pixel_mm, "cases": n_cases,
            "patients": patient_no, "calibration": asdict(CALIBRATION),
            "physics": {**asdict(PHYSICS), "des_weight": PHYSICS.weight},
            "des": "des_level + des_gain * (ln-attenuation HE - w ln-attenuation LE - thickness term)",
        }
        write_text_atomic(tmp / "phantom.json", json.dumps(info, indent=2) + "\n")
    return out_dir / "manifest.csv"
