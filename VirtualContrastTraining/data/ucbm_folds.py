"""The cross-validation folds of the public VCE_CESM code (CESM@UCBM, 001) as one manifest per fold.

Why: Rofena et al. 2024 evaluate every model in 10-fold cross-validation,
80/10/10 (001, Section 3.2), and publish the dataset (001, Section 2) and the
code with its fold files. Training and comparing on those very folds is the
only way to set our numbers beside 001 Table 4.1/4.2 image for image;
`virtual-contrast compare --fold-manifests` runs on the manifests written here.

What is read (the public repository's data loader could not be checked from
here, so reading is tolerant and everything accepted is listed):

- Layout: FOLDS_DIR/N/train.txt, val.txt, test.txt with N = 0, 1, ... (the
  repository's data/processed/folds; folds_acr has the same layout). A folder
  that holds the three files itself is read as one fold (numbered by its name
  when that is a number, else 0).
- Each file: a header line, then one row per LE/DES pair. Tab-separated; a
  header without a tab but with commas makes the file comma-separated. Column
  names are matched case-insensitively: id, img_x (the LE), img_y (the
  recombined image, our DES) and r_l (side: R, L, right, left) are required;
  wc_x, ww_x, wc_y, ww_y (window centre and width of the LE and DES) and acr
  (ACR density: a-d in either case, or 1-4) are optional. An unnamed first
  column (a pandas index: empty name or "Unnamed: 0") is ignored; blank lines
  are skipped.
- img_x / img_y: an existing absolute path, a path relative to IMAGES_ROOT,
  or anything whose file name (the part after the last / or \\) names exactly
  one file under IMAGES_ROOT; the fold files of another machine work that way.
  CESM@UCBM images are NRRD files named P{pt}_{k}_{L|R}{CC|MLO}_LOW_ENERGY.nrrd
  and ..._RECOMBINED.nrrd.
- Patient: the leading "P<digits>" of the id, else of the LE's file name;
  view (CC or MLO) from the same names. Patient-level splits need the patient,
  so a row whose names carry none is a problem.
- Windows drive contrast stretching: clip to [wc - ww/2, wc + ww/2] before
  scaling to [0, 1] (001, Section 3.1; data/preprocessing.intensity_window).
  Without them an image gets the percentile window.

- folds_acr: FOLDS_DIR/N/test_a.txt ... test_d.txt, the test set of fold N by
  ACR density (001 Table 4.2): each row a test image whose density is the
  file's letter (an acr column, if given, must agree). Its manifests hold test
  images only, with their density: for `evaluate --split test`, not `compare`.

Folds are kept as published: every usable row is imported, also when a
patient's images straddle train/val/test. 001's folds are split by image (in
every fold of folds/ 66-77 of the 105 patients straddle), so a model has seen
the patient's other images; the import prints one leakage line per fold and
writes it to folds.json beside the manifests (data/splits.py), which is what
lets training, evaluation and `compare` accept those manifests and what
`compare` reports. `regroup_by_patient` (import --regroup-by-patient) deals
the same images into patient-level folds of about the same split sizes.

Nothing in a fold file aborts the import: each row that cannot be used is a
problem (file:line, reason) and the other rows are imported. A fold left
without train, val or test images (test for folds_acr) gets no manifest.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from VirtualContrastTraining.atomic import ensure_writable_dir
from VirtualContrastTraining.data.importer import ImportReport
from VirtualContrastTraining.data.manifest import Case, write_manifest
from VirtualContrastTraining.data.splits import SPLITS, leakage_entry, leakage_text, regroup_by_patient, write_leakage
from VirtualContrastTraining.errors import InputError

REQUIRED_COLUMNS = ("id", "img_x", "img_y", "r_l")
# Fold-file window columns (x = LE, y = DES) -> the manifest's columns.
WINDOW_COLUMNS = {("wc_x", "ww_x"): ("le_window_center", "le_window_width"),
                  ("wc_y", "ww_y"): ("des_window_center", "des_window_width")}
SIDES = {"r": "R", "l": "L", "right": "R", "left": "L"}
ACR = {**{c: c for c in "abcd"}, **{str(i): c for i, c in enumerate("abcd", start=1)}}
NOT_GIVEN = ("", "nan", "none", "na", "n/a", "-")

_INDEX_COLUMN = re.compile(r"^(unnamed: ?\d+)?$")
_PATIENT = re.compile(r"^(P\d+)(?=[_\-. ]|$)", re.IGNORECASE)
_VIEW = re.compile(r"(?:^|_)[LR]?(CC|MLO)(?=_|$)", re.IGNORECASE)
_NAME_SIDE = re.compile(r"(?:^|_)([LR])(?:CC|MLO)?(?=_|$)", re.IGNORECASE)


def _split_files(folder: Path) -> list[Path]:
    return [folder / f"{split}.txt" for split in SPLITS]


def _density_files(folder: Path) -> list[Path]:
    """folds_acr's test_a.txt ... test_d.txt (ACR densities a-d)."""
    return [folder / f"test_{density}.txt" for density in "abcd"]


