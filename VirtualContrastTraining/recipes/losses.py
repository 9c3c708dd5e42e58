"""Loss terms shared by the recipes: adversarial, exponential-dampening L1 (003) and the MAE+SSIM cycle distance (000).

Every function takes the tensors a recipe computes under autocast and does
its arithmetic in float32, so the losses are the same with and without CUDA
mixed precision (float16 squares in SSIM and exp() weights lose too much).
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf
from monai.losses import SSIMLoss

from VirtualContrastTraining.models import output_activation
from VirtualContrastTraining.config.schema import TrainConfig


def value_range(config: TrainConfig) -> tuple[float, float]:
    """Intensity range of the images a recipe sees: [-1, 1] for a tanh generator (000's patches), else [0, 1]."""
    return (-1.0, 1.0) if output_activation(config) == "tanh" else (0.0, 1.0)


def gan_loss(pred: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """Adversarial loss of discriminator scores `pred` against the label real (1) or fake (0).

    "lsgan": mean squared error to 1 / 0 (LSGAN; 001's CycleGAN on a sigmoid PatchGAN, 003 Table 1 "least-square",
    000 "least-squares error discriminator loss"). "bce": binary cross-entropy on logits (001's Pix2Pix, whose
    discriminator then has no sigmoid), BCEWithLogits being the autocast-safe form of BCE.
    """
    pred = pred.float()
    target = torch.full_like(pred, 1.0 if real else 0.0)
    if mode == "lsgan":
        return nnf.mse_loss(pred, target)
    if mode == "bce":
        return nnf.binary_cross_entropy_with_logits(pred, target)
    raise ValueError(f"unknown gan_loss {mode!r} (valid: lsgan, bce)")


def annealed_tau(tau: float, progress: float) -> float:
    """003 section 6.3: tau(t) = (1 - t/N) tau, from tau at the start to 0 at the end.

    003 counts t in epochs; the recipes get `progress` = fraction of the planned optimiser steps done, the same
    straight line sampled at every step instead of once per epoch.
    """
    return float(tau) * (1.0 - float(progress))


def exp_dampening_l1(pred: torch.Tensor, target: torch.Tensor, tau: float,
                     value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """003 eq. 7: L = E[w |y - G(x)|] with w = exp(-tau (1 - y)), y the target intensity normalised to [0, 1].

    Dark target pixels weigh less than bright ones (contrast uptake is bright in DES). 003 does not normalise w
    (no division by its mean), so neither does this: the loss shrinks as tau grows, and tau = 0 is the plain
    L1 (mean absolute error, eq. 2). |y - G(x)| stays in the images' own units; only w needs y in [0, 1], so
    targets in `value_range` (-1, 1) are mapped by (y + 1) / 2 first.
    """
    pred, target = pred.float(), target.float()
    diff = (target - pred).abs()
    if tau == 0:
        return diff.mean()
    lo, hi = value_range
    y01 = (target - lo) / (hi - lo)
    weight = torch.exp(-float(tau) * (1.0 - y01))
    return (weight * diff).mean()


def ssim_loss(a: torch.Tensor, b: torch.Tensor, data_range: float) -> torch.Tensor:
    """1 - SSIM of two image batches (MONAI's SSIMLoss: 11x11 Gaussian window, sigma 1.5, k1 0.01, k2 0.03).

    `data_range` is the span of the intensities (1 for [0, 1], 2 for [-1, 1]); it sets SSIM's stabilising
    constants (k * data_range)^2. Computed in float32 with autocast off.
    """
    with torch.autocast(device_type=a.device.type, enabled=False):
        return SSIMLoss(spatial_dims=2, data_range=data_range)(a.float(), b.float())


def cycle_distance(a: torch.Tensor, b: torch.Tensor, ssim_weight: float, data_range: float) -> torch.Tensor:
    """(1 - w) MAE + w (1 - SSIM) between a reconstruction and its original.

    000's "perceptual-based cycle-loss with equal weighting between the mean-absolute-error and the SSIM" is
    w = 0.5; w = 0 is the L1 cycle loss of 001 / 002 (and skips the SSIM computation).
    """
    mae = nnf.l1_loss(a.float(), b.float())
    if ssim_weight == 0:
        return mae
    return (1.0 - ssim_weight) * mae + ssim_weight * ssim_loss(a, b, data_range)
