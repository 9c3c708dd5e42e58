"""`train --estimate`: real steps timed through the CLI, nothing written; the warning for a GPU-sized config on the
CPU, and the scaled-down alternative it names, which must itself be a valid config that is not GPU-sized."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from hostile import expect_handled, run_cli, snapshot
from VirtualContrastTraining.commands import train as train_command
from VirtualContrastTraining.config.presets import PRESETS, resolve_config
from VirtualContrastTraining.estimate import StepMeasurement, cpu_warning, gpu_sized

TINY = {"image_size": 32, "ngf": 4, "ndf": 4, "n_blocks": 1, "batch_size": 2, "epochs": 5}


@pytest.fixture(scope="module")
def manifest(split_phantom: Path) -> Path:
    """conftest's phantom split by patient (1-2 train, 3 val, 4 test)."""
    return split_phantom


def _estimate(manifest: Path, *extra: str, **sets) -> list[dict]:
    outcome = run_cli("train", "--json", "--threads", "1", "--estimate", "--preset", "demo", "--manifest", manifest,
                      "--device", "cpu", *(f"--set={k}={v}" for k, v in {**TINY, **sets}.items()), *extra)
    expect_handled(outcome)
    return [json.loads(line) for line in outcome.stdout.splitlines() if line.strip()]


def test_estimate_prints_measured_numbers_and_writes_nothing(manifest, tmp_path):
    out = tmp_path / "run"
    empty = tmp_path / "empty"
    empty.mkdir()
    before = snapshot(manifest.parent)
    events = _estimate(manifest, "--out", out)
    (info,) = [e for e in events if e["event"] == "info" and e.get("estimate")]
    assert info["seconds_per_step"] > 0 and info["planned_steps"] == 10  # 5 epochs x 2 steps (4 images, batch 2)
    assert info["peak_memory_bytes"] > 10_000_000
    assert re.match(r"measured [\d.]+ s/step on cpu: 10 steps \u2248 \d+ (s|min); peak memory [\d.]+ [MG]B",
                    info["message"])
    assert not out.exists(), "--estimate leaves no run folder behind"
    _estimate(manifest, "--out", empty)
    assert list(empty.iterdir()) == [], "nor a lock or any file in an existing one"
    assert snapshot(manifest.parent) == before


def test_estimate_needs_no_out_and_warns_for_a_gpu_sized_step_on_the_cpu(manifest):
    events = _estimate(manifest, batch_size=256)  # 256 x 32 x 32 pixels per step: one 512x512 image
    said = [e["message"] for e in events if e["event"] == "info"]
    assert said[1] == "this preset is sized for a GPU: each step may take minutes here", said  # before any step
    warning = [m for m in said if m.startswith("warning: ")]
    assert len(warning) == 1 and "sized for a GPU" in warning[0] and "--preset demo" in warning[0], said


def _resolve_suggestion(preset: str, options: str):
    """The config the suggested command-line options give, through the real train parser."""
    parser = argparse.ArgumentParser()
    train_command.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--preset", preset, "--manifest", "m.csv", "--out", "o", *options.split()])
    return train_command.resolve_from_args(args)


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if gpu_sized(p)])
def test_every_gpu_sized_preset_names_a_valid_scaled_down_run(name):
    config = resolve_config(name)
    measured = StepMeasurement(seconds_per_step=160.0, peak_bytes=None, grown_bytes=None, device_type="cpu")
    warning = cpu_warning(config, measured, items_per_epoch=400)
    assert "sized for a GPU" in warning
    suggestion = warning.split("Scaled down: ", 1)[1]
    if suggestion.startswith("--preset "):
        alternative = PRESETS[suggestion.split()[1]]
        assert (alternative.recipe, alternative.generator) == (config.recipe, config.generator)
        assert not gpu_sized(alternative)
        return
    options = suggestion.split(" (about")[0]
    scaled = _resolve_suggestion(name, options)
    assert not gpu_sized(scaled) and scaled.epochs <= config.epochs and scaled.max_steps <= config.max_steps
    assert ("--epochs" in options) != ("max_steps" in options), "the schedule is shortened one way"


def test_demo_and_tiny_configs_are_not_gpu_sized():
    assert not gpu_sized(PRESETS["demo"])
    assert gpu_sized(PRESETS["rofena2024-cyclegan"]) and gpu_sized(PRESETS["zormpas2026-cyclegan-patch"])
