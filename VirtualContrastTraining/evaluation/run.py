"""`virtual-contrast evaluate`: a model (or synthetic DES files made elsewhere) on one manifest split, written
as an evaluation folder.

`evaluate_run` prepares the split with the model's own preprocessing,
predicts, measures every image against its real DES and the two baselines
(evaluate.py), and writes per_image.csv, summary.csv, histograms.csv,
provenance.json, heatmaps/<case>.png, report.html (report.py) and
summary.md, last, whose presence marks a complete folder.

With `deidentify` every case and patient id is replaced by its keyed pseudonym
(synthesis.case_pseudonym, keyed by the manifest's bytes: the same as predict
--deidentify gives for that manifest) as the manifest is read, so no table,
figure, file name or error message after that point holds an original id;
provenance.json records it ("deidentified": true) for `report --deidentify`.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from VirtualContrastTraining.atomic import atomic_dir, ensure_writable_dir, write_text_atomic
from VirtualContrastTraining.checkpoints import model_path as resolve_model
from VirtualContrastTraining.data.imageio import read_image
from VirtualContrastTraining.data.manifest import read_manifest, resolve
from VirtualContrastTraining.data.prepared import prepare_cases
from VirtualContrastTraining.data.preprocessing import PreprocessConfig, breast_mask, preprocess_mask
from VirtualContrastTraining.data.segmentation import read_lesion_mask
from VirtualContrastTraining.data.splits import check_splits, leakage_entry, leakage_text
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import Progress
from VirtualContrastTraining.evaluation.evaluate import (
    COMPARISON_SIZE,
    IDENTITY_NAME,
    LINEAR_NAME,
    evaluate_arrays,
    fit_linear_baseline,
    format_table,
    histogram_rows,
    identity_baseline,
    like_real_des,
    linear_baseline,
    summarize,
)
from VirtualContrastTraining.evaluation.evaluation_folder import csv_text
from VirtualContrastTraining.evaluation.panel_facts import native_spacing, panel_facts
from VirtualContrastTraining.evaluation.provenance import evaluation_provenance
from VirtualContrastTraining.evaluation.report import build_report, heatmap_stems
from VirtualContrastTraining.synthesis import (
    SynthesisInput,
    Synthesizer,
    case_pseudonym,
    pseudonym_key,
)
from VirtualContrastTraining.synthetic_export import des_window
from VirtualContrastTraining.synthetic_wording import NOT_FOR_DIAGNOSIS, UNITS_FIELD

# A synthetic whose range lies less than this share inside the real DES window is in other units (units_problem).
MIN_RANGE_INSIDE = 0.5
# The top of the heatmaps' shared error colour scale: this percentile of all pixels' errors, so that one outlier
# pixel cannot wash out every figure; the pixels above it show at the top colour, and each figure says how many.
ERROR_PERCENTILE = 99.5


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


def _identity(identifier: str, prefix: str = "case") -> str:
    return identifier


def _pseudonymizer(manifest_path: str | os.PathLike, deidentify: bool):
    """(id, prefix) -> what the evaluation writes: the id itself, or (`deidentify`) its keyed pseudonym."""
    if not deidentify:
        return _identity
    key = pseudonym_key(manifest_path)
    return lambda identifier, prefix="case": case_pseudonym(key, identifier, prefix)


def _select_split(manifest_path: str | os.PathLike, split: str, run_dir: Path | None, rename=_identity):
    """(cases of `split`, train cases) from a manifest with DES, case and patient ids through `rename`.

    A manifest without splits takes those the model was trained with (the run
    folder's manifest.csv, written by `train`), so the test split is truly held out.
    External synthetic images have no run folder (`run_dir` None): the manifest must set the splits.
    """
    cases = [replace(c, case_id=rename(c.case_id), patient_id=rename(c.patient_id, "patient") if c.patient_id else "")
             for c in read_manifest(manifest_path, require_des=True)]
    run_manifest = run_dir / "manifest.csv" if run_dir else None
    if any(not c.split for c in cases) and run_manifest and run_manifest.is_file():
        used = {rename(c.case_id): c.split for c in read_manifest(run_manifest)}
        cases = [replace(c, split=c.split or used.get(c.case_id, "")) for c in cases]
    unset = [c.case_id for c in cases if not c.split]
    if unset:
        raise InputError(manifest_path, f"the split column is empty for {len(unset)} case(s) (e.g. {unset[0]}) "
                         f"and no model's run folder assigns them: assign splits with "
                         f"`virtual-contrast split --manifest {manifest_path}`")
    check_splits(cases, manifest_path)
    chosen = [c for c in cases if c.split == split]
    if not chosen:
        present = ", ".join(sorted({c.split for c in cases}))
        raise InputError(manifest_path, f"no cases in split {split!r} (splits present: {present})")
    return chosen, [c for c in cases if c.split == "train"]


def _breast_side(prepared) -> str:
    """The breast side that reproduces a prepared case's padding (padding goes opposite the breast; the
    side is ignored for square and landscape images)."""
    return "left" if prepared.params.pad_side == "right" else "right"


def _patch_model_predictions(synth, prepared, space) -> list[np.ndarray]:
    """A patch model's synthetic DES of each case: synthesized from the LE file in the LE's geometry, then
    prepared like the real DES."""
    made = synth.synthesize_each(SynthesisInput.of_case(p.case) for p in prepared)
    return [like_real_des(fake, p.des_params.window, _breast_side(p), space) for p, (_, fake) in zip(prepared, made)]


def read_synthetic_list(path: str | os.PathLike, chosen, rename=_identity) -> dict[str, str]:
    """case_id (through `rename`, as `chosen` has them) -> synthetic DES file from a CSV with columns
    case_id, synthetic_path (relative paths are relative to the CSV). Every case of `chosen` needs one;
    InputError naming the CSV otherwise."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"case_id", "synthetic_path"} - set(reader.fieldnames or ())
            if missing:
                raise InputError(path, f"lacks column(s) {', '.join(sorted(missing))} (need case_id, synthetic_path)")
            files = {rename(row["case_id"].strip()): str(resolve(path, row["synthetic_path"].strip())) for row in reader
                     if (row.get("case_id") or "").strip() and (row.get("synthetic_path") or "").strip()}
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read the synthetic image list ({exc})") from None
    absent = [c.case_id for c in chosen if c.case_id not in files]
    if absent:
        raise InputError(path, f"no synthetic image for {len(absent)} case(s) of the evaluated split "
                               f"(e.g. {absent[0]})")
    return files


