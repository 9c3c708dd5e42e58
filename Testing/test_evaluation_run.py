"""`virtual-contrast evaluate` end to end on real files: the phantom with its truth tissue regions,
synthetic images made elsewhere, and the real CDD-CESM sample pairs with the LE standing in for the
synthetic DES."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from conftest import make_tiny_model
from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.cli import main
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import read_image, write_nrrd
from VirtualContrastTraining.data.manifest import Case, read_manifest, write_manifest
from VirtualContrastTraining.data.preprocessing import breast_mask
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation.evaluate import HISTOGRAM_BINS, IDENTITY_NAME
from VirtualContrastTraining.evaluation.run import evaluate_run

METRICS, SETTING_COLUMNS, CHANGE_COLUMNS, TISSUE_COLUMNS = (columns.keys(g) for g in ("image", "setting", "change",
                                                                                     "tissue"))
VALUE_COLUMNS = columns.keys()


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "per_image.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _with_splits(manifest: Path, out: Path, splits: list[str]) -> Path:
    cases = read_manifest(manifest)
    return write_manifest(out, [replace(c, split=s) for c, s in zip(cases, splits)])


def test_phantom_evaluation_uses_truth_tissue_regions_and_writes_every_column(small_phantom, tmp_path):
    manifest = _with_splits(small_phantom, tmp_path / "manifest.csv", ["train"] * 2 + ["val"] * 2 + ["test"] * 2)
    run = make_tiny_model(tmp_path / "run", image_size=64)
    out = tmp_path / "evaluation"
    result = evaluate_run(run, manifest, out_dir=out, device="cpu")
    rows = _rows(out)
    assert len(rows) == 3 * 2 and set(rows[0]) >= set(VALUE_COLUMNS)
    assert all(r["tissue_rois"] == "manifest" for r in rows)         # the phantom's truth masks
    for r in rows:
        with_mass = r["has_lesion_mask"] == "True"
        assert all(math.isfinite(float(r[c])) for c in METRICS if c != "lesion_MAE")
        assert all(math.isfinite(float(r[c])) for c in CHANGE_COLUMNS + TISSUE_COLUMNS)
        assert all((r[c] != "") == with_mass for c in SETTING_COLUMNS if c.startswith("mass_") and "CNR" not in c)
        assert r["breast_L1"] != "" and float(r["L1"]) == pytest.approx(255 * float(r["MAE"]))
    identity = [r for r in rows if r["model"] == IDENTITY_NAME]
    # DES = LE: the change from LE is zero, and the synthetic tissue values are the LE's.
    assert all(float(r["LE_synthetic_MAE"]) == 0 and float(r["LE_synthetic_SSIM"]) == pytest.approx(1)
               for r in identity)
    assert all(r["tissue_CNR_synthetic"] == r["tissue_CNR_LE"] for r in identity)

    with open(out / "histograms.csv", encoding="utf-8", newline="") as fh:
        histogram = list(csv.DictReader(fh))
    assert len(histogram) == HISTOGRAM_BINS and set(histogram[0]) >= {"real DES", result.model_name, IDENTITY_NAME}
    prepared_size = 64
    assert 0 < sum(int(h["real DES"]) for h in histogram) <= 2 * prepared_size**2
    assert sum(int(h["real DES"]) for h in histogram) == sum(int(h[IDENTITY_NAME]) for h in histogram)

    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["preset"] == "demo" and provenance["data_fingerprint"] == "f1ngerprint"
    assert provenance["split"] == "test" and provenance["n_images"] == 2 and len(provenance["model_sha256"]) == 64
    assert provenance["versions"]["numpy"] == np.__version__
    assert result.report_html.is_file() and "report.html" in result.summary_md.read_text()


def test_external_synthetic_images_from_a_csv(small_phantom, tmp_path, capsys):
    """Synthetic images made by another tool: here each case's real DES file, so every error is zero."""
    manifest = _with_splits(small_phantom, tmp_path / "manifest.csv", ["train"] * 4 + ["test"] * 2)
    cases = [c for c in read_manifest(manifest) if c.split == "test"]
    listing = tmp_path / "synthetic.csv"
    listing.write_text("case_id,synthetic_path\n" + "".join(f"{c.case_id},{c.des_path}\n" for c in cases))
    out = tmp_path / "evaluation"
    code = main(["evaluate", "--synthetic", str(listing), "--name", "perfect copy", "--size", "96",
                 "--manifest", str(manifest), "--out", str(out)])
    assert code == 0 and "| perfect copy | 2 |" in capsys.readouterr().out
    perfect = [r for r in _rows(out) if r["model"] == "perfect copy"]
    assert len(perfect) == 2
    assert all(float(r["MSE"]) == 0 and r["PSNR"] == "inf" and float(r["breast_L1"]) == 0 for r in perfect)
    assert all(r["breast_dCNR"] == "" or float(r["breast_dCNR"]) == 0 for r in perfect)
    assert json.loads((out / "provenance.json").read_text())["preset"] == "external"

    listing.write_text("case_id,synthetic_path\n" + f"{cases[0].case_id},{cases[0].des_path}\n")
    with pytest.raises(InputError, match=r"synthetic\.csv.*no synthetic image for 1 case"):
        evaluate_run(None, manifest, synthetic=listing, out_dir=tmp_path / "e2")
    listing.write_text("case,path\n")
    with pytest.raises(InputError, match="lacks column"):
        evaluate_run(None, manifest, synthetic=listing, out_dir=tmp_path / "e3")
    small = tmp_path / "small.nrrd"
    write_nrrd(Image(np.zeros((8, 8), np.float32)), small)
    listing.write_text("case_id,synthetic_path\n" + "".join(f"{c.case_id},{small}\n" for c in cases))
    with pytest.raises(InputError, match="small.nrrd.*LE's geometry"):
        evaluate_run(None, manifest, synthetic=listing, out_dir=tmp_path / "e4")


