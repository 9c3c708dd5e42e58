"""Every named preset trains (tiny, on CPU), and each paper preset holds the numbers its paper states."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from VirtualContrastTraining.config.presets import PRESETS, resolve_config
from VirtualContrastTraining.recipes import build_recipe
from VirtualContrastTraining.recipes.losses import value_range

# Shrinks the networks and images only; recipe, losses, generator/discriminator kinds, gan_loss, tau and the
# pipeline's value range stay those of the preset. unet_depth 3 fits 32x32 images for every U-Net flavour.
TINY = dict(ngf=4, ndf=4, n_blocks=1, unet_depth=3, image_size=32, patch_size=32, sw_stride=16, batch_size=2,
            amp=False)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_its_recipe_and_trains_two_steps(name):
    config = resolve_config(name, TINY)
    torch.manual_seed(0)
    recipe = build_recipe(config)
    lo, hi = value_range(config)
    g = torch.Generator().manual_seed(1)
    before = [p.detach().clone() for p in recipe.generator.parameters()]
    for step in range(2):
        recipe.set_progress(step / 2)
        batch = {k: lo + (hi - lo) * torch.rand(2, 1, 32, 32, generator=g) for k in ("le", "des")}
        losses = recipe.train_step(batch)
        assert tuple(sorted(losses)) == tuple(sorted(recipe.loss_names))
        assert all(math.isfinite(v) for v in losses.values()), losses
    assert any(not torch.equal(a, b) for a, b in zip(before, recipe.generator.parameters()))
    with torch.no_grad():
        out = recipe.generator(batch["le"])
    assert out.shape == batch["le"].shape and lo <= float(out.min()) and float(out.max()) <= hi


def test_every_preset_names_its_paper_and_says_what_it_is():
    papers = {"rofena2024": "001_", "rofena2025": "002_", "demo": "002_", "perre2025": "004_",
              "hosseinipour2024": "003_", "zormpas2026": "000_"}
    for name, config in PRESETS.items():
        prefix = next(v for k, v in papers.items() if name.startswith(k))
        assert config.source.startswith(prefix), name
        assert len(config.description) > 40, name


def test_rofena2024_pix2pix_matches_001():
    c = PRESETS["rofena2024-pix2pix"]
    assert (c.recipe, c.generator, c.discriminator) == ("pix2pix", "unet", "patchgan")
    assert (c.gan_loss, c.d_sigmoid) == ("bce", False)
    assert (c.lambda_l1, c.tau, c.lr, c.weight_decay, c.beta1) == (100, 0, 2e-4, 1e-5, 0.5)
    assert (c.image_size, c.batch_size, c.unet_depth, c.norm, c.dropout) == (256, 128, 8, "batch", 0.5)  # public code
    assert (c.epochs, c.epochs_decay, c.patience, c.warmup) == (200, 0, 50, 50)


def test_rofena2024_autoencoder_matches_001():
    c = PRESETS["rofena2024-autoencoder"]
    assert (c.recipe, c.generator, c.tau) == ("supervised", "autoencoder", 0)
    assert (c.lr, c.weight_decay, c.beta1, c.plateau_patience) == (1e-3, 1e-5, 0.9, 10)
    assert (c.image_size, c.epochs, c.patience, c.warmup) == (256, 200, 50, 50)


def test_perre2025_unet_matches_004():
    c = PRESETS["perre2025-unet"]
    # depth 6 = six resolution levels, five poolings (unet_depth counts poolings), on the 224x224 crops
    assert (c.recipe, c.generator, c.tau) == ("supervised", "ronneberger-unet", 0)
    assert (c.ngf, c.unet_depth, c.dropout) == (32, 5, 0.2)
    assert (c.lr, c.epochs, c.patience, c.image_size) == (5e-4, 30, 30, 224)  # 30 epochs, best validation epoch kept
    assert c.image_size % 2 ** c.unet_depth == 0


def test_hosseinipour2024_presets_match_003_table_1_and_3():
    generators = {"unet512": "unet", "attention-unet": "attention-unet", "iamnet": "iamnet"}
    for suffix, generator in generators.items():
        c = PRESETS[f"hosseinipour2024-pix2pix-{suffix}"]
        assert (c.recipe, c.generator, c.discriminator, c.gan_loss, c.d_sigmoid) == ("pix2pix", generator, "patchgan",
                                                                                     "lsgan", False)
        assert (c.lambda_l1, c.tau, c.lr, c.dropout, c.ngf, c.ndf) == (100, 0, 2e-4, 0.5, 64, 64)
        assert (c.image_size, c.batch_size, c.epochs, c.epochs_decay) == (512, 10, 300, 200)
        assert c.patience >= c.epochs  # 003 trains all 300 epochs
    # Table 1: 9 convolutions for the U-Nets (512 -> 1x1), 5 for IAMNet
    assert [PRESETS[f"hosseinipour2024-pix2pix-{s}"].unet_depth for s in generators] == [9, 9, 5]
    for label, tau in (("0.5", 0.5), ("1", 1.0), ("2", 2.0), ("3", 3.0)):
        c = PRESETS[f"hosseinipour2024-pix2pix-expdamp-t{label}"]
        assert c.tau == tau
        assert c == replace(PRESETS["hosseinipour2024-pix2pix-unet512"], tau=tau, description=c.description)


def test_tau_can_be_set_on_any_supervised_or_pix2pix_preset():
    for name, config in PRESETS.items():
        if config.recipe in ("supervised", "pix2pix"):
            assert resolve_config(name, {"tau": "2"}).tau == 2.0


def test_zormpas2026_matches_000():
    c = PRESETS["zormpas2026-cyclegan-patch"]
    assert (c.recipe, c.generator, c.n_blocks, c.ngf, c.discriminator) == ("cyclegan", "resnet", 9, 64, "zormpas")
    assert (c.gan_loss, c.d_sigmoid, c.cycle_ssim, c.lambda_cycle, c.lambda_identity) == ("lsgan", True, 0.5, 10, 10)
    assert (c.gamma_lesion, c.lambda_paired, c.tau) == (0, 0, 0)
    assert (c.pipeline, c.patch_size, c.spacing_mm, c.sw_stride) == ("patches", 128, 1.0, 16)
    assert (c.le_window, c.des_window) == ("1800,2900", "1700,2400")
    assert (c.lr, c.batch_size, c.max_steps) == (2e-4, 20, 6000)
    # ~6000 iterations end training, not the epoch count or early stopping: 000's 390 training images give
    # ceil(390 * patches_per_image / 20) steps per epoch
    assert c.epochs * math.ceil(390 * c.patches_per_image / c.batch_size) > c.max_steps and c.patience >= c.epochs
    assert value_range(c) == (-1.0, 1.0)


@pytest.mark.parametrize("name", [n for n, c in PRESETS.items() if c.generator != "resnet"])
def test_the_paper_image_size_fits_the_paper_generator_depth(name):
    """The generator at the preset's own depth and image size (narrowed to ngf 2) maps an image to its shape."""
    from VirtualContrastTraining.models import build_generator

    config = resolve_config(name, {"ngf": 2})
    side = config.patch_size if config.pipeline == "patches" else config.image_size
    G = build_generator(config).eval()
    with torch.no_grad():
        assert G(torch.zeros(1, 1, side, side)).shape == (1, 1, side, side)


