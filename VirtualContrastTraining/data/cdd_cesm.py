"""Import a CDD-CESM folder: pair LE with DES, register them, lesion masks from the VIA CSV, a manifest.

CDD-CESM (Khaled et al., Sci Data 2022; the public collection 004 uses) is a
folder with `Low energy images of CDD-CESM/` (DM = LE) and `Subtracted images
of CDD-CESM/` (CM = DES), images named `P{n}_{L|R}_{DM|CM}_{CC|MLO}.jpg` (some
with stray spaces), the sheet `all` of `Radiology manual annotations.xlsx` (one
or more rows per image: Image_name, ..., Breast density (ACR), ...,
Pathology Classification/ Follow up) and the VIA export
`Radiology_hand_drawn_segmentations_v2.csv` (via.py).

What the manifest gets, and why:
- one case per breast and view, `P{n}_{side}_{view}`, patient `P{n}`;
- des_offset_x/_y: LE and DES of this collection are not pixel-aligned, so each
  pair is registered by 004's mutual-information search (registration.py);
- the lesion mask: the LE's (DM) annotations, drawn on the LE grid; a breast
  annotated only on its DES (CM) gets those shapes moved into the LE frame by
  the registered offset (dataset.shift_to_le, as the DES itself is moved).
  Masks are .seg.nrrd files, one segment per lesion, in `<manifest stem>_masks/`
  beside the manifest, written as one folder that appears whole or not at all;
- density: "Breast density (ACR)" A-D or 1-4 -> "a".."d" (the LE's rows first);
- label: "Pathology Classification/ Follow up" (normal, benign, malignant), the
  most severe over the breast's rows, since one breast may hold several findings.
  BIRADS, Findings and Tags are free text or per finding and are not carried.

LE and DES often differ in size (004: P1_L_MLO is 1393x2129 against
1390x2341) while lying at most 10 px apart from their shared top-left corner:
the DES is put on the LE's grid from that corner and registered there, and
read_case_images does the same with the stored offset, so every later step
sees one grid. Nothing aborts the import: unreadable files, unpaired
images, bad names, sheet or CSV problems and lesion shapes outside their image
go to `ImportReport.skipped` with one short reason per kind, the detail (line,
row, shape, sizes) in the path column.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from VirtualContrastTraining.atomic import atomic_dir
from VirtualContrastTraining.data.cases import shift_to_le
from VirtualContrastTraining.data.imageio import read_image
from VirtualContrastTraining.data.importer import ImportReport
from VirtualContrastTraining.data.manifest import Case, write_manifest
from VirtualContrastTraining.data.registration import SEARCH_PX, on_bound, register_translation
from VirtualContrastTraining.data.segmentation import write_lesion_segmentation
from VirtualContrastTraining.data.via import (Region, coordinates_beyond, normalise_name, pixels_outside, read_via_csv,
                                             shape_mask)
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import Progress

LE_FOLDER = "Low energy images of CDD-CESM"
DES_FOLDER = "Subtracted images of CDD-CESM"
WORKBOOK = "Radiology manual annotations.xlsx"
SHEET = "all"
SEGMENTATION_CSV = "Radiology_hand_drawn_segmentations_v2.csv"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_COLUMN, DENSITY_COLUMN, LABEL_COLUMN = "Image_name", "Breast density (ACR)", "Pathology Classification/ Follow up"
LABELS = ("normal", "benign", "malignant")  # least to most severe
_NAME = re.compile(r"P(\d+)_([LR])_(DM|CM)_(CC|MLO)", re.IGNORECASE)

# One phrase per kind of problem (the CLI groups by reason); the specifics are in the path column.
BAD_NAME = "not a CDD-CESM image name (P{n}_{L|R}_{DM|CM}_{CC|MLO}.jpg or .png)"
WRONG_FOLDER = "DM/CM in the name disagrees with the folder (low energy: DM, subtracted: CM)"
DUPLICATE = "duplicate: another file has the same patient, side, DM/CM and view"
UNPAIRED_LE = "unpaired low-energy (DM) image: no subtracted (CM) image of the same breast and view"
UNPAIRED_DES = "unpaired subtracted (CM) image: no low-energy (DM) image of the same breast and view"
UNREADABLE = "image cannot be read or is not greyscale: its pair is not imported"
NOT_REGISTERED = "registration failed: pair not imported"
NO_CSV = "no segmentation CSV: no lesion masks"
BAD_CSV = "segmentation CSV unusable: no lesion masks"
ORPHAN_REGION = "segmentation row for an image that is not in an imported pair"
OUTSIDE = "lesion shape wholly outside its image: not used"
EMPTY = "lesion shape covers no pixel centre: not used"
CLIPPED = "lesion shape partly outside its image: clipped to it"
BEYOND = ("annotation coordinates exceed the image they are drawn on (full-size annotations on a resized "
          "image?): no lesion mask for it")
ON_BOUND = "best registration offset on the search bound: a wider --search-px may align better"
NO_WORKBOOK = "no annotation workbook: no densities or labels"
BAD_WORKBOOK = "annotation workbook unusable: no densities or labels"
MISSING_COLUMN = "annotation sheet lacks a column: that information is missing for every case"
BAD_SHEET_NAME = "annotation sheet row with an Image_name that is no CDD-CESM image name"
NO_SHEET_ROW = "no row in the annotation sheet: no density or label"
BAD_DENSITY = "breast density not A-D or 1-4: left empty"
DENSITY_CONFLICT = "annotation rows of one breast disagree on density: the LE's first row is used"
BAD_LABEL = "pathology classification not Normal, Benign or Malignant: not used"


@dataclass(frozen=True, order=True)
class ImageKey:
    patient: int
    side: str   # "L" / "R"
    view: str   # "CC" / "MLO"
    kind: str   # "DM" (LE) / "CM" (DES)

    @property
    def case_id(self) -> str:
        return f"P{self.patient}_{self.side}_{self.view}"

    def partner(self) -> "ImageKey":
        return ImageKey(self.patient, self.side, self.view, "CM" if self.kind == "DM" else "DM")


def image_key(name: str) -> ImageKey | None:
    """The key of a CDD-CESM image name, with or without an image suffix, whitespace ignored; None if no match."""
    name = normalise_name(name)
    root, dot, suffix = name.rpartition(".")
    if dot and f".{suffix.lower()}" in IMAGE_SUFFIXES:
        name = root
    match = _NAME.fullmatch(name)
    if not match:
        return None
    patient, side, kind, view = match.groups()
    return ImageKey(int(patient), side.upper(), view.upper(), kind.upper())


def _folded(name: str) -> str:
    return normalise_name(name).casefold()


def _child(folder: Path, name: str) -> Path | None:
    """The entry of `folder` called `name`, case and whitespace ignored (copies of the collection vary)."""
    if not folder.is_dir():
        return None
    return next((p for p in sorted(folder.iterdir()) if _folded(p.name) == _folded(name)), None)


def is_cdd_cesm_folder(path: str | os.PathLike) -> bool:
    """True when `path` holds CDD-CESM's low-energy and subtracted image folders."""
    path = Path(path)
    return all((child := _child(path, name)) is not None and child.is_dir() for name in (LE_FOLDER, DES_FOLDER))


