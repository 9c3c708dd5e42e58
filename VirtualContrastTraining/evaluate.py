"""Evaluate a trained model against its real DES targets and two baselines.

The core (`evaluate_arrays`, `summarize`, the baselines) works on prepared
arrays, not files, so the Slicer module and tests call it directly.
`evaluate_run` is the file-level step behind `virtual-contrast evaluate`: it
prepares a manifest split with the model's own preprocessing, predicts, and
writes per_image.csv, summary.csv, summary.md and heatmaps/<case>.png.

Metrics are computed on the preprocessed [0,1] images at the model's input
size, as the papers do (Rofena et al. 2024, 2025). The baselines tell whether
a model learned more than the trivial answers: "identity" (DES = LE) and a
least-squares line LE -> DES fitted on the training split.

A patch model (000) has no whole-image input size: its synthetic DES is
synthesized in each LE's own geometry (sliding window, synthesis.py), then it
and the real DES go through the resize preprocessing at COMPARISON_SIZE with
the real DES's own window, which is exactly what a resize model at that size
is measured on. Patch and resize models thus share one table.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from VirtualContrastTraining.atomic import atomic_dir, ensure_writable_dir, write_text_atomic
from VirtualContrastTraining.data.manifest import case_file_stem
from VirtualContrastTraining.data.preprocessing import breast_mask
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.analyses import CHANGE_COLUMNS, SETTING_COLUMNS, TISSUE_COLUMNS
from VirtualContrastTraining.evaluation_folder import csv_text
from VirtualContrastTraining.metrics import METRICS, image_metrics
from VirtualContrastTraining.provenance import NOT_FOR_DIAGNOSIS
from VirtualContrastTraining.statistics import mean_sd

# Every per-image value that summarize() averages.
VALUE_COLUMNS = METRICS + SETTING_COLUMNS + CHANGE_COLUMNS + TISSUE_COLUMNS

IDENTITY_NAME = "identity (DES = LE)"
LINEAR_NAME = "linear LE->DES"
ARRAY_KEYS = ("le", "des", "mask", "fibroglandular", "adipose")
# Headline table columns: (metric key, column title, number format).
HEADLINE = (("MSE", "MSE", ".5f"), ("PSNR", "PSNR (dB)", ".2f"), ("SSIM", "SSIM", ".3f"),
            ("VIF", "VIF", ".3f"), ("lesion_MAE", "lesion MAE", ".4f"), ("bright_MAE", "bright-pixel MAE", ".4f"))
# Bins of the real-vs-synthetic intensity histograms on [0, 1].
HISTOGRAM_BINS = 64
# Side of the square comparison images of patch models: the papers' 256 (PreprocessConfig's default).
COMPARISON_SIZE = 256


def identity_baseline(le: np.ndarray) -> np.ndarray:
    """The trivial answer DES = LE: a model must beat it to have learned the contrast uptake."""
    return le


def fit_linear_baseline(train_le_list: Iterable[np.ndarray], train_des_list: Iterable[np.ndarray]) -> tuple[float, float]:
    """Least-squares (a, b) of DES ~ a*LE + b over all training pixels.

    Accumulates sums image by image, so a large training split is never
    concatenated in memory. ValueError when there are no pixels or LE is constant.
    """
    n = sx = sy = sxx = sxy = 0.0
    for le, des in zip(train_le_list, train_des_list, strict=True):
        x = np.asarray(le, dtype=np.float64).ravel()
        y = np.asarray(des, dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise ValueError(f"LE and DES sizes differ ({x.size} vs {y.size} pixels)")
        n += x.size
        sx, sy = sx + x.sum(), sy + y.sum()
        sxx, sxy = sxx + x @ x, sxy + x @ y
    if n == 0:
        raise ValueError("linear baseline: no training pixels")
    var = sxx / n - (sx / n) ** 2
    if var <= 1e-12:
        raise ValueError("linear baseline: the training LE images are constant")
    a = (sxy / n - (sx / n) * (sy / n)) / var
    return float(a), float(sy / n - a * sx / n)


def linear_baseline(le: np.ndarray, a: float, b: float) -> np.ndarray:
    """a*LE + b clipped to [0,1], the range of the preprocessed DES."""
    return np.clip(a * np.asarray(le, dtype=np.float32) + b, 0.0, 1.0).astype(np.float32)


def _case_context(case: dict[str, Any]) -> dict[str, Any]:
    """What one case contributes to every model's row: its breast, its tissue regions (drawn ones when
    the case has both, else automatic) and the model-independent tissue values of its LE and DES."""
    from VirtualContrastTraining.analyses import automatic_tissue_regions, tissue_metrics

    breast = breast_mask(case["le"])
    fibro, fat = case.get("fibroglandular"), case.get("adipose")
    source = "manifest"
    if fibro is None or fat is None:
        fibro, fat = automatic_tissue_regions(case["le"], breast, case.get("mask"))
        source = "automatic"
    return {"breast": breast, "fibroglandular": fibro, "adipose": fat, "tissue_rois": source,
            "tissue": tissue_metrics({"LE": case["le"], "DES": case["des"]}, fibro, fat)}


def evaluate_arrays(cases: list[dict[str, Any]], predictions: dict[str, list[np.ndarray]]) -> list[dict[str, Any]]:
    """One row per image and model: model, case_id, the case's other non-array fields, and every column
    of metrics.METRICS and analyses (003's settings, 000's change and tissue CNR).

    `cases[i]` holds case_id, le, des, mask (lesion, or None), optionally
    fibroglandular and adipose masks, and any descriptive fields (density,
    laterality, ...); `predictions[model][i]` is that model's DES for
    `cases[i]`. The breast (Otsu on the LE) bounds bright_MAE and 003's breast
    setting. A metric that cannot be computed (e.g. a blank DES) is a
    ValueError naming the case.
    """
    from VirtualContrastTraining.analyses import change_metrics, setting_metrics, tissue_metrics

    for model, preds in predictions.items():
        if len(preds) != len(cases):
            raise ValueError(f"model {model!r}: {len(preds)} predictions for {len(cases)} cases")
    rows_by_model: dict[str, list[dict[str, Any]]] = {model: [] for model in predictions}
    for i, case in enumerate(cases):
        try:
            context = _case_context(case)
        except ValueError as exc:
            raise ValueError(f"case {case['case_id']}: {exc}") from None
        info = {k: v for k, v in case.items() if k not in ARRAY_KEYS}
        for model, preds in predictions.items():
            pred = preds[i]
            try:
                values = image_metrics(case["des"], pred, case.get("mask"), breast=context["breast"])
                values.update(setting_metrics(case["des"], pred, context["breast"], case.get("mask")))
                values.update(change_metrics(case["le"], case["des"], pred))
                values.update(context["tissue"])
                values.update(tissue_metrics({"synthetic": pred}, context["fibroglandular"], context["adipose"]))
            except ValueError as exc:
                raise ValueError(f"case {case['case_id']}, model {model!r}: {exc}") from None
            rows_by_model[model].append({"model": model, **info, "has_lesion_mask": values["lesion_MAE"] is not None,
                                         "tissue_rois": context["tissue_rois"], **values})
    return [row for rows in rows_by_model.values() for row in rows]


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model (in order of appearance): n_images, n_lesion_masks, and for each metric
    `<M>_mean`, `<M>_sd` and `<M>_n`, the number of finite values used.

    Non-finite values (PSNR of a perfect prediction is +inf) and missing ones
    (lesion MAE without a mask) are left out of mean and sd; `<M>_n` shows how many remain.
    """
    models = list(dict.fromkeys(r["model"] for r in rows))
    summary = []
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        entry: dict[str, Any] = {"model": model, "n_images": len(mine),
                                 "n_lesion_masks": sum(bool(r["has_lesion_mask"]) for r in mine)}
        for m in VALUE_COLUMNS:
            finite = [float(r[m]) for r in mine if r.get(m) is not None and math.isfinite(r[m])]
            entry[f"{m}_mean"], entry[f"{m}_sd"] = mean_sd(finite)
            entry[f"{m}_n"] = len(finite)
        summary.append(entry)
    return summary


