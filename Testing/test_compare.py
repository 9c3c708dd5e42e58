"""k-fold splits stratified by label, and `virtual-contrast compare` end to end through the CLI.

The comparison runs once per module (2 presets x 2 of 3 folds on the
6-image phantom, tiny networks, one epoch); the tests read its folder.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from VirtualContrastTraining.cli import main
from VirtualContrastTraining.compare import TABLE_METRICS, format_comparison
from VirtualContrastTraining.data.manifest import Case, read_manifest
from VirtualContrastTraining.data.splits import kfold_splits
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.evaluation.evaluate import IDENTITY_NAME, LINEAR_NAME
from VirtualContrastTraining.events import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_OK, EventWriter, parse_event
from VirtualContrastTraining.train import load_run_config, train

from test_transfer import CancelAtStart

PRESETS = ("demo", "rofena2024-cyclegan")
# image_size 48: VIF needs at least 41x41 pixels.
TINY = {"ngf": 4, "ndf": 4, "n_blocks": 1, "image_size": 48, "epochs": 1, "batch_size": 2}
METRICS = ("MSE", "PSNR", "VIF", "SSIM", "lesion_MAE")


# --- k-fold by label -----------------------------------------------------------------------

def labelled_cases() -> list[Case]:
    """25 patients of two images: 12 benign, 7 malignant, 5 normal, 1 with a benign and a malignant breast."""
    labels = ["Benign"] * 12 + ["Malignant"] * 7 + ["Normal"] * 5 + ["mixed"]
    cases = []
    for p, label in enumerate(labels):
        for i, image_label in enumerate(["Benign", "Malignant"] if label == "mixed" else [label, label]):
            cases.append(Case(case_id=f"P{p}_{i}", patient_id=f"P{p}", le_path="x", label=image_label))
    return cases


@pytest.mark.parametrize("seed", range(4))
def test_kfold_by_label_spreads_every_label_over_the_folds(seed):
    cases = labelled_cases()
    k = 5
    folds = kfold_splits(cases, k, seed, stratify="label")
    patient_label = {c.patient_id: c.label for c in cases}
    patient_label["P24"] = "mixed"
    per_label = Counter(patient_label.values())
    tested = Counter()
    for fold in folds:
        splits_of = defaultdict(set)
        for c in fold:
            splits_of[c.patient_id].add(c.split)
        assert all(len(s) == 1 for s in splits_of.values()), "a patient in two splits of one fold"
        test = [p for p, s in splits_of.items() if s == {"test"}]
        assert len(test) == 5
        by_label = Counter(patient_label[p] for p in test)
        for label, n in per_label.items():
            assert by_label[label] in (n // k, -(-n // k)), (label, by_label)
        tested.update(test)
    assert len(tested) == 25 and set(tested.values()) == {1}
    again = kfold_splits(list(reversed(cases)), k, seed, stratify="label")
    assert [[c.split for c in sorted(f, key=lambda c: c.case_id)] for f in again] == \
           [[c.split for c in sorted(f, key=lambda c: c.case_id)] for f in folds]


def test_kfold_stratification_refusals():
    cases = labelled_cases()
    with pytest.raises(InputError, match="unknown stratification 'density': use lesion or label"):
        kfold_splits(cases, 5, 0, stratify="density")
    cases[3].label = " "
    with pytest.raises(InputError, match="1 case\\(s\\) have an empty label column \\(e.g. P1_1\\)"):
        kfold_splits(cases, 5, 0, stratify="label")
    kfold_splits(cases, 5, 0)  # labels do not matter to the default lesion stratification


# --- virtual-contrast compare ---------------------------------------------------------------

def _args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["compare", "--presets", ",".join(PRESETS), "--manifest", str(manifest), "--out", str(out),
            "--folds", "3", "--only-folds", "0,1", "--device", "cpu",
            *(f"--set={k}={v}" for k, v in TINY.items()), *extra]


def _run_cli(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    return code, out.getvalue()


def _events(stdout: str) -> list[dict]:
    return [e for e in map(parse_event, stdout.splitlines()) if e]


def _results(events: list[dict]) -> list[dict]:
    """The info events that report a run's result ("trained ...", "reused ..."), not its "== run i/n" heading."""
    return [e for e in events if e["event"] == "info" and not e["message"].startswith("==")]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, small_phantom) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("compare") / "cmp"
    code, stdout = _run_cli(_args(small_phantom, out))
    assert code == EXIT_OK
    return out, stdout


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _value(text: str) -> float:
    return float(text) if text else float("nan")


