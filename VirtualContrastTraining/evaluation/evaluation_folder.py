"""An evaluation folder as `virtual-contrast evaluate` writes it, read back and checked, and several
such folders pooled (the folds of a cross-validation) for the report.

Reading is strict: a missing file, column or malformed cell is an InputError
naming the file (and line and column), so a report is never built from a
half-written or hand-edited folder without saying so. Pooling counts a
(model, case) pair found in two folders once: the baselines of presets that
share folds are the same images.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from VirtualContrastTraining import read_versions
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.evaluation.significance import as_float

# per_image.csv must have these and the built-in "image" columns of columns.py; every column of columns.py it has
# is a number. A column with its own compute may be absent: folders written before it was added read as "n/a".
IDENTIFIER_COLUMNS = ("model", "case_id", "has_lesion_mask")


def _required_columns() -> tuple[str, ...]:
    return (*IDENTIFIER_COLUMNS, *(c.key for c in columns.COLUMNS if c.group == "image" and c.compute is None))
HISTOGRAM_REFERENCE = "real DES"

@dataclass
class Evaluation:
    """One evaluation folder, read and checked."""
    folder: Path
    rows: list[dict[str, Any]]        # per_image.csv: numbers as float or None, has_lesion_mask as bool
    provenance: dict[str, Any]
    histograms: dict[str, list[float]] | None   # histograms.csv columns, None when the file is absent

    @property
    def model_name(self) -> str:
        return self.provenance["model_name"]


def csv_text(rows: list[dict[str, Any]]) -> str:
    """CSV with the union of the rows' keys; None becomes an empty cell, floats keep full precision."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in fields})
    return buf.getvalue()


def _number(cell: str, path: Path, line: int, column: str) -> float | None:
    try:
        return as_float(cell)
    except ValueError as exc:
        raise InputError(path, f"line {line}, column {column!r}: {exc}") from None


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or ())]
            if missing:
                raise InputError(path, f"missing column(s): {', '.join(missing)}")
            rows = list(reader)
    except FileNotFoundError:
        raise InputError(path, "file not found: is this a folder written by `virtual-contrast evaluate`?") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot read CSV ({exc})") from None
    if not rows:
        raise InputError(path, "no rows")
    return rows


def _read_per_image(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line, raw in enumerate(_read_csv(path, _required_columns()), start=2):
        if None in raw:
            raise InputError(path, f"line {line}: more cells than columns")
        row: dict[str, Any] = {k: (v or "") for k, v in raw.items()}
        for column in columns.keys():
            if column in row:
                row[column] = _number(row[column], path, line, column)
        flag = row["has_lesion_mask"]
        if flag not in ("True", "False"):
            raise InputError(path, f"line {line}, column 'has_lesion_mask': {flag!r} is not True or False")
        row["has_lesion_mask"] = flag == "True"
        if not row["model"] or not row["case_id"]:
            raise InputError(path, f"line {line}: empty model or case_id")
        rows.append(row)
    return rows


def _read_histograms(path: Path) -> dict[str, list[float]] | None:
    if not path.is_file():
        return None
    series: dict[str, list[float]] = {}
    for line, raw in enumerate(_read_csv(path, ("bin_lo", "bin_hi", HISTOGRAM_REFERENCE)), start=2):
        for column, cell in raw.items():
            value = _number(cell or "", path, line, str(column))
            if value is None:
                raise InputError(path, f"line {line}, column {column!r}: empty cell")
            series.setdefault(column, []).append(value)
    return series


def _read_provenance(path: Path) -> dict[str, Any]:
    try:
        provenance = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "file not found: is this a folder written by `virtual-contrast evaluate`?") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read ({exc})") from None
    if not isinstance(provenance, dict):
        raise InputError(path, "expected a JSON object")
    if not isinstance(provenance.get("model_name"), str) or not provenance["model_name"]:
        raise InputError(path, "no model_name")
    fold = provenance.get("fold")
    if fold is not None and (not isinstance(fold, int) or isinstance(fold, bool)):
        raise InputError(path, f"fold {fold!r} is not an integer or null")
    if not isinstance(provenance.get("versions", {}), dict):
        raise InputError(path, "versions is not an object")
    provenance["versions"] = read_versions(provenance.get("versions", {}))  # one schema, old folders too
    return provenance


