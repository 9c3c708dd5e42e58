"""Pix2Pix: a conditional GAN on paired (LE, DES) images (Rofena et al. 2024, 001; Hosseinipour et al. 2024, 003).

x is the LE image, y the paired DES image. The discriminator D judges the
pair, LE and DES stacked as two channels: D(x, y) for real pairs, D(x, G(x))
for fakes (001 eq. 3, 003 eq. 1). The generator minimises (003 eq. 3,
001 eq. 4)

    L_G = L_GAN(D(x, G(x)), real) + lambda_l1 * L_L1(G; tau)

where L_L1(G; tau) is 003's exponential dampening loss (eq. 7) with tau
annealed linearly to 0 over training (003 section 6.3); tau = 0 (001, and
003's baseline) is the plain L1 of eq. 2. The discriminator minimises
0.5 * (L_GAN(D(x, y), real) + L_GAN(D(x, G(x)), fake)), halved as in
pix2pix "to slow down the rate at which D learns relative to G". The
adversarial loss is BCE on logits (001) or least squares (003), per
config.gan_loss.

Step order as pytorch-CycleGAN-and-pix2pix's Pix2PixModel.optimize_parameters:
G(x) is computed once, D is updated first on the detached fake, then G is
updated against the just-updated D with D frozen. (The CycleGAN recipe, like
that repository's CycleGANModel, does G first.) At lambda_l1 = 0 the
reconstruction term weighs nothing: it is not computed and is reported as 0.
"""

from __future__ import annotations

import torch
from torch import nn

from VirtualContrastTraining.models import build_discriminator, build_generator
from VirtualContrastTraining.config.schema import TrainConfig
from VirtualContrastTraining.execution import Execution
from VirtualContrastTraining.recipes.base import Recipe
from VirtualContrastTraining.recipes.losses import annealed_tau, exp_dampening_l1, gan_loss, value_range


class Pix2Pix(Recipe):
    """Generator G and pair discriminator D, one Adam optimiser each, optional CUDA mixed precision."""

    # G: generator objective; adv: its adversarial term; l1: its reconstruction term (exp-dampened L1 at the
    # current tau, plain L1 when tau is 0); D: discriminator loss; tau: the annealed tau of this step.
    loss_names = ("G", "adv", "l1", "D", "tau")
    headline = ("G", "D")

    def __init__(self, config: TrainConfig, device: str | torch.device = "cpu", execution: Execution | None = None):
        super().__init__(config, device, execution)
        self.G = self.network(build_generator(config))
        self.D = self.network(build_discriminator(config, input_nc=2))
        self.range = value_range(config)
        self._finish_setup({"G": self.adam(self.G), "D": self.adam(self.D)})

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    @property
    def tau(self) -> float:
        return annealed_tau(self.config.tau, self.progress)

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimisation step of D, then of G. Returns every loss as a 0-dim tensor (base.Recipe.step)."""
        c = self.config
        x, y, _ = self.inputs(batch)
        self.train_mode()
        tau = self.tau

        with self.autocast():
            fake_y = self.G(x)

        self.D.requires_grad_(True)
        with self.autocast():
            pred_real = self.D(torch.cat([x, y], 1))
            pred_fake = self.D(torch.cat([x, fake_y.detach()], 1))
            loss_D = 0.5 * (gan_loss(pred_real, True, c.gan_loss) + gan_loss(pred_fake, False, c.gan_loss))
        self.optimise("D", loss_D)

        self.D.requires_grad_(False)
        with self.autocast():
            adv = gan_loss(self.D(torch.cat([x, fake_y], 1)), True, c.gan_loss)
            l1 = exp_dampening_l1(fake_y, y, tau, self.range) if c.lambda_l1 else self.zero()
            loss_G = adv + c.lambda_l1 * l1
        self.optimise("G", loss_G)
        self.D.requires_grad_(True)

        return self.report({"G": loss_G, "adv": adv, "l1": l1, "D": loss_D, "tau": self.tau_tensor(tau)})
