"""The evaluation report as one self-contained HTML file (`virtual-contrast report`).

Reads one or more evaluation folders written by `virtual-contrast evaluate`
(per_image.csv, provenance.json, optionally histograms.csv and heatmaps/) and
writes a single HTML page: inline CSS, every figure a PNG data URI, no script,
so it can be mailed, archived and printed as is. Its sections follow the
papers' own tables:

- headline mean ± sd per model, and with several folds the mean ± sd across
  folds of each fold's mean (001 Table 4.1, 002 Table I);
- the trained model against each baseline, Wilcoxon signed-rank paired by
  case with Benjamini-Hochberg correction (000, Statistical analysis);
- 003's three settings (with mass, without mass, mass only) x L1, L2, PSNR,
  dCNR (003 Tables 2-4);
- 000's change analysis (MAE and SSIM of LE->DES vs LE->synthetic, Pearson r)
  and tissue CNR table (000 Table 2);
- per-ACR-density table with Kruskal-Wallis p (001 Table 4.2);
- box plots, heatmaps of the best, median and worst case, intensity
  histograms of real vs synthetic DES (003 Fig. 5);
- the reader study (000), when given.

With several folders (compare's runs/<preset>/fold_<i>/evaluation) the
per-image sections pool all folders' rows; a (model, case) pair found in two
folders (the baselines when several presets share folds) is counted once.
A section without data says so in one sentence instead of disappearing.
"""

from __future__ import annotations

import base64
import csv
import html
import itertools
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from VirtualContrastTraining import __version__
from VirtualContrastTraining.analyses import CHANGE_COLUMNS, SETTING_COLUMNS, TISSUE_COLUMNS, TISSUE_IMAGES
from VirtualContrastTraining.atomic import write_text_atomic
from VirtualContrastTraining.data.manifest import case_file_stem
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluate import HEADLINE, NOT_FOR_DIAGNOSIS, format_cell, summarize
from VirtualContrastTraining.metrics import METRICS
from VirtualContrastTraining.statistics import (KRUSKAL_ROW, as_float, describe, density_table, fold_table, pearson,
                                                wilcoxon_models)

REQUIRED_COLUMNS = ("model", "case_id", "has_lesion_mask", *METRICS)
NUMERIC_COLUMNS = (*METRICS, *SETTING_COLUMNS, *CHANGE_COLUMNS, *TISSUE_COLUMNS)
HISTOGRAM_REFERENCE = "real DES"
# (title, number format) of each metric: evaluate's headline styles plus the metrics it leaves out.
METRIC_STYLE = {"MAE": ("MAE", ".4f"), "L1": ("L1 (0-255)", ".2f"), "L2": ("L2 (0-255)", ".1f"),
                **{key: (title, fmt) for key, title, fmt in HEADLINE}}
def _style(metric: str) -> tuple[str, str]:
    return METRIC_STYLE.get(metric, (metric, ".4g"))


BOX_METRICS = ("PSNR", "SSIM", "VIF", "MAE", "lesion_MAE")
DENSITY_METRICS = ("MSE", "PSNR", "VIF", "SSIM", "MAE")   # 001 Table 4.2's four, plus MAE
# 003's settings: (title, region prefix, which images); formats of L1, L2, PSNR, dCNR as 003 prints them.
SETTINGS = (("With mass", "breast", True), ("Without mass", "breast", False), ("Mass only", "mass", None))
SETTING_METRICS = (("L1", "L1", ".2f"), ("L2", "L2", ".1f"), ("PSNR", "PSNR", ".2f"), ("dCNR", "ΔCNR", ".3f"))
TISSUE_ROWS = (("tissue_CNR", "CNR", ".3f"), ("fibroglandular_mean", "Fibroglandular tissue (mean)", ".3f"),
               ("adipose_mean", "Adipose tissue (mean)", ".3f"))
