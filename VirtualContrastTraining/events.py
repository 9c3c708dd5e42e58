"""The one progress protocol between the engine and whoever runs it (Slicer, a terminal, a test).

A long job (train, predict) prints one JSON object per line on stdout when
asked with --json (the Slicer job runner does; without it a person at a
terminal gets the same events as readable lines and a bar, console.py):

    {"event": "started", "pid": 4242, ...}
    {"event": "progress", "step": 12, "total_steps": 400, "epoch": 1, "epochs": 20,
     "losses": {"G": 1.2, ...}, "eta_s": 95.0}
    {"event": "validation", "epoch": 1, "metrics": {"val_l1": 0.08}}
    {"event": "checkpoint", "path": "...", "epoch": 1, "reason": "best"}
    {"event": "finished", ...}      or      {"event": "failed", "error": "..."}

"started" carries the pid of the engine's own interpreter: behind a launcher
(PythonSlicer) it is not the pid the runner started. The reader side
(`parse_event`) is used by the Slicer module and by tests; it checks the
type of every field it knows, so a consumer can use them without checking.

The other direction: the runner asks the engine to stop with SIGTERM (or
Ctrl-C) and, where no signal can reach the engine (Windows, an interpreter
behind a launcher), by creating the file named in the environment variable
STOP_FILE_ENV. A command that has state to save reads both through
StopRequest. Exit codes of the CLI are part of the protocol. A second
SIGTERM or Ctrl-C does not wait for the step in progress: it raises
ForcedStop, and the command exits with EXIT_CANCELLED at once, its last
complete checkpoint intact (atomic writes).

A command that runs jobs of its own (`demo` and `compare` train runs) gives
each an EventWriter on an `EventTee`: the job's events go to its log file,
a readable line per epoch to stderr, and what the command chooses on to its
own events.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from VirtualContrastTraining.console import Console

EXIT_OK = 0
EXIT_FAILED = 1        # unexpected failure; the "failed" event carries the message
EXIT_BAD_INPUT = 2     # InputError: a file or argument that cannot be used (one-line message)
EXIT_CANCELLED = 75    # stop requested (SIGTERM/SIGINT or the stop file): a checkpoint was written, `--resume` continues

EVENT_TYPES = ("started", "progress", "validation", "checkpoint", "finished", "failed", "cancelled", "info")

#: How a long function below the commands reports its way: progress(done, total, stage), stage a few words
#: ("reading headers"). The command turns the calls into "progress" events.
Progress = Callable[[int, int, str], None]


def progress_events(events: "EventWriter") -> Progress:
    """A Progress that emits "progress" events on `events`."""
    return lambda done, total, stage: events.emit("progress", step=done, total_steps=total, stage=stage)


#: The environment variable that names the runner's stop file: once that file exists, the engine stops as on SIGTERM.
STOP_FILE_ENV = "VIRTUAL_CONTRAST_STOP_FILE"


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: send them as null rather than invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _clean(value.item())
    return value


#: The CLI's choices for the EventWriters its command makes without a stream: JSON or a Console, and the command's
#: name; the Consoles made, so that the CLI does not print an error a "failed" event has printed already.
_OUTPUT: dict[str, Any] = {"json": True, "command": "virtual-contrast", "consoles": []}


def use_json(enabled: bool, command: str = "virtual-contrast") -> None:
    """The CLI's --json (False: readable lines and a bar, console.py), set before the command makes its writer.
    Outside the CLI (the Slicer module, tests, a script) a writer without a stream writes JSON."""
    _OUTPUT.update(json=bool(enabled), command=command, consoles=[])


def already_reported(error: str) -> bool:
    """Whether a Console of this command printed `error` from a "failed" event already."""
    return any(console.already_reported(error) for console in _OUTPUT["consoles"])


class EventWriter:
    """Writes protocol events as JSON lines (stdout by default), flushed at once; or, made by a command of the
    CLI without --json and without a stream of its own, shows them to a person through a Console."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True):
        self.stream = stream if stream is not None else sys.stdout
        self.enabled = enabled
        self.console = None
        if stream is None and not _OUTPUT["json"]:
            self.console = Console(_OUTPUT["command"])
            _OUTPUT["consoles"].append(self.console)

    def emit(self, event: str, **fields: Any) -> None:
        if event not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event!r}")
        if not self.enabled:
            return
        if event == "started":
            fields = {"pid": os.getpid(), **fields}
        if self.console is not None:
            self.console.show(event, _clean(fields))
            return
        self.stream.write(json.dumps({"event": event, **_clean(fields)}, allow_nan=False) + "\n")
        self.stream.flush()

    def end_stage(self) -> None:
        """A command that runs several jobs on one writer (demo) ends a job's bar before its next stage."""
        if self.console is not None:
            self.console.close_bar()