def import_cdd_cesm(folder: str | os.PathLike, out_manifest: str | os.PathLike,
                    search_px: int = SEARCH_PX, progress: Progress | None = None) -> ImportReport:
    """Import a CDD-CESM folder into `out_manifest` (masks in `<stem>_masks/` beside it).

    The whole collection takes about half an hour (2 s per pair to register):
    `progress` is told after each pair.

    Pairs are registered within +-`search_px` (004's 10 by default); those whose
    best offset lies on that bound are listed in one problem line (ON_BOUND).
    InputError when `folder` is not a CDD-CESM folder or no pair can be imported
    (then nothing is written).
    """
    folder, out_manifest = Path(folder), Path(out_manifest)
    if not is_cdd_cesm_folder(folder):
        raise InputError(folder, f"not a CDD-CESM folder: needs the subfolders '{LE_FOLDER}' and '{DES_FOLDER}'")
    skipped: list[tuple[str, str]] = []
    pairs = _pairs(_scan(folder, skipped), skipped)
    sheet = _read_sheet(folder, skipped)
    regions = _read_regions(folder, skipped)
    mask_dir = out_manifest.with_name(f"{out_manifest.stem}_masks")
    cases, imported, bounded = [], set(), []
    with atomic_dir(mask_dir) as tmp:
        for done, (le_key, le_path, des_path) in enumerate(pairs, start=1):
            case = _import_pair(le_key, le_path, des_path, regions, tmp, mask_dir, skipped, search_px)
            if case is not None:
                if on_bound(case.des_offset(), search_px):
                    bounded.append(f"{case.case_id} {case.des_offset()}")
                if sheet is not None:
                    case.density, case.label = _facts(le_key, sheet, skipped)
                cases.append(case)
                imported |= {le_key, le_key.partner()}
            if progress is not None:
                progress(done, len(pairs), "registering LE/DES pairs")
        if not cases:
            counts = Counter(reason for _, reason in skipped)
            top = "; ".join(f"{reason} ({n})" for reason, n in counts.most_common(3)) or "the image folders are empty"
            raise InputError(folder, f"no LE/DES pair could be imported: {top}")
    if bounded:
        skipped.append((f"{len(bounded)} pair(s) at +-{search_px} px: {', '.join(bounded)}", ON_BOUND))
    for key, found in sorted(regions.items()):
        if key not in imported:
            skipped += [(f"{r.where} ({r.file_name})", ORPHAN_REGION) for r in found]
    write_manifest(out_manifest, cases)
    return ImportReport(cases=cases, skipped=skipped, manifest_path=out_manifest)


