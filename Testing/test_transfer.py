"""Transfer learning (001, 002: pre-train on one dataset, fine-tune on another) through TrainConfig.init_from.

Run A is trained on one phantom; run B starts on another phantom from A's
weights. To see B's weights before its first step, B is cancelled the moment
it starts: train() then saves the training state of step 0 (the same path a
SIGTERM from Slicer takes).
"""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from VirtualContrastTraining.checkpoints import load_initial_weights, load_training_state, read_pair
from VirtualContrastTraining.cli import main
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_OK, EventWriter, parse_event
from VirtualContrastTraining.config.presets import resolve_config
from VirtualContrastTraining.recipes import build_recipe
from VirtualContrastTraining.train import train

TINY = {"ngf": 4, "ndf": 4, "n_blocks": 1, "image_size": 32, "epochs": 1, "batch_size": 2}


class CancelAtStart(io.StringIO):
    """Event stream that sends this process SIGTERM on the "started" event.

    train()'s handler turns it into a stop request, checked before the first
    step: the run saves its step-0 state and returns EXIT_CANCELLED.
    """

    def write(self, text: str) -> int:
        if any((parse_event(line) or {}).get("event") == "started" for line in text.splitlines()):
            os.kill(os.getpid(), signal.SIGTERM)
        return super().write(text)


@pytest.fixture(scope="module")
def other_phantom(tmp_path_factory) -> Path:
    """A second, different dataset to fine-tune on."""
    from VirtualContrastTraining.data.phantom import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("phantom_b") / "ph", 6, seed=11, pixel_mm=2.0)


@pytest.fixture(scope="module")
def run_a(tmp_path_factory, small_phantom) -> Path:
    run = tmp_path_factory.mktemp("transfer") / "A"
    assert train(resolve_config("demo", TINY), small_phantom, run, device="cpu",
                 events=EventWriter(io.StringIO())) == EXIT_OK
    return run


def _networks(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    return load_training_state(run)["recipe"]["networks"]


def _step0(config, manifest: Path, run: Path) -> dict[str, dict[str, torch.Tensor]]:
    assert train(config, manifest, run, device="cpu", events=EventWriter(CancelAtStart())) == EXIT_CANCELLED
    assert load_training_state(run)["global_step"] == 0
    return _networks(run)


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fine_tuning_starts_from_every_network_of_the_pretrained_run(run_a, other_phantom, tmp_path):
    a = _networks(run_a)
    # Another seed: random initial weights would differ from A's.
    config = resolve_config("rofena2025-segcyclegan-g35", {**TINY, "seed": 5})
    fresh = _step0(config, other_phantom, tmp_path / "fresh")
    assert not _equal(fresh["G"], a["G"])

    tuned = _step0(resolve_config("rofena2025-segcyclegan-g35", {**TINY, "seed": 5, "init_from": str(run_a)}),
                   other_phantom, tmp_path / "B")
    assert set(tuned) == set(a) == {"G", "F", "D_X", "D_Y"}
    assert all(_equal(tuned[name], a[name]) for name in a)


def test_a_model_file_initialises_the_generator_only(run_a):
    torch.manual_seed(5)
    recipe = build_recipe(resolve_config("demo", TINY), "cpu")
    loaded = load_initial_weights(recipe, run_a / "model.safetensors")
    assert loaded.startswith("G from ")
    model, _ = read_pair(run_a / "model.safetensors")
    assert _equal({k: v for k, v in recipe.networks["G"].state_dict().items()}, model)
    assert not _equal(recipe.networks["F"].state_dict(), _networks(run_a)["F"])


def test_another_architecture_is_refused_naming_the_file(run_a, other_phantom, tmp_path):
    config = resolve_config("demo", {**TINY, "ngf": 8, "init_from": str(run_a)})
    with pytest.raises(InputError, match="do not fit this preset's network") as err:
        train(config, other_phantom, tmp_path / "B", device="cpu", events=EventWriter(io.StringIO()))
    assert err.value.path == str(run_a / "checkpoint.safetensors")
    assert not (tmp_path / "B").exists()


def test_train_cli_init_from(run_a, other_phantom, tmp_path, capsys):
    tiny = [f"--set={k}={v}" for k, v in TINY.items()]
    base = ["train", "--json", "--preset", "demo", "--manifest", str(other_phantom), *tiny]
    assert main([*base, "--out", str(tmp_path / "B"), "--init-from", str(run_a)]) == EXIT_OK
    events = [parse_event(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "started" and events[-1]["event"] == "finished"
    assert json.loads((tmp_path / "B" / "config.json").read_text())["init_from"] == str(run_a.absolute())

    missing = tmp_path / "no-such-run"
    assert main([*base, "--out", str(tmp_path / "C"), "--init-from", str(missing)]) == EXIT_BAD_INPUT
    assert f"{missing}: --init-from: no such run folder or model file" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "B"), "--manifest", str(other_phantom), "--resume",
                 "--init-from", str(run_a)]) == EXIT_BAD_INPUT
    assert "cannot be combined with --resume" in capsys.readouterr().err
    assert not (tmp_path / "C").exists()
