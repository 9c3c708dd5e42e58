"""What a run shows while it trains, through the real CLI on the tiny phantom: progress.png, the validation
samples per epoch and their page, TensorBoard event files, the estimate after the first steps, and how these
outputs live with --resume and --overwrite.
"""

from __future__ import annotations

import json
import re
import struct
import sys
from pathlib import Path

import pytest

from hostile import expect_clear_error, expect_handled, run_cli
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.synthetic_wording import FIGURE_NOTE

TINY = {"image_size": 32, "ngf": 4, "ndf": 4, "n_blocks": 1, "batch_size": 2, "epochs": 2}


@pytest.fixture(scope="module")
def manifest(split_phantom: Path) -> Path:
    """conftest's phantom split by patient (1-2 train, 3 val, 4 test)."""
    return split_phantom


def _train(manifest: Path, out: Path, *extra: str, **sets) -> list[dict]:
    outcome = run_cli("train", "--json", "--threads", "1", "--preset", "demo", "--manifest", manifest, "--out", out,
                      "--device", "cpu", *(f"--set={k}={v}" for k, v in {**TINY, **sets}.items()), *extra)
    expect_handled(outcome)
    return [json.loads(line) for line in outcome.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def run(manifest, tmp_path_factory) -> tuple[Path, list[dict]]:
    """One 2-epoch run with --tensorboard (2 steps per epoch)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    return out, _train(manifest, out, "--tensorboard")


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_progress_png_is_a_figure_of_the_history(run):
    out, _ = run
    width, height = _png_size(out / "progress.png")
    assert (width, height) == (1200, 360)  # 12 x 3.6 inches at 100 dpi: three panels
    assert (out / "progress.png").stat().st_size > 20_000  # curves and text, not an empty canvas


def test_samples_per_epoch_and_their_page_newest_first(run):
    out, _ = run
    val_ids = sorted(c.case_id for c in read_manifest(out / "manifest.csv") if c.split == "val")
    names = sorted(p.name for p in (out / "samples").glob("*.png"))
    expected = sorted(f"epoch_{e:03d}_{case}.png" for e in (1, 2) for case in val_ids[:3])
    assert names == expected
    assert all(_png_size(out / "samples" / name) == (600, 232) for name in names)
    page = (out / "samples" / "index.html").read_text(encoding="utf-8")
    assert page.index("Epoch 2") < page.index("Epoch 1"), "newest epoch first"
    linked = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(linked) == expected and all(not link.startswith("/") for link in linked)
    assert FIGURE_NOTE in page


def test_the_estimate_is_reported_after_the_first_steps(run):
    _, events = run
    info = [e for e in events if e["event"] == "info" and "seconds_per_step" in e]
    assert len(info) == 1 and info[0]["seconds_per_step"] > 0 and info[0]["planned_steps"] == 4
    assert re.match(r"measured [\d.]+ s/step on cpu: 4 steps \u2248 \d+ (s|min); peak memory \d", info[0]["message"])
    assert not any("sized for a GPU" in e.get("message", "") for e in events)


def test_tensorboard_event_files_hold_the_scalars_and_images(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = run
    accumulator = EventAccumulator(str(out / "tensorboard"))
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    assert {"loss/G", "loss/D_X", "lr", "val_l1"} <= scalars
    assert [e.step for e in accumulator.Scalars("loss/G")] == [1, 2, 3, 4]
    assert [e.step for e in accumulator.Scalars("val_l1")] == [2, 4]
    assert any(tag.startswith("samples/") for tag in accumulator.Tags()["images"])


def test_tensorboard_missing_is_one_line_naming_the_package(manifest, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    out = tmp_path / "run"
    expect_clear_error(run_cli("train", "--preset", "demo", "--manifest", manifest, "--out", out, "--tensorboard"),
                       names=None, says="tensorboard package")
    assert not out.exists()


def test_resume_appends_samples_and_overwrite_removes_every_output(manifest, tmp_path):
    out = tmp_path / "run"
    _train(manifest, out, "--tensorboard", epochs=1)
    resumed = run_cli("train", "--json", "--threads", "1", "--out", out, "--manifest", manifest, "--device", "cpu",
                      "--resume", "--epochs", "2")
    expect_handled(resumed)
    page = (out / "samples" / "index.html").read_text(encoding="utf-8")
    assert "Epoch 1" in page and "Epoch 2" in page

    # a folder holding samples/ and tensorboard/ is still a run's: --overwrite replaces it without them
    _train(manifest, out, "--overwrite", epochs=1)
    assert not (out / "tensorboard").exists()
    assert sorted(p.name for p in (out / "samples").iterdir()) == sorted(
        ["index.html", *(p.name for p in (out / "samples").glob("epoch_001_*.png"))])
    assert "Epoch 2" not in (out / "samples" / "index.html").read_text(encoding="utf-8")
    assert (out / "progress.png").is_file()
