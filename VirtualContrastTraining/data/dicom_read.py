"""Read mammography DICOM: a fast header scan for import, and validated pixels for training.

Two entry points share one description of a file (`DicomInfo`) and one list of
problems (`pixel_problem`), so the import step rejects exactly the files that
reading would reject later, with the same one-line message.

What a CESM file is (LE, DES, HE, or a vendor's synthetic image) is not stored
in one standard place: GE writes it in ImageType and in
AcquisitionDeviceProcessingCode, other exports only in the series description.
`detect_role` tries these in order of reliability.

Slicer's own process reads DICOM through this module (the Logic's volume
loading) with the pydicom Slicer ships, 2.4: only APIs that pydicom 2.4 and 3
share are used here, except the decoder check, which asks each version in its
own words (`pydicom.pixels` in 3, the pixel data handlers in 2).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.valuerep import DA, DT, TM

try:
    from pydicom.pixels import get_decoder
except ImportError:  # pydicom 2, which Slicer's own Python ships, has pixel data handlers instead (_handler_problem)
    get_decoder = None

from VirtualContrastTraining.data.image import IDENTITY, Image, finite_problem, size_problem
from VirtualContrastTraining.errors import InputError

GREYSCALE = ("MONOCHROME1", "MONOCHROME2")
GE_SENO_CREATOR = "GEMS_SENO_02"  # private block holding the clinical view at (0045,xx1B)
VIEWS = ("CC", "MLO", "ML", "LM", "LMO", "XCCL", "XCCM", "FB", "SIO")
# ViewCodeSequence: code meanings (longest first, so "medio-lateral oblique" wins over
# "medio-lateral") and SNOMED codes (SNOMED-RT and SNOMED CT) of the common views.
_VIEW_MEANINGS = (
    ("cranio-caudal exaggerated laterally", "XCCL"),
    ("cranio-caudal exaggerated medially", "XCCM"),
    ("medio-lateral oblique", "MLO"),
    ("latero-medial oblique", "LMO"),
    ("caudo-cranial", "FB"),
    ("cranio-caudal", "CC"),
    ("medio-lateral", "ML"),
    ("latero-medial", "LM"),
)
_VIEW_CODES = {
    "R-10242": "CC", "399162004": "CC",
    "R-10226": "MLO", "399368009": "MLO",
    "R-10224": "ML", "399260004": "ML",
    "R-10228": "LM", "399352003": "LM",
}
# Patient/study attributes that meta() carries when the file has them (DicomInfo field names).
STUDY_META_KEYS = ("study_date", "study_time", "study_id", "accession_number", "patient_birth_date", "patient_sex")
_COMBINED_VIEW = re.compile(r"^([LR])(" + "|".join(VIEWS) + r")$")


@dataclass
class DicomInfo:
    """What import needs to know about one DICOM file, read from its header only."""

    path: str
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_uid: str = ""
    study_date: str = ""                 # DICOM DA / TM strings, as in the file
    study_time: str = ""
    study_id: str = ""
    accession_number: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    sop_class_uid: str = ""
    modality: str = ""
    image_type: list[str] = field(default_factory=list)
    role: str = ""                       # "LE" | "DES" | "HE" | "SYNTHETIC" | "" (unknown)
    laterality: str = ""                 # "L" | "R" | ""
    view: str = ""                       # "CC", "MLO", ... | ""
    acquisition_time: datetime | None = None
    # The window in the scale of the pixels read_mg_dicom returns (bright = dense): for
    # MONOCHROME1 the header's centre mapped as the pixels are, by invert_monochrome1.
    window_center: float | None = None
    window_width: float | None = None
    rows: int = 0
    cols: int = 0
    spacing: tuple[float, float] | None = None   # (x=col, y=row) mm
    spacing_source: str = ""             # "PixelSpacing" | "ImagerPixelSpacing" | ""
    processing_code: str = ""
    series_description: str = ""
    number_of_frames: int = 1
    samples_per_pixel: int = 1
    photometric: str = ""
    transfer_syntax: str = ""
    has_pixel_data: bool = False
    rescale: tuple[float, float] = (1.0, 0.0)    # (RescaleSlope, RescaleIntercept), (1, 0) when absent
    # The lowest and highest value the stored bits can hold, after rescale (the same after the MONOCHROME1
    # inversion): a window centre outside it is a window kept from another image (an 8-bit export of a 16-bit one).
    stored_range: tuple[float, float] | None = None

    @property
    def is_dicomdir(self) -> bool:
        return self.sop_class_uid == pydicom.uid.MediaStorageDirectoryStorage

    def meta(self) -> dict:
        """The facts an `Image` carries downstream (Image.meta).

        Patient and study attributes travel too (those present in the file), so
        that an image derived from this one (the synthetic DES) joins its study
        with the same patient name, study date/time and accession number.
        """
        meta = {
            "source": self.path,
            "role": self.role,
            "laterality": self.laterality,
            "view": self.view,
            "window_center": self.window_center,
            "window_width": self.window_width,
            "patient_id": self.patient_id,
            "patient_name": self.patient_name,
            "study_uid": self.study_uid,
            "sop_uid": self.sop_uid,
            "sop_class_uid": self.sop_class_uid,  # a derived image references its source by both
            "image_type": list(self.image_type),
            "acquisition_time": self.acquisition_time.isoformat() if self.acquisition_time else "",
            "spacing_source": self.spacing_source or "none (1.0 mm assumed)",
        }
        for key in STUDY_META_KEYS:
            if getattr(self, key):
                meta[key] = getattr(self, key)
        return meta


def read_header(path: str | os.PathLike) -> DicomInfo:
    """Header facts of one DICOM file, without reading its pixels (fast: for scanning thousands).

    Large values are deferred rather than cut off (defer_size instead of
    stop_before_pixels), so we still learn whether pixel data is present.
    """
    path = Path(path)
    try:
        ds = pydicom.dcmread(path, defer_size="4 KB")
    except InvalidDicomError:
        raise InputError(path, "not a DICOM file") from None
    except Exception as exc:  # pydicom raises many types on truncated/corrupt files
        raise InputError(path, f"unreadable DICOM header ({_short(exc)})") from None
    return info_from_dataset(ds, path)


def info_from_dataset(ds: pydicom.Dataset, path: str | os.PathLike) -> DicomInfo:
    image_type = _strings(ds.get("ImageType"))
    processing_code = _text(ds.get("AcquisitionDeviceProcessingCode"))
    description = _text(ds.get("SeriesDescription"))
    spacing, spacing_source = _spacing(ds)
    meta = getattr(ds, "file_meta", None)
    photometric = _text(ds.get("PhotometricInterpretation")).upper()
    window_center = _first_float(ds.get("WindowCenter"))
    if photometric == "MONOCHROME1" and window_center is not None:
        window_center = float(invert_monochrome1(window_center, monochrome1_total(ds)))
    return DicomInfo(
        path=str(path),
        patient_id=_text(ds.get("PatientID")),
        patient_name=_text(ds.get("PatientName")),
        patient_birth_date=_text(ds.get("PatientBirthDate")),
        patient_sex=_text(ds.get("PatientSex")),
        study_uid=_text(ds.get("StudyInstanceUID")),
        study_date=_text(ds.get("StudyDate")),
        study_time=_text(ds.get("StudyTime")),
        study_id=_text(ds.get("StudyID")),
        accession_number=_text(ds.get("AccessionNumber")),
        series_uid=_text(ds.get("SeriesInstanceUID")),
        sop_uid=_text(ds.get("SOPInstanceUID")),
        sop_class_uid=_text(meta.get("MediaStorageSOPClassUID") if meta else None) or _text(ds.get("SOPClassUID")),
        modality=_text(ds.get("Modality")),
        image_type=image_type,
        role=detect_role(image_type, processing_code, description),
        laterality=_laterality(ds, description),
        view=_view(ds, description),
        acquisition_time=_acquisition_time(ds),
        window_center=window_center,
        window_width=_first_float(ds.get("WindowWidth")),
        rows=int(ds.get("Rows") or 0),
        cols=int(ds.get("Columns") or 0),
        spacing=spacing,
        spacing_source=spacing_source,
        processing_code=processing_code,
        series_description=description,
        number_of_frames=int(_first_float(ds.get("NumberOfFrames")) or 1),
        samples_per_pixel=int(ds.get("SamplesPerPixel") or 1),
        photometric=photometric,
        transfer_syntax=_text(meta.get("TransferSyntaxUID") if meta else None),
        has_pixel_data=any(t in ds for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")),
        rescale=_rescale(ds),
        stored_range=_stored_range(ds),
    )


def detect_role(image_type: list[str], processing_code: str, description: str) -> str:
    """LE / DES / HE / SYNTHETIC, or "" when nothing says.

    Order: a synthetic image is never a real DES whatever else it says; then
    ImageType tokens (standard, GE and Hologic); then GE's processing code; then
    words of the series description (exports that lost the other tags).
    """
    tokens = {t.strip().upper() for t in image_type}
    words = re.findall(r"[A-Z0-9]+", description.upper())
    phrase = " ".join(words)
    if "SYNTHETIC" in tokens or "SYNTHETIC" in words:
        return "SYNTHETIC"
    if "LOW_ENERGY" in tokens:
        return "LE"
    if tokens & {"RECOMBINED", "SUBTRACTED", "SUBTRACTION"}:
        return "DES"
    if "HIGH_ENERGY" in tokens:
        return "HE"
    code = processing_code.upper()
    if code == "GEMS_FFDM_PV":
        return "LE"
    if "CESM" in code or "SUB" in code:
        return "DES"
    if "LOW ENERGY" in phrase or "LE" in words:
        return "LE"
    if "HIGH ENERGY" in phrase or "HE" in words:
        return "HE"
    if {"RECOMBINED", "SUBTRACTED", "SUBTRACTION", "DES", "CESM", "SUB"} & set(words):
        return "DES"
    return ""


def pixel_problem(info: DicomInfo) -> str | None:
    """Why the pixels of this file cannot be used as a mammogram, or None when they can."""
    if not info.has_pixel_data:
        kind = f"modality {info.modality}" if info.modality else "no modality"
        return f"DICOM without pixel data ({kind}): not an image"
    if info.samples_per_pixel != 1 or info.photometric not in GREYSCALE:
        return (
            f"colour image ({info.photometric or '?'}, {info.samples_per_pixel} samples per pixel): "
            "a mammogram must be greyscale MONOCHROME1/2"
        )
    if info.number_of_frames > 1:
        return f"multi-frame image ({info.number_of_frames} frames): expected one 2-D mammogram"
    return (size_problem(info.cols, info.rows) or _rescale_problem(info.rescale) or _window_problem(info)
            or _decoder_problem(info.transfer_syntax))


def _rescale_problem(rescale: tuple[float, float]) -> str | None:
    """A slope of 0 makes every pixel the intercept, a NaN makes every pixel NaN."""
    slope, intercept = rescale
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
        return f"RescaleSlope {slope:g} / RescaleIntercept {intercept:g}: the slope must be a finite non-zero number"
    return None


def _window_problem(info: DicomInfo) -> str | None:
    """The header's window against the values the stored bits can hold (a window kept from another export)."""
    center, width = info.window_center, info.window_width
    if center is None or width is None:
        return None
    if not (np.isfinite(center) and np.isfinite(width)) or width <= 0:
        return f"invalid window (WindowCenter {center:g}, WindowWidth {width:g})"
    if info.stored_range is not None:
        lo, hi = info.stored_range
        if not lo <= center <= hi:
            return (f"WindowCenter {center:g} lies outside {lo:g}..{hi:g}, the values its BitsStored can hold: "
                    "a window kept from another image")
    return None


