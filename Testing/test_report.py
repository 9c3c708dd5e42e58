"""The HTML report (report.py, figures.py, `virtual-contrast report`) on evaluation folders built here.

The folders have the shape of the evaluation contract (per_image.csv,
provenance.json, histograms.csv, heatmaps/*.png from heatmap_panels.py) with
made-up but plausible values. Numbers in the report are checked against scipy
and numpy computed here from the CSV, and against small hand-computed cases.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.cli import main
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation.evaluate import IDENTITY_NAME, LINEAR_NAME
from VirtualContrastTraining.synthetic_wording import NOT_FOR_DIAGNOSIS
from VirtualContrastTraining.evaluation.report import build_report

METRICS, SETTING_COLUMNS, CHANGE_COLUMNS, TISSUE_COLUMNS = (columns.keys(g) for g in ("image", "setting", "change",
                                                                                     "tissue"))

MODEL = "demo-segcyclegan"
# The headline tables' captions: whole padded square (001-004's values) and breast region
SQUARE, BREAST = (f"Per image: {columns.REGIONS[r]}" for r in ("square", "breast"))
IDENTIFIERS = ("model", "case_id", "split", "density", "laterality", "view", "label", "has_lesion_mask", "tissue_rois")


# ---------------------------------------------------------------- an evaluation folder, as evaluate writes it

def _model_values(rng: np.random.Generator, quality: float, lesion: bool, tissue: bool) -> dict:
    """Plausible per-image values; `quality` 1 = a trained model, lower = a baseline (larger errors)."""
    mse = float(rng.uniform(0.002, 0.006) / quality)
    mae = float(rng.uniform(0.03, 0.05) / quality)
    values = {"MSE": mse, "PSNR": float(10 * np.log10(1 / mse)), "SSIM": float(rng.uniform(0.75, 0.9) * quality),
              "VIF": float(rng.uniform(0.12, 0.2) * quality), "MAE": mae, "L1": 255 * mae, "L2": 255**2 * mse,
              "lesion_MAE": float(rng.uniform(0.08, 0.15) / quality) if lesion else None,
              "bright_MAE": float(rng.uniform(0.1, 0.2) / quality)}
    values.update({"breast_MSE": mse * 2, "breast_SSIM": values["SSIM"] - 0.3, "breast_VIF": values["VIF"] - 0.05,
                   "breast_MAE": mae * 2, "breast_L1": float(rng.uniform(7, 10) / quality),
                   "breast_L2": float(rng.uniform(120, 300) / quality),
                   "breast_PSNR": float(rng.uniform(25, 29) * quality), "breast_CNR_real": float(rng.uniform(0.5, 1)),
                   "breast_CNR_synthetic": float(rng.uniform(0.5, 1))})
    values["breast_dCNR"] = values["breast_CNR_synthetic"] - values["breast_CNR_real"]
    for c in ("mass_L1", "mass_L2", "mass_PSNR", "mass_CNR_real", "mass_CNR_synthetic", "mass_dCNR"):
        values[c] = None
    if lesion:
        values.update({"mass_L1": float(rng.uniform(30, 36)), "mass_L2": float(rng.uniform(2400, 3000)),
                       "mass_PSNR": float(rng.uniform(35, 37)), "mass_CNR_real": float(rng.uniform(2, 4)),
                       "mass_CNR_synthetic": float(rng.uniform(0, 1))})
        values["mass_dCNR"] = values["mass_CNR_synthetic"] - values["mass_CNR_real"]
    values.update({"LE_DES_MAE": float(rng.uniform(0.2, 0.4)), "LE_DES_SSIM": float(rng.uniform(0.3, 0.5)),
                   "LE_synthetic_MAE": float(rng.uniform(0.2, 0.4)), "LE_synthetic_SSIM": float(rng.uniform(0.3, 0.6))})
    for c in TISSUE_COLUMNS:
        values[c] = float(rng.uniform(-0.2, 0.7)) if tissue else None
    return values


def make_evaluation(folder: Path, *, model: str = MODEL, n_cases: int = 8, seed: int = 0, fold: int | None = None,
                    case_prefix: str = "P", densities: bool = True, linear: bool = True,
                    heatmaps: bool = True, histograms: bool = True) -> Path:
    """An evaluation folder of the contract's shape with made-up values; returns the folder."""
    from VirtualContrastTraining.data.manifest import case_file_stem
    from VirtualContrastTraining.evaluation.heatmap_panels import write_heatmap_panel

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cases = [f"{case_prefix}{i:03d}_L_CC" for i in range(n_cases)]
    models = [(model, 1.0), (IDENTITY_NAME, 0.5)] + ([(LINEAR_NAME, 0.7)] if linear else [])
    rows = []
    for name, quality in models:
        for i, case in enumerate(cases):
            lesion, tissue = i % 2 == 0, i % 4 != 3
            rows.append({"model": name, "case_id": case, "split": "test",
                         "density": "abcd"[i % 4] if densities else "", "laterality": "L", "view": "CC",
                         "label": "malignant" if lesion else "normal", "has_lesion_mask": str(lesion),
                         "tissue_rois": ("manifest" if i % 2 else "automatic") if tissue else "",
                         **_model_values(rng, quality, lesion, tissue)})
    columns = [*IDENTIFIERS, *METRICS, *SETTING_COLUMNS, *CHANGE_COLUMNS, *TISSUE_COLUMNS]
    with open(folder / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in columns} for r in rows)
    (folder / "provenance.json").write_text(json.dumps({
        "version": "0.1.0", "created": "2026-01-02T03:04:05+00:00", "model_name": model, "preset": "demo",
        "model_path": f"/runs/{model}/model.safetensors", "model_sha256": "ab" * 32, "data_fingerprint": "f1ngerprint",
        "manifest": "/data/manifest.csv", "manifest_sha256": "cd" * 32, "split": "test", "n_images": n_cases,
        "image_size": 32, "comparison_space": "the model's input", "linear_fit": [0.8, 0.05] if linear else None,
        "device": "cpu", "fold": fold, "versions": {"python": "3.11", "numpy": np.__version__}}))
    if histograms:
        edges = np.linspace(0, 1, 65)
        hist = {"bin_lo": edges[:-1], "bin_hi": edges[1:], "real DES": rng.integers(1, 1000, 64)}
        hist.update({name: rng.integers(0, 1000, 64) for name, _ in models})
        with open(folder / "histograms.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(hist)
            writer.writerows(zip(*hist.values()))
    if heatmaps:
        for case in cases:
            le, des = rng.random((32, 32)), rng.random((32, 32))
            write_heatmap_panel(folder / "heatmaps" / f"{case_file_stem(case)}.png", le, des, des * 0.9,
                                title=f"{case} - {model}")
    return folder


def read_rows(folder: Path) -> list[dict]:
    with open(folder / "per_image.csv", newline="") as f:
        return list(csv.DictReader(f))


def values(rows: list[dict], model: str, column: str, **where) -> np.ndarray:
    keep = [r for r in rows if r["model"] == model and all(r[k] == v for k, v in where.items())]
    return np.array([float(r[column]) for r in keep if r[column] not in ("", "inf")])


def mean_sd(x: np.ndarray, fmt: str) -> str:
    return f"{x.mean():{fmt}} ± {x.std(ddof=1):{fmt}}"


# ---------------------------------------------------------------- reading the report back

class ReportParser(HTMLParser):
    """Tables by caption (cells as text, header rows included), images, scripts and external links."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[dict] = []
        self.external: list[str] = []
        self.scripts = 0
        self.body: dict = {}
        self._table: list[list[str]] | None = None
        self._caption: list[str] | None = None
        self._cell: list[str] | None = None
        self._n = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "script":
            self.scripts += 1
        if tag in ("link", "iframe", "object", "embed") or (a.get("src") or "").startswith(("http", "//", "file")):
            self.external.append(tag)
        if tag == "img":
            self.images.append(a)
        if tag == "table":
            self._table, self._caption = [], []
        elif tag == "caption":
            self._cell = []
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "caption" and self._cell is not None:
            self._caption, self._cell = ["".join(self._cell).strip()], None
        elif tag in ("td", "th") and self._cell is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table" and self._table is not None:
            self._n += 1
            self.tables[self._caption[0] if self._caption else f"table {self._n}"] = self._table
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> tuple[str, ReportParser]:
    text = path.read_text(encoding="utf-8")
    parser = ReportParser()
    parser.feed(text)
    return text, parser


def row(table: list[list[str]], label: str) -> list[str]:
    matches = [r for r in table if r and r[0] == label]
    assert len(matches) == 1, f"{label!r} not found once in {[r[0] for r in table if r]}"
    return matches[0]


def column(table: list[list[str]], header_row: int, title: str) -> int:
    return table[header_row].index(title)


@pytest.fixture(scope="module")
def one_report(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("report")
    folder = make_evaluation(base / "evaluation")
    return folder, build_report([folder], base / "report.html")


# ---------------------------------------------------------------- the report's content

def test_report_is_self_contained_with_banner_provenance_and_every_figure_embedded(one_report):
    folder, out = one_report
    text, page = parse(out)
    assert NOT_FOR_DIAGNOSIS in text
    assert page.scripts == 0 and page.external == []
    # 1 box-plot figure per model set, 1 per density of the model, best/median/worst heatmaps, 1 histogram.
    assert len(page.images) == int(page.body["data-figures"]) == 6
    assert "This report embeds 6 figures." in text
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    provenance = dict((r[0], r[1]) for r in page.tables["Provenance"][1:])
    assert provenance["Model SHA-256"] == "ab" * 32
    assert provenance["Manifest"] == "/data/manifest.csv"
    assert provenance["Linear baseline"] == "DES = 0.8000 × LE + 0.0500"
    assert provenance["Evaluation folder"] == str(folder.resolve())
    assert "numpy" in provenance["Software versions"]


def test_headline_table_is_mean_and_sample_sd_per_model(one_report):
    folder, out = one_report
    rows = read_rows(folder)
    tables = parse(out)[1].tables
    table, breast = tables[SQUARE], tables[BREAST]
    assert list(tables).index(BREAST) < list(tables).index(SQUARE)      # the breast first
    for model in (MODEL, IDENTITY_NAME, LINEAR_NAME):
        cells = row(table, model)
        assert cells[column(table, 0, "MSE, whole square")] == mean_sd(values(rows, model, "MSE"), ".5f")
        assert cells[column(table, 0, "PSNR (dB), whole square")] == mean_sd(values(rows, model, "PSNR"), ".2f")
        assert cells[column(table, 0, "L2 (0-255), whole square")] == mean_sd(values(rows, model, "L2"), ".1f")
        assert row(breast, model)[column(breast, 0, "PSNR (dB), breast")] == mean_sd(
            values(rows, model, "breast_PSNR"), ".2f")
        assert row(breast, model)[column(breast, 0, "lesion MAE")] == mean_sd(values(rows, model, "lesion_MAE"),
                                                                              ".4f")
        assert cells[1:3] == ["8", "4"]
    assert not any(t.startswith("Across folds") for t in tables)   # one folder: no cross-validation table


def test_model_vs_baselines_match_scipy_wilcoxon_and_bh(one_report):
    folder, out = one_report
    rows = read_rows(folder)
    tables = parse(out)[1].tables
    assert set(tables) >= {f"{MODEL} vs {IDENTITY_NAME}", f"{MODEL} vs {LINEAR_NAME}"}
    table = tables[f"{MODEL} vs {IDENTITY_NAME}"]
    ps = []
    for metric in METRICS:
        a, b = values(rows, MODEL, metric), values(rows, IDENTITY_NAME, metric)
        ps.append(stats.wilcoxon(a, b).pvalue)
    adjusted = stats.false_discovery_control(ps, method="bh")
    mse = row(table, "MSE, whole square")
    a, b = values(rows, MODEL, "MSE"), values(rows, IDENTITY_NAME, "MSE")
    assert mse[1] == "8"
    assert mse[4] == f"{np.median(a - b):.5f}"
    i = METRICS.index("MSE")
    assert mse[6] == f"{ps[i]:.4f}" and mse[7] == f"{adjusted[i]:.4f}"
    lesion = row(table, "lesion MAE")
    assert lesion[1] == "4"


def test_three_settings_table_groups_images_by_lesion_mask(one_report):
    folder, out = one_report
    rows = read_rows(folder)
    table = parse(out)[1].tables["Three settings"]
    assert table[0] == ["Model", "With mass (n = 4)", "Without mass (n = 4)", "Mass only (n = 4)"]
    assert table[1] == ["L1", "L2", "PSNR", "ΔCNR"] * 3
    cells = row(table, MODEL)
    assert cells[1] == mean_sd(values(rows, MODEL, "breast_L1", has_lesion_mask="True"), ".2f")
    assert cells[5] == mean_sd(values(rows, MODEL, "breast_L1", has_lesion_mask="False"), ".2f")
    assert cells[8] == mean_sd(values(rows, MODEL, "breast_dCNR", has_lesion_mask="False"), ".3f")
    assert cells[10] == mean_sd(values(rows, MODEL, "mass_L2"), ".1f")
    cnr = parse(out)[1].tables["CNR, real vs synthetic DES (breast: 64×64 patches at 512², scaled with the image, "
                               "eqs. 10-11; mass: eq. 9)"]
    assert row(cnr, MODEL)[4] == mean_sd(values(rows, MODEL, "mass_CNR_synthetic"), ".3f")


def test_change_analysis_pearson_matches_scipy(one_report):
    folder, out = one_report
    rows = read_rows(folder)
    table = parse(out)[1].tables["Change from the low-energy image"]
    cells = row(table, MODEL)
    x, y = values(rows, MODEL, "LE_DES_SSIM"), values(rows, MODEL, "LE_synthetic_SSIM")
    result = stats.pearsonr(x, y)
    assert cells[6:11] == [mean_sd(x, ".3f"), mean_sd(y, ".3f"), "8", f"{result.statistic:.3f}", f"{result.pvalue:.4f}"]


def test_tissue_table_in_000_layout_states_roi_sources(one_report):
    folder, out = one_report
    rows = read_rows(folder)
    text, page = parse(out)
    table = page.tables[f"{MODEL}: tissue CNR ({columns.TISSUE_UNITS}) over 6 image(s)"]
    assert table[0] == ["Metric", "Low-energy", "Real DES", "Synthetic DES"]
    assert row(table, "CNR")[3] == mean_sd(values(rows, MODEL, "tissue_CNR_synthetic"), ".3f")
    assert row(table, "Adipose tissue (mean)")[1] == mean_sd(values(rows, MODEL, "adipose_mean_LE"), ".3f")
    assert ("Regions of interest: automatic regions: 4 image(s); "
            "drawn / ground-truth regions from the manifest: 2 image(s).") in text


def test_density_table_kruskal_wallis_matches_scipy(one_report):
    folder, out = one_report
    rows = read_rows(folder)
    table = parse(out)[1].tables[MODEL]
    assert [r[0] for r in table[1:]] == ["ACR a", "ACR b", "ACR c", "ACR d", "Kruskal-Wallis p"]
    groups = [values(rows, MODEL, "PSNR", density=g) for g in "abcd"]
    psnr, mse = column(table, 0, "PSNR (dB), whole square"), column(table, 0, "MSE, whole square")
    assert row(table, "Kruskal-Wallis p")[psnr] == f"{stats.kruskal(*groups).pvalue:.4f}"
    assert row(table, "ACR c")[1] == "2"
    assert row(table, "ACR c")[mse] == mean_sd(values(rows, MODEL, "MSE", density="c"), ".5f")
    assert table[0][2] == "PSNR (dB), breast"                         # the breast first


def test_heatmaps_are_the_best_median_and_worst_case_by_mae(one_report):
    folder, out = one_report
    rows = [r for r in read_rows(folder) if r["model"] == MODEL]
    ranked = sorted(rows, key=lambda r: float(r["MAE"]))
    text = out.read_text()
    for which, r in (("best", ranked[0]), ("median", ranked[3]), ("worst", ranked[-1])):
        assert f"{MODEL}, {which} case by MAE: {r['case_id']} (MAE {float(r['MAE']):.4f})" in text
    embedded = {(folder / "heatmaps" / f"{r['case_id']}.png").read_bytes() for r in (ranked[0], ranked[3], ranked[-1])}
    sources = {base64.b64decode(img["src"].split(",", 1)[1]) for img in parse(out)[1].images}
    assert embedded <= sources


# ---------------------------------------------------------------- hand-computed cases

def _tiny_folder(folder: Path, model: str, mae: list[float], fold: int | None = None, case_prefix: str = "c") -> Path:
    """Three cases with chosen MAE values; the other metrics fixed, no optional columns."""
    folder.mkdir(parents=True)
    lines = [",".join(("model", "case_id", "has_lesion_mask", "density", *METRICS))]
    for name, scale in ((model, 1.0), (IDENTITY_NAME, 2.0)):
        for i, v in enumerate(mae):
            metrics = {m: "" for m in METRICS} | {"MAE": repr(v * scale), "MSE": "0.01", "PSNR": "inf", "SSIM": "0.5"}
            lines.append(",".join((name, f"{case_prefix}{i}", "False", "", *(metrics[m] for m in METRICS))))
    (folder / "per_image.csv").write_text("\n".join(lines) + "\n")
    (folder / "provenance.json").write_text(json.dumps({"model_name": model, "fold": fold}))
    return folder


def test_hand_computed_headline_and_sections_without_data(tmp_path):
    folder = _tiny_folder(tmp_path / "ev", "tiny <b>model</b>", [0.1, 0.2, 0.3])
    out = build_report([folder], tmp_path / "r.html", title="Tiny & small")
    text, page = parse(out)
    table = page.tables[SQUARE]
    cells = row(table, "tiny <b>model</b>")          # escaped in the page, the text itself after parsing
    assert cells[column(table, 0, "MAE, whole square")] == "0.2000 ± 0.1000"
    assert row(table, IDENTITY_NAME)[column(table, 0, "MAE, whole square")] == "0.4000 ± 0.2000"
    assert cells[column(table, 0, "PSNR (dB), whole square")] == "n/a"
    assert "<b>model</b>" not in text and "tiny &lt;b&gt;model&lt;/b&gt;" in text
    assert "<title>Tiny &amp; small</title>" in text
    assert "PSNR is infinite for some images of tiny <b>model</b>, identity (DES = LE)" in html_text(text)
    for sentence in ("No values of Hosseinipour et al. 2024 (003)'s settings in per_image.csv",
                     "No LE-change values in per_image.csv",
                     "tiny <b>model</b>: no image has tissue regions",
                     "No breast density is known for any image",
                     "No breast density is known, so there are no box plots per density",
                     "is missing.",
                     "No histograms.csv in the evaluation folder(s)",
                     "No reader study was given"):
        assert html_text(text).count(sentence) >= 1, sentence
    # box plots + 3 heatmaps missing (no heatmaps folder): one figure only.
    assert len(page.images) == int(page.body["data-figures"]) == 1


def html_text(text: str) -> str:
    import html

    return html.unescape(text)


def test_folds_give_the_mean_and_sd_of_fold_means(tmp_path):
    a = _tiny_folder(tmp_path / "f0", "m", [0.1, 0.2, 0.3], fold=0, case_prefix="a")   # fold mean 0.2
    b = _tiny_folder(tmp_path / "f1", "m", [0.4, 0.4, 0.4], fold=1, case_prefix="b")   # fold mean 0.4
    out = build_report([a, b], tmp_path / "r.html")
    text, page = parse(out)
    folds = page.tables[f"Across folds: {columns.REGIONS['square']}"]
    # mean of (0.2, 0.4) = 0.3, sample sd = sqrt(0.02) = 0.1414
    assert row(folds, "m")[1] == "2"
    assert row(folds, "m")[column(folds, 0, "MAE, whole square")] == "0.3000 ± 0.1414"
    assert row(folds, IDENTITY_NAME)[column(folds, 0, "MAE, whole square")] == "0.6000 ± 0.2828"
    pooled = page.tables[SQUARE]
    assert row(pooled, "m")[column(pooled, 0, "MAE, whole square")] == f"{np.mean([.1, .2, .3, .4, .4, .4]):.4f} ± " \
                                                         f"{np.std([.1, .2, .3, .4, .4, .4], ddof=1):.4f}"
    assert "Cross-validation over 2 folds (folds 0, 1)" in text


def test_a_case_in_two_folders_is_counted_once(tmp_path):
    a = _tiny_folder(tmp_path / "a", "m1", [0.1, 0.2, 0.3])
    b = _tiny_folder(tmp_path / "b", "m2", [0.3, 0.3, 0.3])   # same cases: its identity rows repeat a's
    out = build_report([a, b], tmp_path / "r.html")
    text, page = parse(out)
    table = page.tables[SQUARE]
    assert [r[0] for r in table[1:]] == ["m1", "m2", IDENTITY_NAME]
    assert row(table, IDENTITY_NAME)[1] == "3"
    assert "3 (model, case) rows found in more than one folder were counted once." in text
    assert {"m1 vs m2", f"m1 vs {IDENTITY_NAME}", f"m2 vs {IDENTITY_NAME}"} <= set(page.tables)


def test_reader_study_section_holds_format_reader_tables_tables(tmp_path):
    from VirtualContrastTraining.evaluation.reader_study import format_reader_table, reader_study

    truth = ["yes", "yes", "yes", "no", "no", "no"]
    ratings = {"clinical": truth, "synthetic": ["yes", "no", "yes", "no", "yes", "no"]}   # 4 of 6 right
    lines = ["case_id,reader,endpoint,image,rating,truth"] + [
        f"c{i},R1,lesion,{image},{r},{t}" for image, rs in ratings.items() for i, (r, t) in enumerate(zip(rs, truth))]
    study = tmp_path / "ratings.csv"
    study.write_text("\n".join(lines) + "\n")
    folder = _tiny_folder(tmp_path / "ev", "m", [0.1, 0.2, 0.3])
    text, page = parse(build_report([folder], tmp_path / "r.html", reader_study=study))
    markdown = format_reader_table(reader_study(study))
    expected = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()
                if line.startswith("|") and not line.startswith("|---")]
    found = [r for t in page.tables.values() for r in t if r and r[0] in ("endpoint", "lesion")]
    assert found == expected
    synthetic = [r for r in found if r[2] == "synthetic"][0]
    assert synthetic[3] == "6" and synthetic[4].startswith("66.7 % (4/6)")
    assert "<li><strong>lesion</strong>: binary" in text


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("damage, file, message", [
    (lambda f: (f / "per_image.csv").unlink(), "per_image.csv", "file not found"),
    (lambda f: (f / "provenance.json").unlink(), "provenance.json", "file not found"),
    (lambda f: (f / "provenance.json").write_text("{not json"), "provenance.json", "not valid JSON"),
    (lambda f: (f / "provenance.json").write_text('{"model_name": "other"}'), "per_image.csv",
     "no rows of the evaluated model"),
    (lambda f: (f / "provenance.json").write_text('{"model_name": "m", "fold": "x"}'), "provenance.json", "fold"),
    (lambda f: (f / "per_image.csv").write_text("model,case_id\nm,c0\n"), "per_image.csv",
     "missing column(s): has_lesion_mask"),
    (lambda f: (f / "per_image.csv").write_text((f / "per_image.csv").read_text().replace("0.01", "abc", 1)),
     "per_image.csv", "line 2, column 'MSE': 'abc' is not a number"),
    (lambda f: (f / "per_image.csv").write_text((f / "per_image.csv").read_text().replace("False", "maybe", 1)),
     "per_image.csv", "'maybe' is not True or False"),
    (lambda f: (f / "histograms.csv").write_text("bin_lo,bin_hi\n0,1\n"), "histograms.csv",
     "missing column(s): real DES"),
])
def test_bad_evaluation_folder_is_an_input_error_naming_the_file(tmp_path, damage, file, message):
    folder = _tiny_folder(tmp_path / "ev", "m", [0.1, 0.2, 0.3])
    damage(folder)
    with pytest.raises(InputError) as info:
        build_report([folder], tmp_path / "r.html")
    assert info.value.path == str(folder / file)
    assert message in info.value.problem
    assert not (tmp_path / "r.html").exists()


def test_bad_arguments_are_input_errors(tmp_path):
    folder = _tiny_folder(tmp_path / "ev", "m", [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="not a folder"):
        build_report([tmp_path / "nowhere"], tmp_path / "r.html")
    with pytest.raises(InputError, match="given twice"):
        build_report([folder, tmp_path / "ev" / ".." / "ev"], tmp_path / "r.html")
    with pytest.raises(InputError, match="reader-study file not found"):
        build_report([folder], tmp_path / "r.html", reader_study=tmp_path / "none.csv")


def test_histogram_bins_must_agree_between_folders(tmp_path):
    a = make_evaluation(tmp_path / "a", heatmaps=False, case_prefix="a", fold=0)
    b = make_evaluation(tmp_path / "b", heatmaps=False, case_prefix="b", fold=1)
    (b / "histograms.csv").write_text((b / "histograms.csv").read_text().replace("0.0,0.015625", "0.0,0.02", 1))
    with pytest.raises(InputError, match="bins differ") as info:
        build_report([a, b], tmp_path / "r.html")
    assert info.value.path == str(b / "histograms.csv")


# ---------------------------------------------------------------- figures and command line

def _png_array(data: bytes) -> np.ndarray:
    from matplotlib.image import imread

    return imread(io.BytesIO(data), format="png")


def test_box_plots_grow_with_the_number_of_groups_and_are_not_blank():
    from VirtualContrastTraining.evaluation.figures import box_plots, to_png

    rng = np.random.default_rng(1)
    few = _png_array(to_png(box_plots({"a": {"PSNR": rng.normal(25, 1, 20).tolist()}}, [("PSNR", "PSNR")])))
    many = _png_array(to_png(box_plots({f"model {i}": {"PSNR": rng.normal(25, 1, 20).tolist(),
                                                       "SSIM": [math.inf, 0.5]}
                                        for i in range(12)}, [("PSNR", "PSNR"), ("SSIM", "SSIM")])))
    assert many.shape[0] > 2 * few.shape[0] and many.shape[1] > few.shape[1]
    assert few.std() > 0.05 and len(np.unique(few.reshape(-1, few.shape[-1]), axis=0)) > 20


def test_histogram_figure_png():
    from VirtualContrastTraining.evaluation.figures import histogram_figure, to_png

    edges = np.linspace(0, 1, 65)
    png = to_png(histogram_figure(edges[:-1], edges[1:], {"real DES": np.arange(64), "m": np.zeros(64)},
                                  reference="real DES"))
    image = _png_array(png)
    assert image.shape[1] == 8 * 80 and image.std() > 0.05


def test_cli_report_prints_the_path_and_rejects_bad_input(tmp_path, capsys):
    folder = _tiny_folder(tmp_path / "ev", "m", [0.1, 0.2, 0.3])
    out = tmp_path / "out" / "report.html"
    assert main(["report", "--evaluation", str(folder), "--out", str(out), "--title", "T"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert "<title>T</title>" in out.read_text()
    # written atomically, no leftovers; the gallery beside the report
    assert sorted(p.name for p in out.parent.iterdir()) == ["report-gallery.html", "report.html"]
    assert main(["report", "--evaluation", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_a_folder_written_before_the_one_versions_schema_reads_with_todays_keys(tmp_path):
    """provenance.json of earlier evaluations named the engine "VirtualContrastTraining": read as "engine"."""
    from VirtualContrastTraining.evaluation.evaluation_folder import read_evaluation

    folder = make_evaluation(tmp_path / "evaluation", heatmaps=False)
    path = folder / "provenance.json"
    provenance = json.loads(path.read_text(encoding="utf-8"))
    provenance["versions"] = {"python": "3.11.7", "VirtualContrastTraining": "0.1.0", "torch": "2.13.0"}
    path.write_text(json.dumps(provenance), encoding="utf-8")
    assert read_evaluation(folder).provenance["versions"] == {"python": "3.11.7", "engine": "0.1.0",
                                                              "torch": "2.13.0"}


# ---------------------------------------------------------------- every model, every case, signed CNR, citations

LONG_NAME = "Seg-CycleGAN, from rofena2025-segcyclegan-g35, modified: ngf 8, image_size 64"


def test_density_box_plots_name_every_model_in_full_in_a_legend_inside_the_figure():
    from VirtualContrastTraining.evaluation.figures import box_plots, grouped_box_plots, to_png

    rng = np.random.default_rng(2)
    models = [LONG_NAME, IDENTITY_NAME, LINEAR_NAME]
    metrics = [("PSNR", "PSNR"), ("SSIM", "SSIM")]
    values = {f"ACR {d}": {m: {"PSNR": rng.normal(25, 1, 5).tolist(), "SSIM": rng.uniform(0, 1, 5).tolist()}
                           for m in models} for d in "abcd"}
    fig = grouped_box_plots(values, metrics)
    image = _png_array(to_png(fig))
    [legend] = fig.legends
    assert [t.get_text().replace("\n", " ") for t in legend.get_texts()] == models     # in full, wrapped
    box, page = legend.get_window_extent(fig.canvas.get_renderer()), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1   # not cut off
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [f"ACR {d}" for d in "abcd"]
    assert len(fig.axes[0].patches) == len(fig.axes[1].patches) == 4 * len(models)          # every model's boxes
    assert image.std() > 0.05
    labels = box_plots({m: values["ACR a"][m] for m in models}, metrics).axes[0].get_yticklabels()
    assert [t.get_text().replace("\n", " ") for t in labels] == models


def test_every_figure_of_the_report_covers_every_model(one_report):
    _, out = one_report
    alts = [img["alt"] for img in parse(out)[1].images]
    everyone = ", ".join((MODEL, IDENTITY_NAME, LINEAR_NAME))
    assert f"box plots per model: {everyone}" in alts
    assert f"box plots per density: {everyone}" in alts


def _gallery_cases(text: str) -> list[str]:
    import re

    return re.findall(r'<article class="case" id="[^"]+"[^>]*><h3>([^<]+)</h3>', text)


def test_gallery_shows_every_case_worst_mae_first_with_its_values_and_heatmap(one_report):
    from urllib.parse import unquote

    folder, out = one_report
    gallery = out.with_name("report-gallery.html")
    assert 'href="report-gallery.html"' in out.read_text()
    mine = sorted((r for r in read_rows(folder) if r["model"] == MODEL), key=lambda r: -float(r["MAE"]))
    text, page = parse(gallery)
    assert _gallery_cases(text) == [r["case_id"] for r in mine]
    assert page.scripts == 0 and page.external == [] and NOT_FOR_DIAGNOSIS in text
    # each panel linked, relative to the gallery, to the case's heatmap (not embedded)
    assert [(gallery.parent / unquote(img["src"])).resolve() for img in page.images] == [
        (folder / "heatmaps" / f"{r['case_id']}.png").resolve() for r in mine]
    worst = page.tables[f"{mine[0]['case_id']}: values per model"]
    assert worst[0] == ["Metric", MODEL, IDENTITY_NAME, LINEAR_NAME]
    assert row(worst, "MAE, whole square")[1] == f"{float(mine[0]['MAE']):.4f}"
    titles = [r[0] for r in worst[1:]]
    assert titles.index("MAE, breast") < titles.index("MAE, whole square")     # the breast first
    index = page.tables[f"{MODEL}: cases by MAE, worst first"]
    assert [r[1] for r in index[1:]] == [r["case_id"] for r in mine]
    assert 'id="f-lesion-0"' in text and 'id="f-density-3"' in text        # the filters


def _with_negative_breast_cnr(folder: Path) -> Path:
    rows = read_rows(folder)
    for r in rows:
        if r["model"] == MODEL:
            r["breast_CNR_synthetic"] = str(-abs(float(r["breast_CNR_synthetic"])))
    with open(folder / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_a_negative_cnr_is_explained_only_where_one_is_shown(one_report, tmp_path):
    from VirtualContrastTraining.evaluation.gallery import NEGATIVE_CNR

    _, out = one_report
    for page in (out, out.with_name("report-gallery.html")):
        assert "negative CNR" not in page.read_text()
    folder = _with_negative_breast_cnr(make_evaluation(tmp_path / "ev", n_cases=4, heatmaps=False, histograms=False))
    report = build_report([folder], tmp_path / "r.html")
    cnr = parse(report)[1].tables["CNR, real vs synthetic DES (breast: 64×64 patches at 512², scaled with the image, "
                                  "eqs. 10-11; mass: eq. 9)"]
    assert row(cnr, MODEL)[2].startswith("-")
    assert "(mean of the region − mean of its background) / sd of the background" in NEGATIVE_CNR
    for page in (report, tmp_path / "r-gallery.html"):
        assert html_text(page.read_text()).count(NEGATIVE_CNR) == 1, page


def test_vector_heatmaps_are_linked_beside_the_png(tmp_path):
    """Linked where they exist (heatmap_panels may write them): here for one case of two."""
    folder = make_evaluation(tmp_path / "ev", n_cases=2, histograms=False, densities=False)
    for suffix in (".svg", ".pdf"):
        (folder / "heatmaps" / f"P000_L_CC{suffix}").unlink(missing_ok=True)
        (folder / "heatmaps" / f"P001_L_CC{suffix}").write_bytes(b"vector")
    text = build_report([folder], tmp_path / "out" / "r.html").with_name("r-gallery.html").read_text()
    assert text.count('href="../ev/heatmaps/P001_L_CC.svg">SVG</a>') == 1
    assert text.count('href="../ev/heatmaps/P001_L_CC.pdf">PDF</a>') == 1
    assert text.count(">SVG</a>") == 1 and 'id="f-density' not in text


def test_papers_are_named_by_citation_and_code(one_report):
    text = html_text(parse(one_report[1])[0])
    for heading in ("Hosseinipour et al. 2024 (003): three settings",
                    "Zormpas-Petridis et al. 2026 (000): change from the low-energy image",
                    "Zormpas-Petridis et al. 2026 (000): tissue CNR"):
        assert f"<h2>{heading}</h2>" in text
    assert "Rofena et al. 2024 (001) Table 4.2" in text
    assert "003's" not in text and "(001 Table" not in text
