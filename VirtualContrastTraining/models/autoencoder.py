"""The Autoencoder of Rofena et al. 2024 (001 section 3.2.1).

001: "four convolutional encoder blocks and four convolutional decoder blocks,
with bypass connection and residual connection. Each block is equipped with
three convolutional layers with 3x3 kernels, each followed by batch
normalization, a ReLU activation function and a batch normalization. Only the
last decoder block is an exception, as it consists of a convolutional layer
with a 1x1 kernel, followed by a sigmoid activation function. In the first half
of the network, each block is followed by a max pooling layer, while an
upsampling layer is used in the later half."

Read here as: a block is two 3x3 convolutions (each + norm) in sequence plus a
third 3x3 convolution (+ norm) on a parallel path, the residual connection
that also matches the widths; the sum goes through ReLU and a second norm.
The bypass connections concatenate each encoder block's output with the
decoder's up-sampled features at the same resolution (three of them). The
fourth encoder block is the bottleneck: pooling after it would be undone by
the first up-sampling before any convolution saw the pooled map, so there are
three poolings and three up-samplings. 001 gives no widths: ngf, 2 ngf, 4 ngf,
8 ngf, and no dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from VirtualContrastTraining.models.networks import ACTIVATIONS, check_divisible, norm_layer


class ResidualBlock(nn.Module):
    """norm(ReLU(norm(conv(norm(conv(x)))) + norm(conv(x)))): three 3x3 convolutions, a residual path."""

    def __init__(self, c_in: int, c_out: int, norm: str):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), norm_layer(norm, c_out),
                                  nn.Conv2d(c_out, c_out, 3, padding=1), norm_layer(norm, c_out))
        self.residual = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), norm_layer(norm, c_out))
        self.out = nn.Sequential(nn.ReLU(True), norm_layer(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.main(x) + self.residual(x))


class Autoencoder(nn.Module):
    """Four residual encoder blocks, three residual decoder blocks with bypass concatenations, a 1x1 convolution."""

    def __init__(self, input_nc: int = 1, output_nc: int = 1, ngf: int = 64, *, norm: str = "batch",
                 final: str = "sigmoid"):
        super().__init__()
        widths = [ngf, 2 * ngf, 4 * ngf, 8 * ngf]
        self.encoder = nn.ModuleList(ResidualBlock(c_in, c_out, norm) for c_in, c_out in zip([input_nc] + widths, widths))
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.Upsample(scale_factor=2)
        # decoder block k sees the bypass from encoder block 3 - k concatenated with the up-sampled map below it
        self.decoder = nn.ModuleList(ResidualBlock(widths[i] + widths[i + 1], widths[i], norm) for i in (2, 1, 0))
        self.head = nn.Sequential(nn.Conv2d(ngf, output_nc, 1), ACTIVATIONS[final]())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, 8, "Autoencoder (three max-poolings)")
        bypass = []
        for block in self.encoder[:-1]:
            x = block(x)
            bypass.append(x)
            x = self.pool(x)
        x = self.encoder[-1](x)
        for block, skip in zip(self.decoder, reversed(bypass)):
            x = block(torch.cat([skip, self.upsample(x)], 1))
        return self.head(x)
