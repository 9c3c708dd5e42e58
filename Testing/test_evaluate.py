"""Evaluation core (rows, summaries, baselines), the heatmap files evaluate writes and the `evaluate` command's
input checks."""

from __future__ import annotations

import argparse
import csv
import json
import math

import numpy as np
import pytest
from matplotlib.image import imread
from scipy import ndimage

from conftest import make_tiny_model
from VirtualContrastTraining.cli import main
from VirtualContrastTraining.commands import evaluate as evaluate_command
from VirtualContrastTraining.config.registries import model_name
from VirtualContrastTraining.data.manifest import Case, case_file_stem, write_manifest
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.synthesis import sidecar_preset_changes
from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.evaluation.evaluate import (HEADLINE, evaluate_arrays, fit_linear_baseline, format_table,
                                                         identity_baseline, linear_baseline, summarize)
from VirtualContrastTraining.evaluation.evaluation_folder import csv_text

S = 48


def textured(seed: int) -> np.ndarray:
    img = ndimage.gaussian_filter(np.random.default_rng(seed).random((S, S)), 2.0)
    return ((img - img.min()) / (img.max() - img.min())).astype(np.float32)


def lesion_mask() -> np.ndarray:
    mask = np.zeros((S, S), np.float32)
    mask[20:30, 15:25] = 1
    return mask


@pytest.fixture
def cases() -> list[dict]:
    out = []
    for i in range(3):
        le = textured(i)
        des = np.clip(0.5 * le + 0.3 * textured(10 + i), 0, 1).astype(np.float32)
        out.append({"case_id": f"P{i}_L_CC", "le": le, "des": des, "mask": lesion_mask() if i < 2 else None,
                    "density": "abc"[i]})
    return out


def test_perfect_prediction_and_identity_rows(cases):
    rows = evaluate_arrays(cases, {"perfect": [c["des"] for c in cases],
                                   "identity": [identity_baseline(c["le"]) for c in cases]})
    assert len(rows) == 6
    perfect = [r for r in rows if r["model"] == "perfect"]
    assert [r["case_id"] for r in perfect] == ["P0_L_CC", "P1_L_CC", "P2_L_CC"]
    assert [r["density"] for r in perfect] == ["a", "b", "c"]
    assert "le" not in perfect[0] and "mask" not in perfect[0]
    for r in perfect:
        assert r["MSE"] == 0.0 and r["MAE"] == 0.0
        assert r["SSIM"] == pytest.approx(1.0)
        assert r["VIF"] == pytest.approx(1.0, abs=1e-9)
        assert r["PSNR"] == math.inf
    assert [r["lesion_MAE"] for r in perfect] == [0.0, 0.0, None]
    assert [r["has_lesion_mask"] for r in perfect] == [True, True, False]
    identity = [r for r in rows if r["model"] == "identity"]
    assert all(r["MSE"] > 0 and r["SSIM"] < 1 and np.isfinite(r["PSNR"]) for r in identity)


def test_summarize_means_sds_and_infinite_psnr(cases):
    preds = [np.clip(c["des"] + 0.02 * (i + 1), 0, 1) for i, c in enumerate(cases)]
    rows = evaluate_arrays(cases, {"perfect": [c["des"] for c in cases], "offset": preds})
    perfect, offset = summarize(rows)
    assert (perfect["model"], perfect["n_images"], perfect["n_lesion_masks"]) == ("perfect", 3, 2)
    assert perfect["MSE_mean"] == 0.0 and perfect["MSE_sd"] == 0.0
    assert perfect["PSNR_n"] == 0 and perfect["PSNR_mean"] is None       # all infinite: left out
    assert perfect["lesion_MAE_n"] == 2
    mses = [r["MSE"] for r in rows if r["model"] == "offset"]
    assert offset["MSE_mean"] == pytest.approx(np.mean(mses))
    assert offset["MSE_sd"] == pytest.approx(np.std(mses, ddof=1))
    assert offset["PSNR_n"] == 3 and np.isfinite(offset["PSNR_mean"])
    table = format_table([perfect, offset])
    header = table.splitlines()[0]
    assert all(columns.column(m).title in header for m in HEADLINE)
    assert "| perfect | 3 | 0.00000 ± 0.00000 | n/a |" in table
    assert table.count("±") == 8 + 10  # PSNR of the perfect model is n/a, in both regions


def test_summarize_single_image_has_no_sd():
    rows = [{"model": "m", "case_id": "a", "has_lesion_mask": False, "MSE": 0.5, "PSNR": 3.0, "SSIM": 0.9,
             "VIF": 0.4, "MAE": 0.1, "lesion_MAE": None}]
    entry = summarize(rows)[0]
    assert entry["MSE_mean"] == 0.5 and entry["MSE_sd"] is None
    assert entry["lesion_MAE_mean"] is None and entry["lesion_MAE_n"] == 0
    assert "| m | 1 | n/a | n/a | n/a | n/a | n/a | n/a | 0.50000 | 3.00 |" in format_table([entry])  # no breast


