"""Every preset of the engine is selectable in the Train panel, and the panel's fields keep it intact.

The panel fills its preset list from logic.listPresets() and its spin boxes
from logic.presetFields(); Start builds the `train` command line with
training.trainArguments. Parsing that command line with the engine's own CLI
must give back exactly the preset's configuration, for every preset: a new
model needs no change in the panel.
"""

from __future__ import annotations

import pytest

from VirtualContrastTraining.cli import build_parser
from VirtualContrastTraining.commands.train import resolve_from_args
from VirtualContrastTraining.config.presets import PRESETS, resolve_config


def test_the_panel_lists_every_preset_with_its_description(vc_logic):
    listed = dict(vc_logic.listPresets())
    assert list(listed) == list(PRESETS)
    assert all(listed[name] == PRESETS[name].description and listed[name] for name in PRESETS)


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_panel_fields_of_a_preset_start_exactly_that_preset(vc_logic, name, tmp_path):
    from VirtualContrastLib.training import trainArguments

    fields = vc_logic.presetFields(name)
    argv = trainArguments(name, tmp_path / "manifest.csv", tmp_path / "run", epochs=int(fields["epochs"]),
                          batchSize=int(fields["batch_size"]), learningRate=float(fields["lr"]),
                          gamma=float(fields["gamma_lesion"]), imageSize=int(fields["image_size"]))
    args = build_parser().parse_args(argv)
    assert resolve_from_args(args) == resolve_config(name)


def test_changing_a_panel_field_changes_only_that_field(vc_logic, tmp_path):
    from VirtualContrastLib.training import trainArguments

    name = next(n for n, c in PRESETS.items() if c.recipe == "pix2pix")
    argv = trainArguments(name, tmp_path / "m.csv", tmp_path / "run", epochs=3, learningRate=1e-4)
    config = resolve_from_args(build_parser().parse_args(argv))
    assert config == resolve_config(name, {"epochs": 3, "lr": 1e-4})
    assert config.recipe == "pix2pix" and config.generator == PRESETS[name].generator
