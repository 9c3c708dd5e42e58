"""The training benchmarks a person runs print their tables (issue 17).

bench_train.py (a step's table and the data-loading share through the real
`train --json`), bench_step_before_after.py (against the code of 90d9fab,
extracted here by git archive) and gpu_figures.py --cpu-smoke each run once
as a child process on tiny settings; the test reads the markdown table they
print: its columns, and numbers where numbers belong.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--set=image_size=64", "--set=batch_size=2", "--set=ngf=8", "--set=ndf=8", "--set=unet_depth=4"]


def run_script(name: str, *args: str, env: dict | None = None) -> str:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / name), *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def table(text: str, first_column: str) -> list[dict[str, str]]:
    """The rows of the markdown table in `text` whose header starts with `first_column`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    assert set(lines[start + 1]) <= set("|-"), lines[start + 1]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(head), line
        rows.append(dict(zip(head, cells)))
    return rows


def number(cell: str) -> float:
    return float(cell.rstrip("%"))


def test_bench_train_prints_a_row_with_throughput_memory_and_flops():
    rows = table(run_script("bench_train.py", "--presets", "rofena2024-pix2pix", "--steps", "1", *TINY), "preset")
    assert len(rows) == 1
    row = rows[0]
    assert (row["model"], row["image"], row["precision"]) == ("pix2pix, unet ngf 8", "64²", "fp32")
    assert row["options"] == "-"
    for column in ("s/step", "images/s", "GFLOP/step", "GFLOP/s", "share of matmul", "peak RSS (MiB)"):
        assert number(row[column]) > 0, (column, row)
    assert row["peak GPU (MiB)"] == "-"


def test_bench_train_data_share_reads_train_events():
    text = run_script("bench_train.py", "--data-share", "--workers", "1", "--cases", "6", "--pixel-mm", "2",
                      "--set=image_size=64", "--set=batch_size=2")
    (row,) = table(text, "workers")
    assert row["workers"] == "1" and int(row["steps"]) >= 1
    assert number(row["images/s"]) > 0 and 0 <= number(row["data-loading share"]) <= 100


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs the git history")
def test_before_after_runs_the_three_codes(tmp_path):
    archive = subprocess.run(["git", "archive", "90d9fab", "VirtualContrastTraining"], cwd=REPO, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    text = run_script("bench_step_before_after.py", "--before", str(tmp_path), "--rounds", "1", "--steps", "1",
                      "--reference", "--set=ngf=8", "--set=image_size=32", "--set=batch_size=1", "--set=n_blocks=1")
    rows = table(text, "round")
    assert [(r["code"], r["deterministic"]) for r in rows] == [("before", "on"), ("now", "off"), ("reference", "off")]
    for row in rows:
        assert number(row["CPU s/step"]) > 0 and number(row["share of matmul"]) > 0
    # the same networks and passes, but 001's generator update also computes the discriminators' weight gradients
    # (they are not frozen there): never fewer FLOPs than ours
    assert number(rows[2]["GFLOP/step"]) >= number(rows[1]["GFLOP/step"])
    assert "now / before, CPU s/step: median" in text and "now / reference, CPU s/step: median" in text
    assert "load average" in text


def test_gpu_figures_cpu_smoke_writes_its_table_under_out(tmp_path):
    text = run_script("gpu_figures.py", "--cpu-smoke", "--parts", "channels_last",
                      "--presets", "rofena2024-autoencoder", env={"OUT": str(tmp_path)})
    (row,) = table(text, "preset")
    assert row["options"] == "--channels-last" and number(row["images/s"]) > 0
    assert (tmp_path / "gpu_figures.md").read_text().strip() == text.strip()
    assert (tmp_path / "gpu_figures.jsonl").read_text().count("\n") == 1
