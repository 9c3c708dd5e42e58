"""`virtual-contrast presets list | show NAME`, and the one did-you-mean of every name a user types (presets in
train and compare, recipe and network names and field names in --set)."""

from __future__ import annotations

import io
import re
from dataclasses import fields

import pytest

from hostile import expect_clear_error, expect_handled, run_cli
from VirtualContrastTraining.commands.presets import list_presets
from VirtualContrastTraining.config.presets import PRESETS
from VirtualContrastTraining.config.schema import TrainConfig

SOURCES = re.compile(r"(the preset's name|default of TrainConfig.*|changed from paper preset \S+|"
                     r"set by the preset: \S.* et al\. (20\d\d )?\(00[0-4]\))$")


def _show(name: str) -> dict[str, tuple[str, str]]:
    """{field: (value, source)} as `presets show NAME` prints them (the table after the heading)."""
    outcome = run_cli("presets", "show", name)
    expect_handled(outcome)
    table = outcome.stdout.split("\n\n", 1)[1].splitlines()
    assert table[0].split() == ["field", "value", "source"]
    return {line.split()[0]: (line.split()[1], line.split(None, 2)[2]) for line in table[1:]}


def test_list_prints_every_preset_with_its_paper_cited():
    outcome = run_cli("presets", "list")
    expect_handled(outcome)
    expected = io.StringIO()
    list_presets(expected)
    assert outcome.stdout == expected.getvalue()  # the one listing, for `train --list-presets` too
    sources = [line.strip() for line in outcome.stdout.splitlines() if line.startswith("    source:")]
    assert len(sources) == len(PRESETS) and not [s for s in sources if ".txt" in s]
    assert "source: Hosseinipour et al. 2024 (003)" in sources


@pytest.mark.parametrize("name", list(PRESETS))
def test_show_prints_every_field_with_value_and_source(name):
    shown = _show(name)
    assert list(shown) == [f.name for f in fields(TrainConfig) if f.name not in ("description", "source")]
    bad = {field: source for field, (_, source) in shown.items() if not SOURCES.fullmatch(source)}
    assert not bad
    assert shown["preset"][0] == repr(name)


def test_show_says_where_each_value_comes_from():
    demo, unet512, cyclegan = _show("demo"), _show("hosseinipour2024-pix2pix-unet512"), _show("rofena2024-cyclegan")
    assert demo["ngf"] == ("16", "changed from paper preset rofena2025-segcyclegan-g35")
    assert demo["gamma_lesion"] == ("35.0", "set by the preset: Rofena et al. 2025 (002)")
    assert unet512["lr"] == ("0.0002", "set by the preset: Hosseinipour et al. 2024 (003)")
    assert cyclegan["lr"] == ("1e-05", "default of TrainConfig, the value of Rofena et al. 2024 (001)")
    assert cyclegan["augment_prob"] == ("0.3", "default of TrainConfig")


@pytest.mark.parametrize("args, says", [
    (["presets", "show", "rofena2024-cylcegan"], "did you mean 'rofena2024-cyclegan'?"),
    (["train", "--preset", "dem", "--manifest", "{m}", "--out", "{o}"], "did you mean 'demo'?"),
    (["compare", "--presets", "demo,hosseinipour2024-pix2pix-unet521", "--manifest", "{m}", "--out", "{o}"],
     "did you mean 'hosseinipour2024-pix2pix-unet512'?"),
    (["train", "--preset", "demo", "--manifest", "{m}", "--out", "{o}", "--set", "generator=resnte"],
     "did you mean 'resnet'?"),
    (["train", "--preset", "demo", "--manifest", "{m}", "--out", "{o}", "--set", "discriminator=patchgn"],
     "did you mean 'patchgan'?"),
    (["compare", "--presets", "demo", "--manifest", "{m}", "--out", "{o}", "--set", "recipe=pix2px"],
     "did you mean 'pix2pix'?"),
    (["train", "--preset", "demo", "--manifest", "{m}", "--out", "{o}", "--set", "lamda_l1=10"],
     "did you mean 'lambda_l1'?"),
])
def test_a_mistyped_name_gets_a_suggestion(small_phantom, tmp_path, args, says):
    out = tmp_path / "out"
    outcome = run_cli(*(a.format(m=small_phantom, o=out) for a in args))
    expect_clear_error(outcome, names=None, says=says)
    assert not out.exists()