def test_compare_writes_the_table_with_every_preset(comparison):
    out, stdout = comparison
    events = _events(stdout)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert events[0]["runs"] == 4 and events[0]["folds"] == [0, 1]
    infos = _results(events)
    assert [e["run"] for e in infos] == [f"{p}/fold_{f}" for f in (0, 1) for p in PRESETS]
    assert all(e["message"].startswith("trained ") for e in infos)
    assert {e["run"] for e in events if e["event"] == "progress"} == {e["run"] for e in infos}

    report = (out / "comparison.md").read_text(encoding="utf-8")
    main, tests = report.split("## Paired tests between presets")
    table = [line for line in main.splitlines() if line.startswith("|")]
    arrow = {"lower": "↓", "higher": "↑"}
    titles = [f"{columns.column(m).title} {arrow[columns.column(m).better]}" for m in TABLE_METRICS]
    assert table[0] == "| " + " | ".join(["model", "folds", *titles]) + " |"
    rows = {line.split(" | ")[0].strip("| *"): line for line in table[2:]}
    assert list(rows) == [*PRESETS, IDENTITY_NAME, LINEAR_NAME]
    for line in rows.values():
        cells = line.strip("|").split(" | ")
        assert cells[1].strip() == "2" and all(" ± " in c for c in cells[2:]), line
    assert "\n".join(table) in stdout  # the table is printed too

    # The two presets paired on the same test images of both folds, one line per metric.
    pairs = [line for line in tests.splitlines() if line.startswith(f"| {PRESETS[0]} vs {PRESETS[1]} |")]
    assert len(pairs) == len(TABLE_METRICS)
    n_test = sum(int(r["n_images"]) for r in _read_csv(out / "comparison.csv")
                 if r["model"] == PRESETS[0] and r["fold"] in ("0", "1"))
    assert f"| {columns.column('PSNR').title} | {n_test} |" in "".join(pairs)
    for preset in PRESETS:
        html = (out / "reports" / f"{preset}.html").read_text(encoding="utf-8")
        assert "over 2 folds (folds 0, 1)" in html and f"<title>{preset}: 3-fold" in html, preset


def test_csv_values_are_means_over_each_folds_test_images_then_across_folds(comparison):
    out, _ = comparison
    rows = _read_csv(out / "comparison.csv")
    assert [(r["model"], r["fold"]) for r in rows if r["model"] in PRESETS] == \
           [(p, f) for p in PRESETS for f in ("0", "1", "mean", "sd")]
    folds = {f: {c.patient_id for c in read_manifest(out / "folds" / f"fold_{f}.csv") if c.split == "test"}
             for f in (0, 1)}
    assert folds[0] and folds[1] and not folds[0] & folds[1]
    for preset in PRESETS:
        mine = {r["fold"]: r for r in rows if r["model"] == preset}
        for fold in (0, 1):
            run = out / "runs" / preset / f"fold_{fold}"
            # Every preset trained on the same fold.
            assert [(c.case_id, c.split) for c in read_manifest(run / "manifest.csv")] == \
                   [(c.case_id, c.split) for c in read_manifest(out / "folds" / f"fold_{fold}.csv")]
            images = [r for r in _read_csv(run / "evaluation" / "per_image.csv")
                      if r["model"] not in (IDENTITY_NAME, LINEAR_NAME)]
            assert {r["case_id"] for r in images} == {c.case_id for c in read_manifest(out / "folds" / f"fold_{fold}.csv")
                                                       if c.split == "test"}
            for m in METRICS:
                expected = np.nanmean([_value(r[m]) for r in images])
                assert _value(mine[str(fold)][m]) == pytest.approx(expected, rel=1e-12), (preset, fold, m)
        for m in METRICS:
            per_fold = [_value(mine[f][m]) for f in ("0", "1")]
            assert _value(mine["mean"][m]) == pytest.approx(np.mean(per_fold), rel=1e-12)
            assert _value(mine["sd"][m]) == pytest.approx(np.std(per_fold, ddof=1), rel=1e-9)


def test_rerun_reuses_finished_runs(comparison, small_phantom):
    out, _ = comparison
    models = sorted(out.glob("runs/*/fold_*/model.safetensors"))
    assert len(models) == 4
    before = {p: p.read_bytes() for p in [*models, out / "comparison.csv"]}
    code, stdout = _run_cli(_args(small_phantom, out))
    assert code == EXIT_OK
    events = _events(stdout)
    assert [e["message"].split()[0] for e in _results(events)] == ["reused"] * 4
    assert not [e for e in events if e["event"] == "progress"]
    assert {p: p.read_bytes() for p in before} == before


