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
    DIR/plan.json                              the runs, numbered K = 0, 1, ... (fold by fold, presets within)

A long comparison can be stopped and started again with the same command: a
run whose evaluation is written and whose config is unchanged is reused, a
cancelled or unevaluated run is resumed (train(resume=True)); changing a
schedule field (e.g. --set epochs=...) resumes every run to the new schedule.

The runs are independent, so they can be spread (docs/cluster.md): `jobs`
runs several at a time in child processes of this machine (ChildRuns), and
the parts "plan" / "run" / "collect" let a scheduler run each run K on its
own node (a Slurm array), then write the same reports. A run is the same
whichever way it is started: the same config, seed, fold and reuse rules.
plan.json keeps a fingerprint of the configs, runs and folds, so that a run
or a collection given other options is refused rather than mixed in.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import traceback
from dataclasses import asdict, dataclass, replace
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
from VirtualContrastTraining.devices import available_cores, resolve_device
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.evaluation.evaluate import IDENTITY_NAME, LINEAR_NAME, format_cell
from VirtualContrastTraining.evaluation.evaluation_folder import csv_text, read_evaluation
from VirtualContrastTraining.evaluation.report import build_report
from VirtualContrastTraining.evaluation.run import evaluate_run
from VirtualContrastTraining.evaluation.significance import across_folds, wilcoxon_models
from VirtualContrastTraining.events import (EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, EventTee, EventWriter, ForcedStop,
                                            StopRequest, parse_event)
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
PLAN = "plan.json"


@dataclass
class ComparisonResult:
    out_dir: Path
    code: int                       # events.EXIT_*; the table exists only when EXIT_OK
    rows: list[dict[str, Any]]      # one per model x fold: preset (or baseline) name, fold, metrics
    summary: list[dict[str, Any]]   # significance.across_folds: n_folds, n_images, <M>_mean, <M>_sd, <M>_n per model
    table: str = ""
    plan: str = ""                  # the plan as text (part "plan")

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


def chosen_folds(folds: dict[int, list], only: list[int] | None) -> list[int]:
    """The folds to run: `only`, checked against `folds`, or all of them."""
    numbers = list(folds)
    chosen = numbers if only is None else only
    if not chosen or len(set(chosen)) != len(chosen) or any(i not in folds for i in chosen):
        allowed = (f"from 0 to {len(numbers) - 1}" if numbers == list(range(len(numbers)))
                   else f"among {', '.join(map(str, numbers))}")
        raise InputError(None, f"folds to run must be distinct numbers {allowed}, got {chosen}")
    return chosen


def write_folds(folds: dict[int, list], out_dir: Path, only: list[int] | None) -> dict[int, Path]:
    """{fold: DIR/folds/fold_<fold>.csv} for the folds to run (`only`, default all of `folds`).

    An existing fold file must hold exactly the fold given now: otherwise the
    folder belongs to a comparison with another manifest, k, seed,
    stratification or fold manifests, and reusing its runs would mix two
    experiments.
    """
    chosen = chosen_folds(folds, only)
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


@dataclass
class _Setup:
    """What a comparison is made of, resolved from its arguments before anything runs."""
    configs: dict                   # {preset: TrainConfig}
    folds: dict[int, list]          # {fold: cases}
    cases: list                     # every case once
    k: int
    stratify: str | None
    runs: list[tuple[int, str]]     # (fold, preset) of each run, in plan order: run K is runs[K]
    fingerprint: str                # of the configs, the runs and their folds' cases: what a plan is valid for

    @property
    def folds_run(self) -> list[int]:
        return list(dict.fromkeys(fold for fold, _ in self.runs))

    def run_dir(self, out_dir: Path, index: int) -> Path:
        fold, name = self.runs[index]
        return out_dir / "runs" / name / f"fold_{fold}"

    def label(self, index: int) -> str:
        fold, name = self.runs[index]
        return f"{name}/fold_{fold}"


