"""The column registry (evaluation/columns.py): one entry per per-image value, read by every table.

Adding a metric is one entry with its function: the test below adds one to the registry, and only
there, then finds it in per_image.csv, summary.csv, the folder read back, the HTML report's tables
and the Slicer module's metrics table.
"""

from __future__ import annotations

import csv
import html
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import make_tiny_model
from VirtualContrastTraining.data.manifest import read_manifest, write_manifest
from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.evaluation.evaluate import evaluate_arrays
from VirtualContrastTraining.evaluation.evaluation_folder import read_evaluation
from VirtualContrastTraining.evaluation.report import build_report
from VirtualContrastTraining.evaluation.run import evaluate_run


def test_registry_is_consistent():
    keys = columns.keys()
    assert len(set(keys)) == len(keys)
    assert all(c.group in columns.GROUPS and c.better in ("lower", "higher", None) for c in columns.COLUMNS)
    assert all(format(0.5, c.fmt) and c.title and c.paper for c in columns.COLUMNS)
    assert sum(len(columns.keys(g)) for g in columns.GROUPS) == len(keys)
    assert columns.column("PSNR").better == "higher" and columns.column("MSE").better == "lower"
    with pytest.raises(KeyError, match="not a per-image column"):
        columns.column("nope")
    with pytest.raises(ValueError, match="unknown column group"):
        columns.keys("nope")


def test_group_functions_produce_exactly_the_built_in_columns():
    rng = np.random.default_rng(0)
    le = rng.uniform(0.2, 0.6, (64, 64))
    des = np.clip(le + rng.normal(0, 0.05, le.shape), 0, 1)
    mask = np.zeros(le.shape, bool)
    mask[20:30, 20:30] = True
    row = evaluate_arrays([{"case_id": "c", "le": le, "des": des, "mask": mask}], {"m": [np.clip(des * 0.9, 0, 1)]})[0]
    values = [k for k in row if k not in ("model", "case_id", "has_lesion_mask", "tissue_rois")]
    assert sorted(values) == sorted(c.key for c in columns.COLUMNS if c.compute is None)


def _max_error(images: columns.ImageSet) -> float:
    return float(np.max(np.abs(images.des - images.synthetic)))


NEW = columns.Column("max_error", "max |error|", ".3f", "a test paper, eq. 1", "lower", "image",
                     measure="largest absolute error", compute=_max_error)


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_new_metric_is_one_registry_entry(small_phantom, tmp_path, monkeypatch):
    monkeypatch.setattr(columns, "COLUMNS", (*columns.COLUMNS, NEW))
    cases = read_manifest(small_phantom)
    manifest = write_manifest(tmp_path / "manifest.csv", [replace(c, split=s) for c, s in
                                                          zip(cases, ["train"] * 2 + ["val"] * 2 + ["test"] * 2)])
    out = tmp_path / "evaluation"
    result = evaluate_run(make_tiny_model(tmp_path / "run", image_size=64), manifest, out_dir=out, device="cpu")

    rows = _csv(out / "per_image.csv")
    assert "max_error" in rows[0] and all(0 < float(r["max_error"]) <= 1 for r in rows)
    summary = _csv(out / "summary.csv")
    mine = [float(r["max_error"]) for r in rows if r["model"] == result.model_name]
    assert float(summary[0]["max_error_mean"]) == pytest.approx(np.mean(mine))
    assert float(summary[0]["max_error_sd"]) == pytest.approx(np.std(mine, ddof=1))
    assert summary[0]["max_error_n"] == str(len(mine))
    # read back as a number, and in the report's headline table and paired tests with its title and format
    assert all(isinstance(r["max_error"], float) for r in read_evaluation(out).rows)
    page = (out / "report.html").read_text(encoding="utf-8")
    title = html.escape(NEW.title)
    assert page.count(f'<th scope="col">{title}</th>') == 1     # the headline table's column
    assert page.count(f'<th scope="row">{title}</th>') == 2     # a row of each paired test (model vs 2 baselines)
    assert f'<td>{np.mean(mine):.3f} <span class="sd">± {np.std(mine, ddof=1):.3f}</span></td>' in page
    # the Slicer module's metrics table (VirtualContrastLib.evaluation.measureRows; slicer-core is a test dependency)
    from VirtualContrastLib.evaluation import measureRows

    values = result.rows[0]
    table = measureRows(values)
    assert table[-1] == {"measure": "largest absolute error", "value": values["max_error"],
                         "paper": "a test paper, eq. 1", "note": ""}
    assert math.isfinite(table[-1]["value"]) and len(table) == len(columns.keys())


def test_a_folder_written_before_a_new_column_still_reads(small_phantom, tmp_path, monkeypatch):
    cases = read_manifest(small_phantom)
    manifest = write_manifest(tmp_path / "manifest.csv", [replace(c, split=s) for c, s in
                                                          zip(cases, ["train"] * 2 + ["val"] * 2 + ["test"] * 2)])
    out = tmp_path / "evaluation"
    evaluate_run(make_tiny_model(tmp_path / "run", image_size=64), manifest, out_dir=out, device="cpu")
    monkeypatch.setattr(columns, "COLUMNS", (*columns.COLUMNS, NEW))
    assert all(r.get("max_error") is None for r in read_evaluation(out).rows)
    page = build_report([out], tmp_path / "again.html").read_text(encoding="utf-8")
    assert f'<th scope="col">{html.escape(NEW.title)}</th>' in page and "<td>n/a</td>" in page