def test_evaluate_arrays_rejects_bad_input(cases):
    with pytest.raises(ValueError, match="2 predictions for 3 cases"):
        evaluate_arrays(cases, {"short": [c["des"] for c in cases[:2]]})
    cases[1]["des"] = np.zeros((S, S), np.float32)
    with pytest.raises(ValueError, match="case P1_L_CC, model 'm'"):
        evaluate_arrays(cases, {"m": [c["le"] for c in cases]})


def test_linear_baseline_recovers_a_and_b():
    les = [textured(i) for i in range(3)]
    a, b = fit_linear_baseline(les, [0.6 * le + 0.15 for le in les])
    assert (a, b) == (pytest.approx(0.6, abs=1e-6), pytest.approx(0.15, abs=1e-6))
    pred = linear_baseline(les[0], 2.0, -0.5)
    assert pred.dtype == np.float32 and pred.min() == 0.0 and pred.max() == 1.0   # clipped to [0,1]
    with pytest.raises(ValueError, match="constant"):
        fit_linear_baseline([np.full((4, 4), 0.3)], [np.ones((4, 4))])
    with pytest.raises(ValueError, match="no training pixels"):
        fit_linear_baseline([], [])


def test_csv_text_round_trip(cases):
    rows = evaluate_arrays(cases, {"perfect": [c["des"] for c in cases]})
    back = list(csv.DictReader(csv_text(rows).splitlines()))
    assert [r["case_id"] for r in back] == ["P0_L_CC", "P1_L_CC", "P2_L_CC"]
    assert back[0]["PSNR"] == "inf" and back[2]["lesion_MAE"] == ""
    assert float(back[0]["SSIM"]) == pytest.approx(1.0)


def test_case_file_stem():
    assert case_file_stem("P1/L CC:1") == "P1_L_CC_1"
    assert case_file_stem("a-b_c.1") == "a-b_c.1"
    assert case_file_stem("../x") == "_x"


def _parse(argv):
    parser = argparse.ArgumentParser()
    evaluate_command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["evaluate", *argv])


def _manifest(tmp_path, splits):
    cases = [Case(case_id=f"c{i}", patient_id=f"p{i}", le_path=str(tmp_path / f"le{i}.nrrd"),
                  des_path=str(tmp_path / f"des{i}.nrrd"), split=s) for i, s in enumerate(splits)]
    return write_manifest(tmp_path / "manifest.csv", cases)


def test_command_input_errors(tmp_path):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"not read before the manifest is checked")
    out = str(tmp_path / "out")
    args = _parse(["--model", str(tmp_path / "missing"), "--manifest", "m.csv", "--out", out])
    assert (args.split, args.device) == ("test", "auto")
    with pytest.raises(InputError, match="model not found"):
        args.func(args)
    with pytest.raises(InputError, match="manifest not found"):
        args.func(_parse(["--model", str(model), "--manifest", str(tmp_path / "none.csv"), "--out", out]))
    manifest = str(_manifest(tmp_path, ["train", "test"]))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create output folder"):
        real_model = make_tiny_model(tmp_path / "run")
        args.func(_parse(["--model", str(real_model), "--manifest", manifest, "--out", str(blocker / "sub")]))
    manifest = str(_manifest(tmp_path, ["train", ""]))
    with pytest.raises(InputError, match="split column is empty for 1 case.*run folder assigns them"):
        args.func(_parse(["--model", str(model), "--manifest", manifest, "--out", out]))
    manifest = str(_manifest(tmp_path, ["train", "val"]))
    with pytest.raises(InputError, match=r"no cases in split 'test' \(splits present: train, val\)"):
        args.func(_parse(["--model", str(model), "--manifest", manifest, "--out", out]))


def _write_pair_files(folder, i):
    """A left breast (signal on the left, air on the right) as NRRD LE/DES files of 80x64 pixels."""
    from VirtualContrastTraining.data.image import Image
    from VirtualContrastTraining.data.imageio import write_nrrd

    rows, cols = 80, 64
    breast = np.zeros((rows, cols), np.float32)
    breast[:, :44] = 1
    le = (200 + 800 * ndimage.zoom(textured(30 + i), (rows / S, cols / S), order=1)) * breast
    des = (100 + 0.5 * le + 300 * ndimage.zoom(textured(40 + i), (rows / S, cols / S), order=1)) * breast
    write_nrrd(Image(le.astype(np.float32), spacing=(0.1, 0.1)), folder / f"le{i}.nrrd")
    write_nrrd(Image(des.astype(np.float32), spacing=(0.1, 0.1)), folder / f"des{i}.nrrd")