# ---------------------------------------------------------------- images and pairs


def _scan(folder: Path, skipped: list) -> dict[ImageKey, Path]:
    """Every file of the two image folders (recursively) by key; the rest is reported."""
    found: dict[ImageKey, Path] = {}
    for kind, name in (("DM", LE_FOLDER), ("CM", DES_FOLDER)):
        for path in sorted(p.resolve() for p in _child(folder, name).rglob("*") if p.is_file()):
            key = image_key(path.name)
            if key is None:
                skipped.append((str(path), BAD_NAME))
            elif key.kind != kind:
                skipped.append((str(path), WRONG_FOLDER))
            elif key in found:
                skipped.append((f"{path} (same as {found[key].name})", DUPLICATE))
            else:
                found[key] = path
    return found


def _pairs(found: dict[ImageKey, Path], skipped: list) -> list[tuple[ImageKey, Path, Path]]:
    """(LE key, LE path, DES path) per breast and view, by patient number; unpaired images reported."""
    pairs = []
    for key in sorted(found):
        partner = found.get(key.partner())
        if key.kind == "DM" and partner is not None:
            pairs.append((key, found[key], partner))
        elif partner is None:
            skipped.append((str(found[key]), UNPAIRED_LE if key.kind == "DM" else UNPAIRED_DES))
    return pairs


def _import_pair(le_key: ImageKey, le_path: Path, des_path: Path, regions: dict, tmp: Path, mask_dir: Path,
                 skipped: list, search_px: int = SEARCH_PX) -> Case | None:
    """The pair's Case (lesion mask written into `tmp`), or None with the reason in `skipped`."""
    try:
        le, des = read_image(le_path), read_image(des_path)
    except InputError as exc:
        skipped.append((f"{exc.path} ({exc.problem})", UNREADABLE))
        return None
    try:
        result = register_translation(le.array, des.array, search=search_px)
    except InputError as exc:
        skipped.append((f"{le_key.case_id} ({exc.problem})", NOT_REGISTERED))
        return None
    case = Case(case_id=le_key.case_id, patient_id=f"P{le_key.patient}", le_path=str(le_path),
                des_path=str(des_path), laterality=le_key.side, view=le_key.view,
                des_offset_x=str(result.offset[0]), des_offset_y=str(result.offset[1]))
    masks = _lesion_masks(regions.get(le_key, []), regions.get(le_key.partner(), []), le.shape, des.shape,
                          result.offset, skipped)
    if masks:
        name = f"{case.case_id}.seg.nrrd"
        write_lesion_segmentation(tmp / name, masks, le)
        case.lesion_path = str(mask_dir / name)
    return case


# ---------------------------------------------------------------- lesion masks


def _read_regions(folder: Path, skipped: list) -> dict[ImageKey, list[Region]]:
    path = _child(folder, SEGMENTATION_CSV)
    if path is None:
        skipped.append((str(folder / SEGMENTATION_CSV), NO_CSV))
        return {}
    try:
        regions, problems = read_via_csv(path)
    except InputError as exc:
        skipped.append((f"{exc.path} ({exc.problem})", BAD_CSV))
        return {}
    skipped += problems
    by_key: dict[ImageKey, list[Region]] = defaultdict(list)
    for region in regions:
        key = image_key(region.file_name)
        if key is None:
            skipped.append((f"{region.where} ({region.file_name})", ORPHAN_REGION))
        else:
            by_key[key].append(region)
    return by_key


