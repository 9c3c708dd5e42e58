"""A generator trained alone on paired (LE, DES) images with a pixel loss.

The Autoencoder of Rofena et al. 2024 (001: "we used the L1 loss", Adam
1e-3, weight decay 1e-5, ReduceLROnPlateau in its public code) and the
pre-trained U-Net of Perre et al. (004, U-Net/PT: LE -> DES before the
classifier is trained). The loss is 003's exponential dampening L1 (eq. 7)
with tau annealed linearly to 0 (003 section 6.3); at tau = 0, the value of
both papers, it is the plain L1 mean |DES - G(LE)|. No lambda: with a
single term its weight would only rescale the learning rate.
"""

from __future__ import annotations

import torch
from torch import nn

from VirtualContrastTraining.models import build_generator
from VirtualContrastTraining.config.schema import TrainConfig
from VirtualContrastTraining.execution import Execution
from VirtualContrastTraining.recipes.base import Recipe
from VirtualContrastTraining.recipes.losses import annealed_tau, exp_dampening_l1, value_range


class Supervised(Recipe):
    """Generator G and one Adam optimiser, optional CUDA mixed precision."""

    # G: the objective (the only term, so equal to l1; every recipe reports a "G"); l1: exp-dampened L1 at
    # the current tau (plain L1 when tau is 0); tau: the annealed tau of this step.
    loss_names = ("G", "l1", "tau")
    headline = ("l1", "tau")

    def __init__(self, config: TrainConfig, device: str | torch.device = "cpu", execution: Execution | None = None):
        super().__init__(config, device, execution)
        self.G = self.network(build_generator(config))
        self.range = value_range(config)
        self._finish_setup({"G": self.adam(self.G)})

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G}

    @property
    def tau(self) -> float:
        return annealed_tau(self.config.tau, self.progress)

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimisation step of G. Returns every loss as a 0-dim tensor (base.Recipe.step)."""
        x, y, _ = self.inputs(batch)
        self.train_mode()
        tau = self.tau
        with self.autocast():
            loss = exp_dampening_l1(self.G(x), y, tau, self.range)
        self.optimise("G", loss)
        return self.report({"G": loss, "l1": loss, "tau": self.tau_tensor(tau)})
