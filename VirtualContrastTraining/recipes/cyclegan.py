"""CycleGAN (001), Seg-CycleGAN (002) and the patch cycle-GAN of Zormpas-Petridis et al. (000) in one class.

Notation of the papers: x is the LE image, y the paired DES image, s the lesion
mask; G: LE -> DES and F: DES -> LE are the generators, D_Y judges DES images
and D_X judges LE images. The generator objective is eq. 7 of 002:

    L = L_GAN(D_Y(G(x)), real) + L_GAN(D_X(F(y)), real)
        + lambda_cycle    * (L_cyc + gamma * L'_cyc)
        + lambda_identity * (L_id  + gamma * L'_id)
        + lambda_paired   * L1(G(x), y)

with gamma = 0 giving the plain CycleGAN of 001 (eq. 4 of 002). L_GAN is the
MSE to 1 / 0 (001's MSE on a sigmoid PatchGAN; 000's least squares) or BCE on
logits, per config.gan_loss (losses.gan_loss). L_cyc is the L1 distance of
each reconstruction to its original (001, 002) or, with cycle_ssim = w > 0,
(1 - w) MAE + w (1 - SSIM) per image pair (000: w = 0.5), SSIM over the
pipeline's intensity span (1 for [0, 1], 2 for 000's [-1, 1]). The last term
is an explicit option, 0 in the paper presets: the public code of 001 keeps
the pairing only through the validation metric and adds no direct term.

Masked L1 (L'_cyc, L'_id): ||s * diff||_1 divided by the number of pixels, i.e.
the mean over all pixels of s * |diff|, the same normalisation as the global
L1 (mean over all pixels). A lesion pixel then weighs (1 + gamma) times a
background pixel, which is what gamma means in 002; dividing by the lesion
area instead would make gamma depend on lesion size. A case without a mask
(s = 0) gets no lesion term.

The discriminators minimise (L_GAN(D(real), real) + L_GAN(D(fake), fake)) / 2
per domain. Step order as in pytorch-CycleGAN-and-pix2pix: update G and F with
the discriminators frozen, then update D_X and D_Y on the detached fakes
(through an optional image pool, size 0 in the paper presets).

A term that weighs 0 is not computed and is reported as 0: the lesion terms
at gamma 0 (001, 000), the paired term at lambda_paired 0 (every preset), the
identity terms (two generator passes) at lambda_identity 0 and the cycle
terms (two generator passes) at lambda_cycle 0.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as nnf
from torch import nn

from VirtualContrastTraining.models import build_discriminator, build_generator
from VirtualContrastTraining.config.schema import TrainConfig
from VirtualContrastTraining.execution import Execution
from VirtualContrastTraining.recipes.base import Recipe
from VirtualContrastTraining.recipes.losses import cycle_distance, gan_loss, value_range

LOSS_NAMES = ("G", "adv_G", "adv_F", "cycle", "cycle_lesion", "identity", "identity_lesion", "paired", "D_X", "D_Y")


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over all pixels of mask * |a - b| (see the module docstring for why not over the lesion only)."""
    return (mask * (a - b).abs()).mean()


class ImagePool:
    """A buffer of past fakes shown to the discriminators (Shrivastava et al.; the CycleGAN paper uses 50).

    Random draws come from torch's global generator, whose state the training
    checkpoint saves, so a resumed run draws the same.
    """

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand(())) > 0.5:
                i = int(torch.randint(0, self.size, ()))
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"images": [img.cpu() for img in self.images]}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.images = [img.to(device) for img in state["images"]]