TISSUE_IMAGE_TITLES = {"LE": "Low-energy", "DES": "Real DES", "synthetic": "Synthetic DES"}
ROI_SOURCES = {"manifest": "drawn / ground-truth regions from the manifest", "automatic": "automatic regions"}


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
    for line, raw in enumerate(_read_csv(path, REQUIRED_COLUMNS), start=2):
        if None in raw:
            raise InputError(path, f"line {line}: more cells than columns")
        row: dict[str, Any] = {k: (v or "") for k, v in raw.items()}
        for column in NUMERIC_COLUMNS:
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
    columns: dict[str, list[float]] = {}
    for line, raw in enumerate(_read_csv(path, ("bin_lo", "bin_hi", HISTOGRAM_REFERENCE)), start=2):
        for column, cell in raw.items():
            value = _number(cell or "", path, line, str(column))
            if value is None:
                raise InputError(path, f"line {line}, column {column!r}: empty cell")
            columns.setdefault(column, []).append(value)
    return columns


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


# ---------------------------------------------------------------- HTML helpers

def _e(value: Any) -> str:
    return html.escape(str(value))


def _cell(text: str) -> str:
    """An escaped cell; in "mean ± sd" the "± sd" never breaks apart, so a narrow column wraps before it."""
    mean, sep, sd = _e(text).partition(" ± ")
    return f'{mean} <span class="sd">± {sd}</span>' if sep else mean


def _row(cells: Sequence[str]) -> str:
    """Plain-text cells, escaped here; the first is the row's label."""
    return (f'<tr><th scope="row">{_e(cells[0])}</th>' + "".join(f"<td>{_cell(c)}</td>" for c in cells[1:]) + "</tr>"
            if cells else "")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], *, head_html: str | None = None,
           caption: str = "", cls: str = "") -> str:
    """A table of plain-text cells; `head_html` replaces the one-line header for grouped columns."""
    thead = head_html or "<tr>" + "".join(f'<th scope="col">{_e(h)}</th>' for h in header) + "</tr>"
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    attr = f' class="{cls}"' if cls else ""
    return (f'<div class="table-wrap"><table{attr}>{cap}<thead>{thead}</thead>'
            f'<tbody>{"".join(_row(r) for r in rows)}</tbody></table></div>')


def _p(text: str, cls: str = "") -> str:
    return f'<p class="{cls}">{_e(text)}</p>' if cls else f"<p>{_e(text)}</p>"


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _fmt(value: float | None, fmt: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:{fmt}}"


def _fmt_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


class _Figures:
    """Counts the figures as they are embedded, so the report can state how many it holds."""

    def __init__(self) -> None:
        self.count = 0

    def png(self, data: bytes, alt: str, caption: str) -> str:
        self.count += 1
        src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        return (f'<figure><img src="{src}" alt="{_e(alt)}">'
                f"<figcaption>Figure {self.count}. {_e(caption)}</figcaption></figure>")


# ---------------------------------------------------------------- the report's parts

@dataclass
class _Pooled:
    evaluations: list[Evaluation]
    rows: list[dict[str, Any]]
    source: dict[tuple[str, str], Evaluation]   # (model, case_id) -> the folder its row came from
    duplicates: int
    folds: dict[int, list[dict[str, Any]]]      # provenance.json fold -> that fold's rows (folders with a fold)
    trained: list[str]                          # models named in provenance.json, in order
    models: list[str]                           # trained, then the rest (baselines) in order of appearance


def _pool(evaluations: list[Evaluation]) -> _Pooled:
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
    return _Pooled(evaluations, rows, source, duplicates, dict(sorted(folds.items())), trained, models)


def _model_rows(rows: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["model"] == model]


def _provenance_fields(ev: Evaluation) -> list[tuple[str, str]]:
    p = ev.provenance

    def get(key: str) -> str:
        value = p.get(key)
        return "unknown" if value is None or value == "" else str(value)

    size = get("image_size")
    space = p.get("comparison_space")
    fit = p.get("linear_fit")
    versions = ", ".join(f"{k} {v}" for k, v in (p.get("versions") or {}).items()) or "unknown"
    return [
        ("Evaluation folder", str(ev.folder.resolve())),
        ("Model", get("model_name")),
        ("Preset", get("preset")),
        ("Model file", get("model_path")),
        ("Model SHA-256", get("model_sha256")),
        ("Training data fingerprint", get("data_fingerprint")),
        ("Manifest", get("manifest")),
        ("Manifest SHA-256", get("manifest_sha256")),
        ("Split", get("split") + ("" if p.get("fold") is None else f" (fold {p['fold']})")),
        ("Images", get("n_images")),
        ("Image size / comparison space", size + (f"; {space}" if space else "")),
        ("Linear baseline", f"DES = {fit[0]:.4f} × LE + {fit[1]:.4f}" if isinstance(fit, list) and len(fit) == 2
         else "not fitted"),
        ("Device", get("device")),
        ("Engine version", get("version")),
        ("Software versions", versions),
        ("Evaluated", get("created")),
    ]