def _fold_files(folder: Path) -> list[tuple[str, str, Path]]:
    """(split, density from the file name or "", path) of the files that make the fold in `folder`: the
    density files when any is there (folds_acr), else train/val/test."""
    if any(p.is_file() for p in _density_files(folder)):
        return [("test", path.stem[-1], path) for path in _density_files(folder) if path.is_file()]
    return [(split, "", path) for split, path in zip(SPLITS, _split_files(folder))]


def _holds_a_fold(folder: Path) -> bool:
    return any(p.is_file() for p in (*_split_files(folder), *_density_files(folder)))


def fold_dirs(folds_dir: str | os.PathLike) -> dict[int, Path]:
    """{fold number: folder} of the numbered subfolders that hold a train/val/test .txt file, in number
    order; a folder holding all three itself is one fold. Empty when `folds_dir` is no fold folder."""
    folds_dir = Path(folds_dir)
    if not folds_dir.is_dir():
        return {}
    if all(p.is_file() for p in _split_files(folds_dir)) or any(p.is_file() for p in _density_files(folds_dir)):
        return {int(folds_dir.name) if folds_dir.name.isdigit() else 0: folds_dir}
    found = {int(d.name): d for d in folds_dir.iterdir() if d.is_dir() and d.name.isdigit() and _holds_a_fold(d)}
    return dict(sorted(found.items()))


def is_fold_folder(path: str | os.PathLike) -> bool:
    """True for a VCE_CESM fold folder (see the module docstring): what `import` should read as folds."""
    return bool(fold_dirs(path))


class _ImageFinder:
    """Finds the file a fold file names, under IMAGES_ROOT; files are listed by name once, when first needed."""

    def __init__(self, root: Path):
        self.root = root
        self._by_name: dict[str, list[Path]] | None = None

    def find(self, value: str) -> tuple[Path | None, str]:
        """(path, "") or (None, why not)."""
        text = value.replace("\\", "/")
        path = Path(text)
        if path.is_absolute() and path.is_file():
            return path, ""
        if not path.is_absolute() and (self.root / path).is_file():
            return self.root / path, ""
        if self._by_name is None:
            self._by_name = defaultdict(list)
            for p in sorted(self.root.rglob("*")):
                if p.is_file():
                    self._by_name[p.name].append(p)
        matches = self._by_name.get(path.name, [])
        if len(matches) == 1:
            return matches[0], ""
        if matches:
            return None, f"{len(matches)} files named {path.name} under {self.root}: cannot tell which"
        return None, f"not found (no such path, and no file named {path.name} under {self.root})"


def _name_part(pattern: re.Pattern, *names: str) -> str:
    for name in names:
        match = pattern.search(name)
        if match:
            return match.group(1).upper()
    return ""


def _read_rows(path: Path, problems: list) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: value}) of each data row, in file order; a row with the wrong number of cells
    adds a problem when it is reached (problems stay in line order), a file that cannot be used adds one."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append((str(path), f"cannot read the fold file ({exc})"))
        return
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        problems.append((str(path), "empty fold file: expected a header line (id, img_x, img_y, r_l, ...)"))
        return
    header_line = lines[0][1]
    delimiter = "," if "\t" not in header_line and "," in header_line else "\t"
    header = [h.strip().lower() for h in next(csv.reader([header_line], delimiter=delimiter))]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        problems.append((f"{path}:{lines[0][0]}", f"header lacks column(s) {', '.join(missing)}: expected "
                         f"{', '.join(REQUIRED_COLUMNS)} (tab-separated), optional wc_x, ww_x, wc_y, ww_y, acr"))
        return
    for lineno, line in lines[1:]:
        cells = next(csv.reader(io.StringIO(line), delimiter=delimiter))
        if len(cells) != len(header):
            problems.append((f"{path}:{lineno}", f"{len(cells)} cells, the header has {len(header)}"))
            continue
        yield lineno, {h: c.strip() for h, c in zip(header, cells) if not _INDEX_COLUMN.match(h)}


