"""Networks, built by name from a TrainConfig, as define_G / define_D in pytorch-CycleGAN-and-pix2pix.

    generator      resnet (001/002/000), unet (pix2pix U-Net: 001, 003 U-Net 512),
                   ronneberger-unet (004 U-Net/PT), attention-unet and iamnet (003), autoencoder (001)
    discriminator  patchgan (70x70, 001/002/003), zormpas (three stride-2 blocks + conv, 000)

config.norm (instance or batch) applies to every network, like the reference
code's --norm; unet_depth counts down-samplings. The generator's last
activation follows the data range of the pipeline: sigmoid for [0, 1] images
("resize"), tanh for [-1, 1] ("patches", 000). docs/models.md has the layouts,
parameter counts and every departure from the papers.
"""

from __future__ import annotations

from torch import nn

from VirtualContrastTraining.config.presets import TrainConfig


def output_activation(config: TrainConfig) -> str:
    return "tanh" if config.pipeline == "patches" else "sigmoid"


def build_generator(config: TrainConfig) -> nn.Module:
    """The generator G: LE -> DES (also F: DES -> LE in a cycle-GAN), freshly initialised."""
    from VirtualContrastTraining.models import networks

    final, norm = output_activation(config), config.norm
    if config.generator == "resnet":
        return networks.define_G(1, 1, config.ngf, config.n_blocks, final=final, norm=norm)
    if config.generator == "unet":
        from VirtualContrastTraining.models.unet import UnetGenerator

        net = UnetGenerator(1, 1, config.ngf, config.unet_depth, norm=norm, dropout=config.dropout, final=final)
        return networks.init_weights(net)
    if config.generator == "ronneberger-unet":  # Ronneberger et al.'s own init, not pix2pix's
        from VirtualContrastTraining.models.unet import RonnebergerUnet, he_init

        return he_init(RonnebergerUnet(1, 1, config.ngf, config.unet_depth, norm=norm, dropout=config.dropout,
                                       final=final))
    if config.generator in ("attention-unet", "iamnet"):  # 003 (ngf/ndf, "U-Net 512"): pix2pix code, its init
        from VirtualContrastTraining.models import attention

        build = attention.attention_unet if config.generator == "attention-unet" else attention.iamnet
        return networks.init_weights(build(config.ngf, config.unet_depth, norm=norm, dropout=config.dropout,
                                           final=final))
    if config.generator == "autoencoder":  # 001 names no init: PyTorch's default
        from VirtualContrastTraining.models.autoencoder import Autoencoder

        return Autoencoder(1, 1, config.ngf, norm=norm, final=final)
    raise NotImplementedError(config.generator)


def build_discriminator(config: TrainConfig, input_nc: int = 1) -> nn.Module:
    """A discriminator judging `input_nc`-channel images (2 for pix2pix's (LE, DES) pairs), freshly initialised."""
    from VirtualContrastTraining.models import networks

    if config.discriminator == "patchgan":
        return networks.define_D(input_nc, config.ndf, sigmoid=config.d_sigmoid, norm=config.norm)
    if config.discriminator == "zormpas":
        net = networks.ThreeBlockDiscriminator(input_nc, config.ndf, sigmoid=config.d_sigmoid, norm=config.norm)
        return networks.init_weights(net)
    raise NotImplementedError(config.discriminator)
