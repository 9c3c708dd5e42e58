"""Time and memory of a run, measured on a few of its real steps, and a warning for a GPU-sized run on the CPU.

A paper preset on a CPU plans hundreds of steps of minutes each: the user
must learn that before the hours are spent, not after. `train --estimate`
builds the run as `train` would, times a few real steps and prints the total;
a real run emits the same estimate after its own first steps.

Peak memory: on CUDA torch.cuda.max_memory_allocated (tensors only, not the
caching allocator's reserve); on the CPU the process's peak resident set
(resource.getrusage ru_maxrss: the whole process, data included, which is
what the machine must hold), and how much it grew during the timed steps.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

from VirtualContrastTraining.console import duration
from VirtualContrastTraining.config.presets import PRESETS
from VirtualContrastTraining.config.schema import TrainConfig

try:
    import resource  # POSIX only: on Windows the CPU peak memory is not measured
except ImportError:
    resource = None

#: Warm-up steps (first-call allocations, autotuning) not timed, then timed steps.
WARMUP_STEPS, TIMED_STEPS = 1, 3
#: A step of at least this many input pixels (batch x side^2, e.g. 4 images of 256x256) is GPU-sized: every
#: paper preset at its paper's size (the smallest: 000's 20 patches of 128x128), not the demo preset (4 of 128).
GPU_PIXELS_PER_STEP = 4 * 256 * 256
#: Side of the scaled-down alternative: 128 for whole images (the demo preset's), 64 for patches.
SMALL_SIDE = {"resize": 128, "patches": 64}
SMALL_BATCH = 8
#: The scaled-down alternative is sized to take about this long on the measured device.
TARGET_SECONDS = 3600.0


@dataclass(frozen=True)
class StepMeasurement:
    seconds_per_step: float
    peak_bytes: int | None  # None where the platform does not say
    grown_bytes: int | None  # CPU: growth of the peak resident set during the measured steps
    device_type: str

    def summary(self, planned_steps: int) -> str:
        """"measured 2.1 s/step on cpu: 800 steps ≈ 28 min; peak memory 1.2 GB (...)"."""
        total = self.seconds_per_step * planned_steps
        memory = "not measured on this platform"
        if self.peak_bytes is not None and self.device_type == "cuda":
            memory = f"{_gb(self.peak_bytes)} (CUDA tensors, max_memory_allocated)"
        elif self.peak_bytes is not None:
            memory = f"{_gb(self.peak_bytes)} (process peak resident set; +{_gb(self.grown_bytes or 0)} in the steps)"
        return (f"measured {self.seconds_per_step:.3g} s/step on {self.device_type}: {planned_steps} steps "
                f"\u2248 {duration(total)}; peak memory {memory}")


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def _peak_rss() -> int | None:
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


class StepTimer:
    """Call `step_done()` after each training step: after WARMUP_STEPS + TIMED_STEPS it returns the
    measurement (once; None before and after). The device is synchronized around the timed steps only."""

    def __init__(self, device):
        import torch  # lazy: torch

        self.device, self.steps, self.start = device, 0, 0.0
        self.cuda = device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self.rss_before = _peak_rss()

    def _sync(self) -> None:
        import torch  # lazy: torch

        if self.cuda:
            torch.cuda.synchronize(self.device)

    def step_done(self) -> StepMeasurement | None:
        import torch  # lazy: torch

        self.steps += 1
        if self.steps == WARMUP_STEPS:
            self._sync()
            self.start = time.perf_counter()
        if self.steps != WARMUP_STEPS + TIMED_STEPS:
            return None
        self._sync()
        seconds = (time.perf_counter() - self.start) / TIMED_STEPS
        if self.cuda:
            return StepMeasurement(seconds, torch.cuda.max_memory_allocated(self.device), None, "cuda")
        peak = _peak_rss()
        grown = None if peak is None else peak - self.rss_before
        return StepMeasurement(seconds, peak, grown, self.device.type)


def network_side(config: TrainConfig) -> int:
    return config.patch_size if config.pipeline == "patches" else config.image_size


def gpu_sized(config: TrainConfig) -> bool:
    return config.batch_size * network_side(config) ** 2 >= GPU_PIXELS_PER_STEP


def cpu_warning(config: TrainConfig, measured: StepMeasurement | None = None, items_per_epoch: int = 0) -> str:
    """Why a GPU-sized config should not train on this CPU, and the scaled-down run to start instead.

    Without a measurement (at start) the overrides give no epoch count.
    """
    side = network_side(config)
    sized = f"{config.batch_size} images of {side}x{side} per step"
    name = config.preset or "this config"
    how_long = "" if measured else ": it may take hours to days"  # measured: the estimate above says how long
    return (f"{name} is sized for a GPU ({sized}) and this run is on the CPU{how_long}. "
            f"Scaled down: {scaled_down(config, measured, items_per_epoch)}")


def scaled_down(config: TrainConfig, measured: StepMeasurement | None, items_per_epoch: int) -> str:
    """A catalogue preset of the same recipe, generator and pipeline that is not GPU-sized (demo for the
    CycleGANs of 001/002), else the overrides that shrink this one (side 128, or 64 for patches; batch at most 8;
    a U-Net that halves down to 1x1 one level less per halving of the side) to about an hour at the measured
    speed, time assumed proportional to pixels per step."""
    family = (config.recipe, config.generator, config.pipeline)
    for preset_name, preset in PRESETS.items():
        if (preset.recipe, preset.generator, preset.pipeline) == family and not gpu_sized(preset):
            side = network_side(preset)
            return f"--preset {preset_name} ({side}x{side}, batch {preset.batch_size}; see train --list-presets)"
    small = SMALL_SIDE[config.pipeline]
    side_option = f"--set patch_size={small}" if config.pipeline == "patches" else f"--image-size {small}"
    options = [side_option]
    batch = min(config.batch_size, SMALL_BATCH)
    if batch != config.batch_size:
        options.append(f"--batch-size {batch}")
    if config.generator in ("unet", "attention-unet") and 2 ** config.unet_depth > small:
        options.append(f"--set unet_depth={int(math.log2(small))}")
    if measured is not None and items_per_epoch:
        seconds = measured.seconds_per_step * (batch * small ** 2) / (config.batch_size * network_side(config) ** 2)
        steps = max(1, int(TARGET_SECONDS / seconds))
        if config.max_steps:
            options.append(f"--set max_steps={min(steps, config.max_steps)}")
        else:
            epochs = max(1, min(config.epochs, steps // math.ceil(items_per_epoch / batch)))
            options.append(f"--epochs {epochs}")
            if config.epochs_decay:  # the decay keeps its share of the schedule (it may not exceed epochs)
                options.append(f"--set epochs_decay={config.epochs_decay * epochs // config.epochs}")
        return " ".join(options) + f" (about {duration(TARGET_SECONDS)} at this speed)"
    return " ".join(options)
