"""Read any supported image into an `Image` with geometry; write NRRD, PNG and TIFF atomically.

Supported inputs: DICOM (MG, one frame, greyscale), NRRD / NIfTI / MHA
(SimpleITK), PNG / JPEG / TIFF (greyscale; CDD-CESM ships JPEG). Every failure
is an InputError naming the file. Guards where pixels enter, for every reader:
the size from the header before decoding (image.MAX_SIDE: a 30000 x 30000 PNG
is refused, not a MemoryError), and finite pixels after (a NaN would spread
over a whole synthetic image or a validation loss).

PNG and TIFF carry key/value text (PNG text chunks, TIFF ImageDescription as
JSON) and the pixel spacing as their resolution (dpi; SimpleITK reads it back
from TIFF, not from PNG), never an origin or a direction; the VirtualContrast
fields among that text are read back into meta, as NRRD's are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

from VirtualContrastTraining.atomic import atomic_path
from VirtualContrastTraining.data.dicom_read import read_mg_dicom
from VirtualContrastTraining.data.image import Image, finite_problem, size_problem
from VirtualContrastTraining.errors import InputError

SITK_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
BITMAP_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# meta key -> NRRD key/value field: the display window travels with NRRD files we write.
NRRD_WINDOW_FIELDS = {"window_center": "VirtualContrast.WindowCenter", "window_width": "VirtualContrast.WindowWidth"}
# Bitmap formats write_bitmap writes, by name: PIL's format name and the file extension.
BITMAP_FORMATS = {"png": ("PNG", ".png"), "tiff": ("TIFF", ".tif")}
TIFF_DESCRIPTION = 270  # the ImageDescription tag


def is_dicom_file(path: str | os.PathLike) -> bool:
    """DICOM Part 10 files start with a 128-byte preamble and 'DICM'."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def read_image(path: str | os.PathLike) -> Image:
    """Read a 2-D greyscale image with its geometry. InputError when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    if is_dicom_file(path) or _suffix(path) in (".dcm", ".dicom"):
        return read_mg_dicom(path)
    suffix = _suffix(path)
    if suffix in SITK_SUFFIXES or suffix in BITMAP_SUFFIXES:
        return _read_with_sitk(path, bitmap=suffix in BITMAP_SUFFIXES)
    raise InputError(path, "not a DICOM, NRRD, NIfTI, MHA, PNG or JPEG file")


def _sitk_problem(exc: RuntimeError, doing: str = "read") -> str:
    """ITK's message, last line, shortened: its RuntimeErrors carry the C++ file and line first."""
    last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no reason given"
    return f"cannot {doing} image ({last[:160]})"


def _read_with_sitk(path: Path, bitmap: bool) -> Image:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()  # the header only: the size is checked before any pixel is decoded
        problem = size_problem(*reader.GetSize()[:2])
        if problem:
            raise InputError(path, problem)
        img = reader.Execute()
    except RuntimeError as exc:
        raise InputError(path, _sitk_problem(exc)) from None
    if img.GetNumberOfComponentsPerPixel() != 1:
        if bitmap and img.GetNumberOfComponentsPerPixel() in (3, 4):
            arr = sitk.GetArrayFromImage(img)
            rgb = arr[..., :3].astype(np.float64)
            if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                raise InputError(path, "colour (RGB) image: a mammogram must be greyscale")
            img = sitk.GetImageFromArray(arr[..., 0])
        else:
            raise InputError(path, f"has {img.GetNumberOfComponentsPerPixel()} components per pixel; expected greyscale")
    if img.GetDimension() == 3 and img.GetSize()[2] != 1:
        raise InputError(path, f"is a volume of {img.GetSize()[2]} slices; expected one 2-D image")
    meta = {"source": str(path)}
    fields = bitmap_text(path) if bitmap else {key: img.GetMetaData(key) for key in img.GetMetaDataKeys()}
    for key, value in fields.items():
        if key.startswith("VirtualContrast.") or key == "Synthetic":
            meta[key] = value
    for key, field in NRRD_WINDOW_FIELDS.items():
        if field in meta:
            meta[key] = meta.pop(field)
    try:
        image = Image.from_sitk(img, meta=meta)
    except ValueError as exc:
        raise InputError(path, str(exc)) from None
    problem = finite_problem(image.array)
    if problem:
        raise InputError(path, problem)
    return image


def write_nrrd(image: Image, path: str | os.PathLike, fields: dict[str, str] | None = None) -> Path:
    """Write `image` as a one-slice NRRD with its geometry; `fields` become NRRD key/value pairs."""
    path = Path(path)
    img = image.to_sitk()
    for key, value in (fields or {}).items():
        img.SetMetaData(key, str(value))
    with atomic_path(path) as tmp:
        try:
            sitk.WriteImage(img, str(tmp), useCompression=True)
        except RuntimeError as exc:  # ITK's writers report a full disk or a refused write this way, not OSError
            raise InputError(path, f"{_sitk_problem(exc, 'write')}; nothing was half-written") from None
    return path


def bitmap_text(path: str | os.PathLike) -> dict[str, str]:
    """The key/value text of a PNG (text chunks) or TIFF (a JSON ImageDescription, as write_bitmap writes it);
    {} for other files, other descriptions or a file PIL cannot open (SimpleITK reads the pixels)."""
    try:
        with PILImage.open(path) as im:
            if im.format == "PNG":
                return {k: v for k, v in im.info.items() if isinstance(v, str)}
            text = im.tag_v2.get(TIFF_DESCRIPTION, "") if im.format == "TIFF" else ""
    except (OSError, ValueError, PILImage.DecompressionBombError):
        return {}
    try:
        fields = json.loads(text) if text else {}
    except ValueError:  # a description written by another program
        return {}
    return {str(k): str(v) for k, v in fields.items()} if isinstance(fields, dict) else {}


def write_bitmap(pixels: np.ndarray, path: str | os.PathLike, fmt: str, *, spacing: tuple[float, float] | None,
                 text: dict[str, str]) -> Path:
    """Write 8- or 16-bit greyscale `pixels` (uint8 / uint16) as `fmt` ("png" or "tiff") with `text` as key/value
    text and `spacing` (mm, x then y; None: unknown, no resolution written) as the resolution."""
    path = Path(path)
    options = {"dpi": tuple(25.4 / s for s in spacing)} if spacing else {}
    if fmt == "png":
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, str(value))  # Latin-1 tEXt, or UTF-8 iTXt when the value needs it
        options["pnginfo"] = info
    else:
        options["tiffinfo"] = {TIFF_DESCRIPTION: json.dumps(text)}  # ASCII: JSON escapes the rest
    with atomic_path(path) as tmp:
        PILImage.fromarray(pixels).save(tmp, format=BITMAP_FORMATS[fmt][0], **options)
    return path
