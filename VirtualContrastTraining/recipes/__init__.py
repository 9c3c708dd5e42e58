"""Recipes: networks + losses + optimisers of one published method, one class each (see base.Recipe).

    cyclegan    CycleGAN / Seg-CycleGAN (001, 002) and the patch cycle-GAN of 000
    pix2pix     conditional GAN on (LE, DES) pairs (001, 003), any generator of models/
    supervised  a generator alone with a pixel loss: Autoencoder (001), U-Net/PT (004)

The names and the classes they build are data (config/registries.py RECIPES).
"""

from __future__ import annotations

from VirtualContrastTraining.config.registries import RECIPES, load
from VirtualContrastTraining.config.schema import TrainConfig
from VirtualContrastTraining.execution import Execution


def build_recipe(config: TrainConfig, device="cpu", execution: Execution | None = None):
    """A fresh recipe for `config` (networks initialised from torch's current RNG state), run as `execution` says
    (None: the defaults of execution.Execution)."""
    return load(RECIPES[config.recipe])(config, device, execution)
