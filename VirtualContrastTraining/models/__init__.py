"""Networks, built by name from a TrainConfig, as define_G / define_D in pytorch-CycleGAN-and-pix2pix.

    generator      resnet (001/002/000), unet (001 pix2pix, 003 U-Net 512, 004 U-Net/PT),
                   attention-unet and iamnet (003), autoencoder (001)
    discriminator  patchgan (70x70, 001/002/003), zormpas (three stride-2 blocks + conv, 000)

The generator's last activation follows the data range of the pipeline:
sigmoid for [0, 1] images ("resize"), tanh for [-1, 1] ("patches", 000).
"""

from __future__ import annotations

from torch import nn

from VirtualContrastTraining.presets import TrainConfig


def output_activation(config: TrainConfig) -> str:
    return "tanh" if config.pipeline == "patches" else "sigmoid"


def build_generator(config: TrainConfig) -> nn.Module:
    """The generator G: LE -> DES (also F: DES -> LE in a cycle-GAN), freshly initialised."""
    from VirtualContrastTraining.models import networks

    if config.generator == "resnet":
        return networks.define_G(1, 1, config.ngf, config.n_blocks, final=output_activation(config))
    raise NotImplementedError(config.generator)


def build_discriminator(config: TrainConfig, input_nc: int = 1) -> nn.Module:
    """A discriminator judging `input_nc`-channel images (2 for pix2pix's (LE, DES) pairs), freshly initialised."""
    from VirtualContrastTraining.models import networks

    if config.discriminator == "patchgan":
        return networks.define_D(input_nc, config.ndf, sigmoid=config.d_sigmoid)
    raise NotImplementedError(config.discriminator)
