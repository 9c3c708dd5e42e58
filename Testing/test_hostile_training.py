"""Hostile cases of training runs (issue 14): two trainings into one folder, stale locks, stuck folders,
--overwrite, a second stop signal, a tampered model sidecar and a full disk.

Each goes through the real CLI (Testing/hostile.py): in this process where that suffices, in real child
processes where the case is about processes (the lock, signals, a file size limit).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostile import REPO, expect_clear_error, expect_handled, run_cli, snapshot
from VirtualContrastTraining.atomic import LOCK_NAME
from VirtualContrastTraining.checkpoints import load_training_state, read_pair
from VirtualContrastTraining.events import EXIT_CANCELLED, EXIT_OK, parse_event

TINY = {"image_size": 32, "ngf": 4, "ndf": 4, "n_blocks": 1, "batch_size": 2, "epochs": 1}


@pytest.fixture(scope="module")
def manifest(split_phantom: Path) -> Path:
    """conftest's phantom split by patient (1-2 train, 3 val, 4 test)."""
    return split_phantom


def _args(manifest: Path, out: Path, *extra: str, preset: str = "demo", **sets) -> list[str]:
    return ["train", "--preset", preset, "--manifest", str(manifest), "--out", str(out), "--device", "cpu",
            *(f"--set={k}={v}" for k, v in {**TINY, **sets}.items()), *extra, "--json"]


def _child(args: list[str], **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "VirtualContrastTraining", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def _events_until(proc: subprocess.Popen, done) -> list[dict]:
    """The child's events up to and including the first for which done(event) holds."""
    events = []
    for line in proc.stdout:
        event = parse_event(line)
        if event is not None:
            events.append(event)
            if done(event):
                return events
    raise AssertionError(f"the child ended first: {events[-3:]} {proc.stderr.read()[-2000:]}")


# --- the run lock --------------------------------------------------------------------------------------------

def test_a_second_training_into_the_same_folder_is_refused_while_the_first_runs(manifest, tmp_path):
    out = tmp_path / "run"
    first = _child(_args(manifest, out, epochs=500))
    try:
        _events_until(first, lambda e: e["event"] == "progress")
        second = run_cli(*_args(manifest, out))
        expect_clear_error(second, names=out, says="another training is writing")
        assert f"pid {first.pid}" in second.error_lines[0]
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == EXIT_CANCELLED
        first.stdout.close(), first.stderr.close()
    assert not (out / LOCK_NAME).exists(), "the lock goes with its run"


def test_two_trainings_started_together_never_both_succeed(manifest, tmp_path):
    out = tmp_path / "run"
    procs = [_child(_args(manifest, out)) for _ in range(2)]
    outcomes = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [EXIT_OK, 2], outcomes
    refused = next(err for code, err in outcomes if code == 2).strip()
    assert len(refused.splitlines()) == 1 and str(out) in refused
    assert "another training is writing" in refused or "not empty" in refused


def test_a_stale_lock_of_a_dead_process_is_taken_over(manifest, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_NAME).write_text(dead.stdout.strip())
    expect_handled(run_cli(*_args(manifest, out)))
    assert (out / "model.safetensors").is_file() and not (out / LOCK_NAME).exists()


# --- stuck folders and --overwrite ---------------------------------------------------------------------------

def test_a_run_that_fails_after_started_leaves_its_folder_usable(manifest, tmp_path):
    out = tmp_path / "run"
    # a U-Net of 8 poolings on 32 pixels: the first step fails after "started"
    failed = run_cli(*_args(manifest, out, preset="hosseinipour2024-pix2pix-unet512", unet_depth=8, epochs_decay=0))
    assert failed.code != EXIT_OK and not failed.escaped and "started" in failed.stdout, failed.describe()
    assert not out.exists(), "a run that failed before its first checkpoint leaves nothing behind"
    expect_handled(run_cli(*_args(manifest, out, preset="hosseinipour2024-pix2pix-unet512", unet_depth=5,
                                   epochs_decay=0)))


def test_a_run_killed_in_its_first_epoch_resumes_from_step_0_or_is_overwritten(manifest, tmp_path):
    out = tmp_path / "run"
    child = _child(_args(manifest, out, batch_size=1))
    _events_until(child, lambda e: e["event"] == "progress")
    child.kill()
    child.wait(timeout=60)
    child.stdout.close(), child.stderr.close()
    assert not (out / "checkpoint.safetensors").exists() and (out / "config.json").is_file()
    expect_clear_error(run_cli(*_args(manifest, out)), names=out, says=("not empty", "--overwrite"))

    resumed = run_cli("train", "--manifest", manifest, "--out", out, "--device", "cpu", "--resume", "--json")
    expect_handled(resumed)
    started = json.loads(resumed.stdout.splitlines()[0])
    assert started["resumed_at_step"] == 0 and load_training_state(out)["global_step"] == 4

    expect_handled(run_cli(*_args(manifest, out, "--overwrite", epochs=2)))
    assert load_training_state(out)["global_step"] == 4  # 2 epochs x 2 steps: the new run, not the old one


def test_overwrite_refuses_a_folder_holding_other_files(manifest, tmp_path):
    out = tmp_path / "run"
    expect_handled(run_cli(*_args(manifest, out)))
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    expect_clear_error(run_cli(*_args(manifest, out, "--overwrite")), names=out, says=("notes.txt", "--overwrite"),
                       before=before, watched=(out,))
    expect_clear_error(run_cli(*_args(manifest, out, "--overwrite", "--resume")), names=None,
                       says=("--resume", "--overwrite"), before=before, watched=(out,))


def test_overwrite_keeps_the_old_run_when_the_new_one_cannot_start(manifest, tmp_path):
    out = tmp_path / "run"
    expect_handled(run_cli(*_args(manifest, out)))
    before = snapshot(out)
    missing = tmp_path / "missing.csv"
    expect_clear_error(run_cli(*_args(missing, out, "--overwrite")), names=missing, says="",
                       before=before, watched=(out,))


# --- a second stop signal ------------------------------------------------------------------------------------

def test_a_second_sigterm_stops_at_once_keeping_the_last_checkpoint(manifest, tmp_path):
    out = tmp_path / "run"
    # one step of 4 images per epoch, several seconds on 2 cores: a graceful stop would finish step 2 and save it
    child = _child(_args(manifest, out, batch_size=4, epochs=3, image_size=256, ngf=32, ndf=32))
    try:
        _events_until(child, lambda e: e["event"] == "checkpoint" and e.get("reason") == "epoch")
        saved = (out / "checkpoint.safetensors").read_bytes()
        time.sleep(0.5)  # inside step 2
        child.send_signal(signal.SIGTERM)
        # Python runs a handler between bytecodes: two signals within one long C call (a backward pass) are one
        time.sleep(1.0)
        child.send_signal(signal.SIGTERM)
        start = time.monotonic()
        code = child.wait(timeout=60)
        waited = time.monotonic() - start
        last = [parse_event(line) for line in child.stdout.read().splitlines()][-1]
    finally:
        child.kill()
        child.stdout.close(), child.stderr.close()
    assert code == EXIT_CANCELLED and last["event"] == "cancelled" and last["forced"] is True, last
    assert last["checkpoint"] == str(out / "checkpoint.safetensors")
    assert (out / "checkpoint.safetensors").read_bytes() == saved, "the last complete checkpoint is kept as it was"
    assert load_training_state(out)["global_step"] == 1
    assert not list(out.glob(".*tmp*")) and not (out / LOCK_NAME).exists()
    assert waited < 30


# --- the model sidecar ---------------------------------------------------------------------------------------

def _edit_sidecar(weights: Path, rehash: bool, **fields) -> None:
    """Rewrite fields of the sidecar embedded in a safetensors header, as someone editing the file would
    (`rehash`: also recompute the sidecar's own sha256, a consistent forgery that only the value checks catch)."""
    from VirtualContrastTraining import checkpoints

    data = weights.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    sidecar = json.loads(header["__metadata__"]["sidecar"])
    sidecar.update(fields)
    if rehash:
        sidecar["sidecar_sha256"] = checkpoints._sidecar_sha256(sidecar)
    header["__metadata__"]["sidecar"] = json.dumps(sidecar)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    weights.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])


