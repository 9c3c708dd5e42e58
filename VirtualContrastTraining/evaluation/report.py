"""The evaluation report as one self-contained HTML file (`virtual-contrast report`).

Reads one or more evaluation folders written by `virtual-contrast evaluate`
(per_image.csv, provenance.json, optionally histograms.csv and heatmaps/) and
writes a single HTML page: inline CSS, every figure a PNG data URI, no script,
so it can be mailed, archived and printed as is; beside it, `<report>-gallery.html`
(gallery.py) shows every case. Papers are named by citation and code,
"Rofena et al. 2024 (001)" (html_page.paper). Its sections follow the
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
- box plots per model and per density (every model of the report in each),
  heatmaps of the best, median and worst case, intensity histograms of real
  vs synthetic DES (003 Fig. 5);
- the reader study (000), when given.

With several folders (compare's runs/<preset>/fold_<i>/evaluation) the
per-image sections pool all folders' rows; a (model, case) pair found in two
folders (the baselines when several presets share folds) is counted once.
A section without data says so in one sentence instead of disappearing. Tables
scroll inside their own box where they are wider than the page.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

from VirtualContrastTraining import __version__
from VirtualContrastTraining.atomic import write_text_atomic
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.evaluation.columns import TISSUE_IMAGES
from VirtualContrastTraining.evaluation.evaluate import format_cell, summarize
from VirtualContrastTraining.evaluation.evaluation_folder import (
    HISTOGRAM_REFERENCE,
    Evaluation,
    Pooled,
    mixing_problems,
    pool,
    read_evaluation,
)
from VirtualContrastTraining.evaluation.html_page import (
    CSS,
    Figures,
    escape,
    fmt_number,
    fmt_p,
    html_section,
    html_table,
    markdown_to_html,
    paper,
    para,
)
from VirtualContrastTraining.evaluation.gallery import (
    CNR_KEYS,
    NEGATIVE_CNR,
    gallery_path,
    heatmap_stems,
    negative_cnr,
    write_gallery,
)
from VirtualContrastTraining.evaluation.reader_study import format_reader_table, reader_study
from VirtualContrastTraining.evaluation.significance import (
    KRUSKAL_ROW,
    density_table,
    describe,
    fold_table,
    pearson,
    wilcoxon_models,
)
from VirtualContrastTraining.synthetic_wording import NOT_FOR_DIAGNOSIS


def _title(key: str) -> str:
    return columns.column(key).title


def _cell(entry: dict[str, Any], key: str) -> str:
    """A mean ± sd cell in the column's format (columns.py)."""
    return format_cell(entry, key, columns.column(key).fmt)


BOX_METRICS = ("breast_PSNR", "breast_SSIM", "PSNR", "SSIM", "VIF", "MAE", "lesion_MAE")
# The breast region's PSNR and SSIM, then 001 Table 4.2's four (whole square), plus MAE
DENSITY_METRICS = ("breast_PSNR", "breast_SSIM", "MSE", "PSNR", "VIF", "SSIM", "MAE")
# 003's settings: (title, region prefix, which images); the columns <region>_<key>, headed as 003 heads them.
SETTINGS = (("With mass", "breast", True), ("Without mass", "breast", False), ("Mass only", "mass", None))
SETTING_METRICS = (("L1", "L1"), ("L2", "L2"), ("PSNR", "PSNR"), ("dCNR", "ΔCNR"))
TISSUE_ROWS = (("tissue_CNR", "CNR"), ("fibroglandular_mean", "Fibroglandular tissue (mean)"),
               ("adipose_mean", "Adipose tissue (mean)"))
TISSUE_IMAGE_TITLES = {"LE": "Low-energy", "DES": "Real DES", "synthetic": "Synthetic DES"}
ROI_SOURCES = {"manifest": "drawn / ground-truth regions from the manifest", "automatic": "automatic regions"}


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
        ("Changed from the preset", ", ".join(f"{k} {v}" for k, v in (p.get("preset_changes") or {}).items())
         or ("nothing" if "preset_changes" in p else "unknown")),
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
        ("Device (evaluation)", get("device")),
        ("Device (training)", get("training_device")),
        ("Engine version", get("version")),
        ("Software versions", versions),
        ("Evaluated", get("created")),
    ]