def read_mg_dicom(path: str | os.PathLike) -> Image:
    """Pixels of a one-frame greyscale DICOM with geometry and acquisition facts.

    Rescale slope/intercept are applied (float32 then; otherwise the native
    integer array is kept) and MONOCHROME1 is inverted so that bright means
    dense everywhere downstream. MG objects have no patient position: origin
    (0,0,0), identity direction; spacing from PixelSpacing, else
    ImagerPixelSpacing, else 1 mm (recorded in meta["spacing_source"]).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise InputError(path, "not a DICOM file") from None
    except Exception as exc:
        raise InputError(path, f"unreadable DICOM ({_short(exc)})") from None
    info = info_from_dataset(ds, path)
    problem = pixel_problem(info)
    if problem:
        raise InputError(path, problem)
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise InputError(path, f"cannot decode pixel data ({_syntax_name(info.transfer_syntax)}): {_short(exc)}") from None
    if arr.ndim != 2:
        raise InputError(path, f"pixel array has shape {arr.shape}; expected one 2-D image")
    problem = _stored_bits_problem(ds, info)
    if problem:
        raise InputError(path, problem)
    slope, intercept = info.rescale
    if (slope, intercept) != (1.0, 0.0):
        arr = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    problem = finite_problem(arr)
    if problem:
        raise InputError(path, problem)
    meta = info.meta()  # its window centre is already in the inverted scale for MONOCHROME1
    if info.photometric == "MONOCHROME1":
        total = monochrome1_total(ds)
        if np.issubdtype(arr.dtype, np.integer):
            limits = np.iinfo(arr.dtype)
            arr = np.clip(invert_monochrome1(arr.astype(np.int64), total), limits.min, limits.max).astype(arr.dtype)
        else:
            arr = invert_monochrome1(arr, np.float32(total)).astype(np.float32)
        meta["inverted_from"] = "MONOCHROME1"
    return Image(arr, spacing=info.spacing or (1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=IDENTITY, meta=meta)


def monochrome1_total(ds: pydicom.Dataset) -> float:
    """The sum that maps a MONOCHROME1 value v to MONOCHROME2 (total - v): the lowest plus the
    highest value the stored bits can hold, after rescale. The range of the bits, not the image's
    own min/max, so every image of a series (and its window) maps the same way."""
    slope, intercept = _rescale(ds)
    lo, hi = _stored_bits_range(ds)
    return (lo * slope + intercept) + (hi * slope + intercept)


def _stored_bits_range(ds: pydicom.Dataset) -> tuple[int, int]:
    """The lowest and highest stored value BitsStored and PixelRepresentation allow, before rescale."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def _stored_range(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """_stored_bits_range after rescale (DicomInfo.stored_range); None when the rescale is unusable."""
    slope, intercept = _rescale(ds)
    if _rescale_problem((slope, intercept)):
        return None
    ends = [v * slope + intercept for v in _stored_bits_range(ds)]
    return min(ends), max(ends)


def _stored_bits_problem(ds: pydicom.Dataset, info: DicomInfo) -> str | None:
    """Stored values beyond BitsStored in native (uncompressed) pixel data: a BitsStored that lies. pydicom 3
    masks the bits above BitsStored away, which would turn the image into noise, so the raw bytes are read."""
    allocated = int(ds.get("BitsAllocated") or 0)
    syntax = pydicom.uid.UID(info.transfer_syntax or pydicom.uid.ExplicitVRLittleEndian)
    if "PixelData" not in ds or allocated not in (8, 16) or syntax.is_compressed or not syntax.is_little_endian:
        return None
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    dtype = np.dtype(f"<{'i' if signed else 'u'}{allocated // 8}")
    raw = np.frombuffer(ds.PixelData, dtype=dtype, count=len(ds.PixelData) // dtype.itemsize)
    lo, hi = _stored_bits_range(ds)
    if raw.size and (int(raw.min()) < lo or int(raw.max()) > hi):
        return (f"stored values {int(raw.min())}..{int(raw.max())} exceed BitsStored {ds.get('BitsStored')} "
                f"({lo}..{hi}): the header's BitsStored is wrong")
    return None


def invert_monochrome1(values, total: float):
    """MONOCHROME1 -> MONOCHROME2 (bright = dense), for pixels and window centres alike: the one
    formula that read_mg_dicom and the header scan (hence the import manifest) share. The window
    width is unchanged by the inversion."""
    return total - values


def _rescale(ds: pydicom.Dataset) -> tuple[float, float]:
    slope = _first_float(ds.get("RescaleSlope"))
    intercept = _first_float(ds.get("RescaleIntercept"))
    return (1.0 if slope is None else slope), (0.0 if intercept is None else intercept)


def _decoder_problem(transfer_syntax: str) -> str | None:
    if not transfer_syntax:
        return None
    uid = pydicom.uid.UID(transfer_syntax)
    if not uid.is_transfer_syntax:  # is_compressed would raise ValueError
        return f"unknown Transfer Syntax UID {transfer_syntax}: its pixel data cannot be decoded"
    if not uid.is_compressed:
        return None
    if get_decoder is None:  # pydicom 2, which Slicer's own Python ships: its pixel data handlers
        return _handler_problem(uid)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"compressed pixel data ({_syntax_name(transfer_syntax)}) that pydicom cannot decode"
    if decoder.is_available:
        return None
    needs = "; ".join(decoder.missing_dependencies) or "a pixel data plugin"
    return f"compressed pixel data ({_syntax_name(transfer_syntax)}) and no decoder installed ({needs})"


def _handler_problem(uid: pydicom.uid.UID) -> str | None:
    """_decoder_problem under pydicom 2 (no pydicom.pixels): the configured pixel data handlers that
    support the syntax, and the packages (DEPENDENCIES) of those that cannot run."""
    handlers = [h for h in pydicom.config.pixel_data_handlers if h.supports_transfer_syntax(uid)]
    if not handlers:
        return f"compressed pixel data ({_syntax_name(uid)}) that pydicom cannot decode"
    if any(h.is_available() for h in handlers):
        return None
    needs = "; ".join(f"{h.HANDLER_NAME} needs {', '.join(label for _url, label in h.DEPENDENCIES.values())}"
                      for h in handlers) or "a pixel data plugin"
    return f"compressed pixel data ({_syntax_name(uid)}) and no decoder installed ({needs})"


def _syntax_name(transfer_syntax: str) -> str:
    uid = pydicom.uid.UID(transfer_syntax)
    return uid.name if uid.is_valid and uid.name != str(uid) else f"transfer syntax {transfer_syntax}"


def _spacing(ds: pydicom.Dataset) -> tuple[tuple[float, float] | None, str]:
    """(x, y) spacing; DICOM stores [row spacing, column spacing], hence the swap."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _floats(ds.get(keyword))
        if len(values) == 2 and all(v > 0 for v in values):
            return (values[1], values[0]), keyword
    return None, ""


