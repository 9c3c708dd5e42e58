"""How a run executes on its device, apart from what it learns: determinism, data workers, memory format, compile.

These switches change speed, not the objective: they are not TrainConfig
fields, so they never enter a model's name or its preset comparison, and a
run may be resumed with other ones (except `deterministic`, which a run
started with it keeps: see train.py).

- deterministic: torch.use_deterministic_algorithms(True) and cuDNN's
  deterministic kernels, for bitwise repeatable steps (exact resume, exact
  reruns). Off by default: on the CPU its cost was within the noise of
  alternating runs (docs/benchmarks.md), but on CUDA it also turns
  cudnn.benchmark off and picks slower deterministic kernels (unmeasured
  here: no GPU was lent to the project).
- workers: DataLoader worker processes (None: 0 on the CPU, where every core
  already computes the step, else min(4, cores - 1)); batches are then
  pinned in page-locked memory for an asynchronous copy to the GPU. Each
  sample's augmentation is seeded by (seed, epoch, index), so the workers
  change no result. They are not persistent: a new epoch starts new workers,
  which read the dataset's epoch (set_epoch) as the loop set it.
- channels_last: networks and inputs in NHWC memory format (tensor cores
  prefer it); measured, off by default.
- compile: torch.compile of every network (nn.Module.compile, in place, so
  state_dict names do not change); its first steps compile for minutes;
  measured, off by default.
"""

from __future__ import annotations

from dataclasses import dataclass

from VirtualContrastTraining.devices import available_cores

#: Worker processes the DataLoader uses on a GPU when not told (more rarely help a 2-D pipeline this small).
GPU_WORKERS = 4


@dataclass(frozen=True)
class Execution:
    deterministic: bool = False
    workers: int | None = None
    channels_last: bool = False
    compile: bool = False

    def loader_workers(self, device) -> int:
        """The DataLoader's worker processes on `device` (see the module docstring)."""
        if self.workers is not None:
            return self.workers
        return 0 if device.type == "cpu" else max(0, min(GPU_WORKERS, available_cores() - 1))

    def to_dict(self) -> dict:
        """The options as given (the "started" event reports them as in effect: workers resolved, deterministic
        kept from the run resumed)."""
        return {"deterministic": self.deterministic, "workers": self.workers, "channels_last": self.channels_last,
                "compile": self.compile}


def amp_dtype(device):
    """The autocast dtype of mixed precision on `device`: bfloat16 where the GPU supports it (no loss scaling
    needed: its exponent range is float32's), else float16 with a GradScaler."""
    import torch  # lazy: torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16
