"""k-fold cross-validation of several presets on identical folds, and the papers' comparison table.

Rofena et al. compare their models by MSE, PSNR, VIF and SSIM, each reported
as mean ± sd over the 10 folds of the per-fold value, the mean over that
fold's test images (001 Table 4.1, 002 Table I); 002 adds the lesion region.
`compare()` runs that protocol for any presets: for each fold (data/splits.py
kfold_splits: test fold i, val fold i+1, train the rest) and each preset it
trains a run (train.py) and evaluates its test split (evaluation/run.py), then
writes the table. All presets see the same folds, so the rows differ only by
the recipe. Given fold manifests (`fold_manifests`: fold_<i>.csv files, e.g.
the public VCE_CESM folds of 001 imported by data/ucbm_folds.py) replace the
dealt folds, so a comparison can run on another study's very splits.

    DIR/folds/fold_<i>.csv                     the manifest with fold i's splits
    DIR/runs/<preset>/fold_<i>/                a training run folder, with evaluation/ inside
    DIR/runs/<preset>/fold_<i>-events.jsonl    that run's training events
    DIR/comparison.md, DIR/comparison.csv      the table; one row per preset x fold + mean and sd

A long comparison can be stopped and started again with the same command: a
run whose evaluation is written and whose config is unchanged is reused, a
cancelled or unevaluated run is resumed (train(resume=True)); changing a
schedule field (e.g. --set epochs=...) resumes every run to the new schedule.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import sys
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from VirtualContrastTraining.atomic import ensure_writable_dir, write_text_atomic
from VirtualContrastTraining.checkpoints import has_training_state
from VirtualContrastTraining.config.presets import resolve_config
from VirtualContrastTraining.data.manifest import PATH_COLUMNS, read_manifest, write_manifest
from VirtualContrastTraining.data.prepared import prepare_case
from VirtualContrastTraining.data.preprocessing import PreprocessConfig
from VirtualContrastTraining.data.splits import (SPLITS, check_splits, kfold_splits, leakage_entry, leakage_text,
                                                 write_leakage)
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.evaluation.evaluate import IDENTITY_NAME, LINEAR_NAME, format_cell
from VirtualContrastTraining.evaluation.evaluation_folder import csv_text, read_evaluation
from VirtualContrastTraining.evaluation.report import build_report
from VirtualContrastTraining.evaluation.run import evaluate_run
from VirtualContrastTraining.evaluation.significance import across_folds, wilcoxon_models
from VirtualContrastTraining.events import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, EventTee, EventWriter
from VirtualContrastTraining.synthetic_wording import NOT_FOR_DIAGNOSIS
from VirtualContrastTraining.train import load_run_config, train

# The breast's PSNR and SSIM first (padding and air excluded), then the columns of 001 Table 4.1 in its order
# over the whole padded square (comparable with the papers), then the lesion-region MAE of 002; titles, formats
# and arrows (which direction is better) from columns.py.
TABLE_METRICS = ("breast_PSNR", "breast_SSIM", "MSE", "PSNR", "VIF", "SSIM", "lesion_MAE", "bright_MAE")
BASELINES = (IDENTITY_NAME, LINEAR_NAME)
STRATIFY_TEXT = {"lesion": "stratified by lesion-mask presence (002)", "label": "stratified by class label (004)"}
# evaluate_run writes summary.md last: its presence means the evaluation is complete.
EVALUATION_DONE = "summary.md"


@dataclass
class ComparisonResult:
    out_dir: Path
    code: int                       # events.EXIT_*; the table exists only when EXIT_OK
    rows: list[dict[str, Any]]      # one per model x fold: preset (or baseline) name, fold, metrics
    summary: list[dict[str, Any]]   # significance.across_folds: n_folds, n_images, <M>_mean, <M>_sd, <M>_n per model
    table: str = ""

    @property
    def markdown(self) -> Path:
        return self.out_dir / "comparison.md"

    @property
    def csv(self) -> Path:
        return self.out_dir / "comparison.csv"


def resolve_presets(names: list[str], overrides: dict[str, Any]) -> dict:
    """{name: TrainConfig} with the same overrides on every preset; all checked before anything runs."""
    if not names:
        raise InputError(None, "no presets to compare")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(None, f"preset(s) named twice: {', '.join(twice)}")
    return {name: resolve_config(name, overrides) for name in names}


def _comparable(cases) -> list:
    """Cases with their file paths made canonical, sorted by id, to compare two manifests' folds."""
    def real(path: str) -> str:
        return os.path.realpath(path) if path else ""

    return sorted((replace(c, **{key: real(getattr(c, key)) for key in PATH_COLUMNS}) for c in cases),
                  key=lambda c: c.case_id)