def _laterality(ds: pydicom.Dataset, description: str) -> str:
    for keyword in ("ImageLaterality", "Laterality"):
        value = _text(ds.get(keyword)).upper()
        if value in ("L", "R"):
            return value
    for text in (description, *_view_code_meanings(ds)):
        lat, _ = _parse_side_view(text)
        if lat:
            return lat
    return ""


def _view(ds: pydicom.Dataset, description: str) -> str:
    value = _text(ds.get("ViewPosition")).upper()
    if value in VIEWS:
        return value
    for item in ds.get("ViewCodeSequence") or []:
        code = _text(item.get("CodeValue"))
        if code in _VIEW_CODES:
            return _VIEW_CODES[code]
        meaning = _text(item.get("CodeMeaning")).lower()
        for text, view in _VIEW_MEANINGS:
            if text in meaning:
                return view
    _, view = _parse_side_view(_ge_view(ds))
    if view:
        return view
    _, view = _parse_side_view(description)
    return view


def _ge_view(ds: pydicom.Dataset) -> str:
    """GE Senographe keeps the clinical view in private (0045,101B) (creator GEMS_SENO_02)."""
    try:
        elem = ds.private_block(0x0045, GE_SENO_CREATOR)[0x1B]
    except KeyError:
        elem = ds.get((0x0045, 0x101B))
    if elem is None:
        return ""
    value = elem.value
    if isinstance(value, bytes):
        value = value.decode("latin-1", errors="replace")
    return _text(value)


