"""Write a synthetic DES so that it can never be mistaken for a real one.

Every output says so three times: in its file name (`_SYNTHETIC-DES`), in its
metadata (NRRD key/value fields) and, for DICOM, in ImageType
(DERIVED\\SECONDARY\\\\SYNTHETIC), SeriesDescription and DerivationDescription,
with a reference to the LE it was computed from. `import` skips such files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from VirtualContrastTraining import __version__
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import NRRD_WINDOW_FIELDS, write_nrrd
from VirtualContrastTraining.errors import InputError

SUFFIX = "_SYNTHETIC-DES"
SERIES_DESCRIPTION = "SYNTHETIC DES \u2013 not for diagnosis"
IMAGE_TYPE = ["DERIVED", "SECONDARY", "", "SYNTHETIC"]
BITS_STORED = 14


def synthetic_name(stem: str, fmt: str) -> str:
    return f"{stem}{SUFFIX}.{'nrrd' if fmt == 'nrrd' else 'dcm'}"


def check_synthetic_name(path: str | os.PathLike) -> Path:
    """A file name chosen by the user must say "synthetic" too."""
    path = Path(path)
    if "synthetic" not in path.name.lower():
        raise InputError(path, "a synthetic DES output must say so in its name: include 'SYNTHETIC' (or give a folder)")
    return path


def write_synthetic_nrrd(image: Image, path: str | os.PathLike) -> Path:
    """NRRD with the provenance fields and the display window (read back by read_image), so a viewer
    such as the Slicer module shows it like the real DES and knows it is synthetic."""
    fields = {k: v for k, v in image.meta.items() if k.startswith("VirtualContrast.") or k == "Synthetic"}
    for key, field in NRRD_WINDOW_FIELDS.items():
        if image.meta.get(key) is not None:
            fields[field] = f"{float(image.meta[key]):g}"
    return write_nrrd(image, check_synthetic_name(path), fields=fields)


def write_synthetic_dicom(image: Image, path: str | os.PathLike) -> Path:
    """MG DICOM in the LE's study (new series), pixels in the LE's geometry, marked synthetic.

    The patient and study attributes are the LE's (name, ID, birth date, sex,
    study date/time, study ID, accession number, as read_mg_dicom put them in
    meta) and so is the acquisition time, so that the file does not contradict
    its study; only SeriesDate/Time and ContentDate/Time say when it was made.
    An LE that is not DICOM has no study: the file then gets a new one.
    """
    from datetime import datetime

    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    from VirtualContrastTraining.data.dicom_write import write_mg_dicom

    path = check_synthetic_name(path)
    meta = image.meta
    pixels = np.clip(np.rint(image.array), 0, 2**BITS_STORED - 1).astype(np.uint16)
    extra = {
        "DerivationDescription": (
            f"{SERIES_DESCRIPTION}. Virtual contrast enhancement by {meta.get('VirtualContrast.Model', '?')}, "
            f"preset {meta.get('VirtualContrast.Preset', '?')}, VirtualContrast {__version__}"
        )[:1024],
        "BurnedInAnnotation": "NO",
        "SpecificCharacterSet": "ISO_IR 192",  # UTF-8: the description holds an en dash
    }
    if meta.get("sop_uid"):
        source = Dataset()
        source.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
        source.ReferencedSOPInstanceUID = meta["sop_uid"]
        extra["SourceImageSequence"] = [source]
    for key, keyword in (("study_id", "StudyID"), ("accession_number", "AccessionNumber"),
                         ("patient_birth_date", "PatientBirthDate"), ("patient_sex", "PatientSex")):
        if meta.get(key):
            extra[keyword] = meta[key]
    in_le_study = bool(meta.get("study_uid"))
    try:
        acquired = datetime.fromisoformat(str(meta.get("acquisition_time") or ""))
    except ValueError:  # not a DICOM LE, or no time in it
        acquired = None
    return write_mg_dicom(
        path,
        pixels,
        spacing_mm=image.spacing,
        image_type=IMAGE_TYPE,
        patient_id=meta.get("patient_id") or "UNKNOWN",
        patient_name=meta.get("patient_name") or "UNKNOWN",
        study_uid=meta.get("study_uid") or generate_uid(),
        study_date=meta.get("study_date", "") if in_le_study else None,
        study_time=meta.get("study_time", "") if in_le_study else None,
        acquisition_datetime=acquired,
        content_datetime=datetime.now(),
        laterality=meta.get("laterality", ""),
        view=meta.get("view", ""),
        window=(meta["window_center"], meta["window_width"]),
        bits_stored=BITS_STORED,
        series_description=SERIES_DESCRIPTION,
        series_number=9900,
        manufacturer="VirtualContrast (synthetic)",
        extra=extra,
    )