def _provenance(pooled: _Pooled) -> str:
    """One key/value table of what all folders share; with several folders, a table of what differs."""
    fields = [_provenance_fields(ev) for ev in pooled.evaluations]
    names = [name for name, _ in fields[0]]
    same = [i for i, name in enumerate(names) if len({f[i][1] for f in fields}) == 1]
    varying = [i for i in range(len(names)) if i not in same]
    out = _table(("Field", "Value"), [fields[0][i] for i in same], caption="Provenance", cls="kv")
    if varying:
        out += _p(f"{len(fields)} evaluation folders; fields that differ between them:")
        out += _table([names[i] for i in varying], [[f[i][1] for i in varying] for f in fields])
    return out


def _headline(pooled: _Pooled) -> str:
    metrics = list(METRICS)
    titles = [_style(m)[0] for m in metrics]
    parts = []
    if len(pooled.folds) > 1:
        table = fold_table(pooled.folds, metrics)
        parts.append(_p(f"Cross-validation over {len(pooled.folds)} folds (folds "
                        f"{', '.join(str(f) for f in sorted(pooled.folds))}): mean ± sd across folds of each fold's "
                        "mean over its test images (001 Table 4.1)."))
        parts.append(_table(("Model", "Folds", *titles),
                            [[e["model"], str(e["n_folds"]), *(format_cell(e, m, _style(m)[1]) for m in metrics)]
                             for e in table], caption="Across folds"))
        parts.append(_p("Pooled over the test images of all folds: mean ± sd over images."))
    summary = summarize(pooled.rows)
    parts.append(_table(("Model", "Images", "Lesion masks", *titles),
                        [[e["model"], str(e["n_images"]), str(e["n_lesion_masks"]),
                          *(format_cell(e, m, _style(m)[1]) for m in metrics)] for e in summary],
                        caption="Per image"))
    infinite = [e["model"] for e in summary if e["PSNR_n"] < e["n_images"]]
    notes = ["MSE, PSNR, SSIM, VIF, MAE and the MAEs on preprocessed images in [0, 1]; L1 and L2 on the 0-255 scale "
             "(003). Lesion MAE over images with a lesion mask; bright-pixel MAE over the brightest 5 % of the real "
             "DES inside the breast."]
    if infinite:
        notes.append(f"PSNR is infinite for some images of {', '.join(infinite)} (prediction equal to the target); "
                     "they are left out of the PSNR mean.")
    if pooled.duplicates:
        notes.append(f"{pooled.duplicates} (model, case) rows found in more than one folder were counted once.")
    return "".join(parts) + "".join(_p(n, "note") for n in notes)


def _wilcoxon(pooled: _Pooled) -> str:
    metrics = list(METRICS)
    parts = [_p("Wilcoxon signed-rank test on the per-image values paired by case; p adjusted for the metrics of "
                "each comparison by Benjamini-Hochberg (000, Statistical analysis). Difference = model − other.")]
    models = pooled.models
    pairs = [(a, b) for i, a in enumerate(models) if a in pooled.trained for b in models[i + 1:]]
    if not pairs:
        return _p("There is only one model, so there is nothing to compare it with.")
    for a, b in pairs:
        results = wilcoxon_models(pooled.rows, a, b, metrics)
        rows = [[_style(r["metric"])[0], str(r["n"]),
                 *(_fmt(r[k], _style(r["metric"])[1]) for k in ("median_a", "median_b", "median_difference")),
                 _fmt(r["statistic"], ".1f"), _fmt_p(r["p"]), _fmt_p(r["p_bh"])] for r in results]
        header = ["Metric", "Pairs", f"Median {a}", f"Median {b}", "Median difference", "W", "p", "p (BH)"]
        if any(r["note"] for r in results):
            header.append("Note")
            rows = [[*cells, r["note"] or ""] for cells, r in zip(rows, results)]
        parts.append(_table(header, rows, caption=f"{a} vs {b}"))
    return "".join(parts)


