"""What every recipe shares: the interface the training loop drives, mixed precision and the LR schedule.

A recipe owns its networks, losses and optimisers. The loop in train.py only
calls, in this order: `set_progress(fraction)` before each step (for losses
annealed over training, such as tau of the exponential dampening loss),
`train_step(batch)`, `validation_l1(batch)` at validation time and
`end_epoch(epoch, val_l1)` after each epoch (learning-rate schedule); it
saves `generator` as the model and `state_dict()` as the resumable state.

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
from torch import nn

from VirtualContrastTraining.config.schema import TrainConfig


def linear_decay_factor(epoch: int, epochs: int, epochs_decay: int) -> float:
    """LR factor for epoch `epoch` (1-based): 1 for the first epochs - epochs_decay epochs, then linear towards 0."""
    fixed = epochs - epochs_decay
    return 1.0 - max(0, epoch - fixed) / float(epochs_decay + 1)


class Recipe:
    """Base class: subclasses build networks and optimisers, then call `_finish_setup()`."""

    # Loss names reported by train_step (progress events, history.csv, the live loss chart).
    loss_names: tuple[str, ...] = ()
    # Two of them summarise a step in the terminal progress bar.
    headline: tuple[str, ...] = ()

    def __init__(self, config: TrainConfig, device: str | torch.device = "cpu"):
        self.config = config
        self.device = torch.device(device)
        # Mixed precision as in the public code of 001, but only where it helps and is safe: CUDA.
        self.amp = bool(config.amp) and self.device.type == "cuda"
        self.progress = 0.0
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

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    # -- shared machinery --------------------------------------------------------------------------
    def adam(self, *modules: nn.Module) -> torch.optim.Adam:
        c = self.config
        params = [p for m in modules for p in m.parameters()]
        return torch.optim.Adam(params, lr=c.lr, betas=(c.beta1, c.beta2), weight_decay=c.weight_decay)

    def _finish_setup(self, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers
        self.scalers = {name: torch.amp.GradScaler("cuda", enabled=self.amp) for name in optimizers}
        self._set_lr(1)

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp)

    def optimise(self, name: str, loss: torch.Tensor) -> None:
        """zero_grad, (scaled) backward, step and scaler update of optimiser `name`."""
        opt, scaler = self.optimizers[name], self.scalers[name]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def inputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x = LE, y = DES, s = lesion mask or zeros) on the device."""
        x = batch["le"].to(self.device, non_blocking=True)
        y = batch["des"].to(self.device, non_blocking=True)
        s = batch["mask"].to(self.device, non_blocking=True) if "mask" in batch else torch.zeros_like(x)
        return x, y, s

    def train_mode(self) -> None:
        for net in self.networks.values():
            net.train()

    def set_progress(self, fraction: float) -> None:
        """Fraction of the planned optimiser steps already done (0 at the start, 1 at the end)."""
        self.progress = min(max(float(fraction), 0.0), 1.0)

    @torch.no_grad()
    def validation_l1(self, batch: dict[str, torch.Tensor]) -> float:
        """Mean |G(LE) - DES| over the batch, in eval mode: the metric that picks the best G (as in 001's code)."""
        x, y, _ = self.inputs(batch)
        G = self.generator
        G.eval()
        try:
            with self.autocast():
                fake_y = G(x)
            return float((fake_y.float() - y).abs().mean())
        finally:
            G.train()

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
        if self.amp:
            for name, scaler in self.scalers.items():
                scaler.load_state_dict(state["scalers"][name])
        self.plateau = {**self.plateau, **state.get("plateau", {})}
        self.load_extra_state(state.get("extra", {}))

    def extra_state(self) -> dict[str, Any]:
        """Recipe-specific resumable state (e.g. image pools)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass
