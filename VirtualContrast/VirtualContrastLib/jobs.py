"""Run the engine as a child process and follow it through the one progress protocol.

The child is `python -m VirtualContrastTraining <command> ... --json` (PythonSlicer
inside Slicer), so a crash, a CUDA error or a long training run never freezes
or kills Slicer. Two reader threads collect its stdout (JSON-lines events, see
VirtualContrastTraining.events) and stderr; nothing touches MRML from those
threads. `poll()` is called from the main thread (a QTimer in the widget,
`wait()` on the console): it applies the new events to the job's state and,
once the job has ended, runs the completion callbacks, which may create nodes.

The process tree. PythonSlicer is a CTK launcher: it starts the real
interpreter as ITS child and waits, and a signal sent to the launcher stops
the launcher only. So everything here addresses the whole tree. The child is
started in a new session, so on POSIX it leads a process group that the
engine and its own children inherit.

- cancel() asks the engine to stop in the two ways it reads
  (events.StopRequest): it creates the job's stop file (the path is in the
  child's environment, events.STOP_FILE_ENV; the only request that reaches an
  engine behind a launcher on Windows) and, on POSIX, sends SIGTERM to the
  whole group. train then writes a checkpoint and exits with EXIT_CANCELLED;
  a command with nothing to save simply dies of the SIGTERM. Whatever still
  runs KILL_AFTER_S later is killed (by the next poll()).
- kill() stops the tree now, without checkpoint: SIGKILL to the group on
  POSIX; on Windows `taskkill /T /F` of the child and of the engine (the pid
  its "started" event reports), as Windows knows no process groups. The
  Windows path is not exercised by the tests (they run on Linux).
- stop(timeoutS) and stopAll(jobs, timeoutS) cancel, wait, then kill: for the
  Widget's cleanup and application exit, so that no training outlives Slicer.

When a job ends. The engine writes to the pipes the child was given (the
launcher passes them on), so their end (EOF) is the end of the engine. (Not
the group's membership: an orphaned engine that has exited stays in it as a
zombie wherever PID 1 does not reap, as in some containers.)
- The child exited by itself: its exit code is the engine's (a launcher
  passes it through). The readers get CHILD_EXIT_GRACE_S to drain, then the
  job ends even if a stray grandchild still holds the pipes open.
- The child died of a signal (SIGTERM of cancel() reaches a launcher, which
  has no handler; or someone killed it): the engine may live on, e.g. while
  it writes its checkpoint. The job runs, and follows its events, until the
  pipes close or kill() is called. Its code is then the one the engine's last
  event stands for ("cancelled": EXIT_CANCELLED), since no launcher passed it on.
Either way the job's end kills what is left of its process group (POSIX), so
no process of a job outlives it.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable

import VirtualContrastTraining
from VirtualContrastLib.dependencies import enginePython, engineVariables
from VirtualContrastTraining.console import duration
from VirtualContrastTraining.events import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, STOP_FILE_ENV, parse_event

RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"
STDERR_LINES_KEPT = 40
KILL_AFTER_S = 30.0        # a tree still running this long after cancel() is killed
CHILD_EXIT_GRACE_S = 2.0   # after the child's exit (or a kill): time for the readers to drain the pipes
STOP_TIMEOUT_S = 10.0      # stop()/stopAll(): time for the current step and a checkpoint before the kill
POLL_INTERVAL_S = 0.05     # how often stop()/stopAll() look at the jobs
# The exit code an engine's last event stands for: what a launcher stopped by cancel()'s SIGTERM cannot pass on.
_ENDING_CODES = {"finished": EXIT_OK, "cancelled": EXIT_CANCELLED, "failed": EXIT_FAILED}
_POSIX = hasattr(os, "killpg")


class JobError(RuntimeError):
    """A background job that failed or was cancelled; the message is the child's own."""