def synthetic_range(image) -> tuple[float, float, str]:
    """(low, high, where from) of a synthetic image's intensities: the window its metadata states (predict's
    outputs: the training set's DES window, with UNITS_FIELD), else the 1st-99th percentile of its breast
    pixels (Otsu: air and padding would pull the range to 0)."""
    window = des_window(image)
    if window:
        units = image.meta.get(UNITS_FIELD)
        return *window, f"its metadata: {units}" if units else "the window in its metadata"
    pixels = np.asarray(image.array, dtype=np.float64)
    inside = breast_mask(pixels) if np.ptp(pixels) > 0 else np.ones(pixels.shape, bool)
    low, high = np.percentile(pixels[inside], [1, 99])
    return float(low), float(high), "1st-99th percentile of its breast pixels"


def units_problem(synthetic: tuple[float, float], real: tuple[float, float]) -> str:
    """Why a synthetic range (low, high) cannot be scored with the real DES window (low, high), or "".

    The synthetic is stretched with the real DES's window before any metric,
    so what lies outside that window clips. Rule: at least MIN_RANGE_INSIDE
    (half) of the synthetic's range must lie inside the real window. Measured
    (docs/outputs.md): images in the same units pass with a wide margin (each
    real DES's own breast range, and a phantom model's window against the
    phantom's DES: 100 %; even the 8-bit LE scored as a synthetic on the
    CDD-CESM sample: 58-74 %), while other units share nothing (a phantom
    model's 1700..2400 against the sample's 8-bit DES windows, e.g. 3..136:
    0 %, every pixel clipped). Half sits between the two and still refuses a
    range that would lose most of its contrast to clipping. A single-valued
    range counts as inside or outside as a whole.
    """
    low, high = synthetic
    inside = max(0.0, min(high, real[1]) - max(low, real[0]))
    share = inside / (high - low) if high > low else float(real[0] <= low <= real[1])
    if share >= MIN_RANGE_INSIDE:
        return ""
    return f"{share:.0%} of it lies inside the real DES window {real[0]:g}..{real[1]:g}"