def read_evaluation(folder: str | os.PathLike) -> Evaluation:
    """One evaluation folder; InputError naming the file for anything missing or malformed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder: give the output folder of `virtual-contrast evaluate`")
    rows = _read_per_image(folder / "per_image.csv")
    provenance = _read_provenance(folder / "provenance.json")
    if provenance["model_name"] not in {r["model"] for r in rows}:
        raise InputError(folder / "per_image.csv",
                         f"no rows of the evaluated model {provenance['model_name']!r} (provenance.json)")
    return Evaluation(folder, rows, provenance, _read_histograms(folder / "histograms.csv"))


@dataclass
class Pooled:
    """Several evaluation folders as one: what every section of the report reads."""
    evaluations: list[Evaluation]
    rows: list[dict[str, Any]]
    source: dict[tuple[str, str], Evaluation]   # (model, case_id) -> the folder its row came from
    duplicates: int
    folds: dict[int, list[dict[str, Any]]]      # provenance.json fold -> that fold's rows (folders with a fold)
    trained: list[str]                          # models named in provenance.json, in order
    models: list[str]                           # trained, then the rest (baselines) in order of appearance


def _differing(evaluations: list[Evaluation], what: str, value) -> list[str]:
    """"<what>: <value> (<folder>), ..." when `value(ev)` is not the same for all folders; [] otherwise."""
    values = [value(ev) for ev in evaluations]
    if len(set(values)) < 2:
        return []
    return [f"{what}: " + "; ".join(f"{v} ({ev.folder})" for v, ev in zip(values, evaluations))]


def _measured_regions(ev: Evaluation) -> str:
    """The comparison space and which regions of columns.REGIONS the folder's rows hold values for."""
    measured = [r for r in columns.REGIONS if any(row.get(k) is not None for row in ev.rows
                                                  for k in columns.image_keys(r))]
    return f"{ev.provenance.get('comparison_space') or 'unknown space'}, regions {' + '.join(measured) or 'none'}"


def mixing_problems(evaluations: list[Evaluation]) -> list[str]:
    """What differs between evaluation folders that one table would pool as if it did not: the image size, the
    region measured, or the case set. Folds of one cross-validation (distinct fold numbers) hold different test
    cases by design; other folders (models compared) must hold the same cases."""
    problems = _differing(evaluations, "image size", lambda ev: str(ev.provenance.get("image_size", "unknown")))
    problems += _differing(evaluations, "region", _measured_regions)
    folds = [ev.provenance.get("fold") for ev in evaluations]
    cases = [frozenset(r["case_id"] for r in ev.rows) for ev in evaluations]
    if (None in folds or len(set(folds)) < len(folds)) and len(set(cases)) > 1:
        common = frozenset.intersection(*cases)
        problems.append("cases: " + "; ".join(f"{len(c)} cases, {len(c - common)} not in every folder ({ev.folder})"
                                              for c, ev in zip(cases, evaluations)))
    return problems


def pool(evaluations: list[Evaluation]) -> Pooled:
    """All folders' rows, trained models first; each (model, case) once, with the folder it came from."""
    rows, source, duplicates = [], {}, 0
    for ev in evaluations:
        for row in ev.rows:
            key = (row["model"], row["case_id"])
            if key in source:
                duplicates += 1
                continue
            source[key] = ev
            rows.append(row)
    trained = list(dict.fromkeys(ev.model_name for ev in evaluations))
    models = list(dict.fromkeys([*trained, *(r["model"] for r in rows)]))
    rows.sort(key=lambda r: models.index(r["model"]))   # stable: tables list the trained models first
    folds: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        fold = source[(row["model"], row["case_id"])].provenance.get("fold")
        if fold is not None:
            folds.setdefault(fold, []).append(row)
    return Pooled(evaluations, rows, source, duplicates, dict(sorted(folds.items())), trained, models)