def read_fold_manifests(folder: str | os.PathLike) -> dict[int, list]:
    """{fold: cases} of the fold_<i>.csv manifests in `folder`, in fold order: folds made elsewhere, used as
    they are. Each must name a DES for every case and give every patient one of train/val/test, all three
    present (check_splits), or the comparison would not be a fair cross-validation; the exception is the
    leakage folds.json declares (001's image-level folds as published), which comparison.md then states."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "folder of fold manifests not found")
    found = {int(m.group(1)): path for path in folder.iterdir()
             if (m := re.fullmatch(r"fold_(\d+)\.csv", path.name)) and path.is_file()}
    if not found:
        raise InputError(folder, "no fold manifests: expected fold_0.csv, fold_1.csv, ... (as `virtual-contrast "
                                 "import FOLDS_DIR` writes them from fold files)")
    folds = {}
    for fold, path in sorted(found.items()):
        cases = read_manifest(path, require_des=True)
        check_splits(cases, path)
        empty = [s for s in SPLITS if not any(c.split == s for c in cases)]
        if empty:
            raise InputError(path, f"no {' or '.join(empty)} images: every fold needs train, val and test images")
        folds[fold] = cases
    return folds


def write_folds(folds: dict[int, list], out_dir: Path, only: list[int] | None) -> dict[int, Path]:
    """{fold: DIR/folds/fold_<fold>.csv} for the folds to run (`only`, default all of `folds`).

    An existing fold file must hold exactly the fold given now: otherwise the
    folder belongs to a comparison with another manifest, k, seed,
    stratification or fold manifests, and reusing its runs would mix two
    experiments.
    """
    numbers = list(folds)
    chosen = numbers if only is None else only
    if not chosen or len(set(chosen)) != len(chosen) or any(i not in folds for i in chosen):
        allowed = (f"from 0 to {len(numbers) - 1}" if numbers == list(range(len(numbers)))
                   else f"among {', '.join(map(str, numbers))}")
        raise InputError(None, f"folds to run must be distinct numbers {allowed}, got {chosen}")
    folds_dir = ensure_writable_dir(out_dir / "folds")
    write_leakage(folds_dir, {f"fold_{i}.csv": leakage_entry(folds[i]) for i in chosen})
    paths = {}
    for i in chosen:
        path = folds_dir / f"fold_{i}.csv"
        if path.is_file():
            if _comparable(read_manifest(path)) != _comparable(folds[i]):
                raise InputError(path, "this folder holds a comparison with other folds (another manifest, "
                                 "--folds, --seed, --stratify or --fold-manifests): use another --out")
        else:
            write_manifest(path, folds[i])
        paths[i] = path
    return paths


def _run_one(config, fold: int, fold_manifest: Path, run_dir: Path, device: str,
             relay: EventTee, deidentify: bool = False) -> tuple[str, int]:
    """Train (or resume, or reuse) one run and evaluate its test split: (what was done, exit code)."""
    evaluation = run_dir / "evaluation"
    started = has_training_state(run_dir)
    if started and (evaluation / EVALUATION_DONE).is_file() and load_run_config(run_dir) == config:
        return "reused", EXIT_OK
    if not started and run_dir.exists():  # a run that failed before its first checkpoint: nothing to keep
        shutil.rmtree(run_dir)
    elif evaluation.exists():  # it describes the model as it was before this training
        shutil.rmtree(evaluation)
    code = train(config, fold_manifest, run_dir, device=device, resume=started, events=EventWriter(relay))
    if code == EXIT_OK:
        evaluate_run(run_dir, fold_manifest, split="test", out_dir=evaluation, device=device, fold=fold,
                     deidentify=deidentify)
    return ("resumed" if started else "trained"), code


def _fold_rows(evaluation: Path, preset: str, fold: int) -> list[dict[str, Any]]:
    """The fold's per-model values from the run's evaluation/summary.csv: the preset's model, then the baselines.

    Each value is the mean over the fold's test images (evaluate.summarize: non-finite ones left out).
    """
    with open(evaluation / "summary.csv", encoding="utf-8", newline="") as fh:
        entries = list(csv.DictReader(fh))
    rows = []
    for e in entries:
        name = e["model"] if e["model"] in BASELINES else preset
        row: dict[str, Any] = {"model": name, "fold": fold, "n_images": int(e["n_images"]),
                               "n_lesion_masks": int(e["n_lesion_masks"])}
        row.update({m: float(e[f"{m}_mean"]) if e[f"{m}_mean"] else None for m in TABLE_METRICS})
        rows.append(row)
    return sorted(rows, key=lambda r: r["model"] in BASELINES)


def _best(summary: list[dict[str, Any]], presets: list[str]) -> dict[str, float]:
    """Best mean per metric among the presets (bold in the table, as in 001 Table 4.1); none for one preset,
    and none for a metric where a baseline (identity, linear) is as good as the best preset: bold would call
    a model best that does not beat copying or rescaling its input."""
    if len(presets) < 2:
        return {}
    best = {}
    for m in TABLE_METRICS:
        sign = -1.0 if columns.column(m).better == "lower" else 1.0
        means = [e[f"{m}_mean"] for e in summary if e["model"] in presets and e[f"{m}_mean"] is not None]
        baselines = [e[f"{m}_mean"] for e in summary if e["model"] in BASELINES and e[f"{m}_mean"] is not None]
        top = max(means, key=lambda v: sign * v, default=None)
        if top is not None and all(sign * top > sign * b for b in baselines):
            best[m] = top
    return best


def format_comparison(summary: list[dict[str, Any]], presets: list[str]) -> str:
    """Markdown table: rows = models (baselines in italics), columns = metrics, mean ± sd across folds."""
    head = ["model", "folds", *(f"{columns.column(m).title} {'↓' if columns.column(m).better == 'lower' else '↑'}"
                                for m in TABLE_METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = _best(summary, presets)
    for e in summary:
        cells = []
        for m in TABLE_METRICS:
            text = format_cell(e, m, columns.column(m).fmt)
            if m in best and e["model"] in presets and e[f"{m}_mean"] == best[m]:
                text = f"**{text}**"
            if 0 < e[f"{m}_n"] < e["n_folds"]:
                text += f" (n={e[f'{m}_n']})"
            cells.append(text)
        name = e["model"] if e["model"] in presets else f"*{e['model']}*"
        lines.append("| " + " | ".join([name, str(e["n_folds"]), *cells]) + " |")
    return "\n".join(lines)


def _csv_rows(rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: its fold rows, then a "mean" and an "sd" row across folds."""
    out = []
    for e in summary:
        out += [r for r in rows if r["model"] == e["model"]]
        for stat in ("mean", "sd"):
            out.append({"model": e["model"], "fold": stat, **{m: e[f"{m}_{stat}"] for m in TABLE_METRICS}})
    return out