def test_evaluate_run_end_to_end(tmp_path, capsys):
    """A tiny untrained generator saved as a real checkpoint, evaluated through the command."""
    run_dir = make_tiny_model(tmp_path / "run", image_size=48, des_window=(0.0, 1000.0))
    # The last case id holds a "/" to check that heatmap file names are made safe.
    ids_splits = [("P0_L_CC", "train"), ("P1_L_CC", "train"), ("P2_L_CC", "test"), ("P3_L_CC/2", "test")]
    for i in range(len(ids_splits)):
        _write_pair_files(tmp_path, i)
    cases = [Case(case_id=case_id, patient_id=f"P{i}", laterality="L", view="CC", density="b", split=split,
                  le_path=str(tmp_path / f"le{i}.nrrd"), des_path=str(tmp_path / f"des{i}.nrrd"))
             for i, (case_id, split) in enumerate(ids_splits)]
    manifest = write_manifest(tmp_path / "manifest.csv", cases)
    out = tmp_path / "report"

    assert main(["evaluate", "--model", str(run_dir), "--manifest", str(manifest), "--out", str(out),
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out  # for a person: the table and where the report is
    # a config that differs from the demo preset is named so (registries.model_name)
    sidecar = json.loads((run_dir / "model.json").read_text())
    name = model_name(sidecar["config"], sidecar_preset_changes(sidecar))
    assert name.startswith("Seg-CycleGAN, from demo, modified: ngf 4, n_blocks 1") and "image_size 48" in name
    assert "(demo)" not in printed and f"| {name} | 2 |" in printed
    assert "| identity (DES = LE) | 2 |" in printed and "| linear LE->DES | 2 |" in printed
    assert str(out / "report.html") in printed

    rows = list(csv.DictReader((out / "per_image.csv").read_text().splitlines()))
    assert len(rows) == 3 * 2
    assert {r["case_id"] for r in rows} == {"P2_L_CC", "P3_L_CC/2"}
    assert all(r["split"] == "test" and r["density"] == "b" and r["lesion_MAE"] == "" for r in rows)
    assert all(0 <= float(r["SSIM"]) <= 1 and float(r["MSE"]) > 0 for r in rows)
    summary = {r["model"]: r for r in csv.DictReader((out / "summary.csv").read_text().splitlines())}
    assert set(summary) == {name, "identity (DES = LE)", "linear LE->DES"}
    # On data built as DES = 100 + 0.5 LE + texture, the fitted line beats DES = LE.
    assert float(summary["linear LE->DES"]["MSE_mean"]) < float(summary["identity (DES = LE)"]["MSE_mean"])

    report = (out / "summary.md").read_text()
    for needed in ("must not be used for diagnosis", "preset `demo`", "`f1ngerprint`", "split `test`: 2 images",
                   "| model | n | MSE, breast | PSNR (dB), breast | SSIM, breast | VIF, breast | lesion MAE | "
                   "bright-pixel MAE | MSE, whole square | PSNR (dB), whole square | SSIM, whole square | "
                   "VIF, whole square |",
                   "(heatmaps/P2_L_CC.png)", "(heatmaps/P3_L_CC_2.png)"):
        assert needed in report, needed
    panels = sorted(p.name for p in (out / "heatmaps").iterdir())
    assert panels == [f"{stem}.{fmt}" for stem in ("P2_L_CC", "P3_L_CC_2") for fmt in ("pdf", "png", "svg")]
    assert imread(out / "heatmaps" / "P2_L_CC.png")[..., :3].var() > 0.01
    assert "([SVG](heatmaps/P2_L_CC.svg), [PDF](heatmaps/P2_L_CC.pdf))" in report
    # the manifest's side and view, and a scale bar: the NRRD files state 0.1 mm pixels
    svg = (out / "heatmaps" / "P2_L_CC.svg").read_text(encoding="utf-8")
    assert ">L CC<" in svg and " mm<" in svg and "pixel spacing unknown" not in svg
    assert "99.5th percentile of the pixel errors of all 2 images" in svg
    assert not [p for p in out.iterdir() if p.name.startswith(".")]     # no temporary files left


def test_manifest_without_splits_takes_the_runs_split(tmp_path, capsys):
    """`train` records its split in RUN/manifest.csv; evaluating the user's split-less manifest follows it."""
    run_dir = make_tiny_model(tmp_path / "run", image_size=48, des_window=(0.0, 1000.0))
    for i in range(3):
        _write_pair_files(tmp_path, i)
    cases = [Case(case_id=f"P{i}_L_CC", patient_id=f"P{i}", laterality="L", view="CC",
                  le_path=str(tmp_path / f"le{i}.nrrd"), des_path=str(tmp_path / f"des{i}.nrrd"))
             for i in range(3)]
    manifest = write_manifest(tmp_path / "manifest.csv", cases)
    for case, split in zip(cases, ("train", "val", "test")):
        case.split = split
    write_manifest(run_dir / "manifest.csv", cases)
    out = tmp_path / "report"
    args = _parse(["--model", str(run_dir), "--manifest", str(manifest), "--out", str(out), "--device", "cpu"])
    assert args.func(args) == 0
    rows = list(csv.DictReader((out / "per_image.csv").read_text().splitlines()))
    assert {r["case_id"] for r in rows} == {"P2_L_CC"}
