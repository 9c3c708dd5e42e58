"""`compare` spread over processes and machines (issue 17): --jobs N, and --plan / --run K / --collect.

The promise tested: however the runs are spread, the comparison is the same
one, comparison.csv equal to the number. Every comparison here is one preset
x 2 of 3 folds of the 6-image phantom with tiny networks, each run on one
thread (the float sums then do not depend on the spreading), through the CLI:
in this process, or a child process for --jobs (which starts children of its
own).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from VirtualContrastTraining.events import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, parse_event

from hostile import run_child, run_cli

TINY = {"ngf": 4, "ndf": 4, "n_blocks": 1, "image_size": 48, "epochs": 1, "batch_size": 2}  # VIF: 41 px or more


def _args(manifest: Path, out: Path, *extra: str, presets: str = "demo") -> list[str]:
    return ["compare", "--presets", presets, "--manifest", str(manifest), "--out", str(out), "--folds", "3",
            "--only-folds", "0,1", "--device", "cpu", *(f"--set={k}={v}" for k, v in TINY.items()), *extra]


def _child(*args: str):
    outcome = run_child(*args, "--json", timeout=240)
    return outcome, [e for e in map(parse_event, outcome.stdout.splitlines()) if e]


@pytest.fixture(scope="module")
def one_shot(tmp_path_factory, small_phantom) -> Path:
    """The reference: one `compare`, the runs one after the other in its process, on one thread."""
    out = tmp_path_factory.mktemp("scale") / "one"
    outcome = run_cli(*_args(small_phantom, out, "--threads", "1"))
    assert outcome.code == EXIT_OK, outcome.describe()
    return out


def test_jobs_give_the_same_comparison(one_shot, small_phantom, tmp_path):
    out = tmp_path / "jobs"
    outcome, events = _child(*_args(small_phantom, out, "--jobs", "2", "--threads", "2"))
    assert outcome.code == EXIT_OK, outcome.describe()
    assert (out / "comparison.csv").read_text() == (one_shot / "comparison.csv").read_text()
    # One bar over both runs, a result line per run, and each run's events in its own log as without --jobs.
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and all("run" not in e for e in progress)
    assert progress[-1]["step"] == progress[-1]["total_steps"] and "2/2 runs done" in progress[-1]["stage"]
    results = sorted(e["message"] for e in events if e["event"] == "info" and e["message"].startswith("trained"))
    assert [m.split(":")[0] for m in results] == ["trained demo/fold_0", "trained demo/fold_1"]
    for fold in (0, 1):
        log = [parse_event(line) for line in (out / "runs" / "demo" / f"fold_{fold}-events.jsonl").open()]
        assert log[0]["event"] == "started" and log[-1]["event"] == "finished"
    assert events[-1]["event"] == "finished"


def test_plan_run_each_then_collect_gives_the_same_comparison(one_shot, small_phantom, tmp_path):
    out = tmp_path / "cluster"
    outcome = run_cli(*_args(small_phantom, out, "--plan"))
    assert outcome.code == EXIT_OK, outcome.describe()
    plan = json.loads((out / "plan.json").read_text())
    assert [(r["index"], r["preset"], r["fold"]) for r in plan["runs"]] == [(0, "demo", 0), (1, "demo", 1)]
    assert plan["runs"][1]["run_dir"] == str(out / "runs" / "demo" / "fold_1")
    assert plan["runs"][1]["command"].endswith("--run 1") and plan["collect"].endswith("--collect")
    assert "0: demo, fold 0 -> " in outcome.stdout and "--run K" in outcome.stdout
    assert sorted(p.name for p in (out / "folds").glob("*.csv")) == ["fold_0.csv", "fold_1.csv"]
    assert not (out / "runs").exists(), "--plan trains nothing"

    outcome = run_cli(*_args(small_phantom, out, "--run", "1", "--threads", "1"))
    assert outcome.code == EXIT_OK, outcome.describe()
    assert (out / "runs" / "demo" / "fold_1" / "evaluation" / "summary.md").is_file()
    assert not (out / "runs" / "demo" / "fold_0").exists(), "--run K trains run K only"
    # Collect before every run is done: one line naming the missing run, and no table.
    outcome = run_cli(*_args(small_phantom, out, "--collect"))
    assert outcome.code == EXIT_BAD_INPUT and len(outcome.error_lines) == 1, outcome.describe()
    assert "1 of 2 runs not finished: 0 (demo/fold_0); run them (--run K) first" in outcome.error_lines[0]
    assert not (out / "comparison.csv").exists()

    outcome = run_cli(*_args(small_phantom, out, "--run", "0", "--threads", "1"))
    assert outcome.code == EXIT_OK, outcome.describe()
    outcome = run_cli(*_args(small_phantom, out, "--collect"))
    assert outcome.code == EXIT_OK, outcome.describe()
    assert (out / "comparison.csv").read_text() == (one_shot / "comparison.csv").read_text()
    assert (out / "reports" / "demo.html").is_file() and "| demo | 2 |" in outcome.stdout


def test_run_refuses_a_bad_index_another_comparison_or_no_plan(one_shot, small_phantom, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(one_shot, out)  # a one-shot compare leaves its plan too
    for extra, problem in [(("--run", "2"), "no run 2 in the plan: its runs are numbered 0 to 1"),
                           (("--run", "0", "--set", "epochs=2"), "the plan was made for other presets, settings"),
                           (("--collect", "--set", "lr=0.001"), "the plan was made for other presets, settings")]:
        outcome = run_cli(*_args(small_phantom, out, *extra))
        assert outcome.code == EXIT_BAD_INPUT and len(outcome.error_lines) == 1, outcome.describe()
        assert problem in outcome.error_lines[0] and "plan.json" in outcome.error_lines[0]
    outcome = run_cli(*_args(small_phantom, out, "--run", "0", presets="demo,rofena2024-cyclegan"))
    assert "the plan was made for other presets" in outcome.error_lines[0]
    outcome = run_cli(*_args(small_phantom, out, "--run", "0", "--jobs", "2"))
    assert outcome.error_lines == ["virtual-contrast compare: error: --jobs spreads the runs of a whole comparison: "
                                   "it does not apply to --run"]
    outcome = run_cli(*_args(small_phantom, tmp_path / "none", "--run", "0"))
    assert outcome.code == EXIT_BAD_INPUT
    assert "plan.json: no plan: run this compare command with --plan first" in outcome.error_lines[0]
    assert not (tmp_path / "none").exists()


def test_a_failed_job_fails_the_comparison_naming_its_run_folder(one_shot, small_phantom, tmp_path):
    """Run 1's evaluation is gone and its folds file is broken: that run fails, run 0 is still reused."""
    out = tmp_path / "broken"
    shutil.copytree(one_shot, out)
    shutil.rmtree(out / "runs" / "demo" / "fold_1")
    (out / "runs" / "demo" / "fold_1").write_text("not a folder")
    outcome, events = _child(*_args(small_phantom, out, "--jobs", "2", "--threads", "2"))
    assert outcome.code == EXIT_FAILED, outcome.describe()
    assert "reused demo/fold_0" in " ".join(e.get("message", "") for e in events)
    failed = [e for e in events if e["event"] == "failed"]
    assert len(failed) == 1 and f"1 of 2 runs failed: {out / 'runs' / 'demo' / 'fold_1'} " in failed[0]["error"]


def test_help_names_the_ways_to_spread_the_runs():
    outcome = run_cli("compare", "--help")
    text = " ".join(outcome.stdout.split())
    for words in ("--jobs N", "--plan", "--run K", "--collect", "$SLURM_ARRAY_TASK_ID", "docs/cluster.md"):
        assert words in text, words
