"""Write a synthetic DES so that it can never be mistaken for a real one.

Every output says so three times: in its file name (`_SYNTHETIC-DES`), in its
metadata (NRRD key/value fields, PNG text chunks, TIFF ImageDescription) and,
for DICOM, in ImageType (DERIVED\\SECONDARY\\\\SYNTHETIC), SeriesDescription
and DerivationDescription, with a reference to the LE it was computed from.
`import` skips such files. Every output also states its intensity units (the
training set's DES window, UNITS_FIELD), so that `evaluate --synthetic` can
refuse to score it against a real DES in other units (docs/outputs.md).
On request the DICOM also carries the warning in its pixels (a burned-in
marker that survives screenshots and exports that drop the header) and is
de-identified, for sharing synthetic images outside the hospital; the papers'
synthetic DES are research output (000, 001-004), never a diagnosis.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from VirtualContrastTraining import __version__
from VirtualContrastTraining.atomic import atomic_path
from VirtualContrastTraining.data.dicom_write import MG_FOR_PRESENTATION, write_mg_dicom
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import BITMAP_FORMATS, NRRD_WINDOW_FIELDS, write_bitmap, write_nrrd
from VirtualContrastTraining.data.preprocessing import breast_side
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.synthetic_wording import (
    FILE_SUFFIX,
    METADATA_WARNING,
    PIXEL_MARKER,
    SERIES_DESCRIPTION,
    SYNTHETIC_WORD,
    UNITS_FIELD,
    intensity_units,
)

IMAGE_TYPE = ["DERIVED", "SECONDARY", "", SYNTHETIC_WORD]
BITS_STORED = 14
MARKER_HEIGHT = 0.03      # font size as a share of the image height: legible at full size
MARKER_MAX_WIDTH = 0.45   # share of the image width: the marker stays in the corner, off the breast
MARKER_MIN_FONT_PX = 8    # below this no text is legible, whatever the image size
# Output format -> the extension of its files; predict picks the format from --out's extension (SUFFIX_FORMATS).
EXTENSIONS = {"nrrd": ".nrrd", "dicom": ".dcm", **{fmt: ext for fmt, (_, ext) in BITMAP_FORMATS.items()}}
SUFFIX_FORMATS = {**{ext: fmt for fmt, ext in EXTENSIONS.items()}, ".tiff": "tiff"}


def synthetic_name(stem: str, fmt: str) -> str:
    return f"{stem}{FILE_SUFFIX}{EXTENSIONS[fmt]}"


def check_synthetic_name(path: str | os.PathLike) -> Path:
    """A file name chosen by the user must say "synthetic" too."""
    path = Path(path)
    if "synthetic" not in path.name.lower():
        raise InputError(path, "a synthetic DES output must say so in its name: include 'SYNTHETIC' (or give a folder)")
    return path


def des_window(image: Image) -> tuple[float, float] | None:
    """(low, high) of the DES window a synthetic image carries (the model's DES output window), or None."""
    center, width = image.meta.get("window_center"), image.meta.get("window_width")
    if center is None or width is None:
        return None
    return float(center) - float(width) / 2, float(center) + float(width) / 2


def synthetic_fields(image: Image) -> dict[str, str]:
    """The key/value metadata of a synthetic NRRD, PNG or TIFF: the provenance fields (Synthetic, the
    warning, the model), the display window and the intensity units, all read back by read_image."""
    fields = {k: str(v) for k, v in image.meta.items() if k.startswith("VirtualContrast.") or k == "Synthetic"}
    for key, field in NRRD_WINDOW_FIELDS.items():
        if image.meta.get(key) is not None:
            fields[field] = f"{float(image.meta[key]):g}"
    window = des_window(image)
    if window:
        fields[UNITS_FIELD] = intensity_units(*window)
    return fields


def write_synthetic_nrrd(image: Image, path: str | os.PathLike) -> Path:
    """NRRD with the provenance fields, the display window and the units (read back by read_image), so a
    viewer such as the Slicer module shows it like the real DES and knows it is synthetic."""
    return write_nrrd(image, check_synthetic_name(path), fields=synthetic_fields(image))


def bitmap_bits(window: tuple[float, float] | None) -> int:
    """8 when the DES window lies within 0..255 (a model trained on 8-bit DES, such as CDD-CESM's), else 16.

    The pixels are the DES values themselves, rounded, never rescaled to fill
    the bit range: the file keeps the training set's units, so its window and
    units fields stay true and an 8-bit model gives 8-bit files like its DES.
    """
    return 8 if window and window[0] >= 0 and window[1] <= 255 else 16


def write_synthetic_bitmap(image: Image, path: str | os.PathLike, fmt: str) -> Path:
    """PNG or TIFF (`fmt`) in the training set's DES units (bitmap_bits), marked synthetic in its name and its
    text: synthetic_fields plus the standard Description, Warning and Software keys that viewers show.
    InputError when the DES window does not fit 16 bits (a model trained on negative values): NRRD keeps it."""
    path = check_synthetic_name(path)
    window = des_window(image)
    bits = bitmap_bits(window)
    if window and (window[0] < 0 or window[1] > 2**16 - 1):
        raise InputError(path, f"the model's DES window {window[0]:g}..{window[1]:g} does not fit the 0..65535 "
                               f"of a 16-bit {fmt.upper()}: write NRRD or DICOM instead")
    dtype = np.uint8 if bits == 8 else np.uint16
    pixels = np.clip(np.rint(image.array), 0, 2**bits - 1).astype(dtype)
    text = {"Description": SERIES_DESCRIPTION, "Warning": METADATA_WARNING,
            "Software": f"VirtualContrast {__version__}", **synthetic_fields(image)}
    no_spacing = str(image.meta.get("spacing_source", "")).startswith("none")  # as for DICOM: no invented 1 mm
    return write_bitmap(pixels, path, fmt, spacing=None if no_spacing else image.spacing, text=text)


def new_anonymizer():
    """One dicognito Anonymizer for all files of one export: it maps each name, ID, UID and date the
    same way every time, so all synthetic images of a patient stay in one pseudonymous study."""
    from dicognito.anonymizer import Anonymizer  # lazy: dicognito

    return Anonymizer()


def write_synthetic_dicom(image: Image, path: str | os.PathLike, *, burn_in: bool = False,
                          deidentify=False) -> Path:
    """MG DICOM in the LE's study (new series), pixels in the LE's geometry, marked synthetic.

    The patient and study attributes are the LE's (name, ID, birth date, sex,
    study date/time, study ID, accession number, as read_mg_dicom put them in
    meta) and so is the acquisition time, so that the file does not contradict
    its study; only SeriesDate/Time and ContentDate/Time say when it was made.
    An LE that is not DICOM has no study: the file then gets a new one.
    SourceImageSequence names the LE's SOP instance and SOP class (an MG, or
    the Secondary Capture of a digitised film such as CBIS-DDSM). An LE without
    pixel spacing gives a file without it (empty, not an invented 1 mm).

    `burn_in` draws PIXEL_MARKER into the pixels (BurnedInAnnotation YES).
    `deidentify` is False, True (a new Anonymizer for this file) or the
    Anonymizer of the whole export (`new_anonymizer`): dicognito replaces
    names, IDs, UIDs and dates; the synthetic markings stay.
    """
    path = check_synthetic_name(path)
    meta = image.meta
    pixels = np.clip(np.rint(image.array), 0, 2**BITS_STORED - 1).astype(np.uint16)
    window = (float(meta["window_center"]), float(meta["window_width"]))
    if burn_in:
        low, high = np.clip([window[0] - window[1] / 2, window[0] + window[1] / 2], 0, 2**BITS_STORED - 1)
        pixels, _ = burn_in_marker(pixels, laterality=str(meta.get("laterality", "")), low=low, high=high)
    extra = {
        "DerivationDescription": (
            f"{SERIES_DESCRIPTION}. Intensity units: {intensity_units(*des_window(image))}. "  # before the long part
            f"Virtual contrast enhancement by {meta.get('VirtualContrast.Model', '?')}, "
            f"preset {meta.get('VirtualContrast.Preset', '?')}, VirtualContrast {__version__}"
        )[:1024],
        "BurnedInAnnotation": "YES" if burn_in else "NO",
        "SpecificCharacterSet": "ISO_IR 192",  # UTF-8: the description holds an en dash
    }
    if str(meta.get("spacing_source", "")).startswith("none"):
        extra["PixelSpacing"] = extra["ImagerPixelSpacing"] = None
    if meta.get("sop_uid"):
        source = Dataset()
        source.ReferencedSOPClassUID = meta.get("sop_class_uid") or MG_FOR_PRESENTATION
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
    with atomic_path(path) as tmp:
        write_mg_dicom(
            tmp,
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
            window=window,
            bits_stored=BITS_STORED,
            series_description=SERIES_DESCRIPTION,
            series_number=9900,
            manufacturer=f"VirtualContrast ({SYNTHETIC_WORD.lower()})",
            extra=extra,
        )
        if deidentify is not False:
            _deidentify(tmp, new_anonymizer() if deidentify is True else deidentify)
    return path


def _deidentify(path: Path, anonymizer) -> None:
    """dicognito on the written file; the file meta follows the new SOP Instance UID."""
    ds = pydicom.dcmread(path)
    anonymizer.anonymize(ds)
    ds.walk(_uuid_derived_uid)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"dicognito {version('dicognito')}: consistent pseudonyms per export"[:64]
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _uuid_derived_uid(_ds, element) -> None:
    """dicognito's pseudonymous UIDs ("2." and 40 digits) lie under an unassigned arc of the joint
    ISO/ITU-T root, which validators (dciodvfy) reject; 2.25.<128-bit integer> (ISO/IEC 9834-8) is the
    root for UIDs made without an organisation's root. A name-based UUID of dicognito's UID keeps its
    consistency: the same original UID gives the same new one in every file of the export."""
    keeps_its_value = element.keyword.endswith("ClassUID") or element.keyword == "TransferSyntaxUID"
    if element.VR == "UI" and element.value and not keeps_its_value:
        element.value = f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, str(element.value)).int}"