def format_cell(entry: dict[str, Any], metric: str, fmt: str) -> str:
    mean, sd = entry[f"{metric}_mean"], entry[f"{metric}_sd"]
    if mean is None:
        return "n/a"
    return f"{mean:{fmt}} ± {sd:{fmt}}" if sd is not None else f"{mean:{fmt}}"


def format_table(summary: list[dict[str, Any]]) -> str:
    """The headline Markdown table: model | MSE | PSNR | SSIM | VIF | lesion MAE, mean ± sd."""
    head = ["model", "n", *(title for _, title, _ in HEADLINE)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in summary:
        cells = [e["model"], str(e["n_images"]), *(format_cell(e, m, f) for m, _, f in HEADLINE)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class EvaluationResult:
    out_dir: Path
    split: str
    model_name: str
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    linear_fit: tuple[float, float] | None
    heatmaps: list[Path] = field(default_factory=list)

    @property
    def per_image_csv(self) -> Path:
        return self.out_dir / "per_image.csv"

    @property
    def summary_csv(self) -> Path:
        return self.out_dir / "summary.csv"

    @property
    def summary_md(self) -> Path:
        return self.out_dir / "summary.md"

    @property
    def report_html(self) -> Path:
        return self.out_dir / "report.html"

    @property
    def table(self) -> str:
        return format_table(self.summary)


def _select_split(manifest_path: str | os.PathLike, split: str, run_dir: Path | None):
    """(cases of `split`, train cases) from a manifest with DES.

    A manifest without splits takes those the model was trained with (the run
    folder's manifest.csv, written by `train`), so the test split is truly held out.
    External synthetic images have no run folder (`run_dir` None): the manifest must set the splits.
    """
    from VirtualContrastTraining.data.manifest import read_manifest
    from VirtualContrastTraining.data.splits import check_splits

    cases = read_manifest(manifest_path, require_des=True)
    run_manifest = run_dir / "manifest.csv" if run_dir else None
    if any(not c.split for c in cases) and run_manifest and run_manifest.is_file():
        used = {c.case_id: c.split for c in read_manifest(run_manifest)}
        cases = [replace(c, split=c.split or used.get(c.case_id, "")) for c in cases]
    unset = [c.case_id for c in cases if not c.split]
    if unset:
        raise InputError(manifest_path, f"the split column is empty for {len(unset)} case(s) (e.g. {unset[0]}) "
                         f"and no model's run folder assigns them: set train/val/test in the manifest")
    check_splits(cases, manifest_path)
    chosen = [c for c in cases if c.split == split]
    if not chosen:
        present = ", ".join(sorted({c.split for c in cases}))
        raise InputError(manifest_path, f"no cases in split {split!r} (splits present: {present})")
    return chosen, [c for c in cases if c.split == "train"]


def _like_real_des(image, des_window: tuple[float, float], side: str, space) -> np.ndarray:
    """A synthetic DES image (in the LE's geometry) prepared exactly like the case's real DES: the real
    DES's (lo, hi) window, the same padding side, the same size. So patch models and external
    predictions are measured in the space where the real DES is."""
    from VirtualContrastTraining.data.preprocessing import preprocess

    lo, hi = des_window
    out, _ = preprocess(image, window=((lo + hi) / 2, hi - lo), config=space, side=side)
    return out


def _breast_side(prepared) -> str:
    """The breast side that reproduces a prepared case's padding (padding goes opposite the breast; the
    side is ignored for square and landscape images)."""
    return "left" if prepared.params.pad_side == "right" else "right"


def _patch_model_prediction(synth, prepared, space) -> np.ndarray:
    """A patch model's synthetic DES for one case: synthesized from the LE file in the LE's geometry."""
    from VirtualContrastTraining.data.imageio import read_image

    case = prepared.case
    fake = synth.synthesize(read_image(case.le_path), laterality=case.laterality, window=case.window("le"))
    return _like_real_des(fake, prepared.des_params.window, _breast_side(prepared), space)


def read_synthetic_list(path: str | os.PathLike, chosen) -> dict[str, str]:
    """case_id -> synthetic DES file from a CSV with columns case_id, synthetic_path (relative paths are
    relative to the CSV). Every case of `chosen` needs one; InputError naming the CSV otherwise."""
    from VirtualContrastTraining.data.manifest import resolve

    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"case_id", "synthetic_path"} - set(reader.fieldnames or ())
            if missing:
                raise InputError(path, f"lacks column(s) {', '.join(sorted(missing))} (need case_id, synthetic_path)")
            files = {row["case_id"].strip(): str(resolve(path, row["synthetic_path"].strip())) for row in reader
                     if (row.get("case_id") or "").strip() and (row.get("synthetic_path") or "").strip()}
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read the synthetic image list ({exc})") from None
    absent = [c.case_id for c in chosen if c.case_id not in files]
    if absent:
        raise InputError(path, f"no synthetic image for {len(absent)} case(s) of the evaluated split "
                               f"(e.g. {absent[0]})")
    return files


def _synthetic_from_files(files: dict[str, str], prepared, space) -> list[np.ndarray]:
    from VirtualContrastTraining.data.imageio import read_image

    out = []
    for p in prepared:
        image = read_image(files[p.case.case_id])
        if image.shape != p.le_image_shape:
            (r, c), (lr, lc) = image.shape, p.le_image_shape
            raise InputError(files[p.case.case_id], f"synthetic DES is {c}x{r} pixels but the LE of case "
                                                    f"{p.case.case_id} is {lc}x{lr}: it must be in the LE's geometry")
        out.append(_like_real_des(image, p.des_params.window, _breast_side(p), space))
    return out


def _tissue_regions(prepared, space) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """(fibroglandular, adipose) masks in the evaluated space for cases whose manifest row gives both."""
    from VirtualContrastTraining.data.imageio import read_image
    from VirtualContrastTraining.data.preprocessing import preprocess_mask
    from VirtualContrastTraining.data.segmentation import read_lesion_mask

    regions = []
    for p in prepared:
        case = p.case
        if not (case.fibroglandular_path and case.adipose_path):
            regions.append((None, None))
            continue
        le_image = read_image(case.le_path)
        regions.append(tuple(preprocess_mask(read_lesion_mask(path, reference=le_image), p.params, space) > 0.5
                             for path in (case.fibroglandular_path, case.adipose_path)))
    return regions


def intensity_histograms(cases: list[dict[str, Any]], predictions: dict[str, list[np.ndarray]],
                         bins: int = HISTOGRAM_BINS) -> list[dict[str, Any]]:
    """Counts of breast-pixel intensities ([0,1], `bins` equal bins) of the real DES and of each model's
    DES over all cases: the real-vs-synthetic intensity distributions of 003 Fig. 5."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    breasts = [breast_mask(c["le"]) for c in cases]
    columns = {"real DES": [c["des"] for c in cases], **predictions}
    counts = {name: sum(np.histogram(np.clip(img[b], 0, 1), bins=edges)[0] for img, b in zip(images, breasts))
              for name, images in columns.items()}
    return [{"bin_lo": float(edges[i]), "bin_hi": float(edges[i + 1]),
             **{name: int(c[i]) for name, c in counts.items()}} for i in range(bins)]


def evaluate_images(le, des, synthetic, *, lesion: np.ndarray | None = None,
                    fibroglandular: np.ndarray | None = None, adipose: np.ndarray | None = None,
                    size: int = COMPARISON_SIZE, laterality: str = "", case_id: str = "",
                    model_name: str = "synthetic DES") -> dict[str, Any]:
    """Every per-image value of evaluate for one LE / real DES / synthetic DES triple of Images (one
    geometry) with optional masks on that grid: the row behind the Slicer module's metrics table.

    Prepared as evaluate prepares a case: each image with its own window (the
    synthetic one with the real DES's), padded on the breast's side, resized to `size`.
    """
    from VirtualContrastTraining.data.preprocessing import PreprocessConfig, breast_side, preprocess, preprocess_mask

    for what, image in (("real DES", des), ("synthetic DES", synthetic)):
        if image.shape != le.shape:
            raise InputError(None, f"the {what} is {image.shape[1]}x{image.shape[0]} pixels but the LE is "
                                   f"{le.shape[1]}x{le.shape[0]}: all three must share the LE's grid")
    space = PreprocessConfig(size=size)
    side = breast_side(le, laterality or str(le.meta.get("laterality", "")))
    le01, params = preprocess(le, config=space, side=side)
    des01, des_params = preprocess(des, config=space, side=side)
    masks = {name: None if mask is None else preprocess_mask(mask, params, space) > 0.5
             for name, mask in (("mask", lesion), ("fibroglandular", fibroglandular), ("adipose", adipose))}
    if masks["mask"] is not None and not masks["mask"].any():
        masks["mask"] = None
    case = {"case_id": case_id, "le": le01, "des": des01, **masks}
    return evaluate_arrays([case], {model_name: [_like_real_des(synthetic, des_params.window, side, space)]})[0]


def evaluate_run(model_path: str | os.PathLike | None, manifest_path: str | os.PathLike, *, split: str = "test",
                 out_dir: str | os.PathLike, device: str = "auto", synthetic: str | os.PathLike | None = None,
                 name: str | None = None, size: int = COMPARISON_SIZE, fold: int | None = None,
                 reader_study: str | os.PathLike | None = None) -> EvaluationResult:
    """Evaluate a trained model, or synthetic DES files made elsewhere, on one manifest split; write the
    report files (per_image.csv, summary.csv, histograms.csv, provenance.json, heatmaps/, report.html,
    summary.md last) into `out_dir`.

    A resize model is measured at its own input size; a patch model (000)
    and external files (`synthetic`: a CSV of case_id, synthetic_path, each
    in its LE's geometry) at `size` after preparing them like the real DES
    (module docstring), so all are comparable in one table. `reader_study`
    (a ratings CSV, reader_study.py) adds that analysis to the HTML report.
    """
    from VirtualContrastTraining.data.dataset import prepare_cases
    from VirtualContrastTraining.data.preprocessing import PreprocessConfig
    from VirtualContrastTraining.provenance import evaluation_provenance

    if (model_path is None) == (synthetic is None):
        raise InputError(None, "evaluate needs either a trained model or a list of synthetic images, not both")
    if model_path is not None:
        from VirtualContrastTraining.checkpoints import model_path as resolve_model
        from VirtualContrastTraining.synthesis import Synthesizer

        if not Path(model_path).exists():
            raise InputError(model_path, "model not found: give a trained run folder or model file")
        chosen, train = _select_split(manifest_path, split, resolve_model(model_path).parent)
        synth = Synthesizer.load(model_path, device=device)
        model_name, sidecar = synth.model_name, synth.sidecar
        space = synth.preprocess_config if synth.pipeline == "resize" else PreprocessConfig(size=size)
        space_text = ("the model's input" if synth.pipeline == "resize" else
                      "a patch model: synthesized in each LE's geometry, then padded and resized like the "
                      "real DES, with the real DES's window")
    else:
        chosen, train = _select_split(manifest_path, split, None)
        files = read_synthetic_list(synthetic, chosen)
        model_name, sidecar = name or f"external ({Path(synthetic).stem})", {}
        space = PreprocessConfig(size=size)
        space_text = "synthetic files in each LE's geometry, padded and resized like the real DES, with its window"
    out_dir = ensure_writable_dir(out_dir)
    prepared = prepare_cases(chosen, space)
    le = np.stack([p.le for p in prepared])
    if model_path is None:
        predicted = _synthetic_from_files(files, prepared, space)
    elif synth.pipeline == "resize":
        predicted = list(synth.predict01(le))
    else:
        predicted = [_patch_model_prediction(synth, p, space) for p in prepared]
    predictions = {model_name: predicted, IDENTITY_NAME: [identity_baseline(x) for x in le]}
    linear_fit = None
    if train:
        train_prepared = prepare_cases(train, space)
        try:
            linear_fit = fit_linear_baseline((p.le for p in train_prepared), (p.des for p in train_prepared))
        except ValueError as exc:
            raise InputError(manifest_path, f"train split: {exc}") from None
        predictions[LINEAR_NAME] = [linear_baseline(x, *linear_fit) for x in le]

    cases = [{"case_id": p.case.case_id, "split": split, "density": p.case.density,
              "laterality": p.case.laterality, "view": p.case.view, "label": p.case.label,
              "le": p.le, "des": p.des, "mask": p.mask if p.has_mask else None,
              "fibroglandular": fibro, "adipose": fat}
             for p, (fibro, fat) in zip(prepared, _tissue_regions(prepared, space))]
    try:
        rows = evaluate_arrays(cases, predictions)
    except ValueError as exc:
        raise InputError(manifest_path, str(exc)) from None
    result = EvaluationResult(out_dir, split, model_name, rows, summarize(rows), linear_fit)

    # One colour scale for all heatmaps of this report, so panels compare.
    error_vmax = float(np.percentile(np.abs(np.stack(predicted) - np.stack([c["des"] for c in cases])), 99.5))
    with atomic_dir(out_dir / "heatmaps") as tmp:
        from VirtualContrastTraining.heatmaps import write_heatmap_panel

        for case, pred in zip(cases, predicted):
            file_name = f"{case_file_stem(case['case_id'])}.png"
            write_heatmap_panel(tmp / file_name, case["le"], case["des"], pred, mask=case["mask"],
                                title=f"{case['case_id']} - {model_name}", error_vmax=error_vmax or None)
            result.heatmaps.append(out_dir / "heatmaps" / file_name)

    provenance = evaluation_provenance(
        model_name=model_name, sidecar=sidecar, model_file=model_path and resolve_model(model_path),
        synthetic_list=synthetic, manifest=manifest_path, split=split, n_images=len(cases),
        image_size=int(le.shape[-1]), comparison_space=space_text, linear_fit=linear_fit,
        device=device if model_path is not None else "", fold=fold)
    write_text_atomic(result.per_image_csv, csv_text(rows))
    write_text_atomic(result.summary_csv, csv_text(result.summary))
    write_text_atomic(out_dir / "histograms.csv", csv_text(intensity_histograms(cases, predictions)))
    write_text_atomic(out_dir / "provenance.json", json.dumps(provenance, indent=2) + "\n")
    from VirtualContrastTraining.report import build_report

    build_report([out_dir], result.report_html, reader_study=reader_study)
    write_text_atomic(result.summary_md, _report(result, provenance, error_vmax))
    return result


def _report(result: EvaluationResult, provenance: dict[str, Any], error_vmax: float) -> str:
    """summary.md: what was measured on what, the headline table, and links to the full report and heatmaps."""
    n = len(result.heatmaps)
    n_masks = result.summary[0]["n_lesion_masks"]
    fit = result.linear_fit
    size = provenance["image_size"]
    baseline = (f"- Baselines: {IDENTITY_NAME}; {LINEAR_NAME} fitted on the train split "
                f"(DES = {fit[0]:.4f} * LE + {fit[1]:.4f})" if fit else
                f"- Baselines: {IDENTITY_NAME} (no linear baseline: the manifest has no train cases)")
    infinite = [e["model"] for e in result.summary if e["PSNR_n"] < e["n_images"]]
    lines = [
        "# VirtualContrast evaluation",
        "",
        f"> **{NOT_FOR_DIAGNOSIS}**",
        "",
        f"- Model: {result.model_name}, preset `{provenance['preset']}`, file `{provenance['model_path']}`",
        f"- Training data fingerprint: `{provenance['data_fingerprint']}`",
        f"- Manifest: `{provenance['manifest']}`, split `{result.split}`: {n} images, {n_masks} with lesion masks",
        baseline,
        f"- Metrics on the preprocessed images in [0,1] at {size}x{size} pixels ({provenance['comparison_space']}): "
        "MSE; PSNR with the target's maximum (Rofena et al. 2024, eq. 10); SSIM (scikit-image, data range 1); "
        "pixel-domain VIF (4 scales, sigma_n^2 = 2 on a 0-255 scale); lesion MAE = mean |prediction - DES| "
        "inside the lesion mask. Mean ± sample sd over images.",
        "",
        result.table,
        "",
    ]
    if infinite:
        lines += [f"PSNR is infinite for some images of {', '.join(infinite)} (prediction equal to the target); "
                  "those are left out of the PSNR mean.", ""]
    lines += ["The full report with every analysis of the papers, statistics and figures: [report.html](report.html).",
              "Per-image values: [per_image.csv](per_image.csv); all summary statistics: [summary.csv](summary.csv); "
              "provenance: [provenance.json](provenance.json).",
              "", "## Error heatmaps",
              "", f"LE | DES | synthetic | |synthetic - DES| (colour scale 0 to {error_vmax:.3f}, "
              "lesion outlined in cyan).", ""]
    lines += [f"- [{p.stem}](heatmaps/{p.name})" for p in result.heatmaps]
    return "\n".join(lines) + "\n"
