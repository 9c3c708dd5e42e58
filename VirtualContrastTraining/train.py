"""The training loop: epochs, validation, early stopping, checkpoints, cancel and exact resume.

`train()` is what `virtual-contrast train` and `virtual-contrast demo` call. It
reports through the events protocol (events.py) and returns an exit code.

Exact resume. Everything random is a function of the config's seed: weights
are initialised after seeding; the batch order of epoch e comes from a
torch.Generator seeded by (seed, e); each sample's augmentation is seeded by
(seed, e, index) (data/augment.py); the rest (image pool draws) uses the
global RNGs, whose states the checkpoint saves. The checkpoint also holds
the position within the epoch, so a run cancelled after step k and resumed
makes exactly the steps k+1, k+2, ... an uninterrupted run would have made.
With --deterministic (execution.py), torch.use_deterministic_algorithms(True)
makes those steps bitwise repeatable; a run started with it keeps it when
resumed. Without it a resumed run makes the same steps from the same state,
but their last bits may differ wherever a kernel's order of summation is not
fixed (cuDNN's autotuned convolutions on a GPU). The learning
rate is recomputed for the epoch resumed at (never read back from the
optimiser state), from the config resumed with.

Extension. `--resume --epochs N` continues a finished or stopped run to N
epochs. It equals, bit for bit, a run started with N epochs as long as the
schedule does not depend on the run's length: no linear decay
(epochs_decay 0) and no loss annealed over the planned steps (tau 0), and
validation every epoch (with val_every > 1 the last epoch of the shorter
run was validated although not due). With decay or annealing, a longer run
would have trained every earlier step at another lr or tau, so changing
epochs is refused there.

Run folder. One training at a time writes a folder: a lock (atomic.
folder_lock) is taken before anything is written, and the folder is checked
under it. A run that fails before its first checkpoint removes what it
wrote; one killed before it (no checkpoint, but config.json) restarts from
step 0 with --resume; --overwrite reuses a folder holding only a run's files
and deletes them once the new run's data and networks are ready.

Cancel. SIGTERM, SIGINT and the runner's stop file (events.StopRequest: the
one request that reaches an engine behind a launcher on Windows) only set a
flag; after the current step the loop writes the full training state, emits
"cancelled" and returns EXIT_CANCELLED. A second signal does not wait for
the step (events.ForcedStop): "cancelled" with forced true, the same exit
code, and the last complete checkpoint as it was.

Several processes. Under torchrun each process trains its share of every
batch (distributed.py): rank 0 alone writes the folder and the events, the
losses and the validation error are summed over the processes, and a stop
request seen by any process stops all of them after the same step.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import random
import shutil
import signal
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from VirtualContrastTraining import software_versions
from VirtualContrastTraining.atomic import LOCK_NAME, ensure_writable_dir, folder_lock, write_text_atomic
from VirtualContrastTraining.checkpoints import (
    MODEL_NAME,
    STATE_NAME,
    has_training_state,
    load_initial_weights,
    load_training_state,
    read_json_object,
    save_model,
    save_training_state,
)
from VirtualContrastTraining.config.presets import PRESETS
from VirtualContrastTraining.config.registries import preset_changes
from VirtualContrastTraining.config.schema import TrainConfig
from VirtualContrastTraining.data.manifest import fingerprint, read_manifest, write_manifest
from VirtualContrastTraining.data.patches import (
    BACKGROUND,
    PatchPipeline,
    RandomPatchDataset,
    TilePatchDataset,
    prepare_patch_case,
)
from VirtualContrastTraining.data.prepared import des_output_window, prepare_case, prepare_cases
from VirtualContrastTraining.data.preprocessing import PreprocessConfig
from VirtualContrastTraining.data.splits import assign_splits
from VirtualContrastTraining.devices import resolve_device
from VirtualContrastTraining.distributed import Group, group_from_environment, process_device, process_group
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, EventWriter, ForcedStop, StopRequest
from VirtualContrastTraining.execution import Execution
from VirtualContrastTraining.estimate import TIMED_STEPS, WARMUP_STEPS, StepTimer, cpu_warning, gpu_sized
from VirtualContrastTraining.recipes import build_recipe
from VirtualContrastTraining.training_progress import (
    N_SAMPLES,
    PROGRESS_PNG,
    SAMPLES_DIR,
    TENSORBOARD_DIR,
    require_tensorboard,
    sample_file_name,
    tensorboard_writer,
    write_progress_png,
    write_sample_png,
    write_samples_index,
)

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
SPLIT_MANIFEST_FILE = "manifest.csv"
# Fields that may change when resuming: they extend or shorten the schedule without changing any step.
RESUMABLE_CHANGES = ("epochs", "max_steps", "patience", "warmup", "val_every", "description")
# What a run writes in its folder (besides the temporary names of its atomic writes): all --overwrite may delete.
RUN_FILES = (CONFIG_FILE, HISTORY_FILE, SPLIT_MANIFEST_FILE, f"{STATE_NAME}.safetensors", f"{STATE_NAME}.json",
             f"{MODEL_NAME}.safetensors", f"{MODEL_NAME}.json", PROGRESS_PNG)
# The folders a run writes (outputs for the eye, not state): --overwrite deletes them whole.
RUN_FOLDERS = (SAMPLES_DIR, TENSORBOARD_DIR)


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The resolved config saved in a run folder."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise InputError(run_dir, f"not a training run folder ({CONFIG_FILE} is missing)")
    return TrainConfig.from_dict(read_json_object(path, "config"), where=path)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The sample order of one epoch: a permutation from a torch.Generator seeded by (seed, epoch)."""
    import torch  # lazy: torch

    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0]))
    return torch.randperm(n, generator=g).tolist()