def engineEnvironment() -> dict[str, str]:
    """The child finds this very engine package (installed beside the module in an extension) first."""
    env = dict(os.environ)
    root = str(Path(VirtualContrastTraining.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(engineVariables())  # the module's own package folder, which the engine puts first
    return env


def _signalGroup(pgid: int, sig: int) -> None:
    """Send `sig` to every process of the group; an empty group is no error (the tree has gone)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # macOS answers EPERM for a group of zombies only
        pass


class Job:
    """One engine command running in a child process (and whatever that child starts).

    State for a progress bar: `state`, `progress` (0..1), `message`,
    `etaSeconds`, `epoch`/`epochs`; `events` holds every protocol event seen;
    `returncode` is the engine's exit code once the job has ended;
    `enginePid` the pid of the engine's interpreter (from its "started"
    event; behind a launcher it is not the child's pid).
    """

    def __init__(self, name: str, args: list[str], python: str | None = None):
        self.name = name
        self.args = list(args)
        # --json: the events come as the protocol's JSON lines; the engine's default is text for a terminal.
        self.command = [python or enginePython(), "-m", "VirtualContrastTraining", *self.args, "--json"]
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
        self.enginePid: int | None = None
        # cancel() creates it; the engine looks for it between steps. Unique per job, removed when the job ends.
        self.stopFile = Path(tempfile.gettempdir()) / f"VirtualContrast-{os.getpid()}-{uuid.uuid4().hex}.stop"
        self._onEvent: list[Callable[["Job", dict], None]] = []
        self._onText: list[Callable[["Job", str], None]] = []
        self._onDone: list[Callable[["Job"], None]] = []
        self._queue: queue.Queue = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self._cancelAt: float | None = None
        self._killedAt: float | None = None
        self._exitSeenAt: float | None = None
        self._callbackError: str | None = None
        env = {**engineEnvironment(), STOP_FILE_ENV: str(self.stopFile)}
        # A new session: on POSIX the child leads a process group that the engine behind a launcher shares.
        self._process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            encoding="utf-8", errors="replace", bufsize=1, env=env, start_new_session=True)
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

    def onText(self, callback: Callable[["Job", str], None]) -> None:
        """`callback(job, line)` for each line the child writes that is not an event (its log, warnings, a
        traceback), called from poll() in the main thread: the panel's log shows them."""
        self._onText.append(callback)

    def onDone(self, callback: Callable[["Job"], None]) -> None:
        """`callback(job)` once the job has ended (any state), called from poll() in the main thread."""
        self._onDone.append(callback)
        if self.done:
            callback(self)

    def poll(self) -> list[dict]:
        """Apply what the engine said since the last call and, once its tree has ended, end the job
        (see the module docstring); returns the new protocol events."""
        if self.done:
            return []
        code = self._process.poll()
        readersDone = not any(reader.is_alive() for reader in self._readers)  # then all they read is queued
        new = self._drain()
        now = time.monotonic()
        if self._cancelAt is not None and self._killedAt is None and now > self._cancelAt + KILL_AFTER_S:
            self.kill()
        if code is None:
            return new
        self._exitSeenAt = self._exitSeenAt or now
        # The child ended by itself (its code is the engine's), or the tree was killed: the pipes get a grace
        # period. A child that died of a signal may have left its engine running behind it (a launcher): the
        # job follows that engine until it closes the pipes, or until kill().
        graceOver = (code >= 0 or self._killedAt is not None) and \
            now > max(self._exitSeenAt, self._killedAt or 0.0) + CHILD_EXIT_GRACE_S
        if readersDone or graceOver:
            self._finish(self._engineCode(code))
        return new

    def _drain(self) -> list[dict]:
        new = []
        while True:
            try:
                kind, item = self._queue.get_nowait()
            except queue.Empty:
                return new
            if kind == "text":
                if item.strip():
                    self._stderr.append(item)
                    self._notify(self._onText, item)
                continue
            new.append(item)
            self._apply(item)
            self._notify(self._onEvent, item)

    def _notify(self, callbacks: list, item) -> None:
        """Run the event or text callbacks. One that raises (a chart whose table is gone, say) fails the job:
        its tree is killed and poll() ends it as failed with that error, so poll() itself never raises and a
        GUI timer that calls it is never broken."""
        for callback in callbacks:
            try:
                callback(self, item)
            except Exception as exc:
                logging.getLogger(__name__).exception("%s: a progress callback failed", self.name)
                if self._callbackError is None:
                    self._callbackError = f"{type(exc).__name__}: {exc}"
                    self.kill()

    def _apply(self, event: dict) -> None:
        """Update the state from one event; parse_event has checked the type of every field used here."""
        self.events.append(event)
        kind = event["event"]
        if kind == "started" and self.enginePid is None:
            self.enginePid = event.get("pid")
        elif kind == "progress":
            step, total = event.get("step"), event.get("total_steps")
            if step is not None and total:
                self.progress = min(1.0, step / total)
            self.epoch, self.epochs = event.get("epoch", self.epoch), event.get("epochs", self.epochs)
            self.etaSeconds = event.get("eta_s")
            where = f"epoch {self.epoch}/{self.epochs}" if self.epoch is not None else f"{step}/{total}"
            eta = f", about {duration(self.etaSeconds)} left" if self.etaSeconds is not None else ""
            self.message = f"{self.name}: {where}{eta}"
        elif kind == "validation":
            metrics = ", ".join(f"{k} {v:.4g}" for k, v in event.get("metrics", {}).items() if v is not None)
            self.message = f"{self.name}: epoch {event.get('epoch')} validation {metrics}"
        elif kind == "failed":
            self.error = event.get("error", "")
        elif kind == "info" and event.get("message"):
            self.message = f"{self.name}: {event['message']}"

    def _engineCode(self, code: int) -> int:
        """The engine's exit code: the child's, except where the child died of a signal and the engine's
        last event says how it ended (the engine behind a launcher stopped by cancel() goes on to exit 75)."""
        if code < 0 and self.events and self.events[-1]["event"] in _ENDING_CODES:
            return _ENDING_CODES[self.events[-1]["event"]]
        return code

    def _finish(self, returncode: int) -> None:
        self.returncode = returncode
        if _POSIX:  # a stray grandchild, still holding the pipes or not, does not outlive the job
            _signalGroup(self._process.pid, signal.SIGKILL)
        self.stopFile.unlink(missing_ok=True)
        if self._callbackError is not None:
            self.state, self.error = FAILED, f"following the process failed: {self._callbackError}"
            self.message = f"{self.name} failed: {self.error}"
        elif returncode == EXIT_OK:
            self.state, self.progress, self.message = FINISHED, 1.0, f"{self.name}: finished"
        elif returncode == EXIT_CANCELLED or self._killedAt is not None or (self._cancelAt is not None and returncode < 0):
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
        """Ask the engine to stop: train writes a checkpoint and exits with EXIT_CANCELLED (`--resume`
        continues), a command with nothing to save just stops. Returns at once; poll() sees the end, and
        kills the tree if it still runs KILL_AFTER_S later."""
        if self.done or self._cancelAt is not None:
            return
        self._cancelAt = time.monotonic()
        try:
            self.stopFile.touch()
        except OSError as exc:  # the signal (POSIX) and the kill after KILL_AFTER_S remain
            logging.warning("%s: could not create the stop file %s: %s", self.name, self.stopFile, exc)
        if _POSIX:
            _signalGroup(self._process.pid, signal.SIGTERM)

    def kill(self) -> None:
        """Stop the child and everything it started, now (no checkpoint); the job ends as cancelled."""
        if self.done:
            return
        self._killedAt = time.monotonic()
        self._cancelAt = self._cancelAt or self._killedAt
        if _POSIX:
            _signalGroup(self._process.pid, signal.SIGKILL)
            return
        # Windows: no process groups; /T follows parent pids, from the child while it lives, and from the
        # engine that outlived its launcher (it still holds the pipes).
        pids = [self._process.pid] if self._process.poll() is None else []
        if self.enginePid and self.enginePid not in pids and any(reader.is_alive() for reader in self._readers):
            pids.append(self.enginePid)
        for pid in pids:
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(pid)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))

    def stop(self, timeoutS: float = STOP_TIMEOUT_S) -> "Job":
        """cancel(), wait up to `timeoutS` for the engine to checkpoint and exit, then kill(); see stopAll()."""
        stopAll([self], timeoutS)
        return self

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


def stopAll(jobs: Iterable[Job | None], timeoutS: float = STOP_TIMEOUT_S) -> None:
    """Stop every job of `jobs` that still runs (None entries are skipped) and return once all have ended.

    For the Widget's cleanup() and application exit. All jobs are cancelled
    at once, so they write their checkpoints side by side; those still running
    `timeoutS` later are killed, and the call returns about
    CHILD_EXIT_GRACE_S after that at the latest. A training whose current
    step outlasts `timeoutS` keeps only its last epoch checkpoint. On return
    no process of these jobs runs (short of one stuck in the kernel, which no
    signal ends). It polls the jobs, so their callbacks run in the calling
    (main) thread, as with wait().
    """
    running = [job for job in jobs if job is not None and not job.done]
    for job in running:
        job.cancel()
    _pollUntilDone(running, time.monotonic() + timeoutS)
    for job in running:
        job.kill()
    _pollUntilDone(running, time.monotonic() + CHILD_EXIT_GRACE_S + 1.0)


def _pollUntilDone(jobs: list[Job], deadline: float) -> None:
    while True:
        for job in jobs:
            job.poll()
        if all(job.done for job in jobs) or time.monotonic() > deadline:
            return
        time.sleep(POLL_INTERVAL_S)
