"""The one progress protocol between the engine and whoever runs it (Slicer, a terminal, a test).

A long job (train, predict) prints one JSON object per line on stdout:

    {"event": "started", ...}
    {"event": "progress", "step": 12, "total_steps": 400, "epoch": 1, "epochs": 20,
     "losses": {"G": 1.2, ...}, "eta_s": 95.0}
    {"event": "validation", "epoch": 1, "metrics": {"val_l1": 0.08}}
    {"event": "checkpoint", "path": "...", "epoch": 1, "reason": "best"}
    {"event": "finished", ...}      or      {"event": "failed", "error": "..."}

Humans get a tqdm progress bar on stderr when stderr is a terminal. The reader
side (`parse_event`) is used by the Slicer module and by tests.

Exit codes of the CLI are part of the protocol.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, TextIO

EXIT_OK = 0
EXIT_FAILED = 1        # unexpected failure; the "failed" event carries the message
EXIT_BAD_INPUT = 2     # InputError: a file or argument that cannot be used (one-line message)
EXIT_CANCELLED = 75    # SIGTERM/SIGINT received: a checkpoint was written, `--resume` continues

EVENT_TYPES = ("started", "progress", "validation", "checkpoint", "finished", "failed", "cancelled", "info")


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


class EventWriter:
    """Writes protocol events as JSON lines (stdout by default), flushed at once."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True):
        self.stream = stream if stream is not None else sys.stdout
        self.enabled = enabled

    def emit(self, event: str, **fields: Any) -> None:
        if event not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event!r}")
        if not self.enabled:
            return
        self.stream.write(json.dumps({"event": event, **_clean(fields)}, allow_nan=False) + "\n")
        self.stream.flush()


def parse_event(line: str) -> dict | None:
    """One stdout line -> event dict, or None for lines that are not protocol events."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    if isinstance(obj, dict) and obj.get("event") in EVENT_TYPES:
        return obj
    return None
