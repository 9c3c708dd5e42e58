"""Lesion masks as DICOM Segmentation objects (SEG), beside Slicer's .seg.nrrd.

Why: masks drawn on a PACS or exported by other tools arrive as DICOM SEG,
and a SEG travels with the study it segments; Seg-CycleGAN (002) needs the
masks on the LE's pixels. A SEG names the LE it segments by SOP Instance UID,
so it is matched by that reference, never by file name, and a SEG of another
image is refused.

highdicom writes and reads the objects. A mammogram has no patient frame of
reference, so highdicom writes a SEG without plane position and orientation;
that is valid DICOM, but dcmqi's segimage2itkimage, which 3D Slicer's DICOM
SEG plugin runs, cannot place such a SEG. The written SEG therefore also
declares the pixel grid Slicer gives an MG without position (origin 0,
identity orientation, the LE's spacing, nominal 1 mm slice thickness) in a
frame of reference of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes

from VirtualContrastTraining import __version__
from VirtualContrastTraining.atomic import atomic_path
from VirtualContrastTraining.data.dicom_read import info_from_dataset
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.errors import InputError

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SERIES_DESCRIPTION = "Lesion segmentation"
NOMINAL_SLICE_THICKNESS_MM = 1.0  # a projection image has no slices; Slicer gives one 1 mm
# Distinct segment colours (RGB 0-1), reused cyclically, in a DICOM SEG and in a .seg.nrrd (segmentation.py).
PALETTE = (
    (0.90, 0.10, 0.10), (0.10, 0.60, 0.95), (0.15, 0.80, 0.25), (0.95, 0.75, 0.10),
    (0.70, 0.30, 0.90), (0.95, 0.45, 0.05), (0.10, 0.85, 0.80), (0.95, 0.40, 0.70),
)


def write_dicom_seg(masks: dict[str, np.ndarray], le_dicom_path: str | os.PathLike, out_path: str | os.PathLike,
                    *, algorithm: str = "") -> Path:
    """A BINARY SEG of the LE, one segment per lesion (label = its name), written atomically.

    Each segment is coded as SNOMED CT "Morphologically Abnormal Structure" /
    "Lesion" (52988006, not "Mass": contrast-enhanced lesions include
    non-mass enhancement). `algorithm` names the software that made the masks
    (SegmentAlgorithmType AUTOMATIC); empty means drawn by a person (MANUAL).
    """
    import highdicom as hd  # lazy: highdicom

    le_dicom_path, out_path = Path(le_dicom_path), Path(out_path)
    if not masks:
        raise InputError(out_path, "no lesion masks to write: a DICOM SEG needs at least one segment")
    le = _read_dataset(le_dicom_path, stop_before_pixels=True)
    info = info_from_dataset(le, le_dicom_path)
    shape = (info.rows, info.cols)
    stack = []
    for name, mask in masks.items():
        mask = np.asarray(mask)
        if mask.shape != shape:
            raise InputError(le_dicom_path, f"mask {name!r} is {mask.shape[0]}x{mask.shape[1]} pixels "
                                            f"(rows x columns), the LE {shape[0]}x{shape[1]}")
        stack.append(mask.astype(bool))
    if algorithm:
        identification = hd.AlgorithmIdentificationSequence(
            name=algorithm, version=__version__, family=codes.cid7162.ArtificialIntelligence)
        kind = {"algorithm_type": hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                "algorithm_identification": identification}
    else:
        kind = {"algorithm_type": hd.seg.SegmentAlgorithmTypeValues.MANUAL}
    colours = [hd.color.CIELabColor.from_rgb(*(round(255 * v) for v in rgb)) for rgb in PALETTE]
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            display_color=colours[(number - 1) % len(colours)],
            **kind)
        for number, name in enumerate(masks, start=1)
    ]
    x, y = info.spacing or (1.0, 1.0)  # the LE's, as read_mg_dicom and Slicer take it
    measures = hd.PixelMeasuresSequence(pixel_spacing=[y, x], slice_thickness=NOMINAL_SLICE_THICKNESS_MM)
    try:
        seg = hd.seg.Segmentation(
            source_images=[le], pixel_array=np.stack(stack, axis=-1)[np.newaxis].astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
            series_instance_uid=hd.UID(), series_number=9901, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="VirtualContrast", manufacturer_model_name="VirtualContrast", software_versions=__version__,
            device_serial_number="0", series_description=SERIES_DESCRIPTION, omit_empty_frames=False,
            pixel_measures=measures)
    except (ValueError, TypeError, AttributeError) as exc:  # highdicom's checks of the source image
        raise InputError(le_dicom_path, f"cannot make a DICOM SEG of this image ({exc})") from None
    _declare_slicer_grid(seg)
    with atomic_path(out_path) as tmp:
        pydicom.dcmwrite(tmp, seg, enforce_file_format=True)
    return out_path


def _declare_slicer_grid(seg) -> None:
    """Frame of reference, plane orientation and positions: what dcmqi needs besides the pixel
    measures (module doc)."""
    import highdicom as hd  # lazy: highdicom

    if "FrameOfReferenceUID" not in seg:
        seg.FrameOfReferenceUID = hd.UID()
        seg.PositionReferenceIndicator = ""
    shared = seg.SharedFunctionalGroupsSequence[0]
    if "PlaneOrientationSequence" not in shared:
        orientation = Dataset()
        orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        shared.PlaneOrientationSequence = [orientation]
    for frame in seg.PerFrameFunctionalGroupsSequence:
        if "PlanePositionSequence" not in frame:
            position = Dataset()
            position.ImagePositionPatient = [0, 0, 0]
            frame.PlanePositionSequence = [position]


def read_dicom_seg(path: str | os.PathLike, reference: Image) -> dict[str, np.ndarray]:
    """name -> bool mask (rows x cols of `reference`) for each segment of a DICOM SEG of that LE.

    The SEG must segment the reference: its SOP Instance UID (meta["sop_uid"],
    set by read_mg_dicom) must be among the SEG's source images, else the size
    must match for an LE read from another format. Segments with the same
    label get " (2)", " (3)" appended. A FRACTIONAL SEG counts from 0.5.
    """
    import highdicom as hd  # lazy: highdicom

    path = Path(path)
    ds = _read_dataset(path)
    if str(ds.get("Modality", "")) != "SEG":
        raise InputError(path, f"not a DICOM SEG (Modality {ds.get('Modality', 'missing')})")
    _fill_slice_thickness(ds)
    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
        sources = [uid for _, _, uid in seg.get_source_image_uids()]
    except Exception as exc:  # highdicom raises many types on malformed objects
        raise InputError(path, f"cannot read DICOM SEG ({type(exc).__name__}: {str(exc)[:160]})") from None
    sop = str(reference.meta.get("sop_uid") or "")
    if sop and sop not in sources:
        where = reference.meta.get("source") or "the reference image"
        raise InputError(path, f"this DICOM SEG segments another image (SOP Instance UID {', '.join(sources[:3])}), "
                               f"not {where} ({sop})")
    if (int(seg.Rows), int(seg.Columns)) != reference.shape:
        raise InputError(path, f"DICOM SEG is {seg.Rows}x{seg.Columns} pixels (rows x columns); "
                               f"the LE {reference.shape[0]}x{reference.shape[1]}")
    if not sources:
        raise InputError(path, "DICOM SEG names no source image")
    numbers = list(seg.segment_numbers)
    try:
        pixels = seg.get_pixels_by_source_instance([sop or sources[0]], segment_numbers=numbers,
                                                   combine_segments=False)[0]
    except Exception as exc:
        raise InputError(path, f"cannot read the DICOM SEG's frames ({type(exc).__name__}: {str(exc)[:160]})") from None
    threshold = 0.5 if str(seg.SegmentationType) == "FRACTIONAL" else 0
    masks: dict[str, np.ndarray] = {}
    for k, number in enumerate(numbers):
        label = str(seg.get_segment_description(number).SegmentLabel)
        name, n = label, 1
        while name in masks:
            n += 1
            name = f"{label} ({n})"
        frame = pixels[..., k]  # highdicom scales FRACTIONAL values to 0-1
        masks[name] = frame >= threshold if threshold else frame > 0
    return masks


def _fill_slice_thickness(ds) -> None:
    """highdicom's reader demands SliceThickness in every Pixel Measures item, which DICOM requires only
    with a frame of reference (CP 1426): SEGs of mammograms written by highdicom itself lack it. The
    value read here is never used for a 2-D mask."""
    shared, per_frame = ds.get("SharedFunctionalGroupsSequence") or [], ds.get("PerFrameFunctionalGroupsSequence") or []
    for group in [*shared, *per_frame]:
        for item in group.get("PixelMeasuresSequence") or []:
            if "SliceThickness" not in item:
                item.SliceThickness = NOMINAL_SLICE_THICKNESS_MM


def referenced_instances(path: str | os.PathLike) -> set[str]:
    """SOP Instance UIDs a DICOM SEG segments, from its header (for import: attach it to its LE).

    Read from the Referenced Series Sequence and, for SEGs that only fill in
    the per-frame Derivation Image Sequence, from there.
    """
    ds = _read_dataset(Path(path), stop_before_pixels=True)
    uids = {str(inst.ReferencedSOPInstanceUID)
            for series in ds.get("ReferencedSeriesSequence") or []
            for inst in series.get("ReferencedInstanceSequence") or [] if "ReferencedSOPInstanceUID" in inst}
    for frame in ds.get("PerFrameFunctionalGroupsSequence") or []:
        for derivation in frame.get("DerivationImageSequence") or []:
            for source in derivation.get("SourceImageSequence") or []:
                if "ReferencedSOPInstanceUID" in source:
                    uids.add(str(source.ReferencedSOPInstanceUID))
    return uids


def _read_dataset(path: Path, stop_before_pixels: bool = False):
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        raise InputError(path, "not a DICOM file") from None
    except Exception as exc:  # pydicom raises many types on truncated/corrupt files
        raise InputError(path, f"unreadable DICOM ({type(exc).__name__}: {str(exc)[:160]})") from None

