"""The protocol's events for a person at a terminal: one readable line per meaningful event, one progress bar.

Without `--json` a command's EventWriter hands each event to a Console instead
of printing it as JSON: lines go to stdout, the bar (tqdm) to stderr and only
when stderr is a terminal; lines are written through the bar so that neither
garbles the other. A log (stderr not a terminal) gets a progress line on
stderr at each tenth of the way instead of the bar (none in a job's first
second), so that stdout holds the same lines whether or not a terminal shows
them. What each event says is decided here, in
one place, from the fields events.py documents:

    training seg-cyclegan on cpu: 28 training / 6 validation images, 20 epochs x 7 steps = 140 steps -> runs/demo
    train 35%|#######             | 49/140 [01:10<02:10, epoch 7/20, G 1.21, D 0.34, cycle 0.41]
    epoch 7/20: val_l1 0.0812 (best so far)
    finished: best epoch 12 of 20 (val_l1 0.0733); model runs/demo/model.safetensors

`compare` forwards the progress of each training run tagged with the run's
index: its bar covers the whole comparison, not one run. A "failed" event is
printed as the CLI prints a bad-input error (`virtual-contrast CMD: error: ...`),
once: the CLI asks `already_reported` before printing its own line.
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import Any, TextIO

#: Units of the bar, by the command that draws it.
_UNITS = {"predict": "image", "phantom": "case"}
QUIET_S = 1.0  # a log gets no progress lines in a job's first second: a quick job needs none
_RESOLUTION = 1000  # the bar counts thousandths of the whole job: one bar for a run, a comparison, any count


def duration(seconds: float) -> str:
    """'45 s', '12 min 05 s', '3 h 20 min', '4.2 days': durations in the words of a status line."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Console:
    """Renders one command's events. `command` names it in error lines and on the bar."""

    def __init__(self, command: str, out: TextIO | None = None, err: TextIO | None = None, quiet_s: float = QUIET_S):
        self.command, self.quiet_s = command, quiet_s
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.bar = None
        self.started_at = time.monotonic()
        self.tenths_shown = 0
        self.epochs: int | None = None
        self.reported: list[str] = []

    # -- the events -------------------------------------------------------------------------------------------

    def show(self, event: str, fields: dict[str, Any]) -> None:
        getattr(self, f"_{event}")(fields)

    def _started(self, f: dict[str, Any]) -> None:
        self.epochs = f.get("epochs")
        if "total_steps" in f and "run" in f:  # a training run
            resumed = f", resuming at step {f['resumed_at_step']}" if f.get("resumed_at_step") else ""
            self.line(f"training {f.get('preset')} on {f.get('device')}: {f.get('n_train')} training / "
                      f"{f.get('n_val')} validation images, {f.get('epochs')} epochs x {f.get('steps_per_epoch')} "
                      f"steps = {f['total_steps']} steps{resumed} -> {f['run']}")
        elif "runs" in f and "presets" in f:  # a comparison
            self.line(f"comparing {', '.join(f['presets'])} over {len(f.get('folds', []))} fold(s): "
                      f"{f['runs']} training runs -> {f.get('out')}")
        else:
            what = {k: v for k, v in f.items()
                    if k not in ("pid", "command", "job") and isinstance(v, (str, int, float))}
            self.line(f"{self.command}: " + ", ".join(f"{k} {_short(v)}" for k, v in what.items()))

    def _progress(self, f: dict[str, Any]) -> None:
        self.epochs = f.get("epochs") or self.epochs  # a comparison's runs say theirs here, not in "started"
        step, total = f.get("step"), f.get("total_steps")
        if step is None or not total:
            return
        fraction = step / total
        if f.get("runs") and f.get("run_index"):  # one run of a comparison: the bar covers all of them
            fraction = (f["run_index"] - 1 + fraction) / f["runs"]
        self.advance(fraction, self._detail(f, step, total))

    def _validation(self, f: dict[str, Any]) -> None:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in (f.get("metrics") or {}).items() if v is not None)
        of = f"/{self.epochs}" if self.epochs else ""
        run = f"{f['run']} " if f.get("run") else ""
        self.line(f"{run}epoch {f.get('epoch')}{of}: {metrics}" + (" (best so far)" if f.get("best") else ""))

    def _checkpoint(self, f: dict[str, Any]) -> None:
        if f.get("reason") == "cancelled":
            self.line(f"checkpoint saved: {f.get('path')}")

    def _info(self, f: dict[str, Any]) -> None:
        if f.get("message"):
            self.line(str(f["message"]))

    def _finished(self, f: dict[str, Any]) -> None:
        self.close_bar()
        elapsed = duration(time.monotonic() - self.started_at)
        if "best_epoch" in f:
            early = ", stopped early" if f.get("stopped_early") else ""
            self.line(f"finished in {elapsed}: best epoch {f['best_epoch']} of {f.get('epochs_run')} "
                      f"(val_l1 {_short(f.get('val_l1'))}){early}; model {f.get('model')}")
        elif "outputs" in f:
            self.line(f"finished in {elapsed}: {len(f['outputs'])} file(s) written" + (f" to {f['out']}"
                                                                                  if f.get("out") else ""))
        else:
            where = next((f[k] for k in ("comparison", "manifest", "report", "out") if f.get(k)), None)
            self.line(f"finished in {elapsed}" + (f": {where}" if where else ""))

    def _cancelled(self, f: dict[str, Any]) -> None:
        self.close_bar()
        self.line(f"cancelled ({f.get('by') or 'stop requested'}): {f.get('message', '')}".rstrip(": "))

    def _failed(self, f: dict[str, Any]) -> None:
        self.close_bar()
        error = str(f.get("error") or "failed")
        where = f"{f['run']}: " if f.get("run") else ""
        print(f"virtual-contrast {self.command}: error: {where}{error}", file=self.err, flush=True)
        self.reported.append(error)

    def already_reported(self, error: str) -> bool:
        """Whether a "failed" event already printed this error (the CLI then prints no second line)."""
        return error in self.reported

    # -- the bar and the lines --------------------------------------------------------------------------------

    def _detail(self, f: dict[str, Any], step: int, total: int) -> str:
        unit = _UNITS.get(self.command, "step")
        # a stage names what is counted ("reading DICOM headers"); without one, the command's unit does
        parts = [f"{step}/{total}, {f['stage']}" if f.get("stage") else f"{step}/{total} {unit}s"]
        if f.get("runs"):
            parts.insert(0, f"run {f.get('run_index')}/{f['runs']}")
        if f.get("epoch") and f.get("epochs"):
            parts.append(f"epoch {f['epoch']}/{f['epochs']}")
        parts += [f"{k} {v:.3g}" for k, v in list((f.get("losses") or {}).items())[:3] if v is not None]
        return ", ".join(parts)

    def advance(self, fraction: float, detail: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        if not self.err.isatty():
            tenths = int(fraction * 10)
            elapsed = time.monotonic() - self.started_at
            if tenths > self.tenths_shown and elapsed >= self.quiet_s:
                self.tenths_shown = tenths
                eta = f", about {duration(elapsed / fraction * (1 - fraction))} left" if 0 < fraction < 1 else ""
                print(f"{fraction:4.0%} {detail}{eta}", file=self.err, flush=True)
            return
        if self.bar is None:
            from tqdm import tqdm  # lazy: tqdm

            # initial: a resumed run's earlier steps do not count in the rate behind the time left
            self.bar = tqdm(total=_RESOLUTION, initial=round(fraction * _RESOLUTION), file=self.err,
                            desc=self.command, **self._width(),
                            bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
        self.bar.n = round(fraction * _RESOLUTION)
        self.bar.set_postfix_str(detail, refresh=False)
        self.bar.refresh()

    def _width(self) -> dict[str, Any]:
        """Follow the terminal's width; a terminal that reports none (0 columns: some CI and `script` sessions)
        would get an empty bar, so it gets 100 columns."""
        try:
            known = os.get_terminal_size(self.err.fileno()).columns > 0
        except (OSError, ValueError, io.UnsupportedOperation):
            known = False
        return {"dynamic_ncols": True} if known else {"ncols": 100}

    def line(self, text: str) -> None:
        """A line on stdout, above the bar when one is drawn."""
        if self.bar is not None:
            self.bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