def _synthetic_from_files(files: dict[str, str], prepared, space) -> list[np.ndarray]:
    """Each case's synthetic file prepared like its real DES; InputError when it is not in the LE's geometry or
    not in the real DES's units (units_problem), in one line naming both files and both ranges."""
    out = []
    for p in prepared:
        path = files[p.case.case_id]
        image = read_image(path)
        if image.shape != p.le_image_shape:
            (r, c), (lr, lc) = image.shape, p.le_image_shape
            raise InputError(path, f"synthetic DES is {c}x{r} pixels but the LE of case "
                                   f"{p.case.case_id} is {lc}x{lr}: it must be in the LE's geometry")
        low, high, source = synthetic_range(image)
        problem = units_problem((low, high), p.des_params.window)
        if problem:
            raise InputError(path, f"synthetic DES range {low:g}..{high:g} ({source}) does not fit the real DES "
                                   f"{p.case.des_path} of case {p.case.case_id}: {problem}, so it would be scored "
                                   "clipped; give synthetic images in the real DES's units")
        out.append(like_real_des(image, p.des_params.window, _breast_side(p), space))
    return out


def _tissue_regions(prepared, space) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """(fibroglandular, adipose) masks in the evaluated space for cases whose manifest row gives both."""
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


def _split_leakage(manifest_path) -> str:
    """How many patients straddle the manifest's splits, as a sentence, or "" for patient-level splits: only
    image-level folds declared in a folds.json (001's, as published) pass check_splits with any."""
    entry = leakage_entry(read_manifest(manifest_path))
    return leakage_text(entry) if entry["straddling"] else ""