def compare(presets: list[str], manifest: str | os.PathLike | None, out_dir: str | os.PathLike, *,
            k: int | None = None, stratify: str | None = None, only_folds: list[int] | None = None,
            overrides: dict[str, Any] | None = None, seed: int = 0, device: str = "auto", events: EventWriter,
            fold_manifests: str | os.PathLike | None = None, deidentify: bool = False, jobs: int = 1,
            part: str = "all", run: int | None = None) -> ComparisonResult:
    """Train and evaluate every preset on every chosen fold; write comparison.md and .csv into `out_dir`.

    The folds are dealt from `manifest` (k folds, default 10; `stratify`
    default "lesion") or read from the folder `fold_manifests`
    (read_fold_manifests), one of the two. `overrides` (field -> value,
    strings allowed) apply to every preset; `seed` deals the folds and is
    every run's training seed unless `overrides` sets "seed". Bad input raises
    InputError (after a "failed" event); a run that fails or is cancelled ends
    the comparison with its exit code. `deidentify` evaluates and reports with
    pseudonyms of the case ids (evaluation/run.py).

    `jobs` > 1 runs that many runs at a time, each in a child process (`part`
    "run"), with a device per job (_job_devices). `part` does one part only:
    "plan" writes the folds and DIR/plan.json, "run" trains and evaluates
    run `run` of that plan, "collect" writes the reports from finished runs;
    "all" does the three.
    """
    out_dir = Path(out_dir)
    manifest = None if manifest is None else Path(manifest)
    fold_manifests = None if fold_manifests is None else Path(fold_manifests)
    arguments = _arguments(presets, manifest, fold_manifests, out_dir, k, stratify, only_folds, overrides or {}, seed,
                           deidentify)
    try:
        setup = _setup(presets, manifest, fold_manifests, k, stratify, only_folds, dict(overrides or {}), seed,
                       deidentify)
        if part == "run":
            return _run_part(setup, out_dir, run, device, events, deidentify)
        if part == "collect":
            _check_plan(setup, out_dir)
            return _collect(setup, out_dir, manifest, fold_manifests, seed, dict(overrides or {}), events, deidentify)
        if part not in ("all", "plan"):
            raise ValueError(f"unknown part {part!r}")
        return _compare(setup, out_dir, manifest, fold_manifests, arguments, dict(overrides or {}), seed, device,
                        events, deidentify, jobs, part == "plan")
    except InputError as exc:
        events.emit("failed", error=str(exc))
        raise
    except Exception as exc:  # the protocol promises a "failed" event, whatever went wrong
        traceback.print_exc(file=sys.stderr)
        events.emit("failed", error=f"{type(exc).__name__}: {exc}")
        return ComparisonResult(out_dir, EXIT_FAILED, [], [])


def _arguments(presets, manifest: Path | None, fold_manifests: Path | None, out_dir: Path, k, stratify, only_folds,
               overrides: dict[str, Any], seed: int, deidentify: bool) -> list[str]:
    """The `compare` options that make this comparison, paths absolute: with `--run K` added, the command of one
    run (plan.json, the children of --jobs, a Slurm array task) from any folder."""
    data = ["--manifest", str(manifest.resolve())] if manifest else ["--fold-manifests", str(fold_manifests.resolve())]
    args = ["--presets", ",".join(presets), *data, "--out", str(out_dir.resolve()), "--seed", str(seed)]
    args += ["--folds", str(k)] if k is not None else []
    args += ["--stratify", stratify] if stratify else []
    args += ["--only-folds", ",".join(map(str, only_folds))] if only_folds is not None else []
    args += [f"--set={name}={value}" for name, value in overrides.items()]
    return args + (["--deidentify"] if deidentify else [])


def _run_command(arguments: list[str], index: int | str) -> str:
    """The shell command of run `index` (a number or a variable such as $SLURM_ARRAY_TASK_ID)."""
    return shlex.join([sys.executable, "-m", "VirtualContrastTraining", "compare", *arguments, "--run", str(index)])


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


