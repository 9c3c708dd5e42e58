"""U-Net generators: the pix2pix encoder-decoder (001, 003) and the U-Net of Ronneberger et al. (004).

`UnetGenerator` is the recursive `UnetGenerator` / `UnetSkipConnectionBlock` of
junyanz/pytorch-CycleGAN-and-pix2pix, for any number of down-samplings: 4x4
stride-2 convolutions (LeakyReLU 0.2 before each but the first, norm after
each but the first and the innermost), 4x4 stride-2 transposed convolutions
(ReLU before, norm after), widths ngf, 2 ngf, 4 ngf, then 8 ngf, and dropout
after the up-convolution of the 8 ngf -> 8 ngf levels between the fourth and
the innermost (the pix2pix generator: 001 eq. 5's "U-Net autoencoder with skip
connections concatenating encoder block i and decoder block n - i", 003's
"U-Net 512" with dropout 0.5). The same skeleton carries 003's two variants
(models/attention.py): a gate on every skip connection (Attention U-Net) or no
skip connections and an attention module at the bottleneck (IAMNet).

`RonnebergerUnet` is the 2015 U-Net that 004 cites for its U-Net/PT ([16]):
two 3x3 convolutions per level, 2x2 max pooling, 2x2 up-convolutions that halve
the width, widths doubling without a cap, a 1x1 convolution at the end.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from VirtualContrastTraining.models.networks import ACTIVATIONS, check_divisible, norm_layer


def unet_widths(ngf: int, depth: int) -> list[int]:
    """Channels after each of the `depth` down-sampling convolutions: ngf, 2 ngf, 4 ngf, then 8 ngf (the cap)."""
    return [ngf * min(2**i, 8) for i in range(depth)]


class UnetBlock(nn.Module):
    """One resolution level: down-convolution, the levels inside it, up-convolution, then the skip connection.

    The output is the input concatenated with the up-convolution's result (the
    skip connection), except at the outermost level, which returns the image,
    and when `skip` is off (IAMNet). A `gate` (Attention U-Net) weighs the input
    by the decoder's features before the concatenation.
    """

    def __init__(self, input_nc: int, inner_nc: int, output_nc: int, inner: nn.Module | None, inner_out: int, *,
                 outermost: bool, innermost: bool, norm: str, dropout: float, skip: bool,
                 gate: nn.Module | None, final: str):
        super().__init__()
        bias = norm == "instance"  # a batch norm's shift makes a conv bias redundant (reference code)
        down: list[nn.Module] = [nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)]
        if not outermost:
            down.insert(0, nn.LeakyReLU(0.2, True))
        if not (outermost or innermost):  # no norm on the image nor on the innermost (1x1 at full depth) map
            down.append(norm_layer(norm, inner_nc))
        up: list[nn.Module] = [nn.ReLU(True),
                               nn.ConvTranspose2d(inner_out, output_nc, 4, stride=2, padding=1, bias=bias or outermost)]
        up.append(ACTIVATIONS[final]() if outermost else norm_layer(norm, output_nc))
        if dropout:
            up.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*down, *([inner] if inner is not None else []), *up)
        self.skip = skip and not outermost
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        if not self.skip:
            return y
        return torch.cat([x if self.gate is None else self.gate(g=y, x=x), y], 1)


class UnetGenerator(nn.Module):
    """The pix2pix U-Net with `depth` down-samplings (8 for 256x256 inputs: `unet_256`; 9 for 003's U-Net 512).

    `gate(channels)` builds the module put on each skip connection;
    `bottleneck(channels)` the module put between the innermost down- and
    up-convolution; `skips=False` drops the skip connections.
    """

    def __init__(self, input_nc: int = 1, output_nc: int = 1, ngf: int = 64, depth: int = 8, *, norm: str = "batch",
                 dropout: float = 0.0, final: str = "sigmoid", skips: bool = True,
                 gate: Callable[[int], nn.Module] | None = None,
                 bottleneck: Callable[[int], nn.Module] | None = None):
        super().__init__()
        if depth < 1:
            raise ValueError(f"unet_depth must be >= 1, got {depth}")
        widths = unet_widths(ngf, depth)
        block = bottleneck(widths[-1]) if bottleneck else None
        inner_out = widths[-1]
        for level in reversed(range(depth)):  # built from the innermost level outwards, as in the reference code
            outermost, innermost = level == 0, level == depth - 1
            outer = output_nc if outermost else widths[level - 1]
            repeated = not (outermost or innermost) and outer == widths[level] == 8 * ngf
            block = UnetBlock(input_nc if outermost else outer, widths[level], outer, block, inner_out,
                              outermost=outermost, innermost=innermost, norm=norm,
                              dropout=dropout if repeated else 0.0, skip=skips,
                              gate=gate(outer) if gate and skips and not outermost else None, final=final)
            inner_out = 2 * outer if skips else outer
        self.model = block
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, 2**self.depth, f"U-Net with unet_depth {self.depth}")
        return self.model(x)


def double_conv(c_in: int, c_out: int, norm: str) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by norm and ReLU (one level of the 2015 U-Net, padded to keep the size)."""
    bias = norm == "instance"
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias), norm_layer(norm, c_out), nn.ReLU(True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias), norm_layer(norm, c_out), nn.ReLU(True),
    )


class RonnebergerUnet(nn.Module):
    """The 2015 U-Net with `depth` max-poolings: widths ngf, 2 ngf, ..., ngf * 2**depth at the bottom.

    004 counts "depth" in resolution levels: its U-Net/PT (32 channels, depth 6,
    224x224 crops) is depth=5 here, 5 poolings (224 = 7 * 2**5). Dropout sits
    at the end of the contracting path, where Ronneberger et al. put it.
    """

    def __init__(self, input_nc: int = 1, output_nc: int = 1, ngf: int = 32, depth: int = 5, *,
                 norm: str = "batch", dropout: float = 0.0, final: str = "sigmoid"):
        super().__init__()
        if depth < 1:
            raise ValueError(f"unet_depth must be >= 1, got {depth}")
        widths = [ngf * 2**i for i in range(depth + 1)]
        self.encoder = nn.ModuleList(double_conv(c_in, c_out, norm) for c_in, c_out in zip([input_nc] + widths, widths))
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth)))
        self.decoder = nn.ModuleList(double_conv(2 * widths[i], widths[i], norm) for i in reversed(range(depth)))
        self.head = nn.Sequential(nn.Conv2d(ngf, output_nc, 1), ACTIVATIONS[final]())
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, 2**self.depth, f"U-Net with unet_depth {self.depth}")
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x)
            if level < self.depth:
                skips.append(x)
                x = self.pool(x)
        x = self.dropout(x)
        for up, block, skip in zip(self.up, self.decoder, reversed(skips)):
            x = block(torch.cat([skip, up(x)], 1))
        return self.head(x)


def he_init(net: nn.Module) -> nn.Module:
    """Ronneberger et al.'s init: Gaussian weights with std sqrt(2 / fan-in), zero biases."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net
