"""Prepared (preprocessed, in-memory) LE/DES/mask triples of the resize pipeline (001-004).

Every image is read and preprocessed once (`prepare_cases`); epochs then only
augment 256x256 arrays. The DES is padded exactly like its LE (same side,
same square), so the pair stays aligned pixel for pixel, and the lesion mask
is read in the LE's geometry. `des_output_window` gives the DES intensity
window that predictions are mapped back to; the checkpoint records it.
Without torch, so evaluation and Slicer prepare data too.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from VirtualContrastTraining.data.cases import case_lesion_mask, case_window, read_case_images
from VirtualContrastTraining.data.manifest import Case
from VirtualContrastTraining.data.preprocessing import (
    PreprocessConfig,
    PreprocessParams,
    breast_side,
    preprocess,
    preprocess_mask,
)
from VirtualContrastTraining.errors import InputError

# Below this estimated serial time, starting worker processes costs more than it saves.
PARALLEL_MIN_SECONDS = 5.0


@dataclass
class PreparedCase:
    case: Case
    le: np.ndarray                      # (S, S) float32 in [0, 1]
    des: np.ndarray | None              # (S, S) float32 in [0, 1]; None for LE-only cases
    mask: np.ndarray                    # (S, S) float32, 1 = lesion; zeros when no mask
    has_mask: bool
    params: PreprocessParams            # of the LE: how to map a prediction back
    le_image_shape: tuple[int, int]     # (rows, cols) of the LE file
    des_params: PreprocessParams | None = None  # of the DES: its intensity window


def prepare_case(case: Case, config: PreprocessConfig) -> PreparedCase:
    """Read and preprocess one case. InputError names the file that cannot be used."""
    le_image, des_image = read_case_images(case)
    side = breast_side(le_image, case.laterality or str(le_image.meta.get("laterality", "")))
    le, params = preprocess(le_image, window=case_window(case, "le"), config=config, side=side)
    des = des_params = None
    if des_image is not None:
        des, des_params = preprocess(des_image, window=case_window(case, "des"), config=config, side=side)
    if case.lesion_path:
        mask, has_mask = preprocess_mask(case_lesion_mask(case, le_image), params, config), True
    else:
        mask, has_mask = np.zeros((config.size, config.size), np.float32), False
    return PreparedCase(case, le, des, mask, has_mask, params, le_image.shape, des_params)


def prepare_cases(cases: list[Case], config, workers: int = 1, prepare=prepare_case) -> list:
    """`prepare(case, config)` for each case, in order; `workers` > 1 prepares cases in that many processes
    when the first case shows that the rest would take more than PARALLEL_MIN_SECONDS. `prepare` is
    `prepare_case` (resize pipeline, `config` a PreprocessConfig) or data.patches.prepare_patch_case
    (patch pipeline of 000, `config` a PatchPipeline); a module-level function, so workers can unpickle it.

    Processes, not threads: decoding, Gaussian prefiltering and percentiles
    hold the GIL, so threads were slower than one loop. Spawned, not forked:
    the trainer has torch (and ITK's thread pool) running, which a fork would
    copy mid-state. Starting spawned workers costs seconds, hence the timing
    of the first case (small phantom images stay in one process). Use
    workers > 1 in a command-line child (training), not inside the Slicer
    application process, whose executable is not a Python.
    """
    if not cases:
        return []
    start = time.perf_counter()
    first = prepare(cases[0], config)
    rest = cases[1:]
    if workers <= 1 or (time.perf_counter() - start) * len(rest) < PARALLEL_MIN_SECONDS:
        return [first, *(prepare(c, config) for c in rest)]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(rest)), mp_context=spawn,
                             initializer=_leave_stop_signals_to_the_parent) as pool:
        with _stop_signals_blocked():  # map() submits every case at once: the workers start in here
            results = pool.map(partial(prepare, config=config), rest)
        return [first, *results]


# The pool's workers share the trainer's process group, which a cancel from Slicer (SIGTERM to the group,
# VirtualContrastLib/jobs.py) and a Ctrl-C in a terminal (SIGINT) reach as a whole. Killed by it, a worker
# would break the pool and fail the run; so workers ignore both, and the trainer, which takes the signal as a
# stop request, stops once the preparation is done. SIGKILL still ends them.
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@contextlib.contextmanager
def _stop_signals_blocked():
    """SIGTERM and SIGINT held back in this thread while it starts workers: a worker inherits the mask, so a
    signal that comes before its initializer runs waits instead of killing it (multiprocessing's resource
    tracker starts the same way). Here the held signal is delivered on exit. No signal masks on Windows."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _leave_stop_signals_to_the_parent() -> None:
    """Pool initializer: ignore SIGTERM and SIGINT (one held back since the start is dropped), then let them in."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def des_output_window(prepared: list[PreparedCase]) -> tuple[float, float]:
    """The DES window predictions are mapped back to: the median (lo, hi) over the given cases.

    Pass the training cases. The median, not the mean, so one odd acquisition
    cannot shift the intensity scale of every synthetic image.
    """
    windows = np.array([p.des_params.window for p in prepared if p.des_params is not None], dtype=np.float64)
    if windows.size == 0:
        raise InputError(None, "no DES images among the cases: cannot derive the DES intensity window")
    lo, hi = np.median(windows, axis=0)
    return float(lo), float(hi)
