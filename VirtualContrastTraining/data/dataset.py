"""Prepared (preprocessed, in-memory) LE/DES/mask triples and the torch Dataset over them.

Every image is read and preprocessed once (`prepare_cases`); epochs then only
augment 256x256 arrays. The DES is padded exactly like its LE (same side,
same square), so the pair stays aligned pixel for pixel, and the lesion mask
is read in the LE's geometry. `des_output_window` gives the DES intensity
window that predictions are mapped back to; the checkpoint records it.

Torch is imported only by `PairedDataset`, so preparing data (evaluation,
Slicer) works without it.
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

from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import read_image
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


def case_lesion_mask(case: Case, le_image: Image) -> np.ndarray:
    """The case's lesion mask (bool) on the LE's grid; shared by both pipelines."""
    # Imported here: the segmentation reader pulls in slicerio only when a mask exists.
    from VirtualContrastTraining.data.segmentation import read_lesion_mask

    return np.asarray(read_lesion_mask(case.lesion_path, reference=le_image)) > 0


def case_window(case: Case, which: str) -> tuple[float, float] | None:
    """The manifest's (center, width) window of the case's LE or DES; a malformed one is an InputError naming the file."""
    try:
        return case.window(which)
    except ValueError:
        center, width = getattr(case, f"{which}_window_center"), getattr(case, f"{which}_window_width")
        raise InputError(getattr(case, f"{which}_path"),
                         f"case {case.case_id}: window center/width {center!r}/{width!r} are not numbers") from None


def shift_to_le(des: np.ndarray, offset: tuple[int, int], shape: tuple[int, int] | None = None) -> np.ndarray:
    """The DES moved onto the LE's pixel grid (`shape`, default the DES's own) by the integer translation
    `offset` = (x, y): out[r, c] = des[r + y, c + x]; pixels that come from outside the DES get its
    minimum (its background). Both images share their top-left corner before the shift: CDD-CESM's LE
    and DES differ in size (004: 1393x2129 against 1390x2341) but by at most 10 px in position."""
    x, y = offset
    rows, cols = shape or des.shape
    if not (x or y) and (rows, cols) == des.shape:
        return des
    out = np.full((rows, cols), des.min(), dtype=des.dtype)
    r0, r1 = max(-y, 0), min(rows, des.shape[0] - y)
    c0, c1 = max(-x, 0), min(cols, des.shape[1] - x)
    if r0 < r1 and c0 < c1:
        out[r0:r1, c0:c1] = des[r0 + y:r1 + y, c0 + x:c1 + x]
    return out


def read_case_images(case: Case) -> tuple[Image, Image | None]:
    """(LE, DES or None) of one case. A registered pair (des_offset set: CDD-CESM, whose LE and DES are
    neither pixel-aligned nor of one size) gets its DES moved onto the LE's grid by the offset; any other
    DES must be the LE's size (every pipeline needs that), else InputError."""
    le_image = read_image(case.le_path)
    if not case.des_path:
        return le_image, None
    des_image = read_image(case.des_path)
    if case.des_offset_x or case.des_offset_y:
        aligned = shift_to_le(des_image.array, case.des_offset(), le_image.shape)
        return le_image, Image(aligned, le_image.spacing, le_image.origin, le_image.direction, dict(des_image.meta))
    if des_image.shape != le_image.shape:
        (lr, lc), (dr, dc) = le_image.shape, des_image.shape
        raise InputError(
            case.des_path,
            f"DES is {dc}x{dr} pixels but its LE {case.le_path} is {lc}x{lr}: a pair must have the same size",
        )
    return le_image, des_image


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


class PairedDataset:
    """Torch map-style dataset of prepared LE/DES/mask triples.

    Items: le, des, mask as (1, S, S) float32 tensors, plus index and has_mask.
    With `augment`, each item is augmented with a seed derived from (seed,
    epoch, index), so any epoch of any run can be replayed exactly; call
    `set_epoch` at the start of each epoch (with a DataLoader, without
    persistent_workers, whose copies of the dataset would keep the old epoch).
    Duck-typed (len + getitem) rather than a torch Dataset subclass so that
    this module imports without torch.
    """

    def __init__(self, prepared: list[PreparedCase], augment: bool, seed: int, prob: float = 0.3):
        missing = [p.case.le_path for p in prepared if p.des is None]
        if missing:
            raise InputError(missing[0], f"has no DES image: training needs LE/DES pairs ({len(missing)} such case(s))")
        self.prepared = prepared
        self.seed = int(seed)
        self.epoch = 0
        self.augmentation = None
        if augment and prob > 0 and prepared:
            from VirtualContrastTraining.data.augment import make_augmentation, sample_seed

            self.augmentation = make_augmentation(prob=prob, size=prepared[0].le.shape[0])
            self.sample_seed = sample_seed

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.prepared)

    def __getitem__(self, index: int) -> dict:
        import torch

        p = self.prepared[index]
        item = {k: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]
                for k, a in (("le", p.le), ("des", p.des), ("mask", p.mask))}
        if self.augmentation is not None:
            item = self.augmentation(item, seed=self.sample_seed(self.seed, self.epoch, index))
        return {**item, "index": index, "has_mask": p.has_mask}