def _evaluations(out_dir: Path, preset: str, folds: list[int]) -> list[Path]:
    return [out_dir / "runs" / preset / f"fold_{fold}" / "evaluation" for fold in folds]


def _preset_reports(out_dir: Path, presets: list[str], folds: list[int], k: int,
                    deidentify: bool = False) -> dict[str, Path]:
    """One HTML report per preset over all its folds (report.py pools the test images and adds the
    cross-validation table): DIR/reports/<preset>.html."""
    return {name: build_report(_evaluations(out_dir, name, folds), out_dir / "reports" / f"{name}.html",
                               title=f"{name}: {k}-fold cross-validation", deidentify=deidentify)
            for name in presets}


def _paired_tests(out_dir: Path, presets: list[str], folds: list[int]) -> str:
    """Markdown: the first preset against each other one, Wilcoxon signed-rank per metric over the test
    images of all folds (each image is tested in exactly one fold, so the pairs are the same images),
    Benjamini-Hochberg over the metrics (000's statistics); empty for one preset."""
    if len(presets) < 2:
        return ""
    rows = []
    for name in presets:
        for folder in _evaluations(out_dir, name, folds):
            evaluation = read_evaluation(folder)
            rows += [{**r, "model": name} for r in evaluation.rows if r["model"] == evaluation.model_name]
    lines = ["## Paired tests between presets", "",
             f"Wilcoxon signed-rank (two-sided) of `{presets[0]}` against each other preset, paired by test "
             "image over all folds; p adjusted by Benjamini-Hochberg over the metrics of each pair.", "",
             "| pair | metric | n | median difference (first − second) | p | p (BH) |", "|---|---|---|---|---|---|"]
    for other in presets[1:]:
        for entry in wilcoxon_models(rows, presets[0], other, TABLE_METRICS):
            p, q = (f"{v:.3g}" if v is not None else "n/a" for v in (entry["p"], entry["p_bh"]))
            diff = "n/a" if entry["median_difference"] is None else f"{entry['median_difference']:.4g}"
            title = columns.column(entry["metric"]).title
            lines.append(f"| {presets[0]} vs {other} | {title} | {entry['n']} | {diff} | {p} | {q} |")
    return "\n".join(lines) + "\n"


