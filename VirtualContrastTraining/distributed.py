"""One training run over several processes (torchrun): which process this is, its device, its share of a batch.

`torchrun --nproc_per_node N -m VirtualContrastTraining train ...` starts N
copies of the same command with RANK, WORLD_SIZE and LOCAL_RANK set. Each
process trains on its share of every batch and the recipes average the
gradients across processes before each optimiser step (recipes/base.py
`optimise`), so every process holds the same weights after every step: data
parallelism, as torch's DistributedDataParallel, with one all_reduce per
optimiser and step (DDP overlaps its reduction with the backward pass; ours
does not, which costs little next to a GAN step and works with networks
called several times per step and discriminators frozen during the
generator's update, which DDP wrappers do not without care).

Shares: the global batch of the config is dealt round-robin (rank r takes
items r, r + N, ...), so the epoch order is the single-process one. A share
of n_r of the n items of a batch weighs n_r * N / n in the loss, which makes
the average of the gradients over processes the gradient of the batch mean,
also when the last batch of an epoch does not divide by N. A last batch
smaller than N is dropped (every process must take part in every step).
Rank 0 alone writes the run folder and the events; the others are silent.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from VirtualContrastTraining.errors import InputError


@dataclass(frozen=True)
class Group:
    """This process's place: rank and world size (1 outside torchrun), and the local rank that picks its GPU."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def share(self, batch: list[int]) -> tuple[list[int], float]:
        """This process's items of a global batch, and the weight of its loss (see the module docstring)."""
        mine = batch[self.rank::self.world]
        return mine, len(mine) * self.world / len(batch)

    def batches(self, order: list[int], batch_size: int) -> list[list[int]]:
        """The global batches of an epoch in order, without a last one too small to give every process an item."""
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        return [b for b in batches if len(b) >= self.world]

    def all_sum(self, tensor):
        """The sum of `tensor` over the processes (itself outside torchrun)."""
        if self.active:
            import torch.distributed as dist  # lazy: torch

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_buffers(self, networks) -> None:
        """Rank 0's buffers (batch-norm running statistics) in every process, before validation and saving."""
        if self.active:
            import torch.distributed as dist  # lazy: torch

            for net in networks:
                for buffer in net.buffers():
                    dist.broadcast(buffer, 0)

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist  # lazy: torch

            dist.barrier()


def _environment_int(name: str) -> int:
    value = os.environ.get(name, "")
    if not value.isdigit():
        raise InputError(None, f"torchrun: environment variable {name}={value!r} is not a whole number")
    return int(value)


def group_from_environment() -> Group:
    """The process group torchrun describes in the environment (WORLD_SIZE > 1), else a single process."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return Group()
    return Group(_environment_int("RANK"), _environment_int("WORLD_SIZE"), _environment_int("LOCAL_RANK"))


def process_device(group: Group, requested):
    """The device of this process: under torchrun with CUDA the GPU of its local rank, else `requested`."""
    import torch  # lazy: torch

    if group.active and requested.type == "cuda":
        if group.local_rank >= torch.cuda.device_count():
            raise InputError(None, f"torchrun: local rank {group.local_rank} has no GPU "
                             f"(this node has {torch.cuda.device_count()}); use --nproc_per_node <= that")
        torch.cuda.set_device(group.local_rank)
        return torch.device(f"cuda:{group.local_rank}")
    return requested


@contextlib.contextmanager
def process_group(group: Group, device):
    """torch.distributed initialised for the run (NCCL on GPUs, gloo on the CPU) and destroyed after it."""
    if not group.active:
        yield
        return
    import torch.distributed as dist  # lazy: torch

    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=group.rank, world_size=group.world)
    try:
        yield
        # A normal end (finished or cancelled): the others wait for rank 0's last writes, so that no process tears
        # the group down under another (a rank leaving first was seen to abort its peer at exit). After an error
        # there is no waiting: torchrun stops the other processes.
        dist.barrier()
    finally:
        dist.destroy_process_group()
