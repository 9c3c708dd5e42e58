"""Resume is bit-exact for every preset family: killed mid-epoch, stopped after a "best" save, and extended.

For each family (cyclegan: demo; pix2pix with dropout and linear decay: hosseinipour2024-pix2pix-unet512, and
with a constant lr, so that its extension is compared too: rofena2024-pix2pix; supervised with dropout: perre2025-unet, a ronneberger-unet; patches: zormpas2026-cyclegan-patch), shrunk by
overrides to seconds on 2 cores, an uninterrupted 2-epoch run is the reference, and each of these must end with
every tensor of its training state (networks, optimiser moments, RNG states, image pools) and of its model equal
to the reference's, the other state fields equal too (history without its timings):

- killed mid-epoch: stopped after step 1 of epoch 1 (cyclegan: a real child process gets SIGTERM; the others
  in-process through the stop file, the same flag of the same loop), then resumed (`train --resume`);
- stopped right after the "best" save of epoch 1 (the stop file), then resumed;
- extended: a finished 1-epoch run resumed with `--epochs 2` equals the run started with 2 epochs, and its
  epoch 2 trains at the config's lr, not at the 0 that the 1-epoch schedule ends with. Extension must equal
  the longer run only where the schedule does not depend on the run's length (train.py's docstring); with a
  linear decay (the pix2pix family here) a changed --epochs is refused instead.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from VirtualContrastTraining.checkpoints import load_training_state, read_pair
from VirtualContrastTraining.config.presets import resolve_config
from VirtualContrastTraining.data.manifest import read_manifest, write_manifest
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EXIT_CANCELLED, EXIT_OK, STOP_FILE_ENV, EventWriter, parse_event
from VirtualContrastTraining.execution import Execution
from VirtualContrastTraining.train import train

REPO = Path(__file__).resolve().parents[1]
SMALL = {"ngf": 4, "ndf": 4, "batch_size": 2, "epochs": 2, "lr": 1e-3}
FAMILIES = {
    "cyclegan": ("demo", {**SMALL, "image_size": 32, "n_blocks": 1}),
    "pix2pix-dropout": ("hosseinipour2024-pix2pix-unet512", {**SMALL, "image_size": 32, "unet_depth": 5,
                                                             "epochs_decay": 1}),
    "pix2pix-dropout-constant-lr": ("rofena2024-pix2pix", {**SMALL, "image_size": 32, "unet_depth": 5,
                                                           "warmup": 0}),
    "supervised-dropout": ("perre2025-unet", {**SMALL, "image_size": 32, "unet_depth": 3}),
    "patches": ("zormpas2026-cyclegan-patch", {**SMALL, "n_blocks": 1, "patch_size": 32, "sw_stride": 16,
                                               "patches_per_image": 2, "spacing_mm": 2.0}),
}


@pytest.fixture(scope="module")
def manifest(small_phantom, tmp_path_factory) -> Path:
    """The 6-image phantom: patients 1-2 train (4 images, 2 steps per epoch), 3 val, 4 test."""
    splits = {"PHANTOM-0001": "train", "PHANTOM-0002": "train", "PHANTOM-0003": "val", "PHANTOM-0004": "test"}
    cases = [replace(c, split=splits[c.patient_id]) for c in read_manifest(small_phantom)]
    return write_manifest(tmp_path_factory.mktemp("split") / "manifest.csv", cases)


def _run(config, manifest: Path, run: Path, *, resume: bool = False, stream=None) -> int:
    """Deterministic mode asked for when the run starts; a resumed run keeps it without being told again."""
    return train(config, manifest, run, device="cpu", resume=resume, execution=Execution(deterministic=not resume),
                 events=EventWriter(stream or io.StringIO()))


def _kill_mid_epoch_then_resume(preset: str, sets: dict, manifest: Path, run: Path) -> None:
    """The CLI in a child process, SIGTERM after its first step (epoch 1 of 2 steps), then --resume in it (which
    keeps the deterministic mode the run started with)."""
    args = [sys.executable, "-m", "VirtualContrastTraining", "train", "--preset", preset, "--manifest", str(manifest),
            "--out", str(run), "--device", "cpu", "--json", *(f"--set={k}={v}" for k, v in sets.items())]
    # the reference's thread count: another one sums in another order, and floats differ in the last bits
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([*args, "--deterministic"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=env)
    last = {}
    for line in proc.stdout:
        last = parse_event(line) or last
        if last.get("event") == "progress" and last.get("step") == 1:
            proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=120) == EXIT_CANCELLED, err
    # the signal lands during step 2 or between steps: the child stops after step 1 or 2, inside epoch 1
    assert last["event"] == "cancelled" and last["step"] in (1, 2), last
    state = load_training_state(run)
    assert (state["epoch"], state["position"]) == (1, last["step"])
    done = subprocess.run([*args, "--resume"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert done.returncode == EXIT_OK, done.stderr


def _flatten(tree, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in _flatten(value, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): tree}


def _state_and_model(run: Path) -> dict[str, object]:
    state = load_training_state(run)
    for row in state["history"]:
        row.pop("epoch_time_s")
    model, _ = read_pair(run / "model.safetensors")
    return {**_flatten(state, "state."), **_flatten(model, "model.")}


def assert_same_run(run: Path, reference: Path) -> tuple[int, float]:
    """Every tensor and value of the training state and model equal; (tensors compared, max |difference|)."""
    got, want = _state_and_model(run), _state_and_model(reference)
    assert sorted(got) == sorted(want)
    tensors, worst, differ = 0, 0.0, []
    for key, value in want.items():
        other = got[key]
        if isinstance(value, torch.Tensor):
            tensors += 1
            same = other.dtype == value.dtype and other.shape == value.shape and torch.equal(other, value)
            if value.is_floating_point() and other.shape == value.shape and value.numel():
                worst = max(worst, float((other.double() - value.double()).abs().max()))
        elif isinstance(value, np.ndarray):
            same = np.array_equal(other, value)
        else:
            same = other == value or (value != value and other != other)  # NaN equals NaN here
        if not same:
            differ.append(key)
    assert not differ, f"{len(differ)} of {len(want)} entries differ (max |difference| {worst:g}): {differ[:8]}"
    return tensors, worst


def _lrs(run: Path) -> list[float]:
    return [float(row["lr"]) for row in csv.DictReader((run / "history.csv").open())]


class _StopAt(io.StringIO):
    """An event stream that creates the stop file at a given step, or once the epoch-1 checkpoint follows its
    "best" save: the stop the runner's stop file asks for, at a moment the test chooses exactly."""

    def __init__(self, stop_file: Path, step: int | None = None):
        super().__init__()
        self.stop_file, self.step, self.best = stop_file, step, False

    def write(self, text: str) -> int:
        for line in text.splitlines():
            event = parse_event(line) or {}
            if event.get("event") == "checkpoint" and event.get("reason") == "best" and event.get("epoch") == 1:
                self.best = True
            at_step = self.step is not None and event.get("event") == "progress" and event.get("step") == self.step
            if at_step or (self.step is None and self.best and event.get("reason") == "epoch"):
                self.stop_file.touch()
        return super().write(text)