def _data_lines(manifest: Path | None, fold_manifests: Path | None, k: int, stratify: str | None, seed: int,
                cases: list, leakage: dict[int, dict]) -> list[str]:
    """The report's lines on the data and on where the folds come from (with the leakage of each fold run)."""
    size = f"{len(cases)} images of {len({c.patient_id for c in cases})} patients"
    if fold_manifests is None:
        return [f"- Manifest: `{manifest.resolve()}`: {size}",
                f"- {k}-fold cross-validation, patient-level, {STRATIFY_TEXT[stratify]}, seed {seed}: fold i is the "
                "test set, fold i+1 the validation set, the others train."]
    lines = [f"- Fold manifests: `{fold_manifests.resolve()}` ({k} folds): {size} in all",
             "- Cross-validation on the given folds (e.g. the public VCE_CESM folds of 001, imported with "
             "`virtual-contrast import`): train, val and test as those manifests set them."]
    return lines + [f"- Fold {fold}: {leakage_text(entry)}" for fold, entry in leakage.items()]


def _comparison_markdown(table: str, configs: dict, data_lines: list[str], folds: list[int],
                         overrides: dict[str, Any], reports: dict[str, Path], tests: str) -> str:
    """comparison.md: the configurations, the data, the fold table, the paired tests and links to the reports."""
    first = next(iter(configs))
    set_text = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "none"
    lines = [
        "# VirtualContrast comparison",
        "",
        f"> **{NOT_FOR_DIAGNOSIS}**",
        "",
        *data_lines,
        f"- Folds run: {', '.join(map(str, folds))} (manifests in [folds/](folds/)).",
        "- Presets: " + "; ".join(f"`{n}` ({c.source or 'no source'})" for n, c in configs.items()),
        f"- Overrides applied to every preset: {set_text}",
        "- Each cell: mean ± sd across folds of the per-fold value, the mean over that fold's test images "
        "(001 Table 4.1, 002 Table I). Metrics on the preprocessed [0,1] images at the model's input size "
        "(see each run's evaluation/summary.md). With two or more presets, the best per column in bold, and only "
        "where it also beats the identity and linear baselines (a column without bold: no preset does); "
        "(n=...) where fewer folds had a value (lesion MAE needs a lesion mask in the test fold).",
        "",
        table,
        "",
        f"Baselines (italics) from the evaluations of `{first}`: they depend on the data and the image size only.",
        "",
        "Per-fold values: [comparison.csv](comparison.csv); each run: `runs/<preset>/fold_<i>/` "
        "(model, history, evaluation/summary.md with per-image values and error heatmaps).",
        "",
        "Full reports over all folds (every analysis of the papers, statistics, figures): "
        + ", ".join(f"[{name}](reports/{path.name})" for name, path in reports.items()) + ".",
        "",
    ]
    return "\n".join(lines) + "\n" + (f"\n{tests}" if tests else "")