class CycleGAN(Recipe):
    """Four networks, two Adam optimisers (G+F, D_X+D_Y), optional CUDA mixed precision."""

    loss_names = LOSS_NAMES
    headline = ("G", "D_X", "D_Y")

    def __init__(self, config: TrainConfig, device: str | torch.device = "cpu", execution: Execution | None = None):
        super().__init__(config, device, execution)
        self.G = self.network(build_generator(config))
        self.F = self.network(build_generator(config))
        self.D_Y = self.network(build_discriminator(config))
        self.D_X = self.network(build_discriminator(config))
        self.pool_X = ImagePool(config.pool_size)
        self.pool_Y = ImagePool(config.pool_size)
        lo, hi = value_range(config)
        self.data_range = hi - lo
        self._finish_setup({"G": self.adam(self.G, self.F), "D": self.adam(self.D_X, self.D_Y)})

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "F": self.F, "D_X": self.D_X, "D_Y": self.D_Y}

    def generator_terms(self, x: torch.Tensor, y: torch.Tensor,
                        s: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Every term of the generator objective (unweighted; 0 where its weight is 0), and the fakes G(x), F(y).

        The networks run in one order (G, F, cycle passes, D_Y, D_X, identity passes) whichever terms are skipped:
        the order fixes the dropout draws and the summation order of gradients, hence the bits of a step."""
        c = self.config
        lesion = bool(c.gamma_lesion)
        fake_y, fake_x = self.G(x), self.F(y)
        if c.lambda_cycle:
            rec_x, rec_y = self.F(fake_y), self.G(fake_x)
        pred_y, pred_x = self.D_Y(fake_y), self.D_X(fake_x)
        terms = {"adv_G": gan_loss(pred_y, True, c.gan_loss), "adv_F": gan_loss(pred_x, True, c.gan_loss)}
        if c.lambda_cycle:
            terms["cycle"] = (cycle_distance(rec_x, x, c.cycle_ssim, self.data_range)
                              + cycle_distance(rec_y, y, c.cycle_ssim, self.data_range))
            terms["cycle_lesion"] = masked_l1(rec_x, x, s) + masked_l1(rec_y, y, s) if lesion else self.zero()
        else:
            terms["cycle"] = terms["cycle_lesion"] = self.zero()
        terms["paired"] = nnf.l1_loss(fake_y, y) if c.lambda_paired else self.zero()
        if c.lambda_identity:
            id_y, id_x = self.G(y), self.F(x)
            terms["identity"] = nnf.l1_loss(id_y, y) + nnf.l1_loss(id_x, x)
            terms["identity_lesion"] = masked_l1(id_y, y, s) + masked_l1(id_x, x, s) if lesion else self.zero()
        else:
            terms["identity"] = terms["identity_lesion"] = self.zero()
        return terms, fake_y, fake_x

    def generator_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 7 of 002 (+ the optional paired term)."""
        c = self.config
        return (
            terms["adv_G"]
            + terms["adv_F"]
            + c.lambda_cycle * (terms["cycle"] + c.gamma_lesion * terms["cycle_lesion"])
            + c.lambda_identity * (terms["identity"] + c.gamma_lesion * terms["identity_lesion"])
            + c.lambda_paired * terms["paired"]
        )

    def _discriminator_loss(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        mode = self.config.gan_loss
        return 0.5 * (gan_loss(D(real), True, mode) + gan_loss(D(fake.detach()), False, mode))

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimisation step of G+F, then of D_X+D_Y. Returns every loss as a 0-dim tensor (base.Recipe.step)."""
        x, y, s = self.inputs(batch)
        self.train_mode()

        for D in (self.D_X, self.D_Y):
            D.requires_grad_(False)
        with self.autocast():
            terms, fake_y, fake_x = self.generator_terms(x, y, s)
            loss_G = self.generator_loss(terms)
        self.optimise("G", loss_G)

        for D in (self.D_X, self.D_Y):
            D.requires_grad_(True)
        with self.autocast():
            loss_DY = self._discriminator_loss(self.D_Y, y, self.pool_Y.query(fake_y))
            loss_DX = self._discriminator_loss(self.D_X, x, self.pool_X.query(fake_x))
        self.optimise("D", loss_DX + loss_DY)

        return self.report({"G": loss_G, **terms, "D_X": loss_DX, "D_Y": loss_DY})

    def extra_state(self) -> dict[str, Any]:
        return {"pools": {"X": self.pool_X.state_dict(), "Y": self.pool_Y.state_dict()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.pool_X.load_state_dict(state["pools"]["X"], self.device)
        self.pool_Y.load_state_dict(state["pools"]["Y"], self.device)
