"""Training configurations: one dataclass, one named preset per published recipe.

Field names follow the papers' symbols where they exist: lambda_cycle is
lambda_1 and lambda_identity is lambda_2 of 001 eq. 8 / 002 eq. 4 and 7,
gamma_lesion is gamma of 002 eq. 7 (0 = plain CycleGAN). The resolved config
is saved beside every checkpoint, so a run can always be traced and resumed.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from VirtualContrastTraining.data.preprocessing import parse_window
from VirtualContrastTraining.errors import InputError


@dataclass(frozen=True)
class TrainConfig:
    # What is trained and how (recipes/__init__.py): cyclegan (001, 002, 000), pix2pix (001, 003) or
    # supervised (a generator alone on paired images: the Autoencoder of 001, U-Net/PT of 004).
    recipe: str = "cyclegan"
    # Name of the preset this config was resolved from ("" when built by hand); shown in model names.
    preset: str = ""
    # Networks (models/__init__.py). generator: resnet, unet, ronneberger-unet (004), attention-unet, iamnet or
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


_ROFENA2024 = TrainConfig(
    description="CycleGAN of Rofena et al. 2024 (CMIG): ResNet-9 generators, 70x70 PatchGAN, MSE adversarial, "
    "cycle 10, identity 5, Adam lr 1e-5 wd 1e-5 betas (0.5, 0.999), 256x256, batch 8 (public code), "
    "200 epochs, early stop 50, no image pool, no direct paired term.",
    source="001_851b294891272478.txt",
)

# 003 Table 1: pix2pix with the U-Net 512 generator (nine down-samplings of a 512x512 image to 1x1, the U-Net 256
# of pytorch-CycleGAN-and-pix2pix one level deeper), 70x70 PatchGAN, least-squares GAN objective (raw scores, no
# sigmoid), lambda 100, dropout 0.5, ngf/ndf 64, batch 10, lr 2e-4 fixed for 100 epochs then linearly to 0 over
# 200 more, Adam (betas and weight decay not stated: the reference code's (0.5, 0.999) and none). Batch norm as
# the reference pix2pix. 003 trains all 300 epochs: early stopping is off (patience = epochs).
_HOSSEINIPOUR2024 = TrainConfig(
    recipe="pix2pix",
    generator="unet",
    ngf=64,
    unet_depth=9,
    dropout=0.5,
    norm="batch",
    discriminator="patchgan",
    ndf=64,
    gan_loss="lsgan",
    d_sigmoid=False,
    image_size=512,
    batch_size=10,
    epochs=300,
    epochs_decay=200,
    patience=300,
    lr=2e-4,
    weight_decay=0.0,
    beta1=0.5,
    lambda_l1=100.0,
    description="pix2pix of Hosseinipour et al. 2024 (Table 1): U-Net 512 generator, 70x70 PatchGAN, least-squares "
    "GAN loss, L1 lambda 100, dropout 0.5, 512x512, batch 10, Adam lr 2e-4 for 100 epochs then linear decay to 0 "
    "over 200 epochs, no early stopping. Not stated: batch norm, Adam betas (0.5, 0.999), no weight decay "
    "(pix2pix's reference code).",
    source="003_39709d8e6725bcc5.txt",
)


def _hosseinipour2024_expdamp(tau: float) -> TrainConfig:
    """003 Table 3: the U-Net 512 pix2pix with the exponential dampening loss (eq. 7) starting at tau."""
    return replace(
        _HOSSEINIPOUR2024,
        tau=tau,
        description=f"pix2pix U-Net 512 of Hosseinipour et al. 2024 with the exponential dampening L1 (eq. 7), "
        f"tau = {tau:g} annealed linearly to 0 over training (Table 3; tau 2 is their best overall). Otherwise "
        "as hosseinipour2024-pix2pix-unet512.",
    )


PRESETS: dict[str, TrainConfig] = {
    "rofena2024-cyclegan": replace(
        _ROFENA2024,
        warmup=50,
        description=_ROFENA2024.description.replace("early stop 50",
                                                    "early stop 50 after a 50-epoch warm-up (public code)"),
    ),
    "rofena2024-pix2pix": replace(
        _ROFENA2024,
        recipe="pix2pix",
        generator="unet",
        # public code: 7 down-blocks then a bottleneck convolution, 8 down-samplings of 256x256 to 1x1 (unet_256)
        unet_depth=8,
        dropout=0.5,
        norm="batch",
        gan_loss="bce",
        d_sigmoid=False,
        lr=2e-4,
        lambda_l1=100.0,
        batch_size=128,
        warmup=50,
        description="Pix2Pix of Rofena et al. 2024 (CMIG): U-Net generator with skip connections (8 down-samplings: "
        "7 down-blocks and a bottleneck, batch norm, dropout 0.5, sigmoid output, public code), 70x70 PatchGAN on "
        "(LE, DES) pairs, binary cross-entropy on logits, L1 lambda 100, Adam lr 2e-4 wd 1e-5 betas (0.5, 0.999), "
        "256x256, batch 128 (public code), 200 epochs, early stop 50 after a 50-epoch warm-up (public code).",
    ),
    "rofena2024-autoencoder": replace(
        _ROFENA2024,
        recipe="supervised",
        generator="autoencoder",
        norm="batch",
        lr=1e-3,
        beta1=0.9,
        plateau_patience=10,
        warmup=50,
        description="Autoencoder of Rofena et al. 2024 (CMIG): four encoder and four decoder blocks with bypass and "
        "residual connections, L1 loss, Adam lr 1e-3 wd 1e-5 beta 0.9, learning rate halved after 10 epochs without "
        "a better validation L1 (ReduceLROnPlateau, public code), 256x256, 200 epochs, early stop 50 after a "
        "50-epoch warm-up (public code). Batch 8: the paper gives none for this model.",
    ),
    "rofena2025-segcyclegan-g35": replace(
        _ROFENA2024,
        gamma_lesion=35.0,
        description="Seg-CycleGAN of Rofena et al. 2025 with gamma = 35 (best PSNR in their Table I): "
        "the CycleGAN of 001 plus lesion-masked cycle and identity L1 terms (eq. 7).",
        source="002_b08fa9e9522d5d9b.txt",
    ),
    "rofena2025-segcyclegan-g100": replace(
        _ROFENA2024,
        gamma_lesion=100.0,
        description="Seg-CycleGAN of Rofena et al. 2025 with gamma = 100 (best SSIM in their Table I): "
        "the CycleGAN of 001 plus lesion-masked cycle and identity L1 terms (eq. 7).",
        source="002_b08fa9e9522d5d9b.txt",
    ),
    "demo": replace(
        _ROFENA2024,
        gamma_lesion=35.0,
        ngf=16,
        ndf=16,
        n_blocks=4,
        image_size=128,
        batch_size=4,
        # ~10 steps of 0.8 s per epoch on 2 CPU cores with about 40 training images (`virtual-contrast demo`:
        # 56 phantom images, split 70/10/20): 35 epochs are about 5 minutes.
        epochs=35,
        patience=10,
        lr=2e-4,
        weight_decay=0.0,
        lambda_paired=10.0,
        description="Small Seg-CycleGAN (gamma 35) that learns something in a few minutes on 2 CPU cores from "
        "about 40 phantom images: 128x128, ngf/ndf 16, 4 residual blocks, batch 4, lr 2e-4. Unlike the paper presets "
        "it adds a direct paired L1(G(LE), DES) term (lambda_paired 10) so that it converges in a few epochs.",
        source="002_b08fa9e9522d5d9b.txt (scaled down; paired L1 term added)",
    ),
    "perre2025-unet": TrainConfig(
        recipe="supervised",
        generator="ronneberger-unet",
        ngf=32,
        # 004's "depth 6" read as resolution levels (5 poolings): its 224x224 crops divide by 2^5, not by 2^6
        unet_depth=5,
        dropout=0.2,
        image_size=224,
        batch_size=8,
        epochs=30,
        patience=30,
        lr=5e-4,
        weight_decay=0.0,
        beta1=0.9,
        description="U-Net/PT of Perre et al. (LE -> DES before the classifier is trained): Ronneberger U-Net with 32 "
        "first-layer channels, depth 6 (six resolution levels, five poolings) and dropout 0.2 (their best of the "
        "grid), 224x224 as their crops, Adam, 30 epochs keeping the best validation epoch. Not stated for "
        "the U-Net and chosen here: the L1 loss, lr 5e-4 (the value their grid search picked), Adam defaults, "
        "batch 8.",
        source="004_920cdb664b80b1d0.txt",
    ),
    "hosseinipour2024-pix2pix-unet512": _HOSSEINIPOUR2024,
    "hosseinipour2024-pix2pix-attention-unet": replace(
        _HOSSEINIPOUR2024,
        generator="attention-unet",
        description="pix2pix of Hosseinipour et al. 2024 with the Attention U-Net generator (attention gates on the "
        "skip connections, section 3.3); otherwise as hosseinipour2024-pix2pix-unet512 (Table 1).",
    ),
    "hosseinipour2024-pix2pix-iamnet": replace(
        _HOSSEINIPOUR2024,
        generator="iamnet",
        unet_depth=5,  # Table 1: 5 convolutions (512x512 to a 16x16 bottleneck), against 9 for the U-Nets
        description="pix2pix of Hosseinipour et al. 2024 with their IAMNet generator (encoder-decoder without skip "
        "connections, 5 down-samplings (Table 1), channel + spatial + multi-scale channel attention at the "
        "bottleneck, section 5.1); otherwise as hosseinipour2024-pix2pix-unet512 (Table 1).",
    ),
    "hosseinipour2024-pix2pix-expdamp-t0.5": _hosseinipour2024_expdamp(0.5),
    "hosseinipour2024-pix2pix-expdamp-t1": _hosseinipour2024_expdamp(1.0),
    "hosseinipour2024-pix2pix-expdamp-t2": _hosseinipour2024_expdamp(2.0),
    "hosseinipour2024-pix2pix-expdamp-t3": _hosseinipour2024_expdamp(3.0),
    "zormpas2026-cyclegan-patch": TrainConfig(
        recipe="cyclegan",
        generator="resnet",
        ngf=64,
        n_blocks=9,
        discriminator="zormpas",
        ndf=64,
        gan_loss="lsgan",
        d_sigmoid=True,
        cycle_ssim=0.5,
        lambda_cycle=10.0,
        lambda_identity=10.0,
        pipeline="patches",
        patch_size=128,
        spacing_mm=1.0,
        le_window="1800,2900",
        des_window="1700,2400",
        sw_stride=16,
        batch_size=20,
        max_steps=6000,
        epochs=1000,
        patience=1000,
        lr=2e-4,
        weight_decay=0.0,
        beta1=0.5,
        augment_prob=0.0,
        description="Patch cycle-GAN of Zormpas-Petridis et al. 2026: ResNet generators (9 residual units, tanh), "
        "discriminators of three stride-2 blocks + conv + sigmoid trained with least squares, cycle loss 0.5 MAE + "
        "0.5 (1 - SSIM), identity weight 10; images resampled to 1 mm, LE truncated to 1800-2900 and DES to "
        "1700-2400, scaled to [-1, 1], random 128x128 patches in the Otsu breast box (their only augmentation), "
        "sliding-window inference with stride 16; Adam lr 2e-4, batch 20, 6000 iterations (max_steps; epochs and "
        "patience set high so that the step count ends training). Not stated: cycle weight (10, as CycleGAN), "
        "Adam betas (0.5, 0.999) and weight decay (none).",
        source="000_3db6a67690d94d72.txt",
    ),
}


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


# Fields with a fixed set of values (the registries in recipes/ and models/ implement each one).
CHOICES = {
    "recipe": ("cyclegan", "pix2pix", "supervised"),
    "generator": ("resnet", "unet", "ronneberger-unet", "attention-unet", "iamnet", "autoencoder"),
    "discriminator": ("patchgan", "zormpas"),
    "gan_loss": ("lsgan", "bce"),
    "norm": ("instance", "batch"),
    "pipeline": ("resize", "patches"),
}


_GENERATOR_NAMES = {"resnet": "ResNet", "unet": "U-Net", "ronneberger-unet": "U-Net", "attention-unet": "Attention U-Net",
                    "iamnet": "IAMNet", "autoencoder": "Autoencoder"}


def model_family(config: dict[str, Any]) -> str:
    """Human name of the method a (saved) config trains, e.g. "Seg-CycleGAN", "Pix2Pix IAMNet, tau 2".

    Used in tables, synthetic image metadata and DICOM descriptions, so that
    two models of one comparison never share a name.
    """
    recipe, generator = config.get("recipe", "cyclegan"), config.get("generator", "resnet")
    if recipe == "cyclegan":
        name = "Seg-CycleGAN" if float(config.get("gamma_lesion", 0) or 0) > 0 else "CycleGAN"
        if config.get("pipeline") == "patches":
            name = f"patch {name}"
    elif recipe == "pix2pix":
        name = f"Pix2Pix {_GENERATOR_NAMES.get(generator, generator)}"
    else:
        name = _GENERATOR_NAMES.get(generator, generator)
    tau = float(config.get("tau", 0) or 0)
    return f"{name}, tau {tau:g}" if tau > 0 and recipe != "cyclegan" else name


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def apply_overrides(base: TrainConfig, overrides: dict[str, Any], where: str | os.PathLike | None = None) -> TrainConfig:
    """`base` with fields replaced (values may be strings: "1e-4", "true"), checked; InputError names `where`."""
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise InputError(where, f"unknown config field(s) {', '.join(unknown)}; valid fields: {', '.join(known)}")
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
            problems.append(f"{name} {getattr(config, name)!r} is unknown (valid: {', '.join(valid)})")
    if config.image_size < 16 or config.image_size % 4:
        problems.append(f"image_size {config.image_size} must be a multiple of 4 and >= 16")
    if config.patch_size < 16 or config.patch_size % 4:
        problems.append(f"patch_size {config.patch_size} must be a multiple of 4 and >= 16")
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


def resolve_config(preset_name: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The named preset with `overrides` applied (values may be strings from the command line)."""
    if preset_name not in PRESETS:
        raise InputError(None, f"unknown preset {preset_name!r}; valid presets: {', '.join(PRESETS)}")
    return apply_overrides(replace(PRESETS[preset_name], preset=preset_name), dict(overrides or {}), where=None)


def parse_assignments(items: list[str]) -> dict[str, str]:
    """["lr=1e-4", "amp=false"] -> {"lr": "1e-4", "amp": "false"} (the `--set` option)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(None, f"--set {item!r}: expected field=value")
        out[name.strip()] = value.strip()
    return out
