"""The per-case gallery that comes with each report: `<report>-gallery.html` beside the report.

For every trained model of the report, every evaluated case: its heatmap
panel (heatmaps/<stem>.png, with links to the SVG and PDF of the same stem
where they exist), its case id and its per-image values in both regions, the
breast first, for the model and for each baseline on the same case. Cases are
ordered by MAE, worst first, as the report picks its best, median and worst
case; an index table links to each case, and radio buttons filter by lesion
mask and ACR density (CSS :has(), no script).

The report embeds its figures, so it can be mailed on its own. The gallery
links the panels instead, by paths relative to the gallery file: one panel
per case, at publication resolution, embedded would make the page grow by
megabytes per case, and its SVG and PDF can only be linked. It is a page to
browse beside the evaluation folder(s); moved elsewhere, its images stay
blank and their captions say which file each one is. Case ids are those of
per_image.csv, so a de-identified evaluation shows its pseudonyms only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from VirtualContrastTraining.atomic import write_text_atomic
from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.evaluation.evaluation_folder import Pooled
from VirtualContrastTraining.evaluation.html_page import CSS, escape, fmt_number, html_table, paper, para
from VirtualContrastTraining.synthesis import output_stems
from VirtualContrastTraining.synthetic_wording import NOT_FOR_DIAGNOSIS

CNR_KEYS = ("breast_CNR_real", "breast_CNR_synthetic", "mass_CNR_real", "mass_CNR_synthetic")
NEGATIVE_CNR = ("A negative CNR is a measured value, not an error: CNR is signed here, (mean of the region − mean "
                "of its background) / sd of the background (breast: each 64×64 patch against its 8 neighbours, "
                f"averaged over the breast, {paper('003')} eqs. 10-11; mass: the lesion against the ring around it, "
                "eq. 9), so below 0 the region is on average darker than its background in that image.")
VECTOR_FORMATS = ("svg", "pdf")
GALLERY_CSS = """
.filters { margin: 12px 0; font-size: 13px; }
.filters fieldset { display: inline-block; margin: 0 12px 6px 0; border: 1px solid var(--line); border-radius: 4px; }
.case { margin: 18px 0 28px; padding-top: 8px; border-top: 1px solid var(--line); }
.case-body { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 16px; align-items: start; }
.case h3 { margin: 0 0 6px; overflow-wrap: anywhere; }
@media (max-width: 900px) { .case-body { grid-template-columns: minmax(0, 1fr); } }
"""


def heatmap_stems(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Case id -> heatmap file stem for the rows of one evaluation (per_image.csv): evaluate names the
    files by it and the report finds them by it (synthesis.output_stems: "a/b" and "a_b" get one each)."""
    return output_stems(r["case_id"] for r in rows)


def gallery_path(report: Path) -> Path:
    """The gallery beside its report: report.html -> report-gallery.html (two reports in one folder keep theirs)."""
    return report.with_name(f"{report.stem}-gallery.html")


def negative_cnr(values: list[float | None]) -> bool:
    return any(v is not None and v < 0 for v in values)