def _stop_then_resume(config, manifest: Path, run: Path, stop_file: Path, step: int | None) -> dict:
    """Stopped through the stop file (at `step`, or after the best save of epoch 1), then resumed; the state
    saved at the stop."""
    assert _run(config, manifest, run, stream=_StopAt(stop_file, step)) == EXIT_CANCELLED
    stopped = load_training_state(run)
    stop_file.unlink()
    assert _run(config, manifest, run, resume=True) == EXIT_OK
    return stopped


@pytest.mark.parametrize("family", FAMILIES)
def test_resume_is_bit_exact(family, manifest, tmp_path, monkeypatch):
    preset, sets = FAMILIES[family]
    config = resolve_config(preset, sets)
    assert family in ("cyclegan", "patches") or config.dropout > 0
    reference = tmp_path / "reference"
    assert _run(config, manifest, reference) == EXIT_OK
    stop_file = tmp_path / "stop"
    monkeypatch.setenv(STOP_FILE_ENV, str(stop_file))

    killed = tmp_path / "killed"
    if family == "cyclegan":  # a real child and SIGTERM once; the stop file stops the same loop in-process
        _kill_mid_epoch_then_resume(preset, sets, manifest, killed)
    else:
        stopped = _stop_then_resume(config, manifest, killed, stop_file, step=1)
        assert (stopped["epoch"], stopped["position"]) == (1, 1)
    report = {"killed mid-epoch": assert_same_run(killed, reference)}

    after_best = tmp_path / "after-best"
    stopped = _stop_then_resume(config, manifest, after_best, stop_file, step=None)
    assert (stopped["epoch"], stopped["position"], stopped["best_epoch"]) == (2, 0, 1)
    report["after best"] = assert_same_run(after_best, reference)

    # extension: a finished 1-epoch run (its optimiser holds lr 0, epoch 2's lr in a 1-epoch schedule)
    # resumed with --epochs 2 must be the 2-epoch reference
    extended = tmp_path / "extended"
    assert _run(replace(config, epochs=1), manifest, extended) == EXIT_OK
    if config.epochs_decay:  # a longer decay would have trained epoch 1 at another lr: refused
        with pytest.raises(InputError, match="epochs 1 -> 2"):
            _run(config, manifest, extended, resume=True)
    else:
        assert _run(config, manifest, extended, resume=True) == EXIT_OK
        assert _lrs(extended) == _lrs(reference) == [config.lr] * 2  # epoch 2 does not train at lr 0
        report["extended"] = assert_same_run(extended, reference)
    print(f"{family}: " + json.dumps(report))