def _view_code_meanings(ds: pydicom.Dataset) -> list[str]:
    return [_text(item.get("CodeMeaning")) for item in ds.get("ViewCodeSequence") or []]


def _parse_side_view(text: str) -> tuple[str, str]:
    """("L"|"R"|"", view|"") from free text such as "L CC", "RMLO", "left mlo"."""
    lat = view = ""
    for word in re.findall(r"[A-Z0-9]+", text.upper()):
        combined = _COMBINED_VIEW.match(word)
        if combined:
            lat, view = lat or combined.group(1), view or combined.group(2)
        elif word in ("L", "LEFT", "R", "RIGHT"):
            lat = lat or word[0]
        elif word in VIEWS:
            view = view or word
    return lat, view


def _acquisition_time(ds: pydicom.Dataset) -> datetime | None:
    """AcquisitionDateTime, else AcquisitionDate+Time, else ContentDate+Time (naive, local)."""
    try:
        dt = _text(ds.get("AcquisitionDateTime"))
        if dt:
            return DT(dt).replace(tzinfo=None)
        for date_kw, time_kw in (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime")):
            date = _text(ds.get(date_kw)) or _text(ds.get("StudyDate"))
            time = _text(ds.get(time_kw))
            if date and time:
                return datetime.combine(DA(date), TM(time))
    except (ValueError, TypeError):
        return None
    return None


def _strings(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes, int, float)):  # DS/IS values are float/int subclasses
        return [_text(value)]
    return [_text(v) for v in value]


def _floats(value) -> list[float]:
    try:
        return [float(v) for v in _strings(value) if v != ""]
    except ValueError:
        return []


def _first_float(value) -> float | None:
    values = _floats(value)
    return values[0] if values else None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("latin-1", errors="replace")
    return str(value).strip().strip("\x00").strip()


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:160]