def test_a_cancelled_run_is_resumed(comparison, small_phantom, tmp_path):
    src, _ = comparison
    out = tmp_path / "cmp"
    shutil.copytree(src, out)
    run = out / "runs" / "demo" / "fold_1"
    config = load_run_config(run)
    shutil.rmtree(run)
    # The run as a SIGTERM right after its start leaves it: a step-0 checkpoint, no model, no evaluation.
    assert train(config, out / "folds" / "fold_1.csv", run, device="cpu",
                 events=EventWriter(CancelAtStart())) == EXIT_CANCELLED
    assert not (run / "model.safetensors").exists()
    code, stdout = _run_cli(_args(small_phantom, out))
    assert code == EXIT_OK
    infos = {e["run"]: e["message"].split()[0] for e in _results(_events(stdout))}
    assert infos == {"demo/fold_0": "reused", "rofena2024-cyclegan/fold_0": "reused",
                     "demo/fold_1": "resumed", "rofena2024-cyclegan/fold_1": "reused"}
    assert (run / "evaluation" / "per_image.csv").is_file()
    assert [r["model"] for r in _read_csv(out / "comparison.csv")].count("demo") == 4


def test_bad_input(comparison, small_phantom, tmp_path, capsys):
    assert main(["compare", "--presets", "demo,nope", "--manifest", str(small_phantom), "--out",
                 str(tmp_path / "a")]) == EXIT_BAD_INPUT
    assert "unknown preset 'nope'; valid presets: rofena2024-cyclegan, " in capsys.readouterr().err
    assert main(["compare", "--presets", "demo", "--manifest", str(small_phantom), "--out",
                 str(tmp_path / "b")]) == EXIT_BAD_INPUT
    assert "10-fold cross-validation needs at least 10 patients, got 4" in capsys.readouterr().err
    assert main(["compare", "--presets", "demo", "--manifest", str(small_phantom), "--out", str(tmp_path / "c"),
                 "--folds", "3", "--stratify", "label"]) == EXIT_BAD_INPUT
    assert "empty label column" in capsys.readouterr().err
    assert main(["compare", "--presets", "demo", "--manifest", str(small_phantom), "--out", str(tmp_path / "d"),
                 "--folds", "3", "--only-folds", "1,3"]) == EXIT_BAD_INPUT
    assert "distinct numbers from 0 to 2, got [1, 3]" in capsys.readouterr().err
    # Another k into the folder of an existing comparison would mix two experiments.
    out, _ = comparison
    assert main(["compare", "--presets", "demo", "--manifest", str(small_phantom), "--out", str(out),
                 "--folds", "4", "--only-folds", "0"]) == EXIT_BAD_INPUT
    assert "holds a comparison with other folds" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abcd"), "refused before writing anything"


# --- given fold manifests (--fold-manifests) -------------------------------------------------

def _fold_args(folds: Path, out: Path, *extra: str) -> list[str]:
    return ["compare", "--presets", ",".join(PRESETS), "--fold-manifests", str(folds), "--out", str(out),
            "--device", "cpu", *(f"--set={k}={v}" for k, v in TINY.items()), *extra]


def test_given_fold_manifests_identical_to_the_dealt_ones_reuse_every_run(comparison, tmp_path):
    """The comparison's own folds/ given back as fold manifests are the same folds: every run is reused."""
    src, _ = comparison
    out = tmp_path / "cmp"
    shutil.copytree(src, out)
    models = sorted(out.glob("runs/*/fold_*/model.safetensors"))
    before = {p: p.read_bytes() for p in models}
    code, stdout = _run_cli(_fold_args(src / "folds", out))
    assert code == EXIT_OK
    events = _events(stdout)
    assert events[0]["k"] == 2 and events[0]["folds"] == [0, 1] and events[0]["stratify"] is None
    assert events[0]["manifest"] is None and events[0]["fold_manifests"] == str(src / "folds")
    assert [e["message"].split()[0] for e in _results(events)] == ["reused"] * 4
    assert {p: p.read_bytes() for p in models} == before
    report = (out / "comparison.md").read_text(encoding="utf-8")
    n_cases = len(read_manifest(src / "folds" / "fold_0.csv"))
    assert f"- Fold manifests: `{(src / 'folds').resolve()}` (2 folds): {n_cases} images of 4 patients in all" in report
    assert "stratified" not in report.split("| model |")[0]
    # The same per-fold rows as the comparison that dealt the folds.
    assert [r for r in _read_csv(out / "comparison.csv") if r["fold"] in ("0", "1")] == \
           [r for r in _read_csv(src / "comparison.csv") if r["fold"] in ("0", "1")]