def _provenance(pooled: Pooled) -> str:
    """One key/value table of what all folders share; with several folders, a table of what differs."""
    fields = [_provenance_fields(ev) for ev in pooled.evaluations]
    names = [name for name, _ in fields[0]]
    same = [i for i, name in enumerate(names) if len({f[i][1] for f in fields}) == 1]
    varying = [i for i in range(len(names)) if i not in same]
    out = html_table(("Field", "Value"), [fields[0][i] for i in same], caption="Provenance", cls="kv")
    if varying:
        out += para(f"{len(fields)} evaluation folders; fields that differ between them:")
        out += html_table([names[i] for i in varying], [[f[i][1] for i in varying] for f in fields], cls="wide")
    return out


def _region_tables(pooled: Pooled, summary: list[dict[str, Any]], region: str) -> list[str]:
    """The headline tables of one region of columns.REGIONS: across folds (with several) and per image."""
    metrics = list(columns.image_keys(region))
    titles = [_title(m) for m in metrics]
    where = columns.REGIONS[region]
    parts = []
    if len(pooled.folds) > 1:
        table = fold_table(pooled.folds, metrics)
        parts.append(html_table(("Model", "Folds", *titles),
                                [[e["model"], str(e["n_folds"]), *(_cell(e, m) for m in metrics)] for e in table],
                                caption=f"Across folds: {where}"))
    parts.append(html_table(("Model", "Images", "Lesion masks", *titles),
                            [[e["model"], str(e["n_images"]), str(e["n_lesion_masks"]),
                              *(_cell(e, m) for m in metrics)] for e in summary],
                            caption=f"Per image: {where}"))
    return parts


def _headline(pooled: Pooled) -> str:
    """The image similarity in both regions, the breast first (columns.REGIONS)."""
    parts = [para(f"Image-level folds ({ev.folder.name}): {ev.provenance['split_leakage']}.", "note")
             for ev in pooled.evaluations if ev.provenance.get("split_leakage")]
    square_papers = ", ".join(paper(code) for code in ("001", "002", "003", "004"))
    parts += [para("Each metric in two regions. Breast: the pixels of the breast (Otsu on the LE), padding and air "
                   "excluded: how well the tissue is synthesized. Whole padded square: every pixel of the square the "
                   f"model sees, as {square_papers} compute it: the value to compare with the papers. Padding and "
                   "air are easy to predict, so the square's values are higher (docs/evaluation.md).")]
    if len(pooled.folds) > 1:
        parts.append(para(f"Cross-validation over {len(pooled.folds)} folds (folds "
                          f"{', '.join(str(f) for f in sorted(pooled.folds))}): mean ± sd across folds of each fold's "
                          f"mean over its test images ({paper('001')} Table 4.1); then pooled over the test images "
                          "of all folds: mean ± sd over images."))
    summary = summarize(pooled.rows)
    for region in columns.REGIONS:
        parts += _region_tables(pooled, summary, region)
    infinite = [e["model"] for e in summary if e["PSNR_n"] < e["n_images"] or e["breast_PSNR_n"] < e["n_images"]]
    notes = ["MSE, PSNR, SSIM, VIF, MAE and the MAEs on preprocessed images in [0, 1]; L1 and L2 on the 0-255 scale "
             f"({paper('003')}). Lesion MAE over images with a lesion mask; bright-pixel MAE over the brightest 5 % "
             "of the real DES inside the breast. In the breast, PSNR takes the real DES's maximum in the breast, "
             "SSIM is the mean of its map over breast pixels, VIF sums over the windows centred in the breast."]
    if infinite:
        notes.append(f"PSNR is infinite for some images of {', '.join(infinite)} (prediction equal to the target); "
                     "they are left out of the PSNR mean.")
    if pooled.duplicates:
        notes.append(f"{pooled.duplicates} (model, case) rows found in more than one folder were counted once.")
    return "".join(parts) + "".join(para(n, "note") for n in notes)