@pytest.mark.parametrize("fields, rehash, says", [
    ({"des_output_window": [0, 1]}, False, "altered"),
    ({"des_output_window": [math.nan, 2400.0]}, False, "altered"),
    ({"des_output_window": [math.nan, 2400.0]}, True, "des_output_window"),
    ({"des_output_window": [2400.0, 1700.0]}, True, "des_output_window"),
    ({"preprocessing": {"size": 40000, "percentiles": [0.5, 99.5]}}, True, "40000"),
])
def test_a_tampered_model_sidecar_is_refused_naming_the_file(tiny_model, small_phantom, tmp_path, fields, rehash,
                                                             says):
    weights = tiny_model / "model.safetensors"
    _edit_sidecar(weights, rehash, **fields)
    out = tmp_path / "out"
    outcome = run_cli("predict", "--model", tiny_model, "--input", small_phantom, "--out", out, "--device", "cpu")
    expect_clear_error(outcome, names=weights, says=says)
    assert not out.exists()


def test_an_untouched_model_still_loads(tiny_model):
    _, sidecar = read_pair(tiny_model / "model.safetensors")
    assert sidecar["format_version"] == 3 and len(sidecar["sidecar_sha256"]) == 64


# --- a full disk ---------------------------------------------------------------------------------------------

FULL_DISK = """
import resource, signal, sys
from VirtualContrastTraining.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
sys.exit(main(sys.argv[2:]))
"""


def test_a_full_disk_in_train_is_a_clear_error_without_a_half_written_checkpoint(manifest, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # 20 kB: config.json, manifest.csv and history.csv fit; the model and checkpoint files do not
    done = subprocess.run([sys.executable, "-c", FULL_DISK, "20000", *_args(manifest, out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "disk full" in lines[0] and str(out) in lines[0]
    assert json.loads(done.stdout.splitlines()[-1])["event"] == "failed"
    leftovers = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert not [name for name in leftovers if "safetensors" in name or "tmp" in name], leftovers
