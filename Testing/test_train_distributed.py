"""`train` under torchrun: 2 CPU processes (gloo) equal one process with the same global batch; resume under it;
the speed options that must not change the result (--workers, --channels-last).

The real command in real child processes: `python -m torch.distributed.run --standalone --nproc_per_node 2 -m
VirtualContrastTraining train ...` against `python -m VirtualContrastTraining train ...`. Each process of the
pair takes 2 of the 4 images of every batch and the gradients are averaged, so every step is the single
process's up to the order of float sums. Compared: every loss of every epoch and the validation L1 (measured:
equal within 2e-7 relative), and the trained generator's output on an image (TOLERANCE). Not the raw weights: a
convolution's bias before an instance normalisation has a gradient of exactly 0 in theory and of float noise
in practice, which Adam divides by its own size into steps of +-lr, so those biases differ by up to lr per step
between any two summation orders while changing nothing the network computes.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from VirtualContrastTraining.checkpoints import load_generator, read_pair
from VirtualContrastTraining.distributed import Group

REPO = Path(__file__).resolve().parents[1]
SETS = {"ngf": 4, "ndf": 4, "n_blocks": 1, "image_size": 32, "batch_size": 4, "epochs": 2, "lr": 1e-3}
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def _train(manifest: Path, out: Path, *extra: str, processes: int = 1, epochs: int = 2) -> list[dict]:
    """The train command's JSON events (of rank 0 under torchrun); fails the test with its stderr."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                if processes > 1 else [sys.executable])
    sets = [item for k, v in {**SETS, "epochs": epochs}.items() for item in ("--set", f"{k}={v}")]
    args = [*launcher, "-m", "VirtualContrastTraining", "train", "--json", "--threads", "1", "--device", "cpu",
            "--preset", "demo", "--manifest", str(manifest), "--out", str(out), *sets, *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _model(run: Path) -> dict[str, np.ndarray]:
    tensors, _ = read_pair(run / "model.safetensors")
    return {k: v.numpy() for k, v in tensors.items()}


def _history(run: Path) -> dict[str, list[float]]:
    """history.csv's numeric columns but the timings."""
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(row[k]) for row in rows] for k in rows[0] if k != "epoch_time_s"}


def _output(run: Path) -> np.ndarray:
    generator = load_generator(run / "model.safetensors")[0]
    image = torch.from_numpy(np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32))
    with torch.no_grad():
        return generator(image).numpy()


def _assert_close(run: Path, reference: Path) -> None:
    history, expected = _history(run), _history(reference)
    assert history.keys() == expected.keys() and len(history["val_l1"]) == 2
    for name in expected:
        np.testing.assert_allclose(history[name], expected[name], **TOLERANCE, err_msg=name)
    np.testing.assert_allclose(_output(run), _output(reference), **TOLERANCE)


@pytest.fixture(scope="module")
def single(split_phantom, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    _train(split_phantom, out)
    return out


def test_two_gloo_processes_equal_one_process(split_phantom, single, tmp_path):
    events = _train(split_phantom, tmp_path / "ddp", processes=2)
    _assert_close(tmp_path / "ddp", single)
    # rank 0 alone speaks and writes: one start, one end, one history of 2 epochs
    started = [e for e in events if e["event"] == "started"]
    assert len(started) == 1 and started[0]["processes"] == 2
    assert started[0]["execution"] == {"deterministic": False, "workers": 0, "channels_last": False, "compile": False}
    finished = [e for e in events if e["event"] == "finished"]
    assert len(finished) == 1 and finished[0]["steps"] == 2


def test_resume_under_torchrun(split_phantom, single, tmp_path):
    """1 epoch under torchrun, then --resume --epochs 2 under torchrun: the 2-epoch single process again."""
    run = tmp_path / "resumed"
    _train(split_phantom, run, processes=2, epochs=1)
    events = _train(split_phantom, run, "--resume", processes=2, epochs=2)
    assert [e for e in events if e["event"] == "started"][0]["resumed_at_step"] == 1
    _assert_close(run, single)


def test_workers_change_no_bit(split_phantom, single, tmp_path):
    """Two DataLoader worker processes give the very model of the loading in the training process."""
    _train(split_phantom, tmp_path / "workers", "--workers", "2")
    model, expected = _model(tmp_path / "workers"), _model(single)
    assert all(np.array_equal(model[k], expected[k]) for k in expected)


def test_shares_weigh_the_batch_mean():
    """Round-robin shares; weights n_r * N / n so that the mean over processes of the weighted share means is
    the batch mean, also for a batch that does not divide; a last batch smaller than N is dropped."""
    groups = [Group(rank, 3, rank) for rank in range(3)]
    batch = [10, 11, 12, 13]
    shares = [g.share(batch) for g in groups]
    assert [mine for mine, _ in shares] == [[10, 13], [11], [12]]
    values = {10: 1.0, 11: 2.0, 12: 4.0, 13: 8.0}
    per_rank = [np.mean([values[i] for i in mine]) * weight for mine, weight in shares]
    assert np.mean(per_rank) == pytest.approx(np.mean(list(values.values())))
    assert groups[0].batches(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5]]
    assert Group().batches(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]


def test_channels_last_run_writes_a_model_that_loads(split_phantom, single, tmp_path):
    """--channels-last through the CLI: NHWC weights saved contiguous, the same function within float tolerance."""
    _train(split_phantom, tmp_path / "nhwc", "--channels-last")
    np.testing.assert_allclose(_output(tmp_path / "nhwc"), _output(single), rtol=1e-4, atol=1e-5)


def test_bad_worker_count_is_one_line(split_phantom, tmp_path):
    done = subprocess.run([sys.executable, "-m", "VirtualContrastTraining", "train", "--preset", "demo",
                           "--manifest", str(split_phantom), "--out", str(tmp_path / "r"), "--workers", "-1"],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2 and "--workers: expected a number of processes" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r").exists()


def test_sigterm_to_torchrun_stops_every_process_after_one_step_and_resume_finishes(split_phantom, tmp_path):
    """The stop reaches both processes; they agree on the step, rank 0 saves, and --resume under torchrun ends
    the run (2 steps per epoch with a batch of 2)."""
    run = tmp_path / "stopped"
    sets = [item for k, v in {**SETS, "batch_size": 2}.items() for item in ("--set", f"{k}={v}")]
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
            "VirtualContrastTraining", "train", "--json", "--threads", "1", "--device", "cpu", "--preset", "demo",
            "--manifest", str(split_phantom), "--out", str(run), *sets]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    events = []
    for line in proc.stdout:
        if not line.startswith("{"):
            continue
        events.append(json.loads(line))
        if events[-1]["event"] == "progress" and events[-1]["step"] == 1:
            proc.send_signal(signal.SIGTERM)
    proc.stderr.read()
    proc.wait(timeout=120)  # torchrun's own exit code for a signal (1), not the run's
    cancelled = [e for e in events if e["event"] == "cancelled"]
    assert len(cancelled) == 1 and cancelled[0]["step"] in (1, 2, 3)
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    finished = [json.loads(line) for line in resumed.stdout.splitlines() if '"finished"' in line]
    assert len(finished) == 1 and finished[0]["steps"] == 4