def _wilcoxon(pooled: Pooled) -> str:
    metrics = list(columns.keys("image"))
    parts = [para("Wilcoxon signed-rank test on the per-image values paired by case; p adjusted for the metrics of "
                  f"each comparison by Benjamini-Hochberg ({paper('000')}, Statistical analysis). "
                  "Difference = model − other.")]
    models = pooled.models
    pairs = [(a, b) for i, a in enumerate(models) if a in pooled.trained for b in models[i + 1:]]
    if not pairs:
        return para("There is only one model, so there is nothing to compare it with.")
    for a, b in pairs:
        results = wilcoxon_models(pooled.rows, a, b, metrics)
        rows = [[_title(r["metric"]), str(r["n"]),
                 *(fmt_number(r[k], columns.column(r["metric"]).fmt)
                   for k in ("median_a", "median_b", "median_difference")),
                 fmt_number(r["statistic"], ".1f"), fmt_p(r["p"]), fmt_p(r["p_bh"])] for r in results]
        header = ["Metric", "Pairs", f"Median {a}", f"Median {b}", "Median difference", "W", "p", "p (BH)"]
        if any(r["note"] for r in results):
            header.append("Note")
            rows = [[*cells, r["note"] or ""] for cells, r in zip(rows, results)]
        parts.append(html_table(header, rows, caption=f"{a} vs {b}"))
    return "".join(parts)


def _span(numbers: set[int]) -> str:
    low, high = min(numbers), max(numbers)
    return str(low) if low == high else f"{low}–{high}"


def _settings(pooled: Pooled) -> str:
    """003's Tables 2-4: rows = models; With mass | Without mass | Mass only x L1, L2, PSNR, dCNR."""
    if not any(r.get(c) is not None for r in pooled.rows for c in columns.keys("setting")):
        return para(f"No values of {paper('003')}'s settings in per_image.csv (columns breast_* and mass_* are "
                    "absent or empty).")
    rows, counts = [], [set() for _ in SETTINGS]
    for model in pooled.models:
        mine = _model_rows(pooled.rows, model)
        cells = [model]
        for seen, (_, region, with_mass) in zip(counts, SETTINGS):
            group = [r for r in mine if with_mass is None or r["has_lesion_mask"] == with_mass]
            keys = [f"{region}_{k}" for k, _ in SETTING_METRICS]
            entry = describe(group, keys)
            seen.add(max(entry[f"{c}_n"] for c in keys))
            cells += [_cell(entry, c) for c in keys]
        rows.append(cells)
    # n per group in the group's header (the models share their images; a range where they do not)
    head = ('<tr><th rowspan="2" scope="col">Model</th>'
            + "".join(f'<th colspan="{len(SETTING_METRICS)}" scope="colgroup">{escape(title)} (n = {_span(n)})</th>'
                      for (title, _, _), n in zip(SETTINGS, counts))
            + "</tr><tr>" + "".join(f"<th>{escape(t)}</th>" for _, t in SETTING_METRICS) * len(SETTINGS) + "</tr>")
    cnr_rows, means = [], []
    for model in pooled.models:
        entry = describe(_model_rows(pooled.rows, model), CNR_KEYS)
        cnr_rows.append([model, *(_cell(entry, c) for c in CNR_KEYS)])
        means += [entry[f"{c}_mean"] for c in CNR_KEYS]
    return (para(f"{paper('003')} Tables 2-4: L1 and L2 on the 0-255 scale, PSNR in dB, "
                 "ΔCNR = CNR(synthetic) − CNR(real) (eq. 12). With mass: the breast of images with a lesion mask; "
                 "without mass: the breast of images without; mass only: the lesion pixels. "
                 "Mean ± sd over images; n = images with values in each group.")
            + html_table((), rows, head_html=head, caption="Three settings")
            + html_table(("Model", "Breast CNR, real", "Breast CNR, synthetic", "Mass CNR, real",
                          "Mass CNR, synthetic"),
                         cnr_rows, caption="CNR, real vs synthetic DES (breast: 64×64 patches at 512², "
                         "scaled with the image, eqs. 10-11; mass: eq. 9)")
            + (para(NEGATIVE_CNR, "note") if negative_cnr(means) else ""))