def _window(row: dict[str, str], center_key: str, width_key: str) -> tuple[str, str]:
    """("", "") when not given; the pair as numbers; ValueError saying what is wrong."""
    center, width = (row.get(k, "") for k in (center_key, width_key))
    given = [v.lower() not in NOT_GIVEN for v in (center, width)]
    if not any(given):
        return "", ""
    if not all(given):
        raise ValueError(f"window {center_key}/{width_key} {center!r}/{width!r}: give both or neither")
    try:
        c, w = float(center), float(width)
    except ValueError:
        raise ValueError(f"window {center_key}/{width_key} {center!r}/{width!r} are not numbers") from None
    if not (math.isfinite(c) and math.isfinite(w)) or w <= 0:
        raise ValueError(f"window {center_key}/{width_key} {center!r}/{width!r}: need finite numbers and a "
                         "positive width")
    return f"{c:.10g}", f"{w:.10g}"


def _case(row: dict[str, str], split: str, file_density: str, finder: _ImageFinder) -> Case:
    """One fold-file row as a Case (`file_density`: folds_acr's letter, or ""); ValueError with the reason when
    the row cannot be used."""
    case_id = row["id"]
    if not case_id:
        raise ValueError("empty id")
    paths = {}
    for column, role in (("img_x", "LE"), ("img_y", "DES")):
        if not row[column]:
            raise ValueError(f"empty {column} ({role} image)")
        path, why = finder.find(row[column])
        if path is None:
            raise ValueError(f"{role} image ({column}) {row[column]!r}: {why}")
        paths[role] = path
    side = SIDES.get(row["r_l"].lower())
    if side is None:
        raise ValueError(f"r_l {row['r_l']!r} is not a side: use R or L")
    names = (case_id, paths["LE"].name)
    name_side = _name_part(_NAME_SIDE, *names)
    if name_side and name_side != side:
        raise ValueError(f"r_l says {side} but the name {case_id} says {name_side}")
    patient = _name_part(_PATIENT, *names)
    if not patient:
        raise ValueError(f"no patient in the id {case_id!r} or the file name {paths['LE'].name} "
                         "(expected names like P12_1_LCC_LOW_ENERGY.nrrd)")
    density = row.get("acr", "").lower()
    if density in NOT_GIVEN:
        density = ""
    elif density not in ACR:
        raise ValueError(f"acr {row['acr']!r} is not an ACR density (a-d or 1-4)")
    if file_density and density and ACR[density] != file_density:
        raise ValueError(f"acr {row['acr']!r} but the row is in test_{file_density}.txt")
    density = file_density or density
    windows = {}
    for (center_key, width_key), (center_col, width_col) in WINDOW_COLUMNS.items():
        windows[center_col], windows[width_col] = _window(row, center_key, width_key)
    return Case(case_id=case_id, patient_id=patient, le_path=str(paths["LE"]), des_path=str(paths["DES"]),
                laterality=side, view=_name_part(_VIEW, *names), density=ACR.get(density, ""), split=split,
                **windows)