def _check_can_write(out_dir: Path) -> None:
    """InputError naming `out_dir` when it cannot be made or written, checked before minutes of synthesis but
    without creating it (evaluate_run makes it once every input has been read)."""
    existing = next(p for p in (out_dir, *out_dir.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(out_dir, f"cannot create output folder ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(out_dir, f"cannot create output folder ({existing} is not writable)")


def evaluate_run(model_path: str | os.PathLike | None, manifest_path: str | os.PathLike, *, split: str = "test",
                 out_dir: str | os.PathLike, device: str = "auto", synthetic: str | os.PathLike | None = None,
                 name: str | None = None, size: int = COMPARISON_SIZE, fold: int | None = None,
                 reader_study: str | os.PathLike | None = None, deidentify: bool = False,
                 progress: Progress | None = None) -> EvaluationResult:
    """Evaluate a trained model, or synthetic DES files made elsewhere, on one manifest split; write the
    report files (per_image.csv, summary.csv, histograms.csv, provenance.json, heatmaps/, report.html,
    summary.md last) into `out_dir`.

    A resize model is measured at its own input size; a patch model (000)
    and external files (`synthetic`: a CSV of case_id, synthetic_path, each
    in its LE's geometry) at `size` after preparing them like the real DES
    (module docstring), so all are comparable in one table. `reader_study`
    (a ratings CSV, reader_study.py) adds that analysis to the HTML report.
    `deidentify` writes pseudonyms of the case ids only (module docstring).
    `progress` is told after each stage and each case's figures (what takes
    a minute on a large split).
    """
    rename = _pseudonymizer(manifest_path, deidentify)
    if (model_path is None) == (synthetic is None):
        raise InputError(None, "evaluate needs either a trained model or a list of synthetic images, not both")
    if model_path is not None:
        if not Path(model_path).exists():
            raise InputError(model_path, "model not found: give a trained run folder or model file")
        chosen, train = _select_split(manifest_path, split, resolve_model(model_path).parent, rename)
        synth = Synthesizer.load(model_path, device=device)
        model_name, sidecar = synth.model_name, synth.sidecar
        space = synth.preprocess_config if synth.pipeline == "resize" else PreprocessConfig(size=size)
        space_text = ("the model's input" if synth.pipeline == "resize" else
                      "a patch model: synthesized in each LE's geometry, then padded and resized like the "
                      "real DES, with the real DES's window")
    else:
        chosen, train = _select_split(manifest_path, split, None, rename)
        files = read_synthetic_list(synthetic, chosen, rename)
        model_name, sidecar = name or f"external ({Path(synthetic).stem})", {}
        space = PreprocessConfig(size=size)
        space_text = "synthetic files in each LE's geometry, padded and resized like the real DES, with its window"
    _check_can_write(Path(out_dir))
    step = _stepper(progress, len(chosen) + 4)
    prepared = prepare_cases(chosen, space)
    step("cases read and prepared")
    le = np.stack([p.le for p in prepared])
    if model_path is None:
        predicted = _synthetic_from_files(files, prepared, space)
    elif synth.pipeline == "resize":
        predicted = list(synth.predict01(le))
    else:
        predicted = _patch_model_predictions(synth, prepared, space)
    predictions = {model_name: predicted, IDENTITY_NAME: [identity_baseline(x) for x in le]}
    linear_fit = None
    if train:
        train_prepared = prepare_cases(train, space)
        try:
            linear_fit = fit_linear_baseline((p.le for p in train_prepared), (p.des for p in train_prepared))
        except ValueError as exc:
            raise InputError(manifest_path, f"train split: {exc}") from None
        predictions[LINEAR_NAME] = [linear_baseline(x, *linear_fit) for x in le]
    step("synthesized, baselines fitted")

    cases = [{"case_id": p.case.case_id, "split": split, "density": p.case.density,
              "laterality": p.case.laterality, "view": p.case.view, "label": p.case.label,
              "le": p.le, "des": p.des, "mask": p.mask if p.has_mask else None,
              "fibroglandular": fibro, "adipose": fat}
             for p, (fibro, fat) in zip(prepared, _tissue_regions(prepared, space))]
    try:
        rows = evaluate_arrays(cases, predictions)
    except ValueError as exc:
        raise InputError(manifest_path, str(exc)) from None
    step("measured")
    out_dir = ensure_writable_dir(out_dir)  # now that every input has been read: a refusal leaves no folder
    result = EvaluationResult(out_dir, split, model_name, rows, summarize(rows), linear_fit)

    error_vmax = _write_heatmaps(out_dir, result, cases, prepared, predicted, step)
    provenance = evaluation_provenance(
        model_name=model_name, sidecar=sidecar, model_file=model_path and resolve_model(model_path),
        synthetic_list=synthetic, manifest=manifest_path, split=split, n_images=len(cases),
        image_size=int(le.shape[-1]), comparison_space=space_text, linear_fit=linear_fit,
        device=str(synth.device) if model_path is not None else "", fold=fold, deidentified=deidentify,
        split_leakage=_split_leakage(manifest_path))
    write_text_atomic(result.per_image_csv, csv_text(rows))
    write_text_atomic(result.summary_csv, csv_text(result.summary))
    write_text_atomic(out_dir / "histograms.csv", csv_text(histogram_rows(cases, predictions)))
    write_text_atomic(out_dir / "provenance.json", json.dumps(provenance, indent=2) + "\n")

    build_report([out_dir], result.report_html, reader_study=reader_study)
    write_text_atomic(result.summary_md, _summary_markdown(result, provenance, error_vmax))
    step("report written")
    return result


def _stepper(progress: Progress | None, total: int) -> Callable[[str], None]:
    """step(stage): one more of `total` steps done, told to `progress` (if any)."""
    done = 0

    def step(stage: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, stage)
    return step


def _write_heatmaps(out_dir: Path, result: EvaluationResult, cases, prepared, predicted,
                    step: Callable[[str], None]) -> float:
    """heatmaps/<stem>.png, .svg and .pdf of each case (heatmap_panels.py), all on one error colour scale, so
    figures compare: the ERROR_PERCENTILE of every image's errors, which each figure states with the share of
    its pixels above it. Returns that scale."""
    from VirtualContrastTraining.evaluation.heatmap_panels import write_heatmap_panel  # lazy: matplotlib, mpl_toolkits

    errors = np.abs(np.stack(predicted) - np.stack([c["des"] for c in cases]))
    error_vmax = float(np.percentile(errors, ERROR_PERCENTILE))
    source = f"the {ERROR_PERCENTILE:g}th percentile of the pixel errors of all {len(cases)} images"
    size = int(errors.shape[-1])
    stems = heatmap_stems(result.rows)
    with atomic_dir(out_dir / "heatmaps") as tmp:
        for case, p, pred in zip(cases, prepared, predicted):
            file_name = f"{stems[case['case_id']]}.png"
            facts = panel_facts(p, size, native_spacing(p.case.le_path))
            write_heatmap_panel(tmp / file_name, case["le"], case["des"], pred, mask=case["mask"],
                                title=f"{case['case_id']} - {result.model_name}", error_vmax=error_vmax or None,
                                vmax_source=source, facts=facts)
            result.heatmaps.append(out_dir / "heatmaps" / file_name)
            step("heatmap figures")
    return error_vmax


def _summary_markdown(result: EvaluationResult, provenance: dict[str, Any], error_vmax: float) -> str:
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
              "", f"LE | DES | synthetic | |synthetic - DES|, the breast cropped, lesion outlined in cyan; error "
              f"colour scale 0 to {error_vmax:.3f} ({ERROR_PERCENTILE:g}th percentile of all images' errors: "
              "each figure states the share of its pixels above it). Each as PNG (300 dpi), SVG and PDF.", ""]
    lines += [f"- [{p.stem}](heatmaps/{p.name}) ([SVG](heatmaps/{p.stem}.svg), [PDF](heatmaps/{p.stem}.pdf))"
              for p in result.heatmaps]
    return "\n".join(lines) + "\n"
