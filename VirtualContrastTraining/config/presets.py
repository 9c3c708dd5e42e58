"""The catalogue: one named TrainConfig per published recipe, each with its paper's values and what the
paper leaves unstated (description), `resolve_config` for a preset with `--set` overrides, and
`field_sources`: where each field's value of a preset comes from (`virtual-contrast presets show`).
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from VirtualContrastTraining.config.registries import cite_papers, did_you_mean
from VirtualContrastTraining.config.schema import TrainConfig, apply_overrides
from VirtualContrastTraining.errors import InputError

# The fields whose TrainConfig default is the value of 001's CycleGAN, as _ROFENA2024's description states them.
_ROFENA2024_FIELDS = ("recipe", "generator", "n_blocks", "discriminator", "gan_loss", "d_sigmoid", "image_size",
                      "batch_size", "epochs", "patience", "lr", "weight_decay", "beta1", "beta2", "lambda_cycle",
                      "lambda_identity", "pool_size", "lambda_paired")
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


def resolve_config(preset_name: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The named preset with `overrides` applied (values may be strings from the command line)."""
    if preset_name not in PRESETS:
        raise InputError(None, f"unknown preset {preset_name!r}; {did_you_mean(preset_name, PRESETS)}"
                         f"valid presets: {', '.join(PRESETS)}")
    return apply_overrides(replace(PRESETS[preset_name], preset=preset_name), dict(overrides or {}), where=None)


#: Presets scaled down from a paper preset rather than published themselves: the preset each one changes.
SCALED_FROM = {"demo": "rofena2025-segcyclegan-g35"}


def _paper(config: TrainConfig) -> str:
    """ "Rofena et al. 2025 (002)": the paper of a preset, whatever its source adds after the file name."""
    return cite_papers(config.source.split(" ")[0])


def _source(name: str, field: str, value: Any) -> str:
    """Where the value of `field` in preset `name` comes from (see field_sources)."""
    default = getattr(TrainConfig(), field)
    if field == "preset":
        return "the preset's name"
    if field == "seed":
        return "default of TrainConfig (another seed repeats the preset)"
    base = SCALED_FROM.get(name)
    if base and getattr(PRESETS[base], field) != value:
        return f"changed from paper preset {base}"
    if value != default:
        return f"set by the preset: {_paper(PRESETS[base or name])}"
    if field in _ROFENA2024_FIELDS:
        return f"default of TrainConfig, the value of {_paper(_ROFENA2024)}"
    return "default of TrainConfig"


def field_sources(name: str) -> dict[str, tuple[Any, str]]:
    """{field: (value, source)} of every TrainConfig field of preset `name`, in the dataclass's order. The source
    is the preset's paper when the preset sets the value, "default of TrainConfig" (and the paper whose value
    that is, when it is 001's) when it keeps the default, "changed from paper preset X" for a preset scaled
    down from X (SCALED_FROM). What a paper leaves unstated the preset's description says."""
    config = resolve_config(name)
    return {f.name: (getattr(config, f.name), _source(name, f.name, getattr(config, f.name)))
            for f in fields(TrainConfig)}