def _change(pooled: Pooled) -> str:
    """000: how much the contrast changes the image, real (LE->DES) vs synthetic (LE->synthetic), and Pearson r."""
    if not any(r.get(c) is not None for r in pooled.rows for c in columns.keys("change")):
        return para("No LE-change values in per_image.csv (columns LE_DES_* and LE_synthetic_* are absent or empty).")
    rows = []
    for model in pooled.models:
        mine = _model_rows(pooled.rows, model)
        cells = [model]
        for metric in ("MAE", "SSIM"):
            real, synth = f"LE_DES_{metric}", f"LE_synthetic_{metric}"
            entry = describe(mine, (real, synth))
            corr = pearson([r.get(real) for r in mine], [r.get(synth) for r in mine])
            cells += [_cell(entry, real), _cell(entry, synth), str(corr["n"]),
                      fmt_number(corr["r"], ".3f"), fmt_p(corr["p"])]
        rows.append(cells)
    head = ('<tr><th rowspan="2" scope="col">Model</th><th colspan="5" scope="colgroup">MAE</th>'
            '<th colspan="5" scope="colgroup">SSIM</th></tr><tr>'
            + "<th>LE → real DES</th><th>LE → synthetic</th><th>n</th><th>Pearson r</th><th>p</th>" * 2 + "</tr>")
    return (para(f"{paper('000')}: MAE and SSIM between the low-energy image and the real DES, and between the "
                 "low-energy image and the synthetic DES (mean ± sd over images); Pearson r between the two "
                 "per-image series "
                 "tells whether the model changes each image as much as the contrast does.")
            + html_table((), rows, head_html=head, caption="Change from the low-energy image"))


def _tissue(pooled: Pooled) -> str:
    """000 Table 2 per trained model: rows CNR, fibroglandular mean, adipose mean; columns LE, real DES, synthetic."""
    parts = []
    for model in pooled.trained:
        mine = [r for r in _model_rows(pooled.rows, model) if r.get("tissue_CNR_LE") is not None]
        if not mine:
            parts.append(para(f"{model}: no image has tissue regions (columns tissue_* are absent or empty)."))
            continue
        sources = {}
        for r in mine:
            key = r.get("tissue_rois") or "unknown"
            sources[key] = sources.get(key, 0) + 1
        source_text = "; ".join(f"{ROI_SOURCES.get(k, k)}: {n} image(s)" for k, n in sources.items())
        entry = describe(mine, columns.keys("tissue"))
        rows = [[title, *(_cell(entry, f"{what}_{image}") for image in TISSUE_IMAGES)] for what, title in TISSUE_ROWS]
        parts.append(html_table(("Metric", *(TISSUE_IMAGE_TITLES[i] for i in TISSUE_IMAGES)), rows,
                            caption=f"{model}: tissue CNR ({columns.TISSUE_UNITS}) over {len(mine)} image(s)"))
        parts.append(para(f"Regions of interest: {source_text}.", "note"))
    return (para(f"{paper('000')} Table 2: tissue CNR = |mean adipose − mean fibroglandular| / "
                 "(sd adipose + sd fibroglandular) and the regions' mean intensities, mean ± sd over images with "
                 "tissue regions. Measured on the "
                 f"evaluated images ({columns.TISSUE_UNITS}): not the Slicer CNR table's raw, full-resolution "
                 "values.") + "".join(parts))