@contextlib.contextmanager
def _deterministic(enabled: bool):
    """For the run only, the caller's settings coming back afterwards: deterministic algorithms and cuDNN kernels
    when `enabled` (or already on), else cuDNN's autotuning of the convolutions (cudnn.benchmark: our shapes are
    fixed, so the kernels chosen in the first steps serve the whole run)."""
    import torch  # lazy: torch

    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    enabled = enabled or before[0]
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.deterministic = enabled or before[1]
    torch.backends.cudnn.benchmark = not enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1:]


def _seed_everything(seed: int) -> None:
    import torch  # lazy: torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    import torch  # lazy: torch

    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch  # lazy: torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_text_atomic(run_dir / HISTORY_FILE, buf.getvalue())


def _is_run_file(name: str) -> bool:
    """A run's own file, or the temporary name of one of its atomic writes (atomic.atomic_path: .STEM-*.tmp*)."""
    stems = {f.split(".")[0] for f in RUN_FILES}
    return name in RUN_FILES or name == LOCK_NAME or (name.startswith(".") and ".tmp" in name
                                                      and name[1:].split("-")[0] in stems)


def _check_run_folder(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Under the run lock: --resume needs a run (a checkpoint, or config.json of one killed before its first);
    a new run an empty folder; --overwrite a folder of nothing but a run's files."""
    entries = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME)
    if resume:
        if not has_training_state(run_dir) and not (run_dir / CONFIG_FILE).is_file():
            raise InputError(run_dir, "--resume: no training checkpoint nor run config in this folder "
                             "(checkpoint.safetensors and config.json are missing)")
    elif overwrite:
        foreign = [name for name in entries if not (_is_run_file(name) and (run_dir / name).is_file())
                   and not (name in RUN_FOLDERS and (run_dir / name).is_dir())]
        if foreign:
            listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise InputError(run_dir, f"--overwrite: the folder holds files that are not a training run's ({listed}); "
                             "refusing to delete them")
    elif entries:
        raise InputError(run_dir, "output folder is not empty: refusing to overwrite a run "
                         "(use --resume, --overwrite, or another --out)")


def _remove_run_files(run_dir: Path) -> None:
    """The files of a run in `run_dir` (RUN_FILES and temporary ones) and its RUN_FOLDERS, not the lock, nothing
    else."""
    for path in run_dir.iterdir():
        if path.name != LOCK_NAME and _is_run_file(path.name) and path.is_file():
            path.unlink()
        elif path.name in RUN_FOLDERS and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)


def _check_resume_config(run_dir: Path, config: TrainConfig) -> None:
    saved = load_run_config(run_dir).to_dict()
    changed = sorted(k for k, v in config.to_dict().items() if saved.get(k) != v and k not in RESUMABLE_CHANGES)
    if (config.epochs_decay or config.tau) and saved.get("epochs") != config.epochs:
        changed.append("epochs")  # the decay ends at the last epoch, tau at the last step: moving them changes steps
    if changed:
        detail = ", ".join(f"{k} {saved.get(k)!r} -> {config.to_dict()[k]!r}" for k in changed)
        raise InputError(run_dir / CONFIG_FILE, f"--resume with a different config ({detail}); "
                         f"only {', '.join(RESUMABLE_CHANGES)} may change")


