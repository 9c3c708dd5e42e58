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

from VirtualContrastTraining.errors import InputError


@dataclass(frozen=True)
class TrainConfig:
    recipe: str = "cyclegan"
    # Name of the preset this config was resolved from ("" when built by hand); shown in model names.
    preset: str = ""
    # Networks: ResNet generator width and depth (models/networks.py).
    ngf: int = 64
    n_blocks: int = 9
    ndf: int = 64
    # Data: square side after preprocessing; batch size.
    image_size: int = 256
    batch_size: int = 8
    # Schedule: maximum epochs, early stopping on the validation L1 of G(LE) vs DES.
    epochs: int = 200
    patience: int = 50
    val_every: int = 1
    # Adam for G+F and for D_X+D_Y.
    lr: float = 1e-5
    weight_decay: float = 1e-5
    beta1: float = 0.5
    beta2: float = 0.999
    # Loss weights: lambda_1 (cycle), lambda_2 (identity), gamma (lesion-masked terms, 002 eq. 7),
    # and a direct paired L1(G(LE), DES) term that the published recipes do not use.
    lambda_cycle: float = 10.0
    lambda_identity: float = 5.0
    gamma_lesion: float = 0.0
    lambda_paired: float = 0.0
    # Image pool of past fakes for the discriminators (0 = none, as in the public code of 001).
    pool_size: int = 0
    # Probability of each random augmentation (shift, zoom, flip, rotation); 0 disables augmentation.
    augment_prob: float = 0.3
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

PRESETS: dict[str, TrainConfig] = {
    "rofena2024-cyclegan": _ROFENA2024,
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
    if config.recipe != "cyclegan":
        problems.append(f"recipe {config.recipe!r} is unknown (only 'cyclegan')")
    if config.image_size < 16 or config.image_size % 4:
        problems.append(f"image_size {config.image_size} must be a multiple of 4 and >= 16")
    for name in ("ngf", "ndf", "batch_size", "epochs", "patience", "val_every"):
        if getattr(config, name) < 1:
            problems.append(f"{name} must be >= 1")
    for name in ("n_blocks", "pool_size"):
        if getattr(config, name) < 0:
            problems.append(f"{name} must be >= 0")
    for name in ("lr", "weight_decay", "lambda_cycle", "lambda_identity", "gamma_lesion", "lambda_paired"):
        if getattr(config, name) < 0:
            problems.append(f"{name} must be >= 0")
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
