"""The demo's folder handling (the demo itself runs under `make demo`, timed in docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from VirtualContrastTraining.commands.demo import _fresh_output
from VirtualContrastTraining.errors import InputError


def test_a_rerun_replaces_the_earlier_demo_but_keeps_its_phantom_folder(tmp_path):
    out = tmp_path / "demo-output"
    for part in ("phantom", "run", "synthetic", "evaluation"):
        (out / part).mkdir(parents=True)
        (out / part / "file").write_text("old")
    (out / "train-events.jsonl").write_text("{}")
    assert _fresh_output(out) == out
    assert sorted(p.name for p in out.iterdir()) == ["phantom"]  # the phantom step replaces it atomically


def test_a_folder_that_is_not_a_demo_is_never_wiped(tmp_path):
    out = tmp_path / "my-data"
    (out / "run").mkdir(parents=True)
    (out / "patients.xlsx").write_text("precious")
    with pytest.raises(InputError, match="not an earlier demo's folder.*patients.xlsx"):
        _fresh_output(out)
    assert (out / "patients.xlsx").read_text() == "precious" and (out / "run").is_dir()