def _span(numbers: set[int]) -> str:
    low, high = min(numbers), max(numbers)
    return str(low) if low == high else f"{low}–{high}"


def _settings(pooled: _Pooled) -> str:
    """003's Tables 2-4: rows = models; With mass | Without mass | Mass only x L1, L2, PSNR, dCNR."""
    if not any(r.get(c) is not None for r in pooled.rows for c in SETTING_COLUMNS):
        return _p("No values of 003's settings in per_image.csv (columns breast_* and mass_* are absent or empty).")
    rows, counts = [], [set() for _ in SETTINGS]
    for model in pooled.models:
        mine = _model_rows(pooled.rows, model)
        cells = [model]
        for seen, (_, region, with_mass) in zip(counts, SETTINGS):
            group = [r for r in mine if with_mass is None or r["has_lesion_mask"] == with_mass]
            columns = [f"{region}_{k}" for k, _, _ in SETTING_METRICS]
            entry = describe(group, columns)
            seen.add(max(entry[f"{c}_n"] for c in columns))
            cells += [format_cell(entry, c, fmt) for c, (_, _, fmt) in zip(columns, SETTING_METRICS)]
        rows.append(cells)
    # n per group in the group's header (the models share their images; a range where they do not)
    head = ('<tr><th rowspan="2" scope="col">Model</th>'
            + "".join(f'<th colspan="{len(SETTING_METRICS)}" scope="colgroup">{_e(title)} (n = {_span(n)})</th>'
                      for (title, _, _), n in zip(SETTINGS, counts))
            + "</tr><tr>" + "".join(f"<th>{_e(t)}</th>" for _, t, _ in SETTING_METRICS) * len(SETTINGS) + "</tr>")
    cnr_columns = ("breast_CNR_real", "breast_CNR_synthetic", "mass_CNR_real", "mass_CNR_synthetic")
    cnr_rows = []
    for model in pooled.models:
        entry = describe(_model_rows(pooled.rows, model), cnr_columns)
        cnr_rows.append([model, *(format_cell(entry, c, ".3f") for c in cnr_columns)])
    return (_p("003 Tables 2-4: L1 and L2 on the 0-255 scale, PSNR in dB, "
               "ΔCNR = CNR(synthetic) − CNR(real) (eq. 12). With mass: the breast of images with a lesion mask; "
               "without mass: the breast of images without; mass only: the lesion pixels. "
               "Mean ± sd over images; n = images with values in each group.")
            + _table((), rows, head_html=head, caption="Three settings")
            + _table(("Model", "Breast CNR, real", "Breast CNR, synthetic", "Mass CNR, real", "Mass CNR, synthetic"),
                     cnr_rows, caption="CNR, real vs synthetic DES (breast: 64×64 patches at 512², "
                     "scaled with the image, eqs. 10-11; mass: eq. 9)"))


def _change(pooled: _Pooled) -> str:
    """000: how much the contrast changes the image, real (LE->DES) vs synthetic (LE->synthetic), and Pearson r."""
    if not any(r.get(c) is not None for r in pooled.rows for c in CHANGE_COLUMNS):
        return _p("No LE-change values in per_image.csv (columns LE_DES_* and LE_synthetic_* are absent or empty).")
    rows = []
    for model in pooled.models:
        mine = _model_rows(pooled.rows, model)
        cells = [model]
        for metric, fmt in (("MAE", ".4f"), ("SSIM", ".3f")):
            real, synth = f"LE_DES_{metric}", f"LE_synthetic_{metric}"
            entry = describe(mine, (real, synth))
            corr = pearson([r.get(real) for r in mine], [r.get(synth) for r in mine])
            cells += [format_cell(entry, real, fmt), format_cell(entry, synth, fmt), str(corr["n"]),
                      _fmt(corr["r"], ".3f"), _fmt_p(corr["p"])]
        rows.append(cells)
    head = ('<tr><th rowspan="2" scope="col">Model</th><th colspan="5" scope="colgroup">MAE</th>'
            '<th colspan="5" scope="colgroup">SSIM</th></tr><tr>'
            + "<th>LE → real DES</th><th>LE → synthetic</th><th>n</th><th>Pearson r</th><th>p</th>" * 2 + "</tr>")
    return (_p("000: MAE and SSIM between the low-energy image and the real DES, and between the low-energy image and "
               "the synthetic DES (mean ± sd over images); Pearson r between the two per-image series tells whether "
               "the model changes each image as much as the contrast does.")
            + _table((), rows, head_html=head, caption="Change from the low-energy image"))


