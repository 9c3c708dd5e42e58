"""One builder per network name of config/registries.py, each a freshly initialised network from a TrainConfig.

Generators take (config, final), final being the output activation; discriminators (config, input_nc), 2
channels for pix2pix's (LE, DES) pairs. Each builder keeps its paper's initialisation: pix2pix's normal(0,
0.02) for the reference-code networks, Ronneberger et al.'s own for their U-Net, PyTorch's default for
001's Autoencoder, which names none.
"""

from __future__ import annotations

from torch import nn

from VirtualContrastTraining.config.schema import TrainConfig
from VirtualContrastTraining.models import attention, networks
from VirtualContrastTraining.models.autoencoder import Autoencoder
from VirtualContrastTraining.models.unet import RonnebergerUnet, UnetGenerator, he_init


def resnet(config: TrainConfig, final: str) -> nn.Module:
    return networks.define_G(1, 1, config.ngf, config.n_blocks, final=final, norm=config.norm)


def pix2pix_unet(config: TrainConfig, final: str) -> nn.Module:
    return networks.init_weights(UnetGenerator(1, 1, config.ngf, config.unet_depth, norm=config.norm,
                                               dropout=config.dropout, final=final))


def ronneberger_unet(config: TrainConfig, final: str) -> nn.Module:
    return he_init(RonnebergerUnet(1, 1, config.ngf, config.unet_depth, norm=config.norm, dropout=config.dropout,
                                   final=final))


def attention_unet(config: TrainConfig, final: str) -> nn.Module:  # 003 (ngf/ndf, "U-Net 512"): pix2pix code
    return networks.init_weights(attention.attention_unet(config.ngf, config.unet_depth, norm=config.norm,
                                                          dropout=config.dropout, final=final))


def iamnet(config: TrainConfig, final: str) -> nn.Module:
    return networks.init_weights(attention.iamnet(config.ngf, config.unet_depth, norm=config.norm,
                                                  dropout=config.dropout, final=final))


def autoencoder(config: TrainConfig, final: str) -> nn.Module:
    return Autoencoder(1, 1, config.ngf, norm=config.norm, final=final)


def patchgan(config: TrainConfig, input_nc: int) -> nn.Module:
    return networks.define_D(input_nc, config.ndf, sigmoid=config.d_sigmoid, norm=config.norm)


def zormpas(config: TrainConfig, input_nc: int) -> nn.Module:
    return networks.init_weights(networks.ThreeBlockDiscriminator(input_nc, config.ndf, sigmoid=config.d_sigmoid,
                                                                  norm=config.norm))