def _brightest_enhancement(des_path: str) -> np.ndarray:
    """A lesion stand-in on a real DES: its brightest connected enhancement inside the breast (dilated).

    The sample's drawn annotations refer to the original full-size images, not these resized copies."""
    des = read_image(des_path).array.astype(np.float64)
    inside = breast_mask(des)
    labels, n = ndimage.label(inside & (des >= np.percentile(des[inside], 99.0)))
    sizes = ndimage.sum_labels(np.ones_like(des), labels, range(1, n + 1))
    return ndimage.binary_dilation(labels == 1 + int(np.argmax(sizes)), iterations=3)


def test_real_cdd_cesm_pairs_with_the_le_as_synthetic_give_finite_values(cdd_sample, tmp_path):
    pairs = sorted(p for p in cdd_sample.iterdir() if "_DM_" in p.name)
    cases = []
    for le in pairs:
        des = le.with_name(le.name.replace("_DM_", "_CM_"))
        case_id = le.stem.replace("_DM", "")
        mask = _brightest_enhancement(str(des))
        lesion = write_nrrd(read_image(des).with_array(mask.astype(np.uint8)), tmp_path / f"{case_id}_lesion.nrrd")
        cases.append(Case(case_id=case_id, patient_id=case_id.split("_")[0], le_path=str(le), des_path=str(des),
                          lesion_path=str(lesion), laterality=case_id.split("_")[1], split="test"))
    assert len(cases) == 5
    manifest = write_manifest(tmp_path / "manifest.csv", cases)
    listing = tmp_path / "le_as_synthetic.csv"
    listing.write_text("case_id,synthetic_path\n" + "".join(f"{c.case_id},{c.le_path}\n" for c in cases))
    result = evaluate_run(None, manifest, synthetic=listing, name="LE as synthetic", out_dir=tmp_path / "out")
    rows = [r for r in _rows(result.out_dir) if r["model"] == "LE as synthetic"]
    assert len(rows) == 5 and all(r["tissue_rois"] == "automatic" for r in rows)
    for r in rows:
        bad = [c for c in VALUE_COLUMNS if not math.isfinite(float(r[c] or "nan"))]
        assert not bad, f"{r['case_id']}: no finite value for {bad}"
    # The LE is not the DES: a real error, and a lesion that the LE does not enhance.
    assert all(float(r["MAE"]) > 0.01 and float(r["SSIM"]) < 0.99 for r in rows)
    assert np.mean([float(r["mass_dCNR"]) for r in rows]) < 0