def _lesion_masks(le_regions: list[Region], des_regions: list[Region], le_shape: tuple[int, int],
                  des_shape: tuple[int, int], offset: tuple[int, int], skipped: list) -> dict[str, np.ndarray]:
    """Segment name -> mask on the LE grid: the LE's shapes, else the DES's (drawn on the DES's grid)
    moved onto the LE's grid by the registered offset."""
    regions, on_des = (le_regions, False) if le_regions else (des_regions, True)
    shape = des_shape if on_des else le_shape
    beyond = coordinates_beyond(regions, shape)
    if beyond:
        skipped.append((beyond, BEYOND))
        return {}
    masks = {}
    for region in regions:
        mask, outside = shape_mask(region, shape), pixels_outside(region, shape)
        where = f"{region.where} ({region.file_name}: {region.shape} {region.region_id})"
        if not mask.any():
            skipped.append((where, OUTSIDE if outside else EMPTY))
            continue
        if outside:
            skipped.append((f"{where}: {outside} of {outside + int(mask.sum())} px outside", CLIPPED))
        masks[f"lesion {len(masks) + 1} ({region.shape})"] = shift_to_le(mask, offset, le_shape) if on_des else mask
    return masks


# ---------------------------------------------------------------- annotation sheet


@dataclass(frozen=True)
class _SheetRow:
    where: str
    density: object
    label: object


def _read_sheet(folder: Path, skipped: list) -> dict[ImageKey, list[_SheetRow]] | None:
    """Rows of sheet `all` by image, or None when the workbook gives no usable rows (reported)."""
    path = _child(folder, WORKBOOK)
    if path is None:
        skipped.append((str(folder / WORKBOOK), NO_WORKBOOK))
        return None
    import openpyxl  # lazy: openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zipfile, openpyxl and XML errors of many types: report, do not abort the import
        skipped.append((f"{path} ({type(exc).__name__}: {str(exc)[:120]})", BAD_WORKBOOK))
        return None
    try:
        if SHEET not in book.sheetnames:
            skipped.append((f"{path} (no sheet {SHEET!r}; sheets: {', '.join(book.sheetnames)})", BAD_WORKBOOK))
            return None
        rows = book[SHEET].iter_rows(values_only=True)
        header = [_folded(str(h or "")) for h in next(rows, ())]
        index = {column: header.index(_folded(column)) if _folded(column) in header else None
                 for column in (IMAGE_COLUMN, DENSITY_COLUMN, LABEL_COLUMN)}
        for column, i in index.items():
            if i is None:
                skipped.append((f"{path} sheet {SHEET!r} column {column!r}", MISSING_COLUMN))
        if index[IMAGE_COLUMN] is None:
            return None
        by_key: dict[ImageKey, list[_SheetRow]] = defaultdict(list)
        for number, row in enumerate(rows, start=2):
            cell = dict(_cells(row, index))
            name = cell[IMAGE_COLUMN]
            if name in (None, ""):
                continue
            key = image_key(str(name))
            if key is None:
                skipped.append((f"{path.name} row {number} ({name!r})", BAD_SHEET_NAME))
                continue
            by_key[key].append(_SheetRow(f"{path.name} row {number}", cell[DENSITY_COLUMN], cell[LABEL_COLUMN]))
        return by_key
    finally:
        book.close()


def _cells(row: tuple, index: dict[str, int | None]):
    """(column, value) for each wanted column; None where the sheet lacks the column or the row is short."""
    for column, i in index.items():
        yield column, row[i] if i is not None and i < len(row) else None


def _density(value) -> str | None:
    """ACR density "a".."d" from A-D or 1-4 (text or number); None when it is neither."""
    text = str(value).strip().upper()
    if text in ("A", "B", "C", "D"):
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        return None
    return "abcd"[int(number) - 1] if number in (1, 2, 3, 4) else None


def _facts(le_key: ImageKey, sheet: dict[ImageKey, list[_SheetRow]], skipped: list) -> tuple[str, str]:
    """(density, label) of a breast from the rows of its LE, then its DES."""
    rows = sheet.get(le_key, []) + sheet.get(le_key.partner(), [])
    if not rows:
        skipped.append((le_key.case_id, NO_SHEET_ROW))
        return "", ""
    densities, labels = [], []
    for row in rows:
        if row.density not in (None, ""):
            density = _density(row.density)
            if density is None:
                skipped.append((f"{row.where} ({row.density!r})", BAD_DENSITY))
            else:
                densities.append(density)
        if row.label not in (None, ""):
            label = str(row.label).strip().casefold()
            if label in LABELS:
                labels.append(label)
            else:
                skipped.append((f"{row.where} ({row.label!r})", BAD_LABEL))
    if len(set(densities)) > 1:
        skipped.append((f"{le_key.case_id} ({', '.join(densities)})", DENSITY_CONFLICT))
    label = max(labels, key=LABELS.index) if labels else ""
    return (densities[0] if densities else ""), label
