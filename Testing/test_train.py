"""The training loop end to end on tiny real files: outputs, refusals, and cancel + exact resume.

The key test runs `python -m VirtualContrastTraining train` as a real child
process, cancels it with SIGTERM mid-epoch, resumes it, and checks that the
per-step losses and the final weights equal those of an uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from VirtualContrastTraining.checkpoints import load_generator, load_training_state
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import write_nrrd
from VirtualContrastTraining.data.manifest import Case, read_manifest, write_manifest
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EXIT_CANCELLED, EXIT_OK, EventWriter, parse_event
from VirtualContrastTraining.config.presets import resolve_config
from VirtualContrastTraining.recipes.cyclegan import LOSS_NAMES
from VirtualContrastTraining.train import epoch_order, train

REPO = Path(__file__).resolve().parents[1]
TINY = {"image_size": 32, "ngf": 4, "ndf": 4, "n_blocks": 1, "batch_size": 1, "epochs": 3, "lr": 1e-3}


def _write_dataset(root: Path, splits: list[str]) -> Path:
    """Smooth random 48x40 LE/DES pairs (left breasts: air in the right columns) and their manifest."""
    rng = np.random.default_rng(0)
    cases = []
    for i, split in enumerate(splits):
        le = ndimage.gaussian_filter(rng.random((48, 40)), 3) * 1000 + 500
        des = ndimage.gaussian_filter(rng.random((48, 40)), 2) * 800 + 0.3 * le
        le[:, 30:] = des[:, 30:] = 0
        write_nrrd(Image(le.astype(np.float32), (0.1, 0.1)), root / f"le{i}.nrrd")
        write_nrrd(Image(des.astype(np.float32), (0.1, 0.1)), root / f"des{i}.nrrd")
        cases.append(Case(case_id=f"c{i}", patient_id=f"p{i}", le_path=str(root / f"le{i}.nrrd"),
                          des_path=str(root / f"des{i}.nrrd"), laterality="L", view="CC", split=split))
    return write_manifest(root / "manifest.csv", cases)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("data"), ["train"] * 6 + ["val", "test"])


def _events(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    events = [parse_event(line) for line in lines]
    assert all(e is not None for e in events), "every stdout line must be a protocol event"
    return events


def test_tiny_run_writes_model_config_history_and_events(manifest, tmp_path):
    config = resolve_config("demo", {**TINY, "batch_size": 2, "epochs": 2})
    out = io.StringIO()
    run = tmp_path / "run"
    assert train(config, manifest, run, device="cpu", events=EventWriter(out)) == EXIT_OK

    events = _events(out.getvalue())
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    started = events[0]
    assert (started["n_train"], started["n_val"], started["total_steps"], started["device"]) == (6, 1, 6, "cpu")
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["step"] for e in progress] == list(range(1, 7))
    assert all(set(e["losses"]) == set(LOSS_NAMES) and e["eta_s"] >= 0 and e["images_per_s"] > 0 for e in progress)
    assert progress[-1]["eta_s"] == 0
    assert [e["epoch"] for e in events if e["event"] == "validation"] == [1, 2]

    assert json.loads((run / "config.json").read_text()) == config.to_dict()
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(math.isfinite(float(r["val_l1"])) for r in rows)
    assert {c.split for c in read_manifest(run / "manifest.csv")} == {"train", "val", "test"}

    G, sidecar = load_generator(run)
    finished = events[-1]
    assert sidecar["best"] == {"epoch": finished["best_epoch"], "val_l1": finished["val_l1"]}
    assert sidecar["synthetic_output"] is True and sidecar["config"] == config.to_dict()
    assert sidecar["preprocessing"]["size"] == 32 and len(sidecar["des_output_window"]) == 2
    assert {"python", "engine", "torch", "monai", "numpy"} <= set(sidecar["versions"])  # software_versions()
    assert len(sidecar["data_fingerprint"]) == 64
    state = load_training_state(run)
    assert (state["epoch"], state["position"], state["global_step"]) == (3, 0, 6)
    assert not list(run.glob(".*tmp*")), "atomic writes leave no temporary files"


def test_refusals(manifest, tmp_path):
    config = resolve_config("demo", TINY)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty: refusing to overwrite"):
        train(config, manifest, busy, device="cpu", events=EventWriter(io.StringIO()))
    out = io.StringIO()
    with pytest.raises(InputError, match="no training checkpoint"):
        train(config, manifest, tmp_path / "fresh", device="cpu", resume=True, events=EventWriter(out))
    assert _events(out.getvalue())[-1]["event"] == "failed"
    with pytest.raises(InputError, match="cuda:7"):
        train(config, manifest, tmp_path / "gpu", device="cuda:7", events=EventWriter(io.StringIO()))
    no_val = _write_dataset(tmp_path / "noval", ["train", "train", "test"])
    with pytest.raises(InputError, match="no case in the val split"):
        train(config, no_val, tmp_path / "new" / "deeper" / "r", device="cpu", events=EventWriter(io.StringIO()))
    assert not (tmp_path / "new").exists(), "a refused run leaves none of the folders it created"


def test_resume_may_extend_epochs_but_not_change_the_recipe(manifest, tmp_path):
    run = tmp_path / "run"
    config = resolve_config("demo", {**TINY, "batch_size": 3, "epochs": 1})
    assert train(config, manifest, run, device="cpu", events=EventWriter(io.StringIO())) == EXIT_OK
    with pytest.raises(InputError, match=r"lr 0.001 -> 0.01"):
        train(resolve_config("demo", {**TINY, "batch_size": 3, "epochs": 2, "lr": 1e-2}), manifest, run,
              device="cpu", resume=True, events=EventWriter(io.StringIO()))
    out = io.StringIO()
    longer = resolve_config("demo", {**TINY, "batch_size": 3, "epochs": 2})
    assert train(longer, manifest, run, device="cpu", resume=True, events=EventWriter(out)) == EXIT_OK
    steps = [e["step"] for e in _events(out.getvalue()) if e["event"] == "progress"]
    assert steps == [3, 4]
    assert [int(r["epoch"]) for r in csv.DictReader((run / "history.csv").open())] == [1, 2]
    assert json.loads((run / "config.json").read_text())["epochs"] == 2
    # a finished run resumed with the same schedule has nothing left to do
    out = io.StringIO()
    assert train(longer, manifest, run, device="cpu", resume=True, events=EventWriter(out)) == EXIT_OK
    assert [e["event"] for e in _events(out.getvalue())] == ["started", "finished"]


def test_early_stopping_after_patience_epochs_without_improvement(manifest, tmp_path):
    # lr so small that no float32 weight moves: the validation L1 never improves after epoch 1
    config = resolve_config("demo", {**TINY, "batch_size": 3, "epochs": 5, "patience": 2, "lr": 1e-15})
    out = io.StringIO()
    assert train(config, manifest, tmp_path / "run", device="cpu", events=EventWriter(out)) == EXIT_OK
    finished = _events(out.getvalue())[-1]
    assert (finished["stopped_early"], finished["epochs_run"], finished["best_epoch"]) == (True, 3, 1)


def test_warmup_keeps_early_stopping_from_counting(manifest, tmp_path):
    # as above, but the first 3 epochs are warm-up (001's public code): patience counts from epoch 4
    config = resolve_config("demo", {**TINY, "batch_size": 3, "epochs": 8, "patience": 2, "warmup": 3, "lr": 1e-15})
    out = io.StringIO()
    assert train(config, manifest, tmp_path / "run", device="cpu", events=EventWriter(out)) == EXIT_OK
    finished = _events(out.getvalue())[-1]
    assert (finished["stopped_early"], finished["epochs_run"], finished["best_epoch"]) == (True, 5, 1)


def test_max_steps_ends_training_inside_an_epoch_and_validates_there(manifest, tmp_path):
    config = resolve_config("demo", {**TINY, "batch_size": 2, "epochs": 10, "max_steps": 4})
    out = io.StringIO()
    assert train(config, manifest, tmp_path / "run", device="cpu", events=EventWriter(out)) == EXIT_OK
    events = _events(out.getvalue())
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2, 3, 4]  # 3 steps per epoch
    assert [e["epoch"] for e in events if e["event"] == "validation"] == [1, 2]
    assert events[-1]["steps"] == 4 and not events[-1]["stopped_early"]


def test_linear_decay_reaches_the_history_and_pins_the_schedule_on_resume(manifest, tmp_path):
    run = tmp_path / "run"
    config = resolve_config("demo", {**TINY, "batch_size": 3, "epochs": 4, "epochs_decay": 3, "lr": 1e-3})
    assert train(config, manifest, run, device="cpu", events=EventWriter(io.StringIO())) == EXIT_OK
    lrs = [float(r["lr"]) for r in csv.DictReader((run / "history.csv").open())]
    assert lrs == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3])  # pytorch-CycleGAN's "linear" policy
    with pytest.raises(InputError, match="epochs 4 -> 6"):
        train(replace(config, epochs=6), manifest, run, device="cpu", resume=True, events=EventWriter(io.StringIO()))


def test_cli_lists_presets_and_reports_bad_arguments(capsys, manifest, tmp_path):
    from VirtualContrastTraining.cli import main

    assert main(["train", "--list-presets"]) == EXIT_OK
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("rofena2024-cyclegan", "rofena2025-segcyclegan-g35", "demo"))
    assert main(["train", "--manifest", str(manifest), "--out", str(tmp_path / "r")]) == 2
    assert "missing --preset" in capsys.readouterr().err
    assert main(["train", "--preset", "demo", "--manifest", str(manifest), "--out", str(tmp_path / "r"),
                 "--set", "gama=1"]) == 2
    assert "valid fields" in capsys.readouterr().err


def test_cli_resume_keeps_the_saved_config_and_applies_only_explicit_options(capsys, manifest, tmp_path):
    """`train --preset P --resume` (as the README shows) continues the saved schedule, not the preset's."""
    from VirtualContrastTraining.cli import main

    run = tmp_path / "run"
    base = ["train", "--json", "--manifest", str(manifest), "--out", str(run), "--device", "cpu"]
    tiny = [f"--set={k}={v}" for k, v in {**TINY, "batch_size": 3, "epochs": 1, "patience": 2}.items()]
    assert main([*base, "--preset", "demo", *tiny]) == EXIT_OK
    saved = json.loads((run / "config.json").read_text())
    assert (saved["epochs"], saved["patience"], saved["ngf"]) == (1, 2, 4)
    capsys.readouterr()

    # --preset without overrides: the saved config (1 epoch, patience 2) is kept, nothing left to do
    assert main([*base, "--preset", "demo", "--resume"]) == EXIT_OK
    events = _events(capsys.readouterr().out)
    assert [e["event"] for e in events] == ["started", "finished"]
    assert events[0]["config"] == saved and json.loads((run / "config.json").read_text()) == saved

    # an explicit --epochs extends it; everything else stays as saved
    assert main([*base, "--resume", "--epochs", "2"]) == EXIT_OK
    events = _events(capsys.readouterr().out)
    assert [e["step"] for e in events if e["event"] == "progress"] == [3, 4]
    assert json.loads((run / "config.json").read_text()) == {**saved, "epochs": 2}

    # another preset, or an option that changes a step, is refused
    assert main([*base, "--preset", "rofena2024-cyclegan", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "started from preset 'demo'" in err and str(run / "config.json") in err
    assert main([*base, "--preset", "demo", "--resume", "--lr", "0.5"]) == 2
    assert "lr 0.001 -> 0.5" in capsys.readouterr().err


@pytest.mark.parametrize("field, value", [("lr", "nan"), ("gamma_lesion", "inf"), ("lambda_paired", "-inf"),
                                          ("beta1", "nan")])
def test_non_finite_config_values_refused(field, value):
    with pytest.raises(InputError, match=f"{field} must be a finite number"):
        resolve_config("demo", {field: value})


def test_cli_refuses_nan_lr_and_inf_gamma(capsys, manifest, tmp_path):
    from VirtualContrastTraining.cli import main

    base = ["train", "--preset", "demo", "--manifest", str(manifest), "--out", str(tmp_path / "r")]
    for extra, field in ((["--lr", "nan"], "lr"), (["--set", "gamma_lesion=inf"], "gamma_lesion")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{field} must be a finite number" in err
    assert not (tmp_path / "r").exists()


def test_saved_config_with_nan_refused_naming_the_file(manifest, tmp_path):
    from VirtualContrastTraining.train import load_run_config

    (tmp_path / "config.json").write_text(json.dumps({**resolve_config("demo").to_dict(), "lr": float("nan")}))
    with pytest.raises(InputError, match="lr must be a finite number") as err:
        load_run_config(tmp_path)
    assert str(tmp_path / "config.json") in str(err.value)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="config must be a JSON object"):
        load_run_config(tmp_path)


def test_epoch_order_is_a_seeded_permutation():
    assert sorted(epoch_order(10, 0, 1)) == list(range(10))
    assert epoch_order(10, 0, 1) == epoch_order(10, 0, 1)
    assert epoch_order(10, 0, 1) != epoch_order(10, 0, 2)


def _cli(manifest: Path, run: Path, *extra: str) -> list[str]:
    sets = [f"--set={k}={v}" for k, v in TINY.items()]
    return [sys.executable, "-m", "VirtualContrastTraining", "train", "--json", "--preset", "demo",
            "--manifest", str(manifest), "--out", str(run), "--device", "cpu", *sets, *extra]


def _child(args: list[str], cancel_after: int | None = None) -> tuple[int, list[dict]]:
    """Run the CLI as a child process reading events line by line; SIGTERM it after `cancel_after` steps."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    events = []
    for line in proc.stdout:
        event = parse_event(line)
        assert event is not None, f"not a protocol line: {line!r}"
        events.append(event)
        if cancel_after and event["event"] == "progress" and event["step"] == cancel_after:
            proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    assert code in (EXIT_OK, EXIT_CANCELLED), proc.stderr.read()
    proc.stderr.close()
    return code, events


def _step_losses(events: list[dict]) -> dict[int, list[float]]:
    return {e["step"]: [e["losses"][k] for k in LOSS_NAMES] for e in events if e["event"] == "progress"}


def test_sigterm_then_resume_equals_an_uninterrupted_run(manifest, tmp_path):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    code, full = _child(_cli(manifest, straight))
    assert code == EXIT_OK
    reference = _step_losses(full)
    assert sorted(reference) == list(range(1, 19))  # 3 epochs x 6 steps

    # Cancel in epoch 2 (steps 7-12): the child finishes its current step, saves, exits 75.
    code, first = _child(_cli(manifest, broken), cancel_after=8)
    assert code == EXIT_CANCELLED
    cancelled = first[-1]
    assert cancelled["event"] == "cancelled" and cancelled["signal"] == signal.SIGTERM
    stopped_at = cancelled["step"]
    assert 8 <= stopped_at < 18
    state = load_training_state(broken)
    assert state["global_step"] == stopped_at
    assert (state["epoch"], state["position"]) == ((stopped_at - 1) // 6 + 1, (stopped_at - 1) % 6 + 1)

    code, second = _child(_cli(manifest, broken, "--resume"))
    assert code == EXIT_OK
    assert second[0]["event"] == "started" and second[0]["resumed_at_step"] == stopped_at
    before, after = _step_losses(first), _step_losses(second)
    assert sorted(before) == list(range(1, stopped_at + 1))
    assert sorted(after) == list(range(stopped_at + 1, 19))
    joined = np.array([{**before, **after}[s] for s in range(1, 19)])
    np.testing.assert_allclose(joined, np.array([reference[s] for s in range(1, 19)]), rtol=1e-5, atol=1e-6)

    # Same validation results and bit-identical best generator.
    val = lambda events: {e["epoch"]: e["metrics"]["val_l1"] for e in events if e["event"] == "validation"}
    assert {**val(first), **val(second)} == pytest.approx(val(full), rel=1e-6)
    sha = lambda run: load_generator(run)[1]["weights_sha256"]
    assert sha(broken) == sha(straight)
    assert len(list(csv.DictReader((broken / "history.csv").open()))) == 3
