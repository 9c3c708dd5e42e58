"""Write a 2-D mammogram as a DICOM Digital Mammography X-Ray Image, For Presentation (MG).

Used by the phantom (LE and DES files shaped like GE Senographe Pristina CESM
output) and by predict to export a synthetic DES that opens in any DICOM viewer
beside the original LE. General on purpose: the caller says what the image is
(ImageType, laterality, view, window); anything else goes through `extra`.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from VirtualContrastTraining.atomic import atomic_path

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"


# Project view -> keyword of DICOM CID 4014 "View for Mammography" (pydicom's code dictionary).
_VIEW_KEYWORDS = {
    "CC": "CranioCaudal", "MLO": "MedioLateralObliqueProjection", "ML": "MedioLateralProjection",
    "LM": "LateroMedial", "LMO": "LateroMedialOblique", "XCCL": "CranioCaudalExaggeratedLaterally",
    "XCCM": "CranioCaudalExaggeratedMedially", "FB": "CaudoCranial", "SIO": "SuperolateralToInferomedialOblique",
}
# PatientOrientation (row direction \\ column direction) of a left breast under the project's display
# convention (chest wall at column 0, breast_side); a right breast mirrors it (A<->P, R<->L).
_LEFT_ORIENTATION = {"CC": ["A", "R"], "XCCL": ["A", "R"], "XCCM": ["A", "R"], "MLO": ["A", "FR"],
                     "ML": ["A", "F"], "LM": ["A", "F"]}


def _ds(value: float) -> str:
    """Decimal String without float noise (e.g. 0.1, not 0.10000000000000001)."""
    return f"{value:.10g}"


def write_mg_dicom(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    spacing_mm: tuple[float, float],
    image_type: list[str],
    patient_id: str,
    patient_name: str,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    laterality: str = "",
    view: str = "",
    window: tuple[float, float] | None = None,
    bits_stored: int = 14,
    series_description: str = "",
    series_number: int = 1,
    instance_number: int = 1,
    acquisition_datetime: datetime | None = None,
    content_datetime: datetime | None = None,
    study_date: str | None = None,
    study_time: str | None = None,
    processing_code: str = "",
    manufacturer: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `pixels` (uint16, rows x cols) as an MG For Presentation file, atomically.

    `spacing_mm` is (x = column, y = row) as everywhere in the project; DICOM
    stores [row, column], in both PixelSpacing and ImagerPixelSpacing (SimpleITK
    and Slicer read either, depending on version). Missing UIDs are generated
    at random; pass them for reproducible files.

    Dates and times: Acquisition* come from `acquisition_datetime` and are left
    out without it. Series* and Content* (when this file was made) come from
    `content_datetime`, else the acquisition, else now. StudyDate/StudyTime are
    the given DICOM DA/TM strings (an image added to an existing study copies
    that study's), else the acquisition's or content's. `extra` may override any
    of them, like every other keyword.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.dtype != np.uint16:
        raise ValueError(f"expected a 2-D uint16 array, got {pixels.dtype} {pixels.shape}")
    if not 8 <= bits_stored <= 16:
        raise ValueError(f"bits_stored {bits_stored} is outside 8-16")
    if pixels.size and int(pixels.max()) >= 2**bits_stored:
        raise ValueError(f"pixel value {int(pixels.max())} does not fit in {bits_stored} bits")
    series_uid = series_uid or generate_uid()
    sop_uid = sop_uid or generate_uid()
    made = content_datetime or acquisition_datetime or datetime.now()
    made_date, made_time = made.strftime("%Y%m%d"), made.strftime("%H%M%S.%f")
    first = acquisition_datetime or made
    study_date = first.strftime("%Y%m%d") if study_date is None else study_date
    study_time = first.strftime("%H%M%S.%f") if study_time is None else study_time

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MG_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MG_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "MG"
    ds.ImageType = list(image_type)
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientSex = "F"
    ds.PatientBirthDate = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDate, ds.StudyTime = study_date, study_time
    ds.SeriesDate = ds.ContentDate = made_date
    ds.SeriesTime = ds.ContentTime = made_time
    if acquisition_datetime is not None:
        date, time = acquisition_datetime.strftime("%Y%m%d"), acquisition_datetime.strftime("%H%M%S.%f")
        ds.AcquisitionDate, ds.AcquisitionTime, ds.AcquisitionDateTime = date, time, date + time
    ds.Manufacturer = manufacturer
    ds.SeriesDescription = series_description
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.BodyPartExamined = "BREAST"
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1  # brighter = more attenuation
    ds.PresentationLUTShape = "IDENTITY"
    ds.BurnedInAnnotation = "NO"
    ds.PatientOrientation = ""
    if processing_code:
        ds.AcquisitionDeviceProcessingCode = processing_code
    row_col = [_ds(spacing_mm[1]), _ds(spacing_mm[0])]
    ds.PixelSpacing = row_col
    ds.ImagerPixelSpacing = row_col
    if window is not None:
        ds.WindowCenter = _ds(window[0])
        ds.WindowWidth = _ds(window[1])
        ds.VOILUTFunction = "LINEAR"

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PixelData = pixels.astype("<u2", copy=False).tobytes()

    for keyword, value in {**mammography_attributes(laterality, view), **(extra or {})}.items():
        if tag_for_keyword(keyword) is None:
            raise ValueError(f"{keyword!r} is not a DICOM keyword")
        setattr(ds, keyword, value)

    path = Path(path)
    with atomic_path(path) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
    return path


def mammography_attributes(laterality: str, view: str) -> dict:
    """Attributes the MG For Presentation IOD requires (checked with dciodvfy) that follow from the
    laterality and view; write_mg_dicom sets them and `extra` may override them.

    DetectorType (type 2) is empty: the phantom and a synthetic image have no
    detector of their own. Pixels are stored uncompressed (LossyImageCompression 00). The
    orientation follows the display convention the pipeline assumes (a left
    breast's chest wall at column 0), which the pixels keep from the LE; left
    empty for views without a standard orientation.
    """
    def item(code) -> Dataset:
        ds = Dataset()
        ds.CodeValue, ds.CodingSchemeDesignator, ds.CodeMeaning = code.value, code.scheme_designator, code.meaning
        return ds

    keyword = _VIEW_KEYWORDS.get(view.upper())
    orientation = _LEFT_ORIENTATION.get(view.upper(), [])
    if orientation and laterality.upper() == "R":
        orientation = [v.translate(str.maketrans("APRL", "PALR")) for v in orientation]
    elif laterality.upper() != "L":
        orientation = []
    attributes = {
        "PatientOrientation": orientation,
        "AnatomicRegionSequence": [item(codes.SCT.Breast)],
        "PositionerType": "MAMMOGRAPHIC",
        "OrganExposed": "BREAST",
        "DetectorType": "",
        "LossyImageCompression": "00",
        "AcquisitionContextSequence": [],
    }
    if keyword:  # Type 1: left out rather than empty when the LE does not say its view
        view_item = item(getattr(codes.cid4014, keyword))
        view_item.ViewModifierCodeSequence = []
        attributes["ViewCodeSequence"] = [view_item]
    return attributes