def _tissue(pooled: _Pooled) -> str:
    """000 Table 2 per trained model: rows CNR, fibroglandular mean, adipose mean; columns LE, real DES, synthetic."""
    parts = []
    for model in pooled.trained:
        mine = [r for r in _model_rows(pooled.rows, model) if r.get("tissue_CNR_LE") is not None]
        if not mine:
            parts.append(_p(f"{model}: no image has tissue regions (columns tissue_* are absent or empty)."))
            continue
        sources = {}
        for r in mine:
            key = r.get("tissue_rois") or "unknown"
            sources[key] = sources.get(key, 0) + 1
        source_text = "; ".join(f"{ROI_SOURCES.get(k, k)}: {n} image(s)" for k, n in sources.items())
        entry = describe(mine, TISSUE_COLUMNS)
        rows = [[title, *(format_cell(entry, f"{what}_{image}", fmt) for image in TISSUE_IMAGES)]
                for what, title, fmt in TISSUE_ROWS]
        parts.append(_table(("Metric", *(TISSUE_IMAGE_TITLES[i] for i in TISSUE_IMAGES)), rows,
                            caption=f"{model}: tissue CNR over {len(mine)} image(s)"))
        parts.append(_p(f"Regions of interest: {source_text}.", "note"))
    return (_p("000 Table 2: tissue CNR = |mean adipose − mean fibroglandular| / (sd adipose + sd fibroglandular) "
               "and the regions' mean intensities, mean ± sd over images with tissue regions.") + "".join(parts))