def _densities(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({r["density"] for r in rows if r.get("density")})


def _density(pooled: Pooled) -> str:
    if not _densities(pooled.rows):
        return para("No breast density is known for any image (the manifest's density column is empty), "
                    "so there is no per-density table.")
    parts = [para(f"{paper('001')} Table 4.2: mean ± sd over the images of each ACR density category; "
                  "Kruskal-Wallis p compares the categories within the model.")]
    titles = [_title(m) for m in DENSITY_METRICS]
    for model in pooled.trained:
        *groups, test = density_table(pooled.rows, model, DENSITY_METRICS)
        rows = [[f"ACR {g['density']}", str(g["n"]), *(_cell(g, m) for m in DENSITY_METRICS)]
                for g in groups]
        rows.append([KRUSKAL_ROW, "", *(fmt_p(test[f"{m}_p"]) for m in DENSITY_METRICS)])
        parts.append(html_table(("ACR density", "Images", *titles), rows, caption=model))
        notes = dict.fromkeys(test[f"{m}_note"] for m in DENSITY_METRICS if test[f"{m}_note"])
        parts += [para(f"{model}: {note}.", "note") for note in notes]
    return "".join(parts)


def _values(rows: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, list[float]]:
    return {m: [r[m] for r in rows if r.get(m) is not None] for m in metrics}


def _heatmaps(pooled: Pooled, figures: Figures) -> str:
    """The best, median and worst case of each trained model by MAE: its existing heatmap panel, labelled."""
    parts = []
    for model in pooled.trained:
        ranked = sorted((r for r in _model_rows(pooled.rows, model) if r.get("MAE") is not None),
                        key=lambda r: (r["MAE"], r["case_id"]))
        if not ranked:
            parts.append(para(f"{model}: no image has an MAE, so no case can be picked."))
            continue
        # the lower median of an even count: a real case, not an average of two
        picks = {"best": ranked[0], "median": ranked[(len(ranked) - 1) // 2], "worst": ranked[-1]}
        seen = set()
        for which, row in picks.items():
            if row["case_id"] in seen:
                continue
            seen.add(row["case_id"])
            source = pooled.source[(model, row["case_id"])]
            path = source.folder / "heatmaps" / f"{heatmap_stems(source.rows)[row['case_id']]}.png"
            label = f"{model}, {which} case by MAE: {row['case_id']} (MAE {row['MAE']:.4f})"
            try:
                data = path.read_bytes()
            except OSError:
                parts.append(para(f"{label}: heatmap {path} is missing."))
                continue
            if not data.startswith(b"\x89PNG\r\n\x1a\n"):
                parts.append(para(f"{label}: heatmap {path} is not a PNG file."))
                continue
            parts.append(figures.png(data, f"heatmap of {row['case_id']}",
                                     f"{label}. LE | real DES | synthetic DES | |synthetic − DES|."))
    return "".join(parts)


def _histograms(pooled: Pooled, figures: Figures) -> str:
    """003 Fig. 5 from the folders' histograms.csv, counts summed over folders (bins must agree)."""
    from VirtualContrastTraining.evaluation.figures import histogram_figure, to_png  # lazy: matplotlib

    tables = [(ev, ev.histograms) for ev in pooled.evaluations if ev.histograms is not None]
    if not tables:
        return para("No histograms.csv in the evaluation folder(s), so there is no intensity histogram.")
    first_ev, first = tables[0]
    counts: dict[str, list[float]] = {}
    for ev, table in tables:
        if table["bin_lo"] != first["bin_lo"] or table["bin_hi"] != first["bin_hi"]:
            raise InputError(ev.folder / "histograms.csv",
                             f"bins differ from those of {first_ev.folder / 'histograms.csv'}")
        for name, series in table.items():
            if name not in ("bin_lo", "bin_hi"):
                counts[name] = [a + b for a, b in zip(counts[name], series)] if name in counts else list(series)
    png = to_png(histogram_figure(first["bin_lo"], first["bin_hi"], counts, reference=HISTOGRAM_REFERENCE,
                                  title="Breast-pixel intensities, real vs synthetic DES"))
    return figures.png(png, "intensity histograms",
                       "Intensities of breast pixels of the real DES (black) and each model's DES over all evaluated "
                       f"images, as fractions of each series' pixels (log scale; {paper('003')} Fig. 5).")


def _figures(pooled: Pooled, figures: Figures, gallery: str) -> str:
    """Box plots of every model (per model, and per density with a box per model), heatmaps, histograms."""
    from VirtualContrastTraining.evaluation.figures import box_plots, grouped_box_plots, to_png  # lazy: matplotlib

    metrics = [(m, _title(m)) for m in BOX_METRICS]
    models = ", ".join(pooled.models)
    parts = [figures.png(to_png(box_plots({m: _values(_model_rows(pooled.rows, m), BOX_METRICS)
                                           for m in pooled.models}, metrics)),
                         f"box plots per model: {models}",
                         "Per-image values of each model (box: quartiles; line: median; whiskers: 1.5 IQR).")]
    groups = _densities(pooled.rows)
    if groups:
        values = {f"ACR {g}": {m: _values([r for r in _model_rows(pooled.rows, m) if r.get("density") == g],
                                          BOX_METRICS) for m in pooled.models} for g in groups}
        parts.append(figures.png(to_png(grouped_box_plots(values, metrics)), f"box plots per density: {models}",
                                 "Per-image values by ACR density category, one colour per model (legend below)."))
    else:
        parts.append(para("No breast density is known, so there are no box plots per density."))
    link = f'<a href="{escape(quote(gallery))}">{escape(gallery)}</a>'
    parts.append("<h3>Error heatmaps</h3>"
                 f"<p>Every case of every model, with its values, worst MAE first: {link} (beside this report).</p>"
                 + _heatmaps(pooled, figures))
    parts.append("<h3>Intensity histograms</h3>" + _histograms(pooled, figures))
    return "".join(parts)


def _reader(path: Path | None) -> str:
    if path is None:
        return para("No reader study was given (--reader-study).")

    return (para(f"Ratings: {path}. Method of {paper('000')} (accuracy, sensitivity and specificity of binary "
                 "findings against the truth; ordinal scores (BPE) as a-b vs c-d accuracy and quadratic-weighted "
                 f"Cohen's κ) or {paper('001')}'s visual Turing test (each image against its own truth, positive = "
                 "synthetic); McNemar's test of "
                 "paired clinical/synthetic reads and Cohen's/Fleiss' κ between readers; 95 % CIs resample cases "
                 "(docs/reader-study.md).")
            + markdown_to_html(format_reader_table(reader_study(path))))


def build_report(evaluation_dirs: list[Path], out_path: Path, *, reader_study: Path | None = None,
                 title: str | None = None, deidentify: bool = False, allow_mixed: bool = False) -> Path:
    """Write the self-contained HTML report of one or more evaluation folders to `out_path`; return its path.

    `deidentify` refuses a folder that `evaluate --deidentify` did not write: the report only shows the ids
    the folders hold, so pseudonyms in, pseudonyms out. Folders that differ in image size, region or case set
    (evaluation_folder.mixing_problems) are refused unless `allow_mixed`; then the report says what differs."""
    if not evaluation_dirs:
        raise InputError(None, "no evaluation folder given")
    resolved = [Path(d).resolve() for d in evaluation_dirs]
    twice = sorted({str(d) for d in resolved if resolved.count(d) > 1})
    if twice:
        raise InputError(twice[0], "evaluation folder given twice")
    if reader_study is not None and not Path(reader_study).is_file():
        raise InputError(reader_study, "reader-study file not found")
    evaluations = [read_evaluation(d) for d in evaluation_dirs]
    plain = [ev.folder for ev in evaluations if not ev.provenance.get("deidentified")]
    if deidentify and plain:
        raise InputError(plain[0], "not de-identified: evaluate with --deidentify first, then report --deidentify")
    mixed = mixing_problems(evaluations) if len(evaluations) > 1 else []
    if mixed and not allow_mixed:
        raise InputError(None, f"the {len(evaluations)} evaluation folders differ, so one table would mix them: "
                               f"{' | '.join(mixed)}. Give --allow-mixed to pool them anyway")
    pooled = pool(evaluations)
    out_path = Path(out_path)
    title = title or f"VirtualContrast evaluation: {', '.join(pooled.trained)}"
    figures = Figures()
    sections = [
        ("provenance", "Provenance", "".join(para(f"Pooled although they differ (--allow-mixed): {m}.", "note")
                                             for m in mixed) + _provenance(pooled)),
        ("headline", "Image similarity", _headline(pooled)),
        ("baselines", "Model vs baselines (paired tests)", _wilcoxon(pooled)),
        ("settings", f"{paper('003')}: three settings", _settings(pooled)),
        ("change", f"{paper('000')}: change from the low-energy image", _change(pooled)),
        ("tissue", f"{paper('000')}: tissue CNR", _tissue(pooled)),
        ("density", "Per ACR density", _density(pooled)),
        ("figures", "Figures", _figures(pooled, figures, gallery_path(out_path).name)),
        ("reader", "Reader study", _reader(None if reader_study is None else Path(reader_study))),
    ]
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    n_images = len({r["case_id"] for r in pooled.rows})
    nav = "<nav><strong>Contents</strong><ol>" + "".join(
        f'<li><a href="#{a}">{escape(t)}</a></li>' for a, t, _ in sections) + "</ol></nav>"
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f'<body data-figures="{figures.count}"><main><header><h1>{escape(title)}</h1>'
        + para(f"{len(pooled.models)} models, {n_images} images, {len(pooled.evaluations)} evaluation folder(s). "
               f"This report embeds {figures.count} figures.", "sub")
        + f'<div class="banner" role="note"><strong>Not for diagnosis.</strong> {escape(NOT_FOR_DIAGNOSIS)}</div>'
        + nav + "</header>"
        + "".join(html_section(a, t, body) for a, t, body in sections)
        + f"<footer>{escape(NOT_FOR_DIAGNOSIS)} Written by VirtualContrast {escape(__version__)} "
          f"on {escape(created)}.</footer>"
        "</main></body></html>\n")
    write_gallery(pooled, gallery_path(out_path), title=title, report_name=out_path.name)
    write_text_atomic(out_path, page)
    return out_path