def burn_in_marker(pixels: np.ndarray, *, laterality: str, low: float, high: float
                   ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """PIXEL_MARKER drawn into a copy of `pixels`; returns it and the marker's box (row0, row1, col0, col1).

    The text is rendered with Pillow in matplotlib's DejaVu Sans Bold, about
    MARKER_HEIGHT of the image height (on two lines, and smaller, when one line
    would be wider than MARKER_MAX_WIDTH of the image), `high` on a `low` box:
    the two ends of the display window, so it reads in any viewer's default
    window. The box sits in the corner across from the chest wall (breast_side),
    top or bottom, whichever holds less tissue.
    """
    rows, cols = pixels.shape
    font, text = _marker_font(rows, cols)
    left, top, right, bottom = (round(v) for v in ImageDraw.Draw(PILImage.new("L", (1, 1))).multiline_textbbox(
        (0, 0), text, font=font, align="center"))
    pad, margin = max(1, round(font.size / 4)), max(1, round(0.01 * min(rows, cols)))
    height = min(rows - 2 * margin, bottom - top + 2 * pad)
    width = min(cols - 2 * margin, right - left + 2 * pad)
    canvas = PILImage.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).multiline_text((pad - left, pad - top), text, fill=255, font=font, align="center")
    alpha = np.asarray(canvas, dtype=np.float64) / 255.0

    chest_wall = breast_side(pixels, laterality)
    c0 = cols - margin - width if chest_wall == "left" else margin
    tissue = pixels > pixels.min() + 0.05 * (float(pixels.max()) - float(pixels.min()))
    top_r0, bottom_r0 = margin, rows - margin - height
    r0 = top_r0 if (tissue[top_r0:top_r0 + height, c0:c0 + width].mean()
                    <= tissue[bottom_r0:bottom_r0 + height, c0:c0 + width].mean()) else bottom_r0
    out = pixels.copy()
    out[r0:r0 + height, c0:c0 + width] = np.rint(low + alpha * (high - low)).astype(pixels.dtype)
    return out, (r0, r0 + height, c0, c0 + width)


def _marker_font(rows: int, cols: int):
    """(Pillow font, text): one line when it fits MARKER_MAX_WIDTH at MARKER_HEIGHT, else two lines,
    shrunk to fit that width but never below MARKER_MIN_FONT_PX unless the image itself is narrower."""
    import matplotlib  # lazy: matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    size = max(MARKER_MIN_FONT_PX, round(MARKER_HEIGHT * rows))

    def width(text: str, px: int) -> float:
        font = ImageFont.truetype(str(path), px)
        return max(font.getlength(line) for line in text.split("\n"))

    text = PIXEL_MARKER
    if width(text, size) > MARKER_MAX_WIDTH * cols:
        text = PIXEL_MARKER.replace(" - ", "\n")
        size = max(MARKER_MIN_FONT_PX, min(size, int(size * MARKER_MAX_WIDTH * cols / width(text, size))))
    while size > 1 and width(text, size) > 0.9 * cols:  # a tiny image: fit it at all
        size -= 1
    return ImageFont.truetype(str(path), size), text