class EventTee(io.TextIOBase):
    """The stream of a child job's EventWriter: every line goes to the job's log file as written; of the
    protocol events in it,

    - the kinds in `forward` go on to `events` (the parent's), with the fields of `tag` added (compare:
      progress and validation, tagged with the run, so a follower such as Slicer sees one job; not the
      run's own started/finished, which there would read as the end of the whole comparison);
    - each "validation" that is not forwarded prints "  epoch N: metric value, ..." on stderr (a forwarded one
      is the parent's to show), and with a `label` each started/finished/failed/cancelled prints "  LABEL
      started" and so on;
    - the error of a "failed" event is kept in `error`.

    A context manager: leaving it closes the log file.
    """

    LIFECYCLE = ("started", "finished", "failed", "cancelled")

    def __init__(self, log_path: str | os.PathLike, *, mode: str = "w", events: EventWriter | None = None,
                 forward: tuple[str, ...] = (), tag: dict[str, Any] | None = None, label: str | None = None):
        self.log = open(log_path, mode, encoding="utf-8")
        self.events, self.forward, self.tag, self.label = events, forward, tag or {}, label
        self.error: str | None = None

    def write(self, text: str) -> int:
        self.log.write(text)
        for line in text.splitlines():
            event = parse_event(line)
            if event is None:
                continue
            kind = event.pop("event")
            if kind in self.forward and self.events is not None:
                self.events.emit(kind, **event, **self.tag)
            if kind == "validation" and kind not in self.forward:
                metrics = ", ".join(f"{k} {v:.4f}" for k, v in event.get("metrics", {}).items() if isinstance(v, float))
                print(f"  epoch {event.get('epoch')}: {metrics}", file=sys.stderr, flush=True)
            elif kind in self.LIFECYCLE and self.label:
                print(f"  {self.label} {kind}", file=sys.stderr, flush=True)
            if kind == "failed":
                self.error = event.get("error")
        return len(text)

    def flush(self) -> None:
        self.log.flush()

    def close(self) -> None:
        super().close()  # flushes first
        self.log.close()


class ForcedStop(BaseException):
    """A second stop request: leave now, without finishing the step or saving its state.

    A BaseException, as KeyboardInterrupt, so that no `except Exception` on the way mistakes it for a failure;
    the finally blocks on the way (atomic writes, the run lock) still clean up.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signal = signum


class StopRequest:
    """Whether the runner asked the engine to stop: SIGTERM, SIGINT (Ctrl-C), or its stop file.

    Used as a context manager around a long loop that checks `if stop:` between
    steps: the first signal only sets a flag (a step is never cut in half), a
    second signal raises ForcedStop (the user does not want to wait for the
    step), and the previous handlers come back on exit. The stop file does
    not count as a first request there: the Slicer runner creates it and
    signals too, for one cancel. The stop file (path in
    STOP_FILE_ENV) is the request that reaches the engine where no signal
    does: on Windows, and behind a launcher that a signal would stop instead
    of passing it on. It is looked at each time the flag is read (one stat).
    """

    def __init__(self):
        self.signal: int | None = None
        self.stop_file = os.environ.get(STOP_FILE_ENV) or None
        self.file_seen = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # Python only allows handlers there
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # a second signal; not the first after the stop file: a runner sends both
            raise ForcedStop(signum)
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __bool__(self) -> bool:
        if self.signal is None and not self.file_seen and self.stop_file:
            self.file_seen = os.path.exists(self.stop_file)
        return self.signal is not None or self.file_seen

    @property
    def by(self) -> str | None:
        """What asked to stop, for the "cancelled" event: "SIGTERM", "SIGINT", "stop file" (None: nothing yet)."""
        if self.signal is not None:
            return signal.Signals(self.signal).name
        return "stop file" if self.file_seen else None


def _number(value: Any) -> float | None:
    """A finite real number as float, else None (bool is no number; NaN, inf and 400-digit ints are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _count(value: Any) -> int | None:
    """An integer 0 <= n <= 2**53 (an integral float such as 3.0 becomes 3), else None."""
    number = _number(value)
    if number is None or not number.is_integer() or not 0 <= number <= 2**53:
        return None
    return int(number)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number_map(value: Any) -> dict[str, float | None] | None:
    """A dict of numbers; an entry that is no number stays as null, the protocol's "no value" (a NaN loss)."""
    return {k: _number(v) for k, v in value.items()} if isinstance(value, dict) else None


# The fields whose type parse_event guarantees, and the check of each. Any other field passes as it came.
_FIELD_CHECKS = {
    **dict.fromkeys(("step", "total_steps", "epoch", "epochs", "best_epoch", "epochs_run", "steps", "steps_per_epoch",
                     "resumed_at_step", "n_train", "n_val", "n_images", "pid", "signal", "run_index", "runs"), _count),
    **dict.fromkeys(("eta_s", "images_per_s", "lr", "val_l1"), _number),
    **dict.fromkeys(("message", "error", "path", "checkpoint", "model", "run", "reason", "by"), _text),
    **dict.fromkeys(("losses", "metrics"), _number_map),
}


def parse_event(line: str) -> dict | None:
    """One stdout line -> event dict, or None for lines that are not protocol events (shown as text).

    Whatever the line holds, this returns None or an event whose known fields
    have their documented types: counts are ints in [0, 2**53], numbers finite
    floats, texts str, losses/metrics dicts of float-or-None. A known field
    that is null or of another type is left out; the rest of the event stays.
    Other fields pass as they came, except that NaN and Infinity (not JSON,
    but Python's json reads them) become null. Truncated or non-object JSON
    and unknown event kinds are plain text.
    """
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line, parse_constant=lambda _: None)
    except (ValueError, RecursionError):  # truncated or invalid JSON, 5000-digit ints, nesting too deep
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str) or obj["event"] not in EVENT_TYPES:
        return None
    event = {}
    for name, value in obj.items():
        check = _FIELD_CHECKS.get(name)
        if check is not None:
            value = check(value)
            if value is None:
                continue
        event[name] = value
    return event