def _densities(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({r["density"] for r in rows if r.get("density")})


def _density(pooled: _Pooled) -> str:
    if not _densities(pooled.rows):
        return _p("No breast density is known for any image (the manifest's density column is empty), "
                  "so there is no per-density table.")
    parts = [_p("001 Table 4.2: mean ± sd over the images of each ACR density category; Kruskal-Wallis p compares "
                "the categories within the model.")]
    titles = [_style(m)[0] for m in DENSITY_METRICS]
    for model in pooled.trained:
        *groups, test = density_table(pooled.rows, model, DENSITY_METRICS)
        rows = [[f"ACR {g['density']}", str(g["n"]), *(format_cell(g, m, _style(m)[1]) for m in DENSITY_METRICS)]
                for g in groups]
        rows.append([KRUSKAL_ROW, "", *(_fmt_p(test[f"{m}_p"]) for m in DENSITY_METRICS)])
        parts.append(_table(("ACR density", "Images", *titles), rows, caption=model))
        notes = dict.fromkeys(test[f"{m}_note"] for m in DENSITY_METRICS if test[f"{m}_note"])
        parts += [_p(f"{model}: {note}.", "note") for note in notes]
    return "".join(parts)


def _values(rows: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, list[float]]:
    return {m: [r[m] for r in rows if r.get(m) is not None] for m in metrics}


def _heatmaps(pooled: _Pooled, figures: _Figures) -> str:
    """The best, median and worst case of each trained model by MAE: its existing heatmap panel, labelled."""
    parts = []
    for model in pooled.trained:
        ranked = sorted((r for r in _model_rows(pooled.rows, model) if r.get("MAE") is not None),
                        key=lambda r: (r["MAE"], r["case_id"]))
        if not ranked:
            parts.append(_p(f"{model}: no image has an MAE, so no case can be picked."))
            continue
        # the lower median of an even count: a real case, not an average of two
        picks = {"best": ranked[0], "median": ranked[(len(ranked) - 1) // 2], "worst": ranked[-1]}
        seen = set()
        for which, row in picks.items():
            if row["case_id"] in seen:
                continue
            seen.add(row["case_id"])
            path = pooled.source[(model, row["case_id"])].folder / "heatmaps" / f"{case_file_stem(row['case_id'])}.png"
            label = f"{model}, {which} case by MAE: {row['case_id']} (MAE {row['MAE']:.4f})"
            try:
                data = path.read_bytes()
            except OSError:
                parts.append(_p(f"{label}: heatmap {path} is missing."))
                continue
            if not data.startswith(b"\x89PNG\r\n\x1a\n"):
                parts.append(_p(f"{label}: heatmap {path} is not a PNG file."))
                continue
            parts.append(figures.png(data, f"heatmap of {row['case_id']}",
                                     f"{label}. LE | real DES | synthetic DES | |synthetic − DES|."))
    return "".join(parts)


def _histograms(pooled: _Pooled, figures: _Figures) -> str:
    """003 Fig. 5 from the folders' histograms.csv, counts summed over folders (bins must agree)."""
    from VirtualContrastTraining.figures import intensity_histograms

    tables = [(ev, ev.histograms) for ev in pooled.evaluations if ev.histograms is not None]
    if not tables:
        return _p("No histograms.csv in the evaluation folder(s), so there is no intensity histogram.")
    first_ev, first = tables[0]
    counts: dict[str, list[float]] = {}
    for ev, table in tables:
        if table["bin_lo"] != first["bin_lo"] or table["bin_hi"] != first["bin_hi"]:
            raise InputError(ev.folder / "histograms.csv",
                             f"bins differ from those of {first_ev.folder / 'histograms.csv'}")
        for name, series in table.items():
            if name not in ("bin_lo", "bin_hi"):
                counts[name] = [a + b for a, b in zip(counts[name], series)] if name in counts else list(series)
    png = intensity_histograms(first["bin_lo"], first["bin_hi"], counts, reference=HISTOGRAM_REFERENCE,
                               title="Breast-pixel intensities, real vs synthetic DES")
    return figures.png(png, "intensity histograms",
                       "Intensities of breast pixels of the real DES (black) and each model's DES over all evaluated "
                       "images, as fractions of each series' pixels (log scale; 003 Fig. 5).")


def _figures(pooled: _Pooled, figures: _Figures) -> str:
    from VirtualContrastTraining.figures import box_plots

    metrics = [(m, _style(m)[0]) for m in BOX_METRICS]
    parts = [figures.png(box_plots({m: _values(_model_rows(pooled.rows, m), BOX_METRICS) for m in pooled.models},
                                   metrics), "box plots per model",
                         "Per-image values of each model (box: quartiles; line: median; whiskers: 1.5 IQR).")]
    for model in pooled.trained:
        mine = _model_rows(pooled.rows, model)
        groups = _densities(mine)
        if not groups:
            parts.append(_p(f"{model}: no breast density is known, so there are no box plots per density."))
            continue
        values = {f"ACR {g}": _values([r for r in mine if r.get("density") == g], BOX_METRICS) for g in groups}
        parts.append(figures.png(box_plots(values, metrics), f"box plots per density for {model}",
                                 f"{model}: per-image values by ACR density category."))
    parts.append("<h3>Error heatmaps</h3>" + _heatmaps(pooled, figures))
    parts.append("<h3>Intensity histograms</h3>" + _histograms(pooled, figures))
    return "".join(parts)


def _reader(path: Path | None) -> str:
    if path is None:
        return _p("No reader study was given (--reader-study).")
    from VirtualContrastTraining.reader_study import format_reader_table, reader_study

    return (_p(f"Ratings: {path}. Method of 000: accuracy, sensitivity and specificity of binary findings against "
               "the truth; ordinal scores (BPE) as a-b vs c-d accuracy and quadratic-weighted Cohen's κ.")
            + _markdown(format_reader_table(reader_study(path))))


def _inline(text: str) -> str:
    """Escaped text with Markdown's **bold** and `code` (all that format_reader_table uses)."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", _e(text))
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _markdown(text: str) -> str:
    """format_reader_table's Markdown as HTML: pipe tables, "- " lists, paragraphs (the subset it writes)."""
    def kind(line: str) -> str:
        return "table" if line.startswith("|") else "item" if line.startswith("- ") else "blank" if not line else "text"

    out = []
    for what, group in itertools.groupby((line.strip() for line in text.splitlines()), key=kind):
        lines = list(group)
        if what == "table":
            rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
            rows = [r for r in rows if not all(c and set(c) <= set(":-") for c in r)]   # the |---| line
            out.append(_table(rows[0], rows[1:]))
        elif what == "item":
            out.append("<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>")
        elif what == "text":
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "".join(out)


CSS = """
:root { --ink: #1d2330; --muted: #5b6474; --line: #d8dde6; --band: #f4f6fa; --accent: #2b5d8a; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; font: 15px/1.5 -apple-system, "Segoe UI", Roboto,
       "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 6px; border-bottom: 2px solid var(--accent); }
h3 { font-size: 16px; margin: 24px 0 8px; }
.sub, .note, figcaption { color: var(--muted); font-size: 13px; }
.banner { margin: 16px 0; padding: 12px 16px; border: 1px solid #e0b64c; border-left: 6px solid #d08c00;
          background: #fff7e0; border-radius: 4px; }
nav ol { columns: 2; margin: 8px 0 0; padding-left: 20px; font-size: 14px; }
nav a, a { color: var(--accent); }
.table-wrap { overflow-x: auto; margin: 10px 0 14px; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { background: var(--band); border-bottom: 2px solid var(--line); text-align: center; }
tbody th { text-align: left; font-weight: 600; }
td { text-align: right; }
td .sd { white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfd; }
.kv td { text-align: left; white-space: normal; word-break: break-all; font-family: ui-monospace, Menlo, monospace;
         font-size: 12px; }
figure { margin: 14px 0 22px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
footer { margin-top: 40px; padding-top: 10px; border-top: 1px solid var(--line); color: var(--muted); font-size: 12px; }
@media print {
  body { font-size: 11px; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  h2 { break-after: avoid; }
  figure, table { break-inside: avoid; }
  .table-wrap { overflow: visible; }
}
"""


def build_report(evaluation_dirs: list[Path], out_path: Path, *, reader_study: Path | None = None,
                 title: str | None = None) -> Path:
    """Write the self-contained HTML report of one or more evaluation folders to `out_path`; return its path."""
    if not evaluation_dirs:
        raise InputError(None, "no evaluation folder given")
    resolved = [Path(d).resolve() for d in evaluation_dirs]
    twice = sorted({str(d) for d in resolved if resolved.count(d) > 1})
    if twice:
        raise InputError(twice[0], "evaluation folder given twice")
    if reader_study is not None and not Path(reader_study).is_file():
        raise InputError(reader_study, "reader-study file not found")
    pooled = _pool([read_evaluation(d) for d in evaluation_dirs])
    title = title or f"VirtualContrast evaluation: {', '.join(pooled.trained)}"
    figures = _Figures()
    sections = [
        ("provenance", "Provenance", _provenance(pooled)),
        ("headline", "Image similarity", _headline(pooled)),
        ("baselines", "Model vs baselines (paired tests)", _wilcoxon(pooled)),
        ("settings", "003's three settings", _settings(pooled)),
        ("change", "000: change from the low-energy image", _change(pooled)),
        ("tissue", "000: tissue CNR", _tissue(pooled)),
        ("density", "Per ACR density", _density(pooled)),
        ("figures", "Figures", _figures(pooled, figures)),
        ("reader", "Reader study", _reader(None if reader_study is None else Path(reader_study))),
    ]
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    n_images = len({r["case_id"] for r in pooled.rows})
    nav = "<nav><strong>Contents</strong><ol>" + "".join(
        f'<li><a href="#{a}">{_e(t)}</a></li>' for a, t, _ in sections) + "</ol></nav>"
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f'<body data-figures="{figures.count}"><main><header><h1>{_e(title)}</h1>'
        + _p(f"{len(pooled.models)} models, {n_images} images, {len(pooled.evaluations)} evaluation folder(s). "
             f"This report embeds {figures.count} figures.", "sub")
        + f'<div class="banner" role="note"><strong>Not for diagnosis.</strong> {_e(NOT_FOR_DIAGNOSIS)}</div>'
        + nav + "</header>"
        + "".join(_section(a, t, body) for a, t, body in sections)
        + f"<footer>{_e(NOT_FOR_DIAGNOSIS)} Written by VirtualContrast {_e(__version__)} on {_e(created)}.</footer>"
        "</main></body></html>\n")
    out_path = Path(out_path)
    write_text_atomic(out_path, page)
    return out_path
