"""The CycleGAN networks (001, 002, 000), the 000 discriminator, and the pieces every network shares.

The layer layout follows junyanz/pytorch-CycleGAN-and-pix2pix (`resnet_9blocks`,
`NLayerDiscriminator(n_layers=3)`, normal init with gain 0.02, one `norm` option
for generators and discriminators alike: instance for CycleGAN, batch for pix2pix).
Two departures follow the public code of 001 (cosbidev/VCE_CESM): images live
in [0, 1], so the generator ends in a sigmoid instead of tanh, and the
discriminator also ends in a sigmoid (it is trained with an MSE loss).
Grey-level mammograms: one input and one output channel.
"""

from __future__ import annotations

import torch
from torch import nn

from VirtualContrastTraining.errors import InputError

# Last layer of a generator: sigmoid for images in [0, 1] (001 code), tanh for [-1, 1] (000, pix2pix repo).
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation of `get_norm_layer` in the reference code.

    Instance norm has no affine parameters and no running statistics, so train
    and eval mode compute the same thing; batch norm is affine with running
    statistics (pix2pix's default, and 001's "batch normalization").
    """
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm must be 'instance' or 'batch', got {kind!r}")


def check_divisible(x: torch.Tensor, factor: int, what: str) -> None:
    """Refuse inputs whose sides do not halve cleanly `log2(factor)` times.

    Encoder-decoders with skip connections cannot concatenate maps of unequal
    sizes, and without skips the output would silently come back smaller than
    the input; both fail here with a message that names the setting to change.
    """
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise InputError(None, f"{what}: input of {h}x{w} pixels must have sides divisible by {factor}; "
                               f"use an image_size / patch_size that is a multiple of {factor} or fewer down-samplings")


class ResnetBlock(nn.Module):
    """Two 3x3 convolutions with reflection padding and a skip connection."""

    def __init__(self, dim: int, norm: str = "instance"):
        super().__init__()
        bias = norm == "instance"  # a batch norm's shift makes a conv bias redundant (reference code)
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """7x7 conv, two stride-2 downsamplings, `n_blocks` residual blocks, two transposed-conv upsamplings, 7x7 conv.

    Fully convolutional: any input whose sides are divisible by 4 comes back
    with the same size.
    """

    def __init__(self, input_nc: int = 1, output_nc: int = 1, ngf: int = 64, n_blocks: int = 9, final: str = "sigmoid",
                 norm: str = "instance"):
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        bias = norm == "instance"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), norm_layer(norm, ngf),
                                   nn.ReLU(True)]
        for i in range(2):
            mult = 2**i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                       norm_layer(norm, ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                norm_layer(norm, ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), ACTIVATIONS[final]()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: with n_layers=3 each output value judges a 70x70 patch of the input."""

    def __init__(self, input_nc: int = 1, ndf: int = 64, n_layers: int = 3, sigmoid: bool = True, norm: str = "instance"):
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias), norm_layer(norm, ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias), norm_layer(norm, ndf * mult),
                   nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        if sigmoid:  # the 001 code trains a sigmoid PatchGAN with MSE; LSGAN and BCE-with-logits take raw scores
            layers.append(nn.Sigmoid())
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ThreeBlockDiscriminator(nn.Module):
    """The discriminator of 000: three down-convolutional blocks, one convolution, a sigmoid.

    000 (Methods): "three down-convolutional blocks (StridedConv2D-InstanceNorm-
    LeakyRelu), one 2D convolutional layer, and a sigmoid activation function for
    the last layer". Kernel size, widths and slope are not given; they are the
    PatchGAN's (4x4, ndf doubling, LeakyReLU 0.2), so each output value judges a
    46x46 patch. Unlike the PatchGAN, the first block is normalised too, as 000
    writes it.
    """

    def __init__(self, input_nc: int = 1, ndf: int = 64, sigmoid: bool = True, norm: str = "instance"):
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = []
        channels = [input_nc, ndf, ndf * 2, ndf * 4]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=bias), norm_layer(norm, c_out),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(channels[-1], 1, 4, stride=1, padding=1))
        if sigmoid:
            layers.append(nn.Sigmoid())
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Normal(0, gain) convolution weights and zero biases; batch-norm scales Normal(1, gain) (the reference code's init)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def define_G(input_nc: int = 1, output_nc: int = 1, ngf: int = 64, n_blocks: int = 9, init_gain: float = 0.02,
             final: str = "sigmoid", norm: str = "instance") -> ResnetGenerator:
    """The ResNet generator (G: LE->DES or F: DES->LE), freshly initialised."""
    return init_weights(ResnetGenerator(input_nc, output_nc, ngf, n_blocks, final, norm), init_gain)


def define_D(input_nc: int = 1, ndf: int = 64, n_layers: int = 3, init_gain: float = 0.02,
             sigmoid: bool = True, norm: str = "instance") -> NLayerDiscriminator:
    """The PatchGAN discriminator (D_Y judges DES images, D_X judges LE images), freshly initialised."""
    return init_weights(NLayerDiscriminator(input_nc, ndf, n_layers, sigmoid, norm), init_gain)


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
