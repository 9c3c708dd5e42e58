"""Evaluate a trained model against its real DES targets and two baselines.

Everything here (`evaluate_arrays`, `summarize`, the baselines) works on
prepared arrays, not files, so the Slicer module and tests call it directly;
the file-level step behind `virtual-contrast evaluate` is evaluation_run.py.

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

from typing import Any, Iterable

import numpy as np

from VirtualContrastTraining.data.preprocessing import (
    PreprocessConfig,
    breast_mask,
    breast_side,
    preprocess,
    preprocess_mask,
)
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.evaluation.analyses import (
    automatic_tissue_regions,
    change_metrics,
    setting_metrics,
    tissue_metrics,
)
from VirtualContrastTraining.evaluation.metrics import image_metrics
from VirtualContrastTraining.evaluation.significance import describe

IDENTITY_NAME = "identity (DES = LE)"
LINEAR_NAME = "linear LE->DES"
ARRAY_KEYS = ("le", "des", "mask", "fibroglandular", "adipose")
# The columns of summary.md's headline table (titles and formats from columns.py): the breast region first,
# then the whole padded square, as 001-004 compute it.
HEADLINE = ("breast_MSE", "breast_PSNR", "breast_SSIM", "breast_VIF", "lesion_MAE", "bright_MAE",
            "MSE", "PSNR", "SSIM", "VIF")
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
    of columns.py: metrics' pixel similarity, analyses' 003 settings, 000's change and tissue CNR, then
    the columns that carry their own `compute`.

    `cases[i]` holds case_id, le, des, mask (lesion, or None), optionally
    fibroglandular and adipose masks, and any descriptive fields (density,
    laterality, ...); `predictions[model][i]` is that model's DES for
    `cases[i]`. The breast (Otsu on the LE) bounds bright_MAE and 003's breast
    setting. A metric that cannot be computed (e.g. a blank DES) is a
    ValueError naming the case.
    """
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
                values.update(columns.computed(columns.ImageSet(
                    le=case["le"], des=case["des"], synthetic=pred, lesion=case.get("mask"), breast=context["breast"],
                    fibroglandular=context["fibroglandular"], adipose=context["adipose"])))
            except ValueError as exc:
                raise ValueError(f"case {case['case_id']}, model {model!r}: {exc}") from None
            values = {key: values[key] for key in columns.keys()}  # per_image.csv in registry order
            rows_by_model[model].append({"model": model, **info, "has_lesion_mask": values["lesion_MAE"] is not None,
                                         "tissue_rois": context["tissue_rois"], **values})
    return [row for rows in rows_by_model.values() for row in rows]


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model (in order of appearance): n_images, n_lesion_masks, and for each column of columns.py
    `<M>_mean`, `<M>_sd` and `<M>_n`, the number of finite values used (significance.describe).

    Non-finite values (PSNR of a perfect prediction is +inf) and missing ones
    (lesion MAE without a mask) are left out of mean and sd; `<M>_n` shows how many remain.
    """
    models = list(dict.fromkeys(r["model"] for r in rows))
    summary = []
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        summary.append({"model": model, "n_images": len(mine),
                        "n_lesion_masks": sum(bool(r["has_lesion_mask"]) for r in mine),
                        **describe(mine, columns.keys())})
    return summary


def format_cell(entry: dict[str, Any], metric: str, fmt: str) -> str:
    mean, sd = entry[f"{metric}_mean"], entry[f"{metric}_sd"]
    if mean is None:
        return "n/a"
    return f"{mean:{fmt}} ± {sd:{fmt}}" if sd is not None else f"{mean:{fmt}}"


def format_table(summary: list[dict[str, Any]]) -> str:
    """The headline Markdown table: model, n and the HEADLINE columns, mean ± sd (breast region first, then the
    whole square; each title names its region)."""
    head = ["model", "n", *(columns.column(m).title for m in HEADLINE)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in summary:
        cells = [e["model"], str(e["n_images"]), *(format_cell(e, m, columns.column(m).fmt) for m in HEADLINE)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def like_real_des(image, des_window: tuple[float, float], side: str, space) -> np.ndarray:
    """A synthetic DES image (in the LE's geometry) prepared exactly like the case's real DES: the real
    DES's (lo, hi) window, the same padding side, the same size. So patch models and external
    predictions are measured in the space where the real DES is."""
    lo, hi = des_window
    out, _ = preprocess(image, window=((lo + hi) / 2, hi - lo), config=space, side=side)
    return out


def histogram_rows(cases: list[dict[str, Any]], predictions: dict[str, list[np.ndarray]],
                   bins: int = HISTOGRAM_BINS) -> list[dict[str, Any]]:
    """Counts of breast-pixel intensities ([0,1], `bins` equal bins) of the real DES and of each model's
    DES over all cases: the real-vs-synthetic intensity distributions of 003 Fig. 5."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    breasts = [breast_mask(c["le"]) for c in cases]
    series = {"real DES": [c["des"] for c in cases], **predictions}
    counts = {name: sum(np.histogram(np.clip(img[b], 0, 1), bins=edges)[0] for img, b in zip(images, breasts))
              for name, images in series.items()}
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
    return evaluate_arrays([case], {model_name: [like_real_des(synthetic, des_params.window, side, space)]})[0]