def _setup(presets, manifest: Path | None, fold_manifests: Path | None, k, stratify, only_folds,
           overrides: dict[str, Any], seed: int, deidentify: bool) -> _Setup:
    configs = resolve_presets(presets, {"seed": seed, **overrides})
    folds, cases, k, stratify = _folds(manifest, fold_manifests, k, stratify, seed)
    runs = [(fold, name) for fold in chosen_folds(folds, only_folds) for name in configs]
    made_of = {"configs": {name: c.to_dict() for name, c in configs.items()}, "runs": runs,
               "folds": {fold: [asdict(c) for c in _comparable(folds[fold])] for fold, _ in runs},
               "deidentify": deidentify}
    fingerprint = hashlib.sha256(json.dumps(made_of, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return _Setup(configs, folds, cases, k, stratify, runs, fingerprint)


def _check_cases(cases: list) -> None:
    """Every case read and prepared once (small) before anything is written: a missing or unusable image, or a
    window that cannot stretch it, is refused naming its file, not found hours later by the run of one fold
    with the comparison folder half made. (Before the "started" event: a line on stderr.)"""
    print(f"checking the {len(cases)} cases' images", file=sys.stderr, flush=True)
    for case in cases:
        prepare_case(case, PreprocessConfig(size=32))


# --- the plan: one run per preset x fold, numbered for a scheduler --------------------------------------------

def _write_plan(setup: _Setup, out_dir: Path, arguments: list[str]) -> tuple[Path, str]:
    """DIR/plan.json (the runs, each with its command, and the fingerprint --run and --collect check) and the
    plan as text for a person."""
    runs = [{"index": i, "preset": name, "fold": fold, "run_dir": str(setup.run_dir(out_dir, i)),
             "command": _run_command(arguments, i)} for i, (fold, name) in enumerate(setup.runs)]
    collect = shlex.join([sys.executable, "-m", "VirtualContrastTraining", "compare", *arguments, "--collect"])
    path = out_dir / PLAN
    write_text_atomic(path, json.dumps({"fingerprint": setup.fingerprint, "runs": runs, "collect": collect},
                                       indent=1) + "\n")
    lines = [f"{len(runs)} runs (K: preset, fold -> run folder), plan in {path}:"]
    lines += [f"  {r['index']}: {r['preset']}, fold {r['fold']} -> {r['run_dir']}" for r in runs]
    lines += ["run K (e.g. K = $SLURM_ARRAY_TASK_ID, 0 to " f"{len(runs) - 1}):",
              "  " + _run_command(arguments, "K"), "then, when all are done:", "  " + collect]
    return path, "\n".join(lines)


def _check_plan(setup: _Setup, out_dir: Path) -> None:
    """The plan in `out_dir` must be one this command's comparison made: same presets, settings, runs and data."""
    path = out_dir / PLAN
    if not path.is_file():
        raise InputError(path, "no plan: run this compare command with --plan first")
    try:
        planned = json.loads(path.read_text(encoding="utf-8"))["fingerprint"]
    except (ValueError, KeyError, TypeError, OSError):
        raise InputError(path, "unreadable plan: run this compare command with --plan again") from None
    if planned != setup.fingerprint:
        raise InputError(path, f"the plan was made for other presets, settings or data (fingerprint {planned}, "
                               f"this command's {setup.fingerprint}): use the plan's own command, or --plan again")


def _done(setup: _Setup, out_dir: Path, index: int) -> bool:
    """Whether run `index` is evaluated with its config as planned (what _run_one reuses)."""
    run_dir = setup.run_dir(out_dir, index)
    return ((run_dir / "evaluation" / EVALUATION_DONE).is_file() and has_training_state(run_dir)
            and load_run_config(run_dir) == setup.configs[setup.runs[index][1]])


# --- running: in this process, one run of the plan, or children ----------------------------------------------

def _run_tagged(setup: _Setup, out_dir: Path, index: int, device: str, events: EventWriter,
                deidentify: bool) -> int:
    """Run `index` of the plan in this process, its events in its log and tagged on to `events`; its result in an
    "info" event (or a "failed"/"cancelled" one); the exit code."""
    fold, name = setup.runs[index]
    run_dir = setup.run_dir(out_dir, index)
    fold_path = out_dir / "folds" / f"fold_{fold}.csv"
    tag = {"run": setup.label(index), "run_index": index + 1, "runs": len(setup.runs)}
    patients = {s: len({c.patient_id for c in setup.folds[fold] if c.split == s}) for s in SPLITS}
    events.emit("info", **tag, message=f"== run {index + 1}/{len(setup.runs)}: preset {name}, fold {fold} "
                                       f"(patients: train {patients['train']}, val {patients['val']}, "
                                       f"test {patients['test']})")  # the run's heading, above the bar
    ensure_writable_dir(run_dir.parent)
    # The run's events go to its log; progress and validation on to the comparison's, tagged with the run.
    with EventTee(run_dir.parent / f"fold_{fold}-events.jsonl", mode="a", events=events,
                  forward=("progress", "validation"), tag=tag) as relay:
        done, code = _run_one(setup.configs[name], fold, fold_path, run_dir, device, relay, deidentify)
    if code == EXIT_CANCELLED:
        events.emit("cancelled", **tag, message="run the same compare command again to continue")
    elif code != EXIT_OK:
        events.emit("failed", **tag, error=relay.error or f"training ended with exit code {code}")
    else:
        row = _fold_rows(run_dir / "evaluation", name, fold)[0]
        test = ", ".join(f"{m} {row[m]:.4g}" for m in TABLE_METRICS if row[m] is not None)
        events.emit("info", **tag, message=f"{done} {tag['run']}: test {test}")
    return code


def _run_part(setup: _Setup, out_dir: Path, run: int | None, device: str, events: EventWriter,
              deidentify: bool) -> ComparisonResult:
    """`--run K`: run K of the plan only (a Slurm array task, or a child of --jobs)."""
    _check_plan(setup, out_dir)
    if run is None or not 0 <= run < len(setup.runs):
        raise InputError(out_dir / PLAN, f"no run {run} in the plan: its runs are numbered 0 to {len(setup.runs) - 1}")
    events.emit("started", out=str(out_dir), run=setup.label(run), run_index=run + 1, runs=len(setup.runs))
    code = _run_tagged(setup, out_dir, run, device, events, deidentify)
    if code == EXIT_OK:
        events.emit("finished", run=setup.label(run), out=str(setup.run_dir(out_dir, run)))
    return ComparisonResult(out_dir, code, [], [])


def _compare(setup: _Setup, out_dir: Path, manifest: Path | None, fold_manifests: Path | None,
             arguments: list[str], overrides, seed, device, events: EventWriter, deidentify: bool, jobs: int,
             plan_only: bool) -> ComparisonResult:
    _check_cases(setup.cases)
    folds = setup.folds_run
    write_folds(setup.folds, out_dir, folds)
    plan, plan_text = _write_plan(setup, out_dir, arguments)
    if plan_only:
        events.emit("finished", plan=str(plan), out=str(out_dir), runs=len(setup.runs))
        return ComparisonResult(out_dir, EXIT_OK, [], [], plan=plan_text)
    events.emit("started", out=str(out_dir), manifest=str(manifest) if manifest else None,
                fold_manifests=str(fold_manifests) if fold_manifests else None, presets=list(setup.configs),
                k=setup.k, folds=folds, stratify=setup.stratify, runs=len(setup.runs),
                leakage={fold: leakage_entry(setup.folds[fold]) for fold in folds})
    if jobs > 1:
        code = ChildRuns(setup, out_dir, arguments, events, jobs, device).run()
    else:
        code = next((c for c in (_run_tagged(setup, out_dir, i, device, events, deidentify)
                                 for i in range(len(setup.runs))) if c != EXIT_OK), EXIT_OK)
    if code != EXIT_OK:
        return ComparisonResult(out_dir, code, [], [])
    return _collect(setup, out_dir, manifest, fold_manifests, seed, overrides, events, deidentify)


def _job_devices(device: str, jobs: int) -> list[str]:
    """The device of each of `jobs` job slots: on a machine with G CUDA devices slot i gets cuda:(i mod G) when the
    device is auto or cuda; a named device (cpu, cuda:N) serves every slot."""
    chosen = resolve_device(device)
    if chosen.type == "cuda" and device.strip().lower() in ("auto", "cuda"):
        import torch  # lazy: torch
        return [f"cuda:{i % torch.cuda.device_count()}" for i in range(jobs)]
    return [str(chosen)] * jobs


def _threads_per_job(jobs: int) -> int:
    """The CPU threads of each job: this process's share (use_threads put its count in OMP_NUM_THREADS) split
    evenly, so that N jobs do not oversubscribe the cores."""
    cores = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or available_cores()
    return max(1, cores // jobs)


def _pump(index: int, stream, lines: queue.Queue) -> None:
    """A child's stdout, line by line, onto `lines`; (index, None) at its end."""
    for line in stream:
        lines.put((index, line))
    lines.put((index, None))


class ChildRuns:
    """The runs of a plan in child processes (`compare ... --run K`), at most `jobs` at a time, each slot on its
    own device (_job_devices) with its share of the threads.

    Each child writes its run's log as a run in this process does; this one
    shows one progress bar over all runs (steps summed; a run not yet started
    counts as long as the mean of those started), the children's result lines,
    and a line per failed run. A failed run does not stop the others; the
    comparison fails at the end naming the run folders. A stop (SIGTERM,
    Ctrl-C, the stop file) is passed on to every child as one SIGTERM (each
    saves its checkpoint, train.py), a second one as a second; the children
    run in their own session so that a terminal's Ctrl-C reaches them once,
    through this process.
    """

    def __init__(self, setup: _Setup, out_dir: Path, arguments: list[str], events: EventWriter, jobs: int,
                 device: str):
        self.setup, self.out_dir, self.arguments, self.events = setup, out_dir, arguments, events
        self.devices = _job_devices(device, jobs)
        self.threads = _threads_per_job(jobs)
        self.children: dict[int, tuple[subprocess.Popen, int]] = {}   # run index -> (process, slot)
        self.lines: queue.Queue = queue.Queue()
        self.steps: dict[int, tuple[int, int]] = {}                   # run index -> (step, total_steps)
        self.errors: dict[int, str] = {}
        self.cancelled = False

    def run(self) -> int:
        waiting = list(range(len(self.setup.runs)))
        stopping = False
        with StopRequest() as stop:
            try:
                while waiting or self.children:
                    if stop and not stopping:
                        stopping = True
                        waiting.clear()
                        self._signal()
                    while waiting and len(self.children) < len(self.devices):
                        self._start(waiting.pop(0))
                    try:
                        index, line = self.lines.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    if line is None:
                        self._ended(index)
                    else:
                        self._line(index, line)
            except ForcedStop:
                self._signal()
                for process, _ in self.children.values():
                    process.wait()
                self.cancelled = True
        return self._outcome(stop.by)

    def _start(self, index: int) -> None:
        slot = min(set(range(len(self.devices))) - {s for _, s in self.children.values()})
        command = [sys.executable, "-m", "VirtualContrastTraining", "compare", *self.arguments, "--run", str(index),
                   "--device", self.devices[slot], "--threads", str(self.threads), "--json"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, encoding="utf-8",
                                   start_new_session=True)
        self.children[index] = (process, slot)
        threading.Thread(target=_pump, args=(index, process.stdout, self.lines), daemon=True).start()

    def _signal(self) -> None:
        for process, _ in self.children.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def _line(self, index: int, line: str) -> None:
        event = parse_event(line)
        if event is None:
            return
        kind = event.pop("event")
        if kind == "progress" and event.get("total_steps"):
            self.steps[index] = (event.get("step", 0), event["total_steps"])
            self._progress()
        elif kind in ("validation", "info"):
            self.events.emit(kind, **event)
        elif kind == "failed":
            self.errors[index] = event.get("error") or "failed"

    def _ended(self, index: int) -> None:
        process, _ = self.children.pop(index)
        code = process.wait()
        if code == EXIT_OK:
            total = self.steps.get(index, (0, self._mean_total()))[1]
            self.steps[index] = (total, total)
            self._progress()
        elif code == EXIT_CANCELLED:
            self.cancelled = True
        else:
            error = self.errors.setdefault(index, f"exit code {code}")
            self.events.emit("info", run=self.setup.label(index), message=f"failed {self.setup.label(index)}: "
                             f"{error} (log: {self.setup.run_dir(self.out_dir, index)}-events.jsonl)")

    def _mean_total(self) -> int:
        totals = [total for _, total in self.steps.values()]
        return round(sum(totals) / len(totals)) if totals else 0

    def _progress(self) -> None:
        runs = len(self.setup.runs)
        step = sum(s for s, _ in self.steps.values())
        total = sum(t for _, t in self.steps.values()) + self._mean_total() * (runs - len(self.steps))
        done = sum(s == t for s, t in self.steps.values())
        self.events.emit("progress", step=step, total_steps=total,
                         stage=f"{done}/{runs} runs done, {len(self.children)} running")

    def _outcome(self, stopped_by: str | None) -> int:
        if self.errors:
            folders = ", ".join(str(self.setup.run_dir(self.out_dir, i)) for i in sorted(self.errors))
            first = self.errors[min(self.errors)]
            self.events.emit("failed", error=f"{len(self.errors)} of {len(self.setup.runs)} runs failed: {folders} "
                                             f"(first error: {first})")
            return EXIT_FAILED
        if stopped_by or self.cancelled:
            self.events.emit("cancelled", by=stopped_by, message="run the same compare command again to continue")
            return EXIT_CANCELLED
        return EXIT_OK


# --- the reports from finished runs -------------------------------------------------------------------------

def _collect(setup: _Setup, out_dir: Path, manifest: Path | None, fold_manifests: Path | None, seed: int,
             overrides: dict[str, Any], events: EventWriter, deidentify: bool) -> ComparisonResult:
    """comparison.md/.csv and the reports from the evaluations of every run of the plan; InputError naming the
    runs that are not done."""
    missing = [i for i in range(len(setup.runs)) if not _done(setup, out_dir, i)]
    if missing:
        names = ", ".join(f"{i} ({setup.label(i)})" for i in missing)
        raise InputError(out_dir / "runs", f"{len(missing)} of {len(setup.runs)} runs not finished: {names}; "
                                           "run them (--run K) first")
    presets = list(setup.configs)
    folds = setup.folds_run
    rows: list[dict[str, Any]] = []
    for fold, name in setup.runs:
        fold_rows = _fold_rows(out_dir / "runs" / name / f"fold_{fold}" / "evaluation", name, fold)
        # Baselines depend on the fold's data only: those of the first preset stand for all.
        rows += [r for r in fold_rows if r["model"] not in BASELINES or name == presets[0]]
    order = [*presets, *BASELINES]
    rows.sort(key=lambda r: (order.index(r["model"]), r["fold"]))
    summary = across_folds(rows, TABLE_METRICS)
    table = format_comparison(summary, presets)
    result = ComparisonResult(out_dir, EXIT_OK, rows, summary, table)
    write_text_atomic(result.csv, csv_text(_csv_rows(rows, summary)))
    reports = _preset_reports(out_dir, presets, folds, setup.k, deidentify)
    tests = _paired_tests(out_dir, presets, folds)
    leakage = {fold: leakage_entry(setup.folds[fold]) for fold in folds}
    data_lines = _data_lines(manifest, fold_manifests, setup.k, setup.stratify, seed, setup.cases, leakage)
    write_text_atomic(result.markdown, _comparison_markdown(table, setup.configs, data_lines, folds, overrides,
                                                            reports, tests))
    events.emit("finished", comparison=str(result.markdown), csv=str(result.csv), runs=len(setup.runs),
                summary=[{"model": e["model"], **{f"{m}_{s}": e[f"{m}_{s}"] for m in TABLE_METRICS
                                                  for s in ("mean", "sd")}} for e in summary])
    return result
