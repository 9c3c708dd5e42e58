"""What every recipe shares: the interface the training loop drives, mixed precision, data-parallel gradients and the
LR schedule.

A recipe owns its networks, losses and optimisers. The loop in train.py only
calls, in this order: `set_progress(fraction)` before each step (for losses
annealed over training, such as tau of the exponential dampening loss),
`step(batch)`, `validation_error(batch)` at validation time and
`end_epoch(epoch, val_l1)` after each epoch (learning-rate schedule); it
saves `generator` as the model and `state_dict()` as the resumable state.

`step` returns every loss as a 0-dim detached float32 tensor on the device
and reads nothing back: on a GPU each read is a host sync that stalls the
queue of kernels, so the loop first reduces the losses across ranks, then
reads them once with `read_losses` (one `tolist()` of one stacked tensor).
`train_step` = `read_losses(step(batch))` is the same for a caller that wants
floats now (tests, benchmarks); `validation_l1` likewise is the float of
`validation_error`.

Under torch.distributed (torchrun, one process per device) every rank trains
the same networks on its own part of the global batch: `optimise` averages
the gradients of each optimiser across ranks in one all_reduce before the
step, so the ranks stay identical and the step equals one process with the
whole batch. A rank whose part is not the global batch / world size (the
last, uneven batch) is given `set_share(n_rank * world / n_global)`: its
losses, which are means over its own samples, are scaled so that the
average over ranks is the mean over the global batch.

The learning rate is computed, not stepped by torch schedulers, so a
resumed run recomputes it (`start_epoch`) from the config it resumes with
and one saved number: base lr x linear-decay factor
(the last `epochs_decay` epochs go linearly to 0, as pytorch-CycleGAN-and-
pix2pix's "linear" policy) x plateau factor (halved after
`plateau_patience` epochs without a better validation L1, as
ReduceLROnPlateau in the Autoencoder code of 001). The lr stored in the
optimiser state is never trusted: after the last epoch it is the next
epoch's, 0 with epochs_decay 0, which an extended run must not train at.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from VirtualContrastTraining.config.schema import TrainConfig
from VirtualContrastTraining.execution import Execution, amp_dtype


def linear_decay_factor(epoch: int, epochs: int, epochs_decay: int) -> float:
    """LR factor for epoch `epoch` (1-based): 1 for the first epochs - epochs_decay epochs, then linear towards 0."""
    fixed = epochs - epochs_decay
    return 1.0 - max(0, epoch - fixed) / float(epochs_decay + 1)


class Recipe:
    """Base class: subclasses build networks and optimisers, then call `_finish_setup()`."""

    # Loss names reported by step / train_step (progress events, history.csv, the live loss chart).
    loss_names: tuple[str, ...] = ()
    # Two of them summarise a step in the terminal progress bar.
    headline: tuple[str, ...] = ()

    def __init__(self, config: TrainConfig, device: str | torch.device = "cpu", execution: Execution | None = None):
        self.config = config
        self.device = torch.device(device)
        self.execution = execution or Execution()
        # Mixed precision as in the public code of 001, but only where it helps and is safe: CUDA. bfloat16 where
        # the GPU has it (float32's exponent range: no loss scaling), else float16 with a GradScaler.
        self.amp = bool(config.amp) and self.device.type == "cuda"
        self.amp_dtype = amp_dtype(self.device)
        self.progress = 0.0
        self.share = 1.0
        self.plateau = {"factor": 1.0, "best": float("inf"), "bad_epochs": 0}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    # -- to be provided by subclasses --------------------------------------------------------------
    @property
    def networks(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    @property
    def generator(self) -> nn.Module:
        """The network saved as the model: LE in, DES out."""
        return self.networks["G"]

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimisation step; every loss of `loss_names` as a 0-dim detached float32 tensor on the device."""
        raise NotImplementedError

    # -- shared machinery --------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimisation step; every loss as a float (one host read)."""
        return self.read_losses(self.step(batch))

    def read_losses(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """The losses of `step` as floats, in `loss_names` order, in one device-to-host read (one sync)."""
        return dict(zip(self.loss_names, torch.stack([losses[name] for name in self.loss_names]).tolist()))

    def report(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What `step` returns: the losses of `loss_names` from `values`, detached, float32 (autocast may have
        computed some in float16), still on the device."""
        return {name: values[name].detach().float() for name in self.loss_names}

    def zero(self) -> torch.Tensor:
        """The value reported for a loss term that weighs 0 and so is not computed."""
        return torch.zeros((), device=self.device)

    def tau_tensor(self, tau: float) -> torch.Tensor:
        """A recipe's annealed tau as a loss-like 0-dim tensor: filled on the device, never read back."""
        return torch.full((), tau, device=self.device)

    def network(self, net: nn.Module) -> nn.Module:
        """`net` on the device, in the execution's memory format, compiled if asked (in place: nn.Module.compile
        keeps the module and its state_dict names, so models and checkpoints do not depend on it)."""
        net = net.to(self.device)
        if self.execution.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if self.execution.compile:
            net.compile()
        return net

    def adam(self, *modules: nn.Module) -> torch.optim.Adam:
        """Adam over `modules`: fused kernels on CUDA; on the CPU foreach (one kernel per operation over all
        tensors), which gives the bits of torch's default per-parameter loop (Testing/test_recipe_speed_switches.py)
        so that resumed and reference runs still compare bitwise."""
        c = self.config
        params = [p for m in modules for p in m.parameters()]
        fast = {"fused": True} if self.device.type == "cuda" else {"foreach": True}
        return torch.optim.Adam(params, lr=c.lr, betas=(c.beta1, c.beta2), weight_decay=c.weight_decay, **fast)

    def _finish_setup(self, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers
        # Loss scaling only for float16, whose small exponent range lets gradients underflow.
        scaled = self.amp and self.amp_dtype == torch.float16
        self.scalers = {name: torch.amp.GradScaler("cuda", enabled=scaled) for name in optimizers}
        self._set_lr(1)

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def set_share(self, weight: float) -> None:
        """Scale this rank's losses by `weight` = n_rank * world / n_global (1 for an even split; see the module
        docstring), so that averaging gradients over ranks gives the gradient of the global batch's mean."""
        self.share = float(weight)

    def optimise(self, name: str, loss: torch.Tensor) -> None:
        """zero_grad, (scaled) backward of this rank's share, gradients averaged across ranks, step and scaler
        update of optimiser `name`."""
        opt, scaler = self.optimizers[name], self.scalers[name]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss * self.share).backward()
        average_gradients(opt)
        scaler.step(opt)
        scaler.update()

    def inputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x = LE, y = DES, s = lesion mask or zeros) on the device, in the networks' memory format."""
        fmt = torch.channels_last if self.execution.channels_last else torch.preserve_format
        move = {"device": self.device, "non_blocking": True, "memory_format": fmt}
        x, y = batch["le"].to(**move), batch["des"].to(**move)
        s = batch["mask"].to(**move) if "mask" in batch else torch.zeros_like(x)
        return x, y, s

    def train_mode(self) -> None:
        for net in self.networks.values():
            net.train()

    def set_progress(self, fraction: float) -> None:
        """Fraction of the planned optimiser steps already done (0 at the start, 1 at the end)."""
        self.progress = min(max(float(fraction), 0.0), 1.0)

    @torch.no_grad()
    def validation_error(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean |G(LE) - DES| over the batch, in eval mode, as a 0-dim tensor on the device (not read, so the loop
        sums a whole validation set before one sync): the metric that picks the best G (as in 001's code)."""
        x, y, _ = self.inputs(batch)
        G = self.generator
        G.eval()
        try:
            with self.autocast():
                fake_y = G(x)
            return (fake_y.float() - y).abs().mean()
        finally:
            G.train()

    def validation_l1(self, batch: dict[str, torch.Tensor]) -> float:
        """validation_error as a float."""
        return float(self.validation_error(batch))

    def end_epoch(self, epoch: int, val_l1: float | None) -> None:
        """After epoch `epoch` (1-based): plateau bookkeeping, then the learning rate of epoch + 1."""
        c, p = self.config, self.plateau
        if c.plateau_patience > 0 and val_l1 is not None:
            if val_l1 < p["best"]:
                p.update(best=val_l1, bad_epochs=0)
            else:
                p["bad_epochs"] += 1
                if p["bad_epochs"] >= c.plateau_patience:
                    p.update(factor=p["factor"] * 0.5, bad_epochs=0)
        self._set_lr(epoch + 1)

    def start_epoch(self, epoch: int) -> None:
        """A resumed run: the lr of `epoch` from the (possibly extended) config, not the one saved with the
        optimiser (computed for the saved config's schedule)."""
        self._set_lr(epoch)

    def _set_lr(self, epoch: int) -> None:
        c = self.config
        lr = c.lr * linear_decay_factor(epoch, c.epochs, c.epochs_decay) * self.plateau["factor"]
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr

    @property
    def lr(self) -> float:
        return next(iter(self.optimizers.values())).param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly: weights, optimiser moments, AMP scales, schedule."""
        return {
            "networks": {name: net.state_dict() for name, net in self.networks.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scalers": {name: s.state_dict() for name, s in self.scalers.items()},
            "plateau": dict(self.plateau),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, net in self.networks.items():
            net.load_state_dict(state["networks"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, scaler in self.scalers.items():
            saved = state.get("scalers", {}).get(name)
            # A disabled scaler (CPU, bf16) saves {}; a float16 run resumed from one starts from a fresh scale.
            if scaler.is_enabled() and saved:
                scaler.load_state_dict(saved)
        self.plateau = {**self.plateau, **state.get("plateau", {})}
        self.load_extra_state(state.get("extra", {}))

    def extra_state(self) -> dict[str, Any]:
        """Recipe-specific resumable state (e.g. image pools)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass


def average_gradients(opt: torch.optim.Optimizer) -> None:
    """Average the gradients of `opt`'s parameters across torch.distributed ranks (nothing in a single process).

    One all_reduce of one flat buffer per optimiser instead of one per tensor: a collective has a fixed latency,
    and a ResNet generator has ~100 parameter tensors. A parameter without a gradient contributes zeros, so every
    rank flattens the same layout; it keeps no gradient afterwards (the ranks run the same graph, so its
    gradient is None on every rank and Adam skips it everywhere).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    params = [p for group in opt.param_groups for p in group["params"]]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for p, synced in zip(params, _unflatten_dense_tensors(flat, grads)):
        if p.grad is not None:
            p.grad.copy_(synced)
