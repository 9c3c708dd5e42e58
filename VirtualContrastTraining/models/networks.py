"""The CycleGAN networks of Rofena et al. (001, 002): a ResNet generator and the 70x70 PatchGAN.

The layer layout follows junyanz/pytorch-CycleGAN-and-pix2pix (`resnet_9blocks`,
`NLayerDiscriminator(n_layers=3)`, instance norm, normal init with gain 0.02).
Two departures follow the public code of 001 (cosbidev/VCE_CESM): images live
in [0, 1], so the generator ends in a sigmoid instead of tanh, and the
discriminator also ends in a sigmoid (it is trained with an MSE loss).
Grey-level mammograms: one input and one output channel.
"""

from __future__ import annotations

import torch
from torch import nn


# Last layer of a generator: sigmoid for images in [0, 1] (001 code), tanh for [-1, 1] (000, pix2pix repo).
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def _norm(channels: int) -> nn.Module:
    # No affine parameters and no running statistics, as in the reference code:
    # train and eval mode then compute the same thing.
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """Two 3x3 convolutions with reflection padding and a skip connection."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """7x7 conv, two stride-2 downsamplings, `n_blocks` residual blocks, two transposed-conv upsamplings, 7x7 conv.

    Fully convolutional: any input whose sides are divisible by 4 comes back
    with the same size.
    """

    def __init__(self, input_nc: int = 1, output_nc: int = 1, ngf: int = 64, n_blocks: int = 9, final: str = "sigmoid"):
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=True), _norm(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2**i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True), _norm(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                _norm(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), ACTIVATIONS[final]()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: with n_layers=3 each output value judges a 70x70 patch of the input."""

    def __init__(self, input_nc: int = 1, ndf: int = 64, n_layers: int = 3, sigmoid: bool = True):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=True), _norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True), _norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        if sigmoid:  # the 001 code trains a sigmoid PatchGAN with MSE; LSGAN and BCE-with-logits take raw scores
            layers.append(nn.Sigmoid())
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Normal(0, gain) convolution weights and zero biases (the CycleGAN paper's init)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def define_G(input_nc: int = 1, output_nc: int = 1, ngf: int = 64, n_blocks: int = 9, init_gain: float = 0.02,
             final: str = "sigmoid") -> ResnetGenerator:
    """The ResNet generator (G: LE->DES or F: DES->LE), freshly initialised."""
    return init_weights(ResnetGenerator(input_nc, output_nc, ngf, n_blocks, final), init_gain)


def define_D(input_nc: int = 1, ndf: int = 64, n_layers: int = 3, init_gain: float = 0.02,
             sigmoid: bool = True) -> NLayerDiscriminator:
    """The PatchGAN discriminator (D_Y judges DES images, D_X judges LE images), freshly initialised."""
    return init_weights(NLayerDiscriminator(input_nc, ndf, n_layers, sigmoid), init_gain)


def receptive_field(net: nn.Module) -> int:
    """Side in pixels of the input patch that one output value sees, computed from the conv layers.

    Walks the convolutions in order (r += (k - 1) * jump; jump *= stride); used
    to check that the discriminator judges 70x70 patches.
    """
    r, jump = 1, 1
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            r += (m.kernel_size[0] - 1) * m.dilation[0] * jump
            jump *= m.stride[0]
    return r
