"""`virtual-contrast split`: the split column filled per patient, as train would draw it, written atomically, never
over the user's own splits without --overwrite; predict and evaluate point to it when a manifest has none."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace

import pytest

from conftest import make_tiny_model
from hostile import expect_clear_error, expect_handled, run_cli, snapshot
from VirtualContrastTraining.data.manifest import read_manifest, write_manifest
from VirtualContrastTraining.data.splits import assign_splits


@pytest.fixture
def manifest(small_phantom, tmp_path):
    """A writable copy of the phantom's manifest (4 patients, 6 images, no splits)."""
    return write_manifest(tmp_path / "data" / "manifest.csv", read_manifest(small_phantom))


def _events(outcome):
    return [json.loads(line) for line in outcome.stdout.splitlines()]


def test_split_in_place_by_patient_as_train_draws_it(manifest):
    outcome = run_cli("split", "--manifest", manifest, "--json")
    expect_handled(outcome)
    cases = read_manifest(manifest)
    splits_of = defaultdict(set)
    for case in cases:
        splits_of[case.patient_id].add(case.split)
    assert all(len(s) == 1 for s in splits_of.values()) and {c.split for c in cases} == {"train", "val", "test"}
    drawn = assign_splits([replace(c, split="") for c in cases], seed=0)
    assert [c.split for c in cases] == [c.split for c in drawn]  # what train would draw for seed 0
    events = _events(outcome)
    assert [e["event"] for e in events] == ["info", "info", "info", "finished"]
    counts = events[-1]["counts"]
    assert sum(n["images"] for n in counts.values()) == len(cases)
    assert counts["test"]["patients"] == len({c.patient_id for c in cases if c.split == "test"})
    assert events[0]["message"].startswith(f"train: {counts['train']['images']} images of "
                                           f"{counts['train']['patients']} patients")


def test_existing_splits_need_overwrite(manifest):
    assert run_cli("split", "--manifest", manifest, "--json").code == 0
    before = snapshot(manifest.parent)
    expect_clear_error(run_cli("split", "--manifest", manifest, "--seed", "5"), names=manifest,
                       says=("already have a split", "--overwrite"), before=before, watched=(manifest.parent,))
    first = [c.split for c in read_manifest(manifest)]
    seeds = [s for s in range(1, 20)
             if run_cli("split", "--manifest", manifest, "--seed", str(s), "--overwrite", "--json").code == 0
             and [c.split for c in read_manifest(manifest)] != first]
    assert seeds, "another seed draws other splits"


def test_out_writes_a_new_manifest_and_leaves_the_input(manifest, tmp_path):
    before = snapshot(manifest)
    out = tmp_path / "elsewhere" / "split.csv"
    out.parent.mkdir()
    expect_handled(run_cli("split", "--manifest", manifest, "--out", out, "--val", "0.25", "--test", "0.25",
                           "--json"))
    assert snapshot(manifest) == before
    cases = read_manifest(out)  # its paths resolve from the new folder
    assert all(c.split for c in cases) and all((tmp_path / "elsewhere" / c.le_path).is_file() for c in cases)
    expect_clear_error(run_cli("split", "--manifest", manifest, "--out", out), names=out, says="--overwrite")


@pytest.mark.parametrize("args, says", [
    (["--val", "0.6", "--test", "0.5"], "val + test < 1"),
    (["--val", "-0.1"], "shares in [0, 1)"),
    (["--stratify", "label"], "empty label column"),
])
def test_bad_requests_are_one_line(manifest, args, says):
    before = snapshot(manifest)
    expect_clear_error(run_cli("split", "--manifest", manifest, *args), names=None, says=says, before=before,
                       watched=(manifest,))


def test_predict_and_evaluate_point_to_split_then_predict_runs(manifest, tmp_path):
    """The README's `predict --split test` on an imported manifest: a pointer to `split`, then it works."""
    model = make_tiny_model(tmp_path / "run")
    hint = f"virtual-contrast split --manifest {manifest}"
    expect_clear_error(run_cli("predict", "--model", model, "--input", manifest, "--split", "test", "--out",
                               tmp_path / "syn", "--device", "cpu"), names=manifest, says=hint)
    expect_clear_error(run_cli("evaluate", "--synthetic", tmp_path / "synthetic.csv", "--manifest", manifest,
                               "--out", tmp_path / "ev"), names=manifest, says=hint)
    expect_handled(run_cli("split", "--manifest", manifest, "--json"))
    expect_handled(run_cli("predict", "--model", model, "--input", manifest, "--split", "test", "--out",
                           tmp_path / "syn", "--device", "cpu", "--json"))
    test_cases = [c for c in read_manifest(manifest) if c.split == "test"]
    assert sorted(p.name for p in (tmp_path / "syn").iterdir()) == sorted(
        f"{c.case_id}_SYNTHETIC-DES.nrrd" for c in test_cases)