def compare(presets: list[str], manifest: str | os.PathLike | None, out_dir: str | os.PathLike, *,
            k: int | None = None, stratify: str | None = None, only_folds: list[int] | None = None,
            overrides: dict[str, Any] | None = None, seed: int = 0, device: str = "auto", events: EventWriter,
            fold_manifests: str | os.PathLike | None = None, deidentify: bool = False) -> ComparisonResult:
    """Train and evaluate every preset on every chosen fold; write comparison.md and .csv into `out_dir`.

    The folds are dealt from `manifest` (k folds, default 10; `stratify`
    default "lesion") or read from the folder `fold_manifests`
    (read_fold_manifests), one of the two. `overrides` (field -> value,
    strings allowed) apply to every preset; `seed` deals the folds and is
    every run's training seed unless `overrides` sets "seed". Bad input raises
    InputError (after a "failed" event); a run that fails or is cancelled ends
    the comparison with its exit code. `deidentify` evaluates and reports with
    pseudonyms of the case ids (evaluation/run.py).
    """
    out_dir = Path(out_dir)
    manifest = None if manifest is None else Path(manifest)
    fold_manifests = None if fold_manifests is None else Path(fold_manifests)
    try:
        return _compare(presets, manifest, fold_manifests, out_dir, k, stratify, only_folds, dict(overrides or {}),
                        seed, device, events, deidentify)
    except InputError as exc:
        events.emit("failed", error=str(exc))
        raise
    except Exception as exc:  # the protocol promises a "failed" event, whatever went wrong
        traceback.print_exc(file=sys.stderr)
        events.emit("failed", error=f"{type(exc).__name__}: {exc}")
        return ComparisonResult(out_dir, EXIT_FAILED, [], [])


def _folds(manifest: Path | None, fold_manifests: Path | None, k: int | None, stratify: str | None,
           seed: int) -> tuple[dict[int, list], list, int, str | None]:
    """(folds, all cases, k, stratification) from the manifest or the given fold manifests."""
    if (manifest is None) == (fold_manifests is None):
        raise InputError(None, "give one of the two: a manifest to deal folds from, or a folder of fold manifests")
    if fold_manifests is None:
        k, stratify = 10 if k is None else k, stratify or "lesion"
        cases = read_manifest(manifest, require_des=True)
        return dict(enumerate(kfold_splits(cases, k, seed, stratify))), cases, k, stratify
    if k is not None or stratify is not None:
        raise InputError(None, "--folds and --stratify deal new folds from a manifest: they do not apply to "
                               "given fold manifests")
    folds = read_fold_manifests(fold_manifests)
    cases = list({c.case_id: c for fold in folds.values() for c in fold}.values())
    return folds, cases, len(folds), None


def _check_cases(cases: list) -> None:
    """Every case read and prepared once (small) before anything is written: a missing or unusable image, or a
    window that cannot stretch it, is refused naming its file, not found hours later by the run of one fold
    with the comparison folder half made. (Before the "started" event: a line on stderr.)"""
    print(f"checking the {len(cases)} cases' images", file=sys.stderr, flush=True)
    for case in cases:
        prepare_case(case, PreprocessConfig(size=32))


