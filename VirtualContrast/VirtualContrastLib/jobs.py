"""Run the engine as a child process and follow it through the one progress protocol.

The child is `python -m VirtualContrastTraining <command> ...` (PythonSlicer
inside Slicer), so a crash, a CUDA error or a long training run never freezes
or kills Slicer. Two reader threads collect its stdout (JSON-lines events, see
VirtualContrastTraining.events) and stderr; nothing touches MRML from those
threads. `poll()` is called from the main thread (a QTimer in the widget,
`wait()` on the console): it applies the new events to the job's state and,
once the child has exited, runs the completion callbacks, which may create
nodes. Cancel sends SIGTERM: train writes a checkpoint and exits with
EXIT_CANCELLED, so `--resume` continues where it stopped.
"""

from __future__ import annotations

import collections
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from VirtualContrastTraining.events import EXIT_CANCELLED, EXIT_OK, parse_event

RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"
STDERR_LINES_KEPT = 40
KILL_AFTER_S = 30.0  # a child that ignores SIGTERM this long after cancel() is killed


class JobError(RuntimeError):
    """A background job that failed or was cancelled; the message is the child's own."""


def enginePython() -> str:
    """The Python that runs the engine: PythonSlicer inside Slicer (sys.executable is the Slicer
    application there), this interpreter elsewhere."""
    import slicer

    if hasattr(slicer, "app"):
        found = shutil.which("PythonSlicer") or shutil.which("PythonSlicer", path=str(Path(sys.executable).parent))
        if found:
            return found
    return sys.executable


def engineEnvironment() -> dict[str, str]:
    """The child finds this very engine package (installed beside the module in an extension) first."""
    import VirtualContrastTraining

    env = dict(os.environ)
    root = str(Path(VirtualContrastTraining.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Job:
    """One engine command running in a child process.

    State for a progress bar: `state`, `progress` (0..1), `message`,
    `etaSeconds`, `epoch`/`epochs`; `events` holds every protocol event seen.
    """

    def __init__(self, name: str, args: list[str], python: str | None = None):
        self.name = name
        self.args = list(args)
        self.command = [python or enginePython(), "-m", "VirtualContrastTraining", *self.args]
        self.state = RUNNING
        self.progress = 0.0
        self.message = f"{name}: starting"
        self.etaSeconds: float | None = None
        self.epoch: int | None = None
        self.epochs: int | None = None
        self.events: list[dict] = []
        self.error = ""
        self.returncode: int | None = None
        self.result = None
        self._onEvent: list[Callable[["Job", dict], None]] = []
        self._onDone: list[Callable[["Job"], None]] = []
        self._queue: queue.Queue = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self._cancelAt: float | None = None
        self._process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            encoding="utf-8", errors="replace", bufsize=1, env=engineEnvironment(), start_new_session=True)
        self._readers = [threading.Thread(target=self._read, args=(self._process.stdout, True), daemon=True),
                         threading.Thread(target=self._read, args=(self._process.stderr, False), daemon=True)]
        for reader in self._readers:
            reader.start()

    # -- reader threads: only queue what they read ---------------------------------------------
    def _read(self, stream, isStdout: bool) -> None:
        for line in stream:
            event = parse_event(line) if isStdout else None
            self._queue.put(("event", event) if event else ("text", line.rstrip("\n")))
        stream.close()

    # -- main thread ------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.state != RUNNING

    def onEvent(self, callback: Callable[["Job", dict], None]) -> None:
        """`callback(job, event)` for each protocol event, called from poll() in the main thread."""
        self._onEvent.append(callback)

    def onDone(self, callback: Callable[["Job"], None]) -> None:
        """`callback(job)` once the job has ended (any state), called from poll() in the main thread."""
        self._onDone.append(callback)
        if self.done:
            callback(self)

    def poll(self) -> list[dict]:
        """Apply what the child said since the last call; returns the new protocol events."""
        new = []
        while True:
            try:
                kind, item = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind == "text":
                if item.strip():
                    self._stderr.append(item)
                continue
            new.append(item)
            self._apply(item)
            for callback in self._onEvent:
                callback(self, item)
        if self.state == RUNNING and self._cancelAt is not None and time.monotonic() > self._cancelAt + KILL_AFTER_S:
            self.kill()
        if self.state == RUNNING and self._process.poll() is not None and not any(r.is_alive() for r in self._readers) \
                and self._queue.empty():
            self._finish(self._process.returncode)
        return new

    def _apply(self, event: dict) -> None:
        self.events.append(event)
        kind = event["event"]
        if kind == "progress":
            step, total = event.get("step"), event.get("total_steps")
            if step is not None and total:
                self.progress = min(1.0, float(step) / float(total))
            self.epoch, self.epochs = event.get("epoch", self.epoch), event.get("epochs", self.epochs)
            self.etaSeconds = event.get("eta_s")
            where = f"epoch {self.epoch}/{self.epochs}" if self.epoch is not None else f"{step}/{total}"
            eta = f", about {_duration(self.etaSeconds)} left" if self.etaSeconds is not None else ""
            self.message = f"{self.name}: {where}{eta}"
        elif kind == "validation":
            metrics = ", ".join(f"{k} {v:.4g}" for k, v in (event.get("metrics") or {}).items() if v is not None)
            self.message = f"{self.name}: epoch {event.get('epoch')} validation {metrics}"
        elif kind == "failed":
            self.error = str(event.get("error") or "")
        elif kind == "info" and event.get("message"):
            self.message = f"{self.name}: {event['message']}"

    def _finish(self, returncode: int) -> None:
        self.returncode = returncode
        if returncode == EXIT_OK:
            self.state, self.progress, self.message = FINISHED, 1.0, f"{self.name}: finished"
        elif returncode == EXIT_CANCELLED or (self._cancelAt is not None and returncode < 0):
            self.state, self.message = CANCELLED, f"{self.name}: cancelled"
        else:
            self.state = FAILED
            if not self.error:
                self.error = self._stderr[-1] if self._stderr else f"exited with code {returncode}"
            self.message = f"{self.name} failed: {self.error}"
        for callback in self._onDone:
            try:
                callback(self)
            except Exception as exc:  # a failing callback (e.g. loading the result) fails the job, visibly
                self.state, self.error = FAILED, str(exc)
                self.message = f"{self.name} failed: {exc}"

    def stderrTail(self) -> str:
        return "\n".join(self._stderr)

    def cancel(self) -> None:
        """Ask the child to stop (SIGTERM): train checkpoints and exits; killed if it does not."""
        if self._process.poll() is None and self._cancelAt is None:
            self._cancelAt = time.monotonic()
            self._process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Stop the child and everything it started, now (no checkpoint)."""
        if self._process.poll() is None:
            self._cancelAt = self._cancelAt or time.monotonic()
            if not hasattr(os, "killpg"):  # Windows: no process groups; the child alone
                self._process.kill()
                return
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float | None = None, interval: float = 0.1) -> "Job":
        """Poll until the job ends (for the console and tests); TimeoutError after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            self.poll()
            if self.done:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout:g} s")
            time.sleep(interval)
        return self

    def check(self) -> "Job":
        """Raise JobError unless the job finished successfully."""
        if self.state == FAILED:
            raise JobError(f"{self.name} failed: {self.error}")
        if self.state == CANCELLED:
            raise JobError(f"{self.name} was cancelled")
        return self


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min" if seconds >= 3600 else \
        f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
