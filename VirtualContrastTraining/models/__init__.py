"""Networks, built by name from a TrainConfig, as define_G / define_D in pytorch-CycleGAN-and-pix2pix.

    generator      resnet (001/002/000), unet (pix2pix U-Net: 001, 003 U-Net 512),
                   ronneberger-unet (004 U-Net/PT), attention-unet and iamnet (003), autoencoder (001)
    discriminator  patchgan (70x70, 001/002/003), zormpas (three stride-2 blocks + conv, 000)

The names and their builders are data (config/registries.py), the builders
live in builders.py. config.norm (instance or batch) applies to every
network, like the reference code's --norm; unet_depth counts down-samplings.
The generator's last activation follows the data range of the pipeline:
sigmoid for [0, 1] images ("resize"), tanh for [-1, 1] ("patches", 000).
docs/models.md has the layouts, parameter counts and every departure from the
papers.
"""

from __future__ import annotations

from torch import nn

from VirtualContrastTraining.config.registries import DISCRIMINATORS, GENERATORS, load
from VirtualContrastTraining.config.schema import TrainConfig


def output_activation(config: TrainConfig) -> str:
    return "tanh" if config.pipeline == "patches" else "sigmoid"


def build_generator(config: TrainConfig) -> nn.Module:
    """The generator G: LE -> DES (also F: DES -> LE in a cycle-GAN), freshly initialised."""
    return load(GENERATORS[config.generator])(config, output_activation(config))


def build_discriminator(config: TrainConfig, input_nc: int = 1) -> nn.Module:
    """A discriminator judging `input_nc`-channel images (2 for pix2pix's (LE, DES) pairs), freshly initialised."""
    return load(DISCRIMINATORS[config.discriminator])(config, input_nc)
