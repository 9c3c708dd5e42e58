"""The networks of the five papers at the papers' own sizes: parameter counts, as a markdown table.

Every network is built through the registry (models.build_generator /
build_discriminator), so the counts are those of the code that trains. The
table in docs/models.md is this script's output:

    .venv/bin/python benchmarks/model_table.py
"""

from __future__ import annotations

import torch
from torch import nn

from VirtualContrastTraining.models import build_discriminator, build_generator
from VirtualContrastTraining.config.schema import TrainConfig

# (model, paper files, configuration shown, TrainConfig fields, discriminator input channels or None, what it is)
ROWS = [
    ("ResNet generator", "000, 001, 002", "ngf 64, 9 residual blocks, instance norm",
     dict(generator="resnet", ngf=64, n_blocks=9, norm="instance"), None,
     "CycleGAN generator: 7x7 conv, 2 stride-2 downs, residual blocks, 2 transposed-conv ups, 7x7 conv"),
    ("PatchGAN 70x70", "001, 002, 003", "ndf 64, 1 channel (CycleGAN), instance norm",
     dict(discriminator="patchgan", ndf=64, norm="instance"), 1,
     "3 stride-2 + 2 stride-1 4x4 convs; one score per 70x70 patch"),
    ("PatchGAN 70x70 on pairs", "001, 003", "ndf 64, 2 channels (pix2pix), batch norm",
     dict(discriminator="patchgan", ndf=64, norm="batch"), 2,
     "the same PatchGAN judging (LE, DES) pairs stacked as channels"),
    ("Three-block discriminator", "000", "ndf 64, 1 channel, instance norm",
     dict(discriminator="zormpas", ndf=64, norm="instance"), 1,
     "3 stride-2 conv-norm-LeakyReLU blocks + one conv (+ sigmoid); 46x46 patches"),
    ("pix2pix U-Net (256)", "001", "ngf 64, 8 down-samplings, batch norm, dropout 0.5",
     dict(generator="unet", ngf=64, unet_depth=8, norm="batch", dropout=0.5), None,
     "4x4 stride-2 encoder-decoder with a concatenating skip at every level (pix2pix `unet_256`)"),
    ("U-Net 512", "003", "ngf 64, 9 down-samplings, batch norm, dropout 0.5",
     dict(generator="unet", ngf=64, unet_depth=9, norm="batch", dropout=0.5), None,
     "the pix2pix U-Net one level deeper, for 512x512 inputs"),
    ("Attention U-Net", "003", "ngf 64, 9 down-samplings, batch norm, dropout 0.5",
     dict(generator="attention-unet", ngf=64, unet_depth=9, norm="batch", dropout=0.5), None,
     "U-Net 512 with an additive attention gate on each of its 8 skip connections"),
    ("IAMNet", "003", "ngf 64, 5 down-samplings, batch norm",
     dict(generator="iamnet", ngf=64, unet_depth=5, norm="batch", dropout=0.5), None,
     "encoder-decoder without skips; channel, spatial and multi-scale channel attention at the bottleneck"),
    ("U-Net (Ronneberger)", "004", "ngf 32, 5 poolings (004: depth 6 levels), dropout 0.2, instance norm",
     dict(generator="ronneberger-unet", ngf=32, unet_depth=5, norm="instance", dropout=0.2), None,
     "double 3x3 convs per level, max pooling, 2x2 up-convs, concatenating skips, 1x1 head (U-Net/PT)"),
    ("Autoencoder", "001", "ngf 64 (001 gives no widths), batch norm",
     dict(generator="autoencoder", ngf=64, norm="batch"), None,
     "4 residual encoder blocks, 3 residual decoder blocks with bypass concatenations, 1x1 conv + sigmoid"),
]


def parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def table() -> str:
    lines = ["| model | registry name | paper | configuration | parameters | what it is |",
             "| --- | --- | --- | --- | ---: | --- |"]
    for model, papers, shown, fields, input_nc, what in ROWS:
        config = TrainConfig(**fields)
        with torch.device("meta"):  # shapes only: counting needs no memory nor initialisation time
            if input_nc is None:
                net, name = build_generator(config), f"generator `{config.generator}`"
            else:
                net, name = build_discriminator(config, input_nc), f"discriminator `{config.discriminator}`"
        lines.append(f"| {model} | {name} | {papers} | {shown} | {parameters(net):,} | {what} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
