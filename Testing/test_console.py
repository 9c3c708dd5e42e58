"""What a person at a terminal sees: readable lines on stdout, one progress bar on stderr, JSON only with --json.

The commands run for real: in a child process whose stderr is a pseudo-terminal (the bar is drawn only there)
or a pipe (a log: a line per tenth instead), and in this process through cli.main.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest

from VirtualContrastTraining.console import Console, duration
from VirtualContrastTraining.events import parse_event

from hostile import REPO, expect_clear_error, run_cli


def _run_with_terminal_stderr(*args: str, timeout: float = 240) -> tuple[int, str, str]:
    """`python -m VirtualContrastTraining ARGS` with stdout a pipe and stderr a pseudo-terminal, as in a shell
    that pipes the output on; returns (exit code, stdout, what the terminal showed)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))  # a 150-column terminal
    child = subprocess.Popen([sys.executable, "-m", "VirtualContrastTraining", *args], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=follower, text=True, env=os.environ)
    os.close(follower)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    out = child.stdout.read()
    code = child.wait(timeout=timeout)
    os.close(leader)
    return code, out, shown.decode("utf-8", "replace")


def test_train_shows_lines_and_one_bar_and_no_json(small_phantom, tmp_path):
    code, out, terminal = _run_with_terminal_stderr(
        "train", "--preset", "demo", "--manifest", str(small_phantom), "--out", str(tmp_path / "run"),
        "--epochs", "2", "--set", "image_size=32", "--set", "max_steps=4", "--threads", "1")
    assert code == 0, out + terminal
    assert not any(line.startswith("{") for line in out.splitlines()), out
    lines = out.splitlines()
    assert lines[0].startswith("training demo on cpu: ") and "steps" in lines[0], lines[0]
    assert any(line.startswith("epoch 1/2: val_l1 ") for line in lines), out
    assert lines[-1].startswith("finished in ") and "model.safetensors" in lines[-1], out
    # The bar: on the terminal, with the command's name, a percentage up to 100 % and the losses
    assert "train 100%|" in terminal and "epoch 2/2" in terminal, terminal[-2000:]
    assert re.search(r"<00:00, (\d+)/\1 steps, epoch 2/2, G ", terminal), terminal[-2000:]  # time left, then counts


def test_json_prints_the_protocol_only(small_phantom, tmp_path):
    done = subprocess.run([sys.executable, "-m", "VirtualContrastTraining", "phantom", "--out", str(tmp_path / "p"),
                           "--cases", "3", "--pixel-mm", "0.4", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["event"] for e in events] == ["started", "progress", "progress", "progress", "finished"]
    assert all(parse_event(line) for line in done.stdout.splitlines())


def test_a_log_gets_a_line_per_tenth_with_the_time_left(tmp_path):
    done = subprocess.run([sys.executable, "-m", "VirtualContrastTraining", "phantom", "--out", str(tmp_path / "p"),
                           "--cases", "5", "--pixel-mm", "0.2"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("phantom: out ") and "cases 5" in lines[0], lines
    assert len(lines) == 2 and lines[-1].startswith("finished in ") and "manifest.csv" in lines[-1], lines
    # the bar's stand-in goes where the bar would: a line per fifth here (5 cases), none in the first second
    progress = done.stderr.splitlines()
    shown = [int(line.split("%")[0]) for line in progress]
    assert len(shown) >= 3 and shown == sorted(set(shown)) and set(shown) <= {20, 40, 60, 80, 100}, progress
    assert progress[-1] == "100% 5/5 cases" and all(line.endswith(" left") for line in progress[:-1]), progress


def test_a_bad_input_is_one_error_line_with_or_without_json(tmp_path):
    missing = tmp_path / "none.csv"
    for extra in ((), ("--json",)):
        outcome = run_cli("train", "--preset", "demo", "--manifest", missing, "--out", tmp_path / "run", *extra)
        expect_clear_error(outcome, names=missing, says="manifest")


def test_a_comparison_has_one_bar_over_all_its_runs():
    out, err = io.StringIO(), io.StringIO()
    console = Console("compare", out=out, err=err, quiet_s=0)
    console.show("started", {"presets": ["a", "b"], "folds": [0, 1], "runs": 4, "out": "cmp"})
    for run_index in (1, 2):
        for step in (5, 10):
            console.show("progress", {"step": step, "total_steps": 10, "run": f"r{run_index}", "run_index": run_index,
                                      "runs": 4, "epoch": 1, "epochs": 1, "losses": {"G": 1.0}})
    assert out.getvalue() == "comparing a, b over 2 fold(s): 4 training runs -> cmp\n"
    # A log (StringIO is no terminal): the overall fraction, not the run's: 1/8, 2/8, 3/8, 4/8 of the comparison
    shown = err.getvalue().splitlines()
    assert [line.split()[0] for line in shown] == ["12%", "25%", "38%", "50%"], shown
    assert "run 2/4" in shown[-1] and "G 1" in shown[-1], shown


@pytest.mark.parametrize("seconds, words", [(4.4, "4 s"), (125, "2 min 05 s"), (7260, "2 h 01 min"),
                                            (3 * 86400, "3.0 days")])
def test_durations_read_as_a_status_line(seconds, words):
    assert duration(seconds) == words
