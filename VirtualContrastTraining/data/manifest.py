"""The manifest: one CSV row per LE/DES pair. Every step after import reads only this.

Paths in the file are relative to the manifest's folder (absolute paths are
kept as they are), so a dataset folder can be moved or copied as a whole.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from VirtualContrastTraining.atomic import write_text_atomic
from VirtualContrastTraining.errors import InputError


@dataclass
class Case:
    case_id: str
    patient_id: str
    le_path: str
    des_path: str = ""             # empty for LE-only inputs (prediction on plain mammograms)
    lesion_path: str = ""          # .seg.nrrd or labelmap NRRD/NIfTI; empty when none
    fibroglandular_path: str = ""  # tissue regions for 000's CNR (drawn ROIs or phantom truth); optional
    adipose_path: str = ""
    study_uid: str = ""
    laterality: str = ""           # "L" or "R"
    view: str = ""                 # "CC", "MLO", ...
    le_time: str = ""              # acquisition date+time, for pairing and audit
    des_time: str = ""
    le_window_center: str = ""     # DICOM window of the LE, drives contrast stretching
    le_window_width: str = ""
    des_window_center: str = ""
    des_window_width: str = ""
    des_offset_x: str = ""         # integer translation (columns, rows) that aligns the DES with the LE:
    des_offset_y: str = ""         # aligned DES[r, c] = DES[r + y, c + x] (CDD-CESM registration); empty = 0
    density: str = ""              # ACR a-d
    bpe: str = ""                  # minimal / mild / moderate / marked
    lesion_types: str = ""         # ";"-separated
    label: str = ""                # e.g. benign / malignant / normal
    split: str = ""                # train / val / test (filled by the split step when empty)

    @property
    def has_lesion_mask(self) -> bool:
        return bool(self.lesion_path)

    def des_offset(self) -> tuple[int, int]:
        """(x, y) of des_offset_x/_y, (0, 0) when empty; ValueError for a non-integer."""
        return tuple(int(v) if v not in ("", None) else 0 for v in (self.des_offset_x, self.des_offset_y))

    def window(self, which: str) -> tuple[float, float] | None:
        """(center, width) of the LE ("le") or DES ("des") window, or None when not recorded."""
        c, w = getattr(self, f"{which}_window_center"), getattr(self, f"{which}_window_width")
        if c in ("", None) or w in ("", None):
            return None
        return float(c), float(w)


COLUMNS = [f.name for f in fields(Case)]
REQUIRED = ("case_id", "patient_id", "le_path")
PATH_COLUMNS = ("le_path", "des_path", "lesion_path", "fibroglandular_path", "adipose_path")
OFFSET_COLUMNS = ("des_offset_x", "des_offset_y")
WINDOW_COLUMNS = ("le_window_center", "le_window_width", "des_window_center", "des_window_width")


LATERALITIES = ("L", "R", "")


def _window_problem(key: str, text: str) -> str | None:
    """Why a window cell cannot be used: not a number, not finite, or a width that is not > 0."""
    try:
        value = float(text)
    except ValueError:
        return f"{key} {text!r} is not a number"
    if not math.isfinite(value) or (key.endswith("_width") and value <= 0):
        return f"{key} {text!r} must be a finite number{' > 0' if key.endswith('_width') else ''}"
    return None


def case_file_stem(case_id: str) -> str:
    """A case id as a file name stem: anything but letters, digits, '.', '-' and '_' becomes '_'.

    Case ids come from users' manifests; "a/b" or "../x" must not write outside the output folder.
    """
    return re.sub(r"[^A-Za-z0-9._-]", "_", case_id).lstrip(".") or "case"


def resolve(manifest_path: str | os.PathLike, value: str) -> Path:
    """Absolute path of a file named in the manifest."""
    p = Path(value)
    return p if p.is_absolute() else (Path(manifest_path).resolve().parent / p)


def read_manifest(path: str | os.PathLike, require_des: bool = False) -> list[Case]:
    """Read and check a manifest. Paths are returned absolute."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "manifest not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read manifest ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise InputError(path, "manifest is empty (no header, no rows)")
    missing = [c for c in REQUIRED if c not in reader.fieldnames]
    if require_des and "des_path" not in reader.fieldnames:
        missing.append("des_path")
    if missing:
        raise InputError(path, f"manifest lacks column(s) {', '.join(missing)}")
    cases = []
    for lineno, row in enumerate(reader, start=2):
        values = {k: (row.get(k) or "").strip() for k in COLUMNS}
        for key in REQUIRED:
            if not values[key]:
                raise InputError(path, f"line {lineno}: empty {key}")
        for key in WINDOW_COLUMNS:
            problem = values[key] and _window_problem(key, values[key])
            if problem:
                raise InputError(path, f"line {lineno}: {problem}")
        if values["laterality"] not in LATERALITIES:
            raise InputError(path, f"line {lineno}: laterality {values['laterality']!r} must be L, R or empty")
        for key in OFFSET_COLUMNS:
            if values[key] and not values[key].lstrip("+-").isdigit():
                raise InputError(path, f"line {lineno}: {key} {values[key]!r} is not a whole number of pixels")
        if require_des and not values["des_path"]:
            raise InputError(path, f"line {lineno}: case {values['case_id']} has no des_path")
        for key in PATH_COLUMNS:
            if values[key]:
                values[key] = str(resolve(path, values[key]))
        cases.append(Case(**values))
    if not cases:
        raise InputError(path, "manifest has no rows")
    ids = [c.case_id for c in cases]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(path, f"duplicate case_id(s): {', '.join(dup[:5])}")
    return cases


def write_manifest(path: str | os.PathLike, cases: list[Case]) -> Path:
    """Write atomically; paths inside the manifest's folder are stored relative to it."""
    path = Path(path)
    base = path.resolve().parent
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for case in cases:
        row = asdict(case)
        for key in PATH_COLUMNS:
            if row[key]:
                p = Path(row[key]).resolve()
                row[key] = os.path.relpath(p, base) if p.is_relative_to(base) else str(p)
        writer.writerow(row)
    write_text_atomic(path, buf.getvalue())
    return path


def fingerprint(cases: list[Case]) -> str:
    """SHA-256 over case ids, splits and the bytes of every file the cases name.

    Recorded in checkpoints so a model can be traced to the exact data it saw.
    """
    h = hashlib.sha256()
    for case in sorted(cases, key=lambda c: c.case_id):
        h.update(f"{case.case_id}|{case.split}\n".encode())
        for p in (case.le_path, case.des_path, case.lesion_path):
            if p:
                with open(p, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
    return h.hexdigest()