def ranked_by_mae(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows by MAE, worst first (ties by case id); rows without an MAE last."""
    known = sorted((r for r in rows if r.get("MAE") is not None), key=lambda r: (-r["MAE"], r["case_id"]))
    return known + sorted((r for r in rows if r.get("MAE") is None), key=lambda r: r["case_id"])


def _href(path: Path, base: Path) -> str:
    """`path` as a link from a page in folder `base`: relative, or a file URI across drives (Windows)."""
    try:
        return quote(Path(os.path.relpath(path, base)).as_posix())
    except ValueError:
        return path.as_uri()


def _anchor(model_index: int, case_id: str) -> str:
    return f"m{model_index}-" + "".join(c if c.isalnum() or c in "-_" else f".{ord(c):x}" for c in case_id)


def _metric_keys() -> list[str]:
    return [*columns.image_keys("breast"), *columns.image_keys("square"), *CNR_KEYS]


def _case_table(case_id: str, rows: dict[str, dict[str, Any]], models: list[str]) -> str:
    """One case's values: a row per metric (breast first), a column per model that has the case."""
    shown = [m for m in models if m in rows]
    keys = [k for k in _metric_keys() if any(rows[m].get(k) is not None for m in shown)]
    table = [[columns.column(k).title, *(fmt_number(rows[m].get(k), columns.column(k).fmt) for m in shown)]
             for k in keys]
    return html_table(("Metric", *shown), table, caption=f"{case_id}: values per model")


def _panel(pooled: Pooled, model: str, row: dict[str, Any], base: Path) -> str:
    source = pooled.source[(model, row["case_id"])]
    png = source.folder / "heatmaps" / f"{heatmap_stems(source.rows)[row['case_id']]}.png"
    if not png.is_file():
        return para(f"Heatmap {png.name} is missing from {png.parent}.", "note")
    links = [f'<a href="{escape(_href(png.with_suffix("." + f), base))}">{f.upper()}</a>'
             for f in VECTOR_FORMATS if png.with_suffix("." + f).is_file()]
    return (f'<figure><img src="{escape(_href(png, base))}" loading="lazy" '
            f'alt="heatmap of {escape(row["case_id"])}"><figcaption>{escape(png.name)}: LE | real DES | synthetic '
            f"DES | |synthetic − DES|{'. Also as ' + ', '.join(links) if links else ''}.</figcaption></figure>")


def _case(pooled: Pooled, model: str, index: int, rank: int, row: dict[str, Any], base: Path) -> str:
    by_model = {r["model"]: r for r in pooled.rows if r["case_id"] == row["case_id"]}
    density = row.get("density") or ""
    lesion = "yes" if row["has_lesion_mask"] else "no"
    facts = f"MAE rank {rank} (1 = worst)" + (f", ACR {density}" if density else "") + f", lesion mask: {lesion}"
    return (f'<article class="case" id="{_anchor(index, row["case_id"])}" data-density="{escape(density)}" '
            f'data-lesion="{lesion}"><h3>{escape(row["case_id"])}</h3>{para(facts, "sub")}'
            f'<div class="case-body">{_panel(pooled, model, row, base)}'
            f"<div>{_case_table(row['case_id'], by_model, pooled.models)}</div></div></article>")


def _index(model: str, index: int, ranked: list[dict[str, Any]]) -> str:
    """The model's cases in gallery order, each id a link to its case; the rows filter like the cases."""
    keys = ("breast_MAE", "breast_PSNR", "breast_SSIM", "MAE", "PSNR", "SSIM")
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in ("Rank", "Case", *(columns.column(k).title
                                                                                 for k in keys)))
    body = "".join(
        f'<tr class="case" data-density="{escape(r.get("density") or "")}" '
        f'data-lesion="{"yes" if r["has_lesion_mask"] else "no"}"><td>{i}</td>'
        f'<th scope="row"><a href="#{_anchor(index, r["case_id"])}">{escape(r["case_id"])}</a></th>'
        + "".join(f"<td>{fmt_number(r.get(k), columns.column(k).fmt)}</td>" for k in keys) + "</tr>"
        for i, r in enumerate(ranked, 1))
    return (f'<div class="table-wrap"><table><caption>{escape(model)}: cases by MAE, worst first</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def _filters(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """Radio buttons by lesion mask and ACR density, and the CSS that hides the cases they leave out."""
    densities = sorted({r["density"] for r in rows if r.get("density")})
    facets = [("lesion", "Lesion mask", ["yes", "no"])] + ([("density", "ACR density", densities)] if densities else [])
    html, css = [], []
    for facet, legend, options in facets:
        buttons = [f'<label><input type="radio" name="{facet}" id="f-{facet}-all" checked> all</label>']
        for i, option in enumerate(options):
            buttons.append(f'<label><input type="radio" name="{facet}" id="f-{facet}-{i}"> {escape(option)}</label>')
            css.append(f'body:has(#f-{facet}-{i}:checked) .case:not([data-{facet}="{escape(option)}"]) '
                       "{ display: none; }")
        html.append(f"<fieldset><legend>{escape(legend)}</legend>{' '.join(buttons)}</fieldset>")
    return f'<form class="filters">{"".join(html)}</form>', "\n".join(css)


def write_gallery(pooled: Pooled, out_path: Path, *, title: str, report_name: str) -> Path:
    """Write the gallery of every case of every trained model to `out_path`; return its path."""
    base = out_path.parent.resolve()
    filters, filter_css = _filters(pooled.rows)
    sections, notes = [], []
    for index, model in enumerate(pooled.trained):
        ranked = ranked_by_mae([r for r in pooled.rows if r["model"] == model])
        cases = "".join(_case(pooled, model, index, rank, r, base) for rank, r in enumerate(ranked, 1))
        sections.append(f'<section id="m{index}"><h2>{escape(model)}</h2>'
                        + para(f"{len(ranked)} cases, worst MAE first.") + _index(model, index, ranked) + cases
                        + "</section>")
    if negative_cnr([r.get(k) for r in pooled.rows for k in CNR_KEYS]):
        notes.append(para(NEGATIVE_CNR, "note"))
    nav = "".join(f'<li><a href="#m{i}">{escape(m)}</a></li>' for i, m in enumerate(pooled.trained))
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}: every case</title><style>{CSS}{GALLERY_CSS}{filter_css}</style></head>"
            f"<body><main><header><h1>{escape(title)}: every case</h1>"
            + f'<p class="sub">Back to the report: <a href="{escape(quote(report_name))}">{escape(report_name)}</a>. '
              "Heatmaps are linked from the evaluation folder(s), not embedded: keep this page beside them.</p>"
            + f'<div class="banner" role="note"><strong>Not for diagnosis.</strong> {escape(NOT_FOR_DIAGNOSIS)}</div>'
            + f"<nav><strong>Models</strong><ol>{nav}</ol></nav>{filters}</header>" + "".join(notes)
            + "".join(sections) + f"<footer>{escape(NOT_FOR_DIAGNOSIS)}</footer></main></body></html>\n")
    write_text_atomic(out_path, page)
    return out_path