def _split_cases(manifest_path: Path, seed: int) -> tuple[list, list, list]:
    """(all cases with splits, train, val); splits are assigned per patient when the manifest has none."""
    cases = assign_splits(read_manifest(manifest_path, require_des=True), seed=seed, source=manifest_path)
    train_cases = [c for c in cases if c.split == "train"]
    val_cases = [c for c in cases if c.split == "val"]
    if not train_cases:
        raise InputError(manifest_path, "no case in the train split")
    if not val_cases:
        raise InputError(manifest_path, "no case in the val split: early stopping and model selection need one "
                         "(fill the split column, or add patients)")
    return cases, train_cases, val_cases


def _datasets(config: TrainConfig, train_cases: list, val_cases: list):
    """(preprocessing parameters for the model sidecar, training set, validation set, DES output window).

    Pipeline "resize" (001-004): whole images padded and resized to image_size,
    augmented. Pipeline "patches" (000): breast boxes at spacing_mm, random
    patches for training, a fixed tiling for validation, and the predictions
    mapped back to the config's DES window (000's truncation range) when it
    has one. Otherwise the median DES window of the training cases.
    """
    from VirtualContrastTraining.data.dataset import PairedDataset  # lazy: monai, torch

    workers = min(4, os.cpu_count() or 1)
    if config.pipeline == "patches":
        pipeline = PatchPipeline.from_config(config)
        train_prepared = prepare_cases(train_cases, pipeline, workers=workers, prepare=prepare_patch_case)
        val_prepared = prepare_cases(val_cases, pipeline, workers=workers, prepare=prepare_patch_case)
        return (pipeline, RandomPatchDataset(train_prepared, config.patch_size, config.patches_per_image, config.seed),
                TilePatchDataset(val_prepared, config.patch_size),
                pipeline.des_window or des_output_window(train_prepared))

    preprocessing = PreprocessConfig(size=config.image_size)
    train_prepared = prepare_cases(train_cases, preprocessing, workers=workers, prepare=prepare_case)
    val_prepared = prepare_cases(val_cases, preprocessing, workers=workers, prepare=prepare_case)
    return (preprocessing, PairedDataset(train_prepared, augment=config.augment_prob > 0, seed=config.seed,
                                         prob=config.augment_prob),
            PairedDataset(val_prepared, augment=False, seed=config.seed), des_output_window(train_prepared))