def _read_fold(fold_dir: Path, finder: _ImageFinder) -> tuple[list[Case], list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    fold: dict[str, tuple[str, Case]] = {}  # case id -> (where, case), in file order
    for split, file_density, path in _fold_files(fold_dir):
        if not path.is_file():
            problems.append((str(path), f"missing: a fold needs {', '.join(p.name for p in _split_files(fold_dir))}"))
            continue
        for lineno, row in _read_rows(path, problems):
            where = f"{path}:{lineno}"
            try:
                case = _case(row, split, file_density, finder)
            except ValueError as exc:
                problems.append((where, str(exc)))
                continue
            if case.case_id in fold:
                problems.append((where, f"id {case.case_id} was already read at {fold[case.case_id][0]}: row left out"))
                continue
            fold[case.case_id] = (where, case)
    return [case for _, case in fold.values()], problems


def _images_root(images_root: str | os.PathLike) -> Path:
    root = Path(images_root)
    if not root.is_dir():
        raise InputError(root, "images folder not found (the folder holding the fold files' NRRD images)")
    return root.resolve()


def read_fold(fold_dir: str | os.PathLike, images_root: str | os.PathLike) -> tuple[list[Case], list[tuple[str, str]]]:
    """The cases of one fold folder (train.txt, val.txt, test.txt, or folds_acr's test_a.txt ... test_d.txt)
    with their split set, as published (patients may straddle splits), and the problems:
    (file:line or file, reason) for each row or file left out. InputError only for a missing images folder."""
    return _read_fold(Path(fold_dir), _ImageFinder(_images_root(images_root)))


def _needed_splits(fold_dir: Path) -> tuple[str, ...]:
    """The splits a fold's manifest must hold: test only for a folds_acr fold (test sets by density)."""
    return ("test",) if _fold_files(fold_dir)[0][1] else SPLITS


def import_folds(folds_dir: str | os.PathLike, images_root: str | os.PathLike, out_dir: str | os.PathLike, *,
                 regroup: bool = False, seed: int = 0) -> dict[int, ImportReport]:
    """Write OUT_DIR/fold_<N>.csv for each fold of `folds_dir` and OUT_DIR/folds.json (the leakage of each);
    {fold: its ImportReport}.

    Rows are kept as published; with `regroup` the images of each fold are
    dealt into patient-level splits of the same sizes (splits.regroup_by_patient,
    rotated by fold, `seed`). A report's `skipped` holds the problems of its
    fold, `manifest_path` is None for a fold that got no manifest (no usable
    train, val or test image). The files are `compare --fold-manifests
    OUT_DIR`'s input. InputError when there is no fold folder, no images folder,
    or not one fold could be written.
    """
    folds_dir = Path(folds_dir)
    folds = fold_dirs(folds_dir)
    if not folds:
        raise InputError(folds_dir, "no fold folders: expected N/train.txt, N/val.txt and N/test.txt (N = 0, 1, ...)")
    finder = _ImageFinder(_images_root(images_root))
    out_dir = ensure_writable_dir(out_dir)
    reports = {}
    for index, (number, fold_dir) in enumerate(folds.items()):
        cases, problems = _read_fold(fold_dir, finder)
        if regroup:
            cases = regroup_by_patient(cases, index / len(folds), seed)
        report = ImportReport(cases=cases, skipped=problems)
        empty = [s for s in _needed_splits(fold_dir) if not any(c.split == s for c in cases)]
        if empty:
            problems.append((str(fold_dir), f"fold {number} has no usable {' or '.join(empty)} images: "
                                            "no manifest written for it"))
        else:
            report.manifest_path = write_manifest(out_dir / f"fold_{number}.csv", cases)
        reports[number] = report
    written = {r.manifest_path.name: leakage_entry(r.cases) for r in reports.values() if r.manifest_path}
    if not written:
        first = next(p for r in reports.values() for p in r.skipped)
        raise InputError(folds_dir, f"no fold could be imported; first problem: {first[0]}: {first[1]}")
    write_leakage(out_dir, written)
    return reports


def summary(reports: dict[int, ImportReport]) -> str:
    """Text for the terminal: per fold the images and patients of each split (and densities when given) and
    its manifest; one leakage line per fold; then the problems of all folds grouped by reason (a missing image
    shows once, with the rows naming it)."""
    lines = []
    for number, report in reports.items():
        images = ", ".join(f"{s} {sum(c.split == s for c in report.cases)}" for s in SPLITS)
        patients = ", ".join(f"{s} {len({c.patient_id for c in report.cases if c.split == s})}" for s in SPLITS)
        densities = {d: sum(c.density == d for c in report.cases) for d in "abcd"}
        density = ("; density " + ", ".join(f"{d} {n}" for d, n in densities.items())
                   if any(densities.values()) else "")
        lines.append(f"fold {number}: {len(report.cases)} LE/DES pairs ({images}) of "
                     f"{len({c.patient_id for c in report.cases})} patients ({patients}{density}) -> "
                     f"{report.manifest_path or 'no manifest'}")
    lines += [f"fold {number}: {leakage_text(leakage_entry(report.cases))}" for number, report in reports.items()]
    merged = ImportReport(cases=[], skipped=[p for r in reports.values() for p in r.skipped])
    return "\n".join(lines + merged.skipped_lines("{n} problems (rows, files or folds left out):"))