def test_every_preset_has_its_own_model_name():
    from VirtualContrastTraining.config.registries import model_family

    names = {name: f"{model_family(config.to_dict())} ({name})" for name, config in PRESETS.items()}
    assert model_family(PRESETS["rofena2025-segcyclegan-g35"].to_dict()) == "Seg-CycleGAN"
    assert model_family(PRESETS["rofena2024-cyclegan"].to_dict()) == "CycleGAN"
    assert model_family(PRESETS["hosseinipour2024-pix2pix-expdamp-t2"].to_dict()) == "Pix2Pix U-Net, tau 2"
    assert model_family(PRESETS["zormpas2026-cyclegan-patch"].to_dict()) == "patch CycleGAN"
    assert model_family(PRESETS["rofena2024-autoencoder"].to_dict()) == "Autoencoder"
    # A saved config from before the recipe field existed is a CycleGAN.
    assert model_family({"gamma_lesion": 35.0}) == "Seg-CycleGAN"
    assert len(set(names.values())) == len(names)


def test_list_presets_cites_papers_by_name_not_by_file():
    """`train --list-presets` through the CLI: every source is a citation ("Rofena et al. 2024 (001)"), no file."""
    done = subprocess.run([sys.executable, "-m", "VirtualContrastTraining", "train", "--list-presets"],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    sources = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("source:")]
    assert done.returncode == 0 and len(sources) == len(PRESETS)
    assert not [s for s in sources if ".txt" in s]
    assert "source: Rofena et al. 2024 (001)" in sources and "source: Zormpas-Petridis et al. 2026 (000)" in sources
