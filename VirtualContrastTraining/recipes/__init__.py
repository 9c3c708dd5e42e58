"""Recipes: networks + losses + optimisers of one published method, one class each (see base.Recipe).

    cyclegan    CycleGAN / Seg-CycleGAN (001, 002) and the patch cycle-GAN of 000
    pix2pix     conditional GAN on (LE, DES) pairs (001, 003), any generator of models/
    supervised  a generator alone with a pixel loss: Autoencoder (001), U-Net/PT (004)
"""

from __future__ import annotations

import importlib

from VirtualContrastTraining.config.presets import TrainConfig

_CLASSES = {
    "cyclegan": ("VirtualContrastTraining.recipes.cyclegan", "CycleGAN"),
    "pix2pix": ("VirtualContrastTraining.recipes.pix2pix", "Pix2Pix"),
    "supervised": ("VirtualContrastTraining.recipes.supervised", "Supervised"),
}


def build_recipe(config: TrainConfig, device="cpu"):
    """A fresh recipe for `config` (networks initialised from torch's current RNG state)."""
    module, name = _CLASSES[config.recipe]
    return getattr(importlib.import_module(module), name)(config, device)