def _compare(presets, manifest: Path | None, fold_manifests: Path | None, out_dir: Path, k, stratify, only_folds,
             overrides, seed, device, events: EventWriter, deidentify: bool = False) -> ComparisonResult:
    configs = resolve_presets(presets, {"seed": seed, **overrides})
    folds, all_cases, k, stratify = _folds(manifest, fold_manifests, k, stratify, seed)
    _check_cases(all_cases)
    fold_paths = write_folds(folds, out_dir, only_folds)
    leakage = {fold: leakage_entry(folds[fold]) for fold in fold_paths}
    jobs = [(fold, name) for fold in fold_paths for name in configs]
    events.emit("started", out=str(out_dir), manifest=str(manifest) if manifest else None,
                fold_manifests=str(fold_manifests) if fold_manifests else None, presets=list(configs), k=k,
                folds=list(fold_paths), stratify=stratify, runs=len(jobs), leakage=leakage)
    rows: list[dict[str, Any]] = []
    for index, (fold, name) in enumerate(jobs, start=1):
        run_dir = out_dir / "runs" / name / f"fold_{fold}"
        tag = {"run": f"{name}/fold_{fold}", "run_index": index, "runs": len(jobs)}
        cases = read_manifest(fold_paths[fold])
        patients = {s: len({c.patient_id for c in cases if c.split == s}) for s in ("train", "val", "test")}
        title = (f"run {index}/{len(jobs)}: preset {name}, fold {fold} (patients: train {patients['train']}, "
                 f"val {patients['val']}, test {patients['test']})")
        events.emit("info", **tag, message=f"== {title}")  # the run's heading, above the bar
        ensure_writable_dir(run_dir.parent)
        # The run's events go to its log; progress and validation on to the comparison's, tagged with the run.
        with EventTee(run_dir.parent / f"fold_{fold}-events.jsonl", mode="a", events=events,
                      forward=("progress", "validation"), tag=tag) as relay:
            done, code = _run_one(configs[name], fold, fold_paths[fold], run_dir, device, relay, deidentify)
        if code == EXIT_CANCELLED:
            events.emit("cancelled", **tag, message="run the same compare command again to continue")
            return ComparisonResult(out_dir, code, rows, [])
        if code != EXIT_OK:
            events.emit("failed", **tag, error=relay.error or f"training ended with exit code {code}")
            return ComparisonResult(out_dir, code, rows, [])
        fold_rows = _fold_rows(run_dir / "evaluation", name, fold)
        # Baselines depend on the fold's data only: those of the first preset stand for all.
        rows += [r for r in fold_rows if r["model"] not in BASELINES or name == presets[0]]
        test = ", ".join(f"{m} {fold_rows[0][m]:.4g}" for m in TABLE_METRICS if fold_rows[0][m] is not None)
        message = f"{done} {tag['run']}: test {test}"
        events.emit("info", **tag, message=message)

    order = [*configs, *BASELINES]
    rows.sort(key=lambda r: (order.index(r["model"]), r["fold"]))
    summary = across_folds(rows, TABLE_METRICS)
    table = format_comparison(summary, list(configs))
    result = ComparisonResult(out_dir, EXIT_OK, rows, summary, table)
    write_text_atomic(result.csv, csv_text(_csv_rows(rows, summary)))
    reports = _preset_reports(out_dir, list(configs), list(fold_paths), k, deidentify)
    tests = _paired_tests(out_dir, list(configs), list(fold_paths))
    data_lines = _data_lines(manifest, fold_manifests, k, stratify, seed, all_cases, leakage)
    write_text_atomic(result.markdown, _comparison_markdown(table, configs, data_lines, list(fold_paths), overrides,
                                                            reports, tests))
    events.emit("finished", comparison=str(result.markdown), csv=str(result.csv), runs=len(jobs),
                summary=[{"model": e["model"], **{f"{m}_{s}": e[f"{m}_{s}"] for m in TABLE_METRICS
                                                  for s in ("mean", "sd")}} for e in summary])
    return result