def _leaking(cases: list[Case]) -> list[Case]:
    """The cases with one image of a two-image patient moved to another split: that patient is in two splits."""
    patient = next(p for p, n in Counter(c.patient_id for c in cases).items() if n > 1)
    moved = next(c for c in cases if c.patient_id == patient)
    other = "test" if moved.split == "train" else "train"
    return [replace(c, split=other) if c.case_id == moved.case_id else c for c in cases]


def test_fold_manifests_bad_input(comparison, tmp_path, capsys):
    from VirtualContrastTraining.data.manifest import write_manifest

    src, _ = comparison
    folds = src / "folds"
    assert main(_fold_args(folds, tmp_path / "a", "--folds", "3")) == EXIT_BAD_INPUT
    assert "--folds and --stratify deal new folds from a manifest" in capsys.readouterr().err
    assert main(_fold_args(tmp_path / "nowhere", tmp_path / "b")) == EXIT_BAD_INPUT
    assert "folder of fold manifests not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(_fold_args(tmp_path / "empty", tmp_path / "c")) == EXIT_BAD_INPUT
    assert "no fold manifests: expected fold_0.csv, fold_1.csv" in capsys.readouterr().err

    cases = read_manifest(folds / "fold_0.csv")
    write_manifest(tmp_path / "leak" / "fold_0.csv", _leaking(cases))
    assert main(_fold_args(tmp_path / "leak", tmp_path / "d")) == EXIT_BAD_INPUT
    assert "appear in more than one split" in capsys.readouterr().err
    write_manifest(tmp_path / "notest" / "fold_0.csv", [replace(c, split="val") if c.split == "test" else c
                                                        for c in cases])
    assert main(_fold_args(tmp_path / "notest", tmp_path / "e")) == EXIT_BAD_INPUT
    assert "fold_0.csv: no test images: every fold needs train, val and test images" in capsys.readouterr().err
    write_manifest(tmp_path / "gap" / "fold_0.csv", cases)
    write_manifest(tmp_path / "gap" / "fold_2.csv", read_manifest(folds / "fold_1.csv"))
    assert main(_fold_args(tmp_path / "gap", tmp_path / "f", "--only-folds", "1")) == EXIT_BAD_INPUT
    assert "folds to run must be distinct numbers among 0, 2, got [1]" in capsys.readouterr().err
    # Given folds other than those of an existing comparison folder would mix two experiments.
    write_manifest(tmp_path / "swap" / "fold_0.csv", read_manifest(folds / "fold_1.csv"))
    assert main(_fold_args(tmp_path / "swap", src)) == EXIT_BAD_INPUT
    assert "holds a comparison with other folds" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abcdef"), "refused before writing anything"
    with pytest.raises(SystemExit):  # argparse: one of --manifest and --fold-manifests, not both
        main(["compare", "--presets", "demo", "--manifest", "m.csv", "--fold-manifests", str(folds), "--out", "x"])
    assert "not allowed with argument" in capsys.readouterr().err


def _entry(model: str, **means: float) -> dict:
    entry = {"model": model, "n_folds": 2}
    for m in TABLE_METRICS:
        entry.update({f"{m}_mean": means.get(m), f"{m}_sd": 0.1 if m in means else None, f"{m}_n": 2 * (m in means)})
    return entry


def test_no_preset_is_bold_where_a_baseline_beats_it():
    """PSNR: the identity beats both presets, so neither is bold; MSE (lower is better): the best preset beats
    both baselines and is bold; SSIM: a tie with the linear baseline is no win."""
    summary = [_entry("a", PSNR=20.0, MSE=0.010, SSIM=0.5), _entry("b", PSNR=21.0, MSE=0.020, SSIM=0.4),
               _entry(IDENTITY_NAME, PSNR=22.0, MSE=0.030, SSIM=0.3),
               _entry(LINEAR_NAME, PSNR=19.0, MSE=0.015, SSIM=0.5)]
    rows = {line.split(" | ")[0].strip("| *"): line.split(" | ") for line in
            format_comparison(summary, ["a", "b"]).splitlines()[2:]}
    column = {m: 2 + TABLE_METRICS.index(m) for m in ("PSNR", "MSE", "SSIM")}
    assert rows["a"][column["MSE"]].startswith("**")
    assert not any("**" in rows[m][column[k]] for m in ("a", "b") for k in ("PSNR", "SSIM"))
    assert not any("**" in cell for cell in rows["b"])
