"""examples/slicer_core_walkthrough.py end to end on a tiny demo folder: it writes its PNG where it is told and
nothing into the checkout (README documents it as safe to run from a clone)."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from conftest import make_tiny_model
from VirtualContrastTraining.data.manifest import read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]


def _gitStatus() -> set[str]:
    """The checkout's changed and untracked files (the same before and after, edits of one's own included)."""
    lines = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    return set(lines)


def _walkthrough():
    spec = importlib.util.spec_from_file_location("slicer_core_walkthrough",
                                                  REPO / "examples" / "slicer_core_walkthrough.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def demo_folder(tmp_path, small_phantom):
    """The layout `demo` writes (phantom/manifest.csv, run/ with a model and its split manifest), with two test
    cases, one holding a lesion, and an untrained tiny model: enough for every step, fast."""
    cases = read_manifest(small_phantom)
    lesion = next(c for c in cases if c.lesion_path)
    other = next(c for c in cases if c is not lesion)
    demo = tmp_path / "demo"
    (demo / "phantom").mkdir(parents=True)
    write_manifest(demo / "phantom" / "manifest.csv", cases)
    make_tiny_model(demo / "run")
    write_manifest(demo / "run" / "manifest.csv",
                   [dataclasses.replace(c, split="test" if c in (lesion, other) else "train") for c in cases])
    return demo


def test_walkthrough_writes_its_png_where_told_and_nothing_into_the_checkout(demo_folder, tmp_path, capsys):
    before = _gitStatus()
    out = tmp_path / "out" / "comparison.png"
    assert _walkthrough().main(["--demo", str(demo_folder), "--out", str(out)]) == 0
    assert _gitStatus() == before, "the walkthrough changed the checkout"
    assert sorted(p.name for p in out.parent.iterdir()) == ["comparison.png"]
    with PILImage.open(out) as png:
        assert np.asarray(png.convert("RGB")).std() > 20
    printed = capsys.readouterr().out
    assert "tissue CNR (raw, full resolution) (n = 2)" in printed and f"wrote {out}" in printed
