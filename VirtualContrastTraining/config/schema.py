"""The training configuration: one dataclass, its value checks and the `--set` parser.

Field names follow the papers' symbols where they exist: lambda_cycle is
lambda_1 and lambda_identity is lambda_2 of 001 eq. 8 / 002 eq. 4 and 7,
gamma_lesion is gamma of 002 eq. 7 (0 = plain CycleGAN). The resolved config
is saved beside every checkpoint, so a run can always be traced and resumed.
Names of recipes and networks are checked against config/registries.py; the
papers' values are the presets of config/presets.py.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from VirtualContrastTraining.config.registries import (
    DISCRIMINATORS,
    GAN_LOSSES,
    GENERATORS,
    NORMS,
    PIPELINES,
    RECIPES,
    did_you_mean,
)
from VirtualContrastTraining.data.preprocessing import parse_window, size_range_problem
from VirtualContrastTraining.errors import InputError

@dataclass(frozen=True)
class TrainConfig:
    # What is trained and how (config/registries.py RECIPES): cyclegan (001, 002, 000), pix2pix (001, 003) or
    # supervised (a generator alone on paired images: the Autoencoder of 001, U-Net/PT of 004).
    recipe: str = "cyclegan"
    # Name of the preset this config was resolved from ("" when built by hand); shown in model names.
    preset: str = ""
    # Networks (config/registries.py). generator: resnet, unet, ronneberger-unet (004), attention-unet, iamnet or
    # autoencoder; ngf: first-layer channels; n_blocks: residual blocks (resnet); unet_depth: down-samplings (unet,
    # ronneberger-unet, attention-unet); dropout: in the generator's decoder (0 = none); norm: instance or batch.
    generator: str = "resnet"
    ngf: int = 64
    n_blocks: int = 9
    unet_depth: int = 8
    dropout: float = 0.0
    norm: str = "instance"
    # discriminator: patchgan (70x70, 001/002/003) or zormpas (three stride-2 blocks + conv, 000); ndf its width.
    discriminator: str = "patchgan"
    ndf: int = 64
    # Adversarial loss: lsgan (MSE) or bce; d_sigmoid ends the discriminator in a sigmoid (001 code, 000).
    gan_loss: str = "lsgan"
    d_sigmoid: bool = True
    # Data: pipeline "resize" (pad to square, contrast stretch to [0,1], resize to image_size: 001-004) or
    # "patches" (000: Otsu breast box, resample to spacing_mm, truncate to le_window/des_window, [-1,1],
    # random patch_size patches, sliding-window inference with stride sw_stride). Windows are "lo,hi".
    pipeline: str = "resize"
    image_size: int = 256
    patch_size: int = 128
    patches_per_image: int = 8
    spacing_mm: float = 1.0
    le_window: str = ""
    des_window: str = ""
    sw_stride: int = 16
    batch_size: int = 8
    # Schedule: maximum epochs (and optimiser steps, 0 = no limit); the last epochs_decay epochs decay the
    # learning rate linearly to 0 (003: 100 fixed + 200 decay); early stopping on the validation L1 of
    # G(LE) vs DES counts only after `warmup` epochs (50 in the public code of 001); plateau_patience > 0
    # halves the learning rate after that many epochs without improvement (ReduceLROnPlateau, 001 AE).
    epochs: int = 200
    max_steps: int = 0
    epochs_decay: int = 0
    patience: int = 50
    warmup: int = 0
    plateau_patience: int = 0
    val_every: int = 1
    # Adam for the generator(s) and for the discriminator(s).
    lr: float = 1e-5
    weight_decay: float = 1e-5
    beta1: float = 0.5
    beta2: float = 0.999
    # Loss weights: lambda_1 (cycle), lambda_2 (identity), gamma (lesion-masked terms, 002 eq. 7),
    # and a direct paired L1(G(LE), DES) term that the published cycle-GANs do not use; for pix2pix
    # and supervised recipes lambda_l1 weighs the L1 (or exponential-dampening) term.
    lambda_cycle: float = 10.0
    lambda_identity: float = 5.0
    gamma_lesion: float = 0.0
    lambda_paired: float = 0.0
    lambda_l1: float = 100.0
    # Cycle loss = (1 - cycle_ssim) * MAE + cycle_ssim * (1 - SSIM) (0.5 in 000; 0 = L1 only, 001/002).
    cycle_ssim: float = 0.0
    # Exponential dampening of the L1 term (003): weight exp(-tau (1 - y)), tau annealed linearly to 0.
    tau: float = 0.0
    # Image pool of past fakes for the discriminators (0 = none, as in the public code of 001).
    pool_size: int = 0
    # Probability of each random augmentation (shift, zoom, flip, rotation); 0 disables augmentation.
    augment_prob: float = 0.3
    # Transfer learning: start from this model (a run folder or model.safetensors) instead of random weights.
    init_from: str = ""
    seed: int = 0
    # Mixed precision (float16 autocast + GradScaler); only used on CUDA.
    amp: bool = True
    description: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | os.PathLike | None = None) -> "TrainConfig":
        """Rebuild from a saved config.json; unknown keys or bad values are an InputError naming `where`."""
        return apply_overrides(cls(), data, where=where)


def _coerce(kind: type, value: Any) -> Any:
    """A field value from JSON or the command line ("0.5", "true") as the field's type."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        if isinstance(value, str):
            return int(value.strip())
        return int(value)
    if kind is float:
        return float(value)
    return str(value)