def _sample_items(val_set) -> list[tuple[int, str]]:
    """(item, case id) of the validation cases rendered each epoch: the first N_SAMPLES by case id (the ids the
    run's manifest.csv holds), the middle tile of each case for the patch pipeline."""
    items: dict[int, list[int]] = {}
    for index in range(len(val_set)):
        number = val_set.position(index)[0] if isinstance(val_set, TilePatchDataset) else index
        items.setdefault(number, []).append(index)
    chosen = sorted(items, key=lambda number: val_set.prepared[number].case.case_id)[:N_SAMPLES]
    return [(items[n][len(items[n]) // 2], val_set.prepared[n].case.case_id) for n in chosen]


def _loader_generator():
    """A DataLoader's own generator, for the worker base seed it draws each time it is iterated (unused with
    num_workers=0). Drawn from the global RNG instead, that seed would make a run resumed mid-epoch, which
    iterates a second loader for that epoch, one draw off the uninterrupted run, and the image pool and the
    checkpoint's RNG state use the global RNG."""
    import torch  # lazy: torch

    return torch.Generator()


class _Trainer:
    """One run: data, recipe, counters; `run()` returns the exit code."""

    def __init__(self, config: TrainConfig, manifest_path: Path, run_dir: Path, device, resume: bool,
                 events: EventWriter, stop: StopRequest, execution: Execution, group: Group):
        self.config, self.run_dir, self.device, self.events, self.stop = config, run_dir, device, events, stop
        self.execution, self.group, self.peers_stop = execution, group, False
        cases, train_cases, val_cases = _split_cases(manifest_path, config.seed)
        self.preprocessing, self.train_set, self.val_set, self.des_window = _datasets(config, train_cases, val_cases)
        val_set = self.val_set
        self.fingerprint = fingerprint(train_cases + val_cases)
        mine = list(range(group.rank, len(val_set), group.world))  # this process's validation items
        self.val_loader = self._loader(val_set, [mine[i:i + config.batch_size]
                                                 for i in range(0, len(mine), config.batch_size)])
        self.steps_per_epoch = len(group.batches(list(range(len(self.train_set))), config.batch_size))
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps:
            self.total_steps = min(self.total_steps, config.max_steps)

        _seed_everything(config.seed)
        self.recipe = build_recipe(config, device, execution)
        if config.init_from and not resume:
            load_initial_weights(self.recipe, config.init_from)
        self.state: dict[str, Any] = {
            "manifest": str(manifest_path.resolve()), "data_fingerprint": self.fingerprint,
            "epoch": 1, "position": 0, "global_step": 0, "best_val_l1": math.inf, "best_epoch": 0,
            "patience_counter": 0, "history": [], "epoch_sums": {}, "epoch_steps": 0,
            "deterministic": execution.deterministic,
        }
        self.restored = resume and has_training_state(run_dir)
        if self.restored:
            self._restore()
            self.state["deterministic"] = bool(self.state.get("deterministic")) or execution.deterministic
        self.cases = cases
        self.n_train, self.n_val = len(train_cases), len(val_cases)
        self.samples = _sample_items(val_set)
        self.first_step = self.state["global_step"]  # this process's first: the estimate covers the steps after it
        self.timer = StepTimer(device)
        self.tensorboard = None  # a SummaryWriter with --tensorboard (open_tensorboard)

    @property
    def deterministic(self) -> bool:
        """--deterministic, or a resumed run that was started with it (its exact resume was asked for)."""
        return bool(self.state["deterministic"])

    def _loader(self, dataset, batches: list[list[int]]):
        """A DataLoader of these batches of `dataset`: Execution's worker processes, page-locked batches for a GPU."""
        from torch.utils.data import DataLoader  # lazy: torch

        return DataLoader(dataset, batch_sampler=batches, num_workers=self.execution.loader_workers(self.device),
                          pin_memory=self.device.type == "cuda", generator=_loader_generator())

    def open_tensorboard(self) -> None:
        self.tensorboard = tensorboard_writer(self.run_dir, purge_step=self.state["global_step"])

    def write_start(self, overwrite: bool) -> None:
        """The run's first writes, once its data and networks are ready: with --overwrite the previous run's files
        go first; config.json is rewritten on resume too (epochs or patience may have been extended)."""
        if not self.restored:
            if overwrite:
                _remove_run_files(self.run_dir)
            write_manifest(self.run_dir / SPLIT_MANIFEST_FILE, self.cases)
        write_text_atomic(self.run_dir / CONFIG_FILE, json.dumps(self.config.to_dict(), indent=1) + "\n")

    def _restore(self) -> None:
        saved = load_training_state(self.run_dir)
        if saved.get("data_fingerprint") != self.fingerprint:
            raise InputError(self.run_dir, "--resume: the training data differ from those of the checkpoint "
                             "(files, case ids or splits changed); start a new run instead")
        self.recipe.load_state_dict(saved.pop("recipe"))
        _set_rng_state(saved.pop("rng"))
        self.state.update(saved)
        self.recipe.start_epoch(self.state["epoch"])

    def _save_state(self) -> None:
        save_training_state(self.run_dir, {**self.state, "recipe": self.recipe.state_dict(), "rng": _rng_state()})

    def _finished(self) -> bool:
        s = self.state
        c = self.config
        return (s["epoch"] > c.epochs or s["global_step"] >= self.total_steps
                or (s["patience_counter"] >= c.patience and s["epoch"] > c.warmup))

    @property
    def stopping(self) -> bool:
        """A stop was requested: of this process, or under torchrun of any (agreed on after each step)."""
        return self.peers_stop if self.group.active else bool(self.stop)

    def _cancel(self) -> int:
        if self.group.main:
            self._save_state()
        path = str(self.run_dir / "checkpoint.safetensors")
        self.events.emit("checkpoint", path=path, epoch=self.state["epoch"], step=self.state["global_step"],
                         reason="cancelled")
        self.events.emit("cancelled", signal=self.stop.signal, by=self.stop.by, epoch=self.state["epoch"],
                         step=self.state["global_step"], checkpoint=path,
                         message="training state saved; run again with --resume to continue")
        return EXIT_CANCELLED

    def _train_epoch(self, epoch: int, clock: dict) -> bool:
        """The remaining steps of `epoch`; False when a stop was requested.

        The time spent waiting for the next batch is the data-loading share of the step interval that the
        progress events report (`data_share`): near 0 when the loader keeps up, the fraction lost when not."""
        cfg, s = self.config, self.state
        batches = self.group.batches(epoch_order(len(self.train_set), cfg.seed, epoch), cfg.batch_size)
        shares = [self.group.share(batch) for batch in batches[s["position"]:]]
        self.train_set.set_epoch(epoch)
        loader = iter(self._loader(self.train_set, [mine for mine, _ in shares]))
        started, waited = time.perf_counter(), 0.0
        for _, weight in shares:
            if s["global_step"] >= self.total_steps:  # max_steps reached within the epoch
                break
            fetch = time.perf_counter()
            batch = next(loader)
            waited += time.perf_counter() - fetch
            self.recipe.set_progress(s["global_step"] / self.total_steps)
            self.recipe.set_share(weight)
            losses = self._read_losses(self.recipe.step(batch), weight)
            s["position"] += 1
            s["global_step"] += 1
            s["epoch_steps"] += 1
            for k, v in losses.items():
                s["epoch_sums"][k] = s["epoch_sums"].get(k, 0.0) + v
            now = time.perf_counter()
            clock["steps"] += 1
            clock["images"] += round(len(batch["le"]) * self.group.world / weight)  # the global batch
            elapsed = now - clock["start"]
            eta = elapsed / clock["steps"] * (self.total_steps - s["global_step"])
            headline = {k: losses[k] for k in self.recipe.headline}  # first: what a progress bar shows
            self.events.emit("progress", step=s["global_step"], total_steps=self.total_steps, epoch=epoch,
                             epochs=cfg.epochs, losses={**headline, **losses}, lr=self.recipe.lr, eta_s=round(eta, 1),
                             images_per_s=round(clock["images"] / max(elapsed, 1e-9), 3),
                             data_share=round(waited / max(now - started, 1e-9), 4))
            self._after_step(losses)
            if self.stopping:
                break
        clock["data"] += waited
        clock["loop"] += time.perf_counter() - started
        return not self.stopping

    def _read_losses(self, values: dict, weight: float) -> dict[str, float]:
        """The step's losses as numbers, read from the device once; under torchrun the batch means over all
        processes (each share weighted by its size), with the stop flag summed in the same reduction."""
        import torch  # lazy: torch

        names = self.recipe.loss_names
        vector = torch.stack([values[k].float() for k in names]) * (weight / self.group.world)
        if self.group.active:
            flag = torch.ones(1, device=vector.device) if self.stop else torch.zeros(1, device=vector.device)
            read = self.group.all_sum(torch.cat([vector, flag])).tolist()
            self.peers_stop = read.pop() > 0
        else:
            read = vector.tolist()
        return dict(zip(names, read))

    def _after_step(self, losses: dict[str, float]) -> None:
        """The estimate once the first steps are timed; TensorBoard's per-step scalars."""
        measured = self.timer.step_done()
        if measured is not None:
            planned = self.total_steps - self.first_step
            self.events.emit("info", message=measured.summary(planned), seconds_per_step=measured.seconds_per_step,
                             planned_steps=planned, peak_memory_bytes=measured.peak_bytes)
        if self.tensorboard is not None:
            step = self.state["global_step"]
            for name, value in losses.items():
                self.tensorboard.add_scalar(f"loss/{name}", value, step)
            self.tensorboard.add_scalar("lr", self.recipe.lr, step)

    def _synthesise(self, item: dict) -> np.ndarray:
        """G(LE) of one validation item, in eval mode and without gradients (no RNG draw: resume stays exact)."""
        import torch  # lazy: torch

        G = self.recipe.generator
        G.eval()
        try:
            with torch.no_grad(), self.recipe.autocast():
                return G(item["le"][None].to(self.device)).float()[0, 0].cpu().numpy()
        finally:
            G.train()

    def _render_samples(self, epoch: int) -> list[tuple[str, np.ndarray]]:
        """samples/epoch_NNN_<case>.png for the fixed validation cases, and the index page; (case, panel) pairs."""
        folder = self.run_dir / SAMPLES_DIR
        folder.mkdir(exist_ok=True)
        low = BACKGROUND if self.config.pipeline == "patches" else 0.0
        panels = []
        for index, case_id in self.samples:
            item = self.val_set[index]
            le, des, synthetic = item["le"][0].numpy(), item["des"][0].numpy(), self._synthesise(item)
            write_sample_png(folder / sample_file_name(epoch, case_id), le, synthetic, des,
                             title=f"{case_id}, epoch {epoch}", value_range=(low, 1.0))
            panels.append((case_id, (np.clip(np.hstack([le, synthetic, des]), low, 1.0) - low) / (1.0 - low)))
        write_samples_index(folder)
        return panels

    def _write_progress(self, epoch: int, row: dict[str, Any]) -> None:
        """progress.png, the samples of this epoch, and TensorBoard's epoch scalars and images."""
        write_progress_png(self.run_dir / PROGRESS_PNG, self.state["history"])
        panels = self._render_samples(epoch)
        if self.tensorboard is not None:
            if row["val_l1"] is not None:
                self.tensorboard.add_scalar("val_l1", row["val_l1"], self.state["global_step"])
            for case_id, panel in panels:
                self.tensorboard.add_image(f"samples/{case_id}", panel, self.state["global_step"], dataformats="HW")
            self.tensorboard.flush()

    def _validate(self) -> float:
        """Mean |G(LE) - DES| over the validation items, summed on the device in float64 and read once (under
        torchrun each process takes every world-th item, with rank 0's batch-norm statistics)."""
        import torch  # lazy: torch

        self.group.broadcast_buffers(self.recipe.networks.values())
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        for batch in self.val_loader:
            n = len(batch["le"])
            total += torch.stack([self.recipe.validation_error(batch).double() * n, total.new_tensor(n)])
        total, count = self.group.all_sum(total).tolist()
        return total / count

    def _preset_changes(self) -> dict[str, Any]:
        """The fields this run changed from its preset ({} for a custom config)."""
        preset = PRESETS.get(self.config.preset or "")
        return preset_changes(self.config.to_dict(), preset.to_dict()) if preset else {}

    def _save_model(self, epoch: int, val_l1: float) -> Path:
        return save_model(self.run_dir, self.recipe.generator, {
            "config": self.config.to_dict(),
            "preset_changes": self._preset_changes(),  # what --set changed: the model's name says so
            "device": str(self.device),                # the device it was trained on, "auto" resolved
            "pipeline": self.config.pipeline,  # how to read "preprocessing"; models without it are "resize"
            "preprocessing": self.preprocessing.to_dict(),
            "des_output_window": list(self.des_window),
            "versions": software_versions(),
            "data_fingerprint": self.fingerprint,
            "n_train": self.n_train, "n_val": self.n_val,
            "best": {"epoch": epoch, "val_l1": val_l1},
            "synthetic_output": True,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })

    def _end_epoch(self, epoch: int, epoch_time: float) -> None:
        """Validation, best model, history, early-stopping counter, then the resumable state."""
        cfg, s = self.config, self.state
        row: dict[str, Any] = {"epoch": epoch, "steps": s["epoch_steps"]}
        row.update({k: v / max(s["epoch_steps"], 1) for k, v in s["epoch_sums"].items()})
        row["val_l1"], row["lr"] = None, self.recipe.lr
        if epoch % cfg.val_every == 0 or epoch == cfg.epochs or s["global_step"] >= self.total_steps:
            val_l1 = self._validate()
            row["val_l1"] = val_l1
            improved = val_l1 < s["best_val_l1"]
            self.events.emit("validation", epoch=epoch, metrics={"val_l1": val_l1}, best=improved)
            if improved:
                s.update(best_val_l1=val_l1, best_epoch=epoch, patience_counter=0)
                if self.group.main:
                    path = self._save_model(epoch, val_l1)
                    self.events.emit("checkpoint", path=str(path), epoch=epoch, reason="best", val_l1=val_l1)
            elif epoch > cfg.warmup:  # early stopping counts only after the warm-up (public code of 001)
                s["patience_counter"] += cfg.val_every
        row["epoch_time_s"] = round(epoch_time, 3)
        s["history"].append(row)
        self.recipe.end_epoch(epoch, row["val_l1"])
        s.update(epoch=epoch + 1, position=0, epoch_sums={}, epoch_steps=0)
        if not self.group.main:
            return
        _write_history(self.run_dir, s["history"])
        self._write_progress(epoch, row)
        self._save_state()
        self.events.emit("checkpoint", path=str(self.run_dir / "checkpoint.safetensors"), epoch=epoch, reason="epoch")

    def estimate(self) -> int:
        """`train --estimate`: the first steps of epoch 1 (repeated when an epoch is shorter), timed; no write."""
        order = list(range(len(self.train_set)))
        loader = self._loader(self.train_set, [order[i:i + self.config.batch_size]
                                               for i in range(0, len(order), self.config.batch_size)])
        steps = WARMUP_STEPS + TIMED_STEPS
        self.events.emit("info", message=f"estimating {self.config.preset or 'custom'} on {self.device}: "
                         f"{self.n_train} training images, {self.total_steps} planned steps; timing {steps} real "
                         f"steps ({WARMUP_STEPS} warm-up)")
        if self.device.type == "cpu" and gpu_sized(self.config):  # say it now: the steps may take minutes each
            self.events.emit("info", message="this preset is sized for a GPU: each step may take minutes here")
        measured, done = None, 0
        while measured is None:
            for batch in loader:
                self.recipe.train_step(batch)
                done += 1
                self.events.emit("progress", step=done, total_steps=steps, stage="timing steps")
                measured = self.timer.step_done()
                if measured is not None or self.stop:
                    break
            if self.stop:
                self.events.emit("cancelled", signal=self.stop.signal, by=self.stop.by, message="estimate stopped")
                return EXIT_CANCELLED
        self.events.end_stage()
        self.events.emit("info", message=measured.summary(self.total_steps), seconds_per_step=measured.seconds_per_step,
                         planned_steps=self.total_steps, peak_memory_bytes=measured.peak_bytes, estimate=True)
        if self.device.type == "cpu" and gpu_sized(self.config):
            self.events.emit("info", message="warning: " + cpu_warning(self.config, measured, len(self.train_set)))
        return EXIT_OK

    def run(self) -> int:
        cfg, s = self.config, self.state
        self.events.emit("started", run=str(self.run_dir), preset=cfg.preset or "custom", device=str(self.device),
                         n_train=self.n_train, n_val=self.n_val, total_steps=self.total_steps,
                         steps_per_epoch=self.steps_per_epoch, epochs=cfg.epochs, resumed_at_step=s["global_step"],
                         config=cfg.to_dict(), processes=self.group.world,
                         execution={**self.execution.to_dict(), "deterministic": self.deterministic,
                                    "workers": self.execution.loader_workers(self.device)})
        if self.device.type == "cpu" and gpu_sized(cfg):
            self.events.emit("info", message="warning: " + cpu_warning(cfg))
        if self.deterministic:
            self.events.emit("info", message="deterministic mode: bitwise repeatable steps, at a cost in speed "
                             "(docs/benchmarks.md)", deterministic=True)
        clock = {"start": time.perf_counter(), "steps": 0, "images": 0, "data": 0.0, "loop": 0.0}
        while not self._finished():
            if self.stopping:
                return self._cancel()
            epoch, t0 = s["epoch"], time.perf_counter()
            if not self._train_epoch(epoch, clock):
                return self._cancel()
            self._end_epoch(epoch, time.perf_counter() - t0)
        if s["best_epoch"] == 0:
            raise RuntimeError("training ended without any validation")
        stopped_early = s["epoch"] <= cfg.epochs and s["global_step"] < self.total_steps
        elapsed = time.perf_counter() - clock["start"]
        self.events.emit("finished", best_epoch=s["best_epoch"], val_l1=s["best_val_l1"],
                         model=str(self.run_dir / "model.safetensors"), epochs_run=s["epoch"] - 1,
                         stopped_early=stopped_early, steps=s["global_step"],
                         images_per_s=round(clock["images"] / max(elapsed, 1e-9), 3),
                         data_share=round(clock["data"] / max(clock["loop"], 1e-9), 4))
        return EXIT_OK


def estimate(config: TrainConfig, manifest_path: str | os.PathLike, *, device: str = "auto",
             execution: Execution = Execution(), events: EventWriter) -> int:
    """Build the run as train() would, time WARMUP_STEPS + TIMED_STEPS real steps and emit the estimate as "info"
    events (and the CPU warning for a GPU-sized config). Writes nothing: no run folder, no lock."""
    if group_from_environment().active:
        raise InputError(None, "--estimate times one process: run it without torchrun")
    dev = resolve_device(device)
    with StopRequest() as stop, _deterministic(execution.deterministic):
        trainer = _Trainer(config, Path(manifest_path), Path(os.devnull), dev, False, events, stop, execution, Group())
        return trainer.estimate()


def train(config: TrainConfig, manifest_path: str | os.PathLike, run_dir: str | os.PathLike, *,
          device: str = "auto", resume: bool = False, overwrite: bool = False, tensorboard: bool = False,
          execution: Execution = Execution(), events: EventWriter) -> int:
    """Train `config` on the manifest's train split into `run_dir`; returns an events.EXIT_* code.

    Bad input raises InputError (after a "failed" event); any other failure
    emits "failed" with the message and returns EXIT_FAILED. `overwrite`
    reuses a folder that holds a run's files only (see _check_run_folder);
    `tensorboard` also writes TensorBoard event files into <run>/tensorboard;
    `execution` says how the steps run (execution.py). Under torchrun every
    process calls this; rank 0 alone takes the folder and writes.
    """
    run_dir = Path(run_dir)
    group = group_from_environment()
    if not group.main:
        events = EventWriter(enabled=False)
    created = _outermost_missing(run_dir) if group.main else None
    try:
        if resume and overwrite:
            raise InputError(None, "--resume continues the run in the folder, --overwrite replaces it: give one")
        if tensorboard:
            require_tensorboard()
        dev = process_device(group, resolve_device(device))
        if run_dir.exists() and not run_dir.is_dir():
            raise InputError(run_dir, "--out is a file, not a folder")
        with process_group(group, dev):
            if not group.main:
                return _train_locked(config, Path(manifest_path), run_dir, dev, resume, False, False, events,
                                     execution, group)
            ensure_writable_dir(run_dir)
            with folder_lock(run_dir, "training"):
                return _train_locked(config, Path(manifest_path), run_dir, dev, resume, overwrite, tensorboard,
                                     events, execution, group)
    except ForcedStop as exc:
        _remove_created(run_dir, created)  # only while still empty: stopped before its first write
        return _forced_stop(run_dir, exc, events)
    except InputError as exc:
        events.emit("failed", error=str(exc))
        _remove_created(run_dir, created)
        raise
    except Exception as exc:  # the protocol promises a "failed" event, whatever went wrong
        traceback.print_exc(file=sys.stderr)
        events.emit("failed", error=f"{type(exc).__name__}: {exc}")
        _remove_created(run_dir, created)
        return EXIT_FAILED


def _train_locked(config: TrainConfig, manifest_path: Path, run_dir: Path, dev, resume: bool, overwrite: bool,
                  tensorboard: bool, events: EventWriter, execution: Execution, group: Group) -> int:
    """train() once it holds the run lock (rank 0) or rank 0 holds it (the others, which only read the folder). A
    run that fails before its first checkpoint removes what it wrote, so that its folder can be used again (a run
    killed there keeps it: --resume restarts it from step 0)."""
    if group.main:
        _check_run_folder(run_dir, resume, overwrite)
        if resume:
            _check_resume_config(run_dir, config)
    with StopRequest() as stop:
        trainer = _Trainer(config, manifest_path, run_dir, dev, resume, events, stop, execution, group)
        try:
            with _deterministic(trainer.deterministic):
                if group.main:
                    trainer.write_start(overwrite)
                    if tensorboard:
                        trainer.open_tensorboard()
                return trainer.run()
        except Exception:
            if group.main and not resume and not has_training_state(run_dir):
                _remove_run_files(run_dir)
            raise
        finally:
            if trainer.tensorboard is not None:
                trainer.tensorboard.close()


def _forced_stop(run_dir: Path, exc: ForcedStop, events: EventWriter) -> int:
    """A second stop request left the step in progress unfinished: the last complete checkpoint stays as it was."""
    checkpoint = run_dir / f"{STATE_NAME}.safetensors"
    kept = {"checkpoint": str(checkpoint)} if checkpoint.is_file() else {}
    events.emit("cancelled", signal=exc.signal, by="second " + signal.Signals(exc.signal).name, forced=True, **kept,
                message="stopped at once: the step in progress is lost; "
                + ("run again with --resume to continue from the last checkpoint" if kept else
                   "no checkpoint yet: run the command again (with --resume where the folder holds config.json)"))
    return EXIT_CANCELLED


def _outermost_missing(path: Path) -> Path | None:
    """The outermost folder on the way to `path` that does not exist yet; None when `path` exists."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def _remove_created(run_dir: Path, created: Path | None) -> None:
    """A run that failed before writing anything leaves no empty folder behind, nor the parents it made."""
    if created is None:
        return
    for folder in (run_dir, *run_dir.parents):
        if not folder.is_dir() or any(folder.iterdir()):
            return
        folder.rmdir()
        if folder == created:
            return