# Fields with a fixed set of values: the registries' names.
CHOICES = {
    "recipe": tuple(RECIPES),
    "generator": tuple(GENERATORS),
    "discriminator": tuple(DISCRIMINATORS),
    "gan_loss": GAN_LOSSES,
    "norm": NORMS,
    "pipeline": PIPELINES,
}


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def apply_overrides(base: TrainConfig, overrides: dict[str, Any], where: str | os.PathLike | None = None) -> TrainConfig:
    """`base` with fields replaced (values may be strings: "1e-4", "true"), checked; InputError names `where`."""
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise InputError(where, f"unknown config field(s) {', '.join(unknown)}; {did_you_mean(unknown[0], known)}"
                         f"valid fields: {', '.join(known)}")
    values = {}
    for name, value in overrides.items():
        kind = _TYPES[known[name].type] if isinstance(known[name].type, str) else known[name].type
        try:
            values[name] = _coerce(kind, value)
        except (TypeError, ValueError) as exc:
            raise InputError(where, f"config field {name}: {exc}") from None
    config = replace(base, **values)
    _check(config, where)
    return config


def _check(config: TrainConfig, where: str | os.PathLike | None) -> None:
    """Values that would only fail deep inside torch are refused here with a clear message."""
    problems = [f"{f.name} must be a finite number (got {getattr(config, f.name)!r})" for f in fields(TrainConfig)
                if isinstance(getattr(config, f.name), float) and not math.isfinite(getattr(config, f.name))]
    for name, valid in CHOICES.items():
        if getattr(config, name) not in valid:
            value = getattr(config, name)
            problems.append(f"{name} {value!r} is unknown ({did_you_mean(value, valid)}valid: {', '.join(valid)})")
    problems += [p for p in (size_range_problem(name, getattr(config, name)) for name in ("image_size", "patch_size"))
                 if p]
    if not 1 <= config.sw_stride <= config.patch_size:
        problems.append(f"sw_stride {config.sw_stride} must be between 1 and patch_size ({config.patch_size})")
    for name in ("ngf", "ndf", "batch_size", "epochs", "patience", "val_every", "unet_depth", "patches_per_image"):
        if getattr(config, name) < 1:
            problems.append(f"{name} must be >= 1")
    for name in ("n_blocks", "pool_size", "max_steps", "epochs_decay", "warmup", "plateau_patience"):
        if getattr(config, name) < 0:
            problems.append(f"{name} must be >= 0")
    for name in ("lr", "weight_decay", "lambda_cycle", "lambda_identity", "gamma_lesion", "lambda_paired",
                 "lambda_l1", "tau", "spacing_mm"):
        if getattr(config, name) < 0:
            problems.append(f"{name} must be >= 0")
    if config.spacing_mm == 0:
        problems.append("spacing_mm must be > 0")
    if config.epochs_decay > config.epochs:
        problems.append(f"epochs_decay ({config.epochs_decay}) cannot exceed epochs ({config.epochs})")
    if not 0 <= config.dropout < 1 or not 0 <= config.cycle_ssim <= 1:
        problems.append("dropout must be in [0, 1) and cycle_ssim in [0, 1]")
    if config.gan_loss == "bce" and config.d_sigmoid:
        problems.append("gan_loss bce takes the discriminator's logits: set d_sigmoid false")
    for name in ("le_window", "des_window"):
        try:
            parse_window(getattr(config, name))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if config.lr == 0:
        problems.append("lr must be > 0")
    if not (0 <= config.beta1 < 1 and 0 <= config.beta2 < 1):
        problems.append("beta1 and beta2 must be in [0, 1)")
    if not 0 <= config.augment_prob <= 1:
        problems.append("augment_prob must be in [0, 1]")
    if problems:
        raise InputError(where, "invalid config: " + "; ".join(problems))


def parse_assignments(items: list[str]) -> dict[str, str]:
    """["lr=1e-4", "amp=false"] -> {"lr": "1e-4", "amp": "false"} (the `--set` option)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(None, f"--set {item!r}: expected field=value")
        out[name.strip()] = value.strip()
    return out
