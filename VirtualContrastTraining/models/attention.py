"""003's attention generators: the Attention U-Net and IAMNet, both on the pix2pix U-Net skeleton (models/unet.py).

Attention U-Net (003 section 3.3, Oktay et al. [12]): the pix2pix U-Net with an
attention gate on each of its depth - 1 skip connections. The gate is MONAI's
`AttentionBlock`: alpha = sigmoid(BN(psi(ReLU(BN(W_g g) + BN(W_x x))))) with
1x1 convolutions and F_int = channels / 2, output alpha * x; the gating signal
g is the decoder's up-convolved features at the skip's resolution ("the gating
mechanism receives queries from the decoding blocks", 003 Fig. 2b).

IAMNet (003 section 5.1): the same encoder-decoder without skip connections and
one attention module at the bottleneck, made of channel attention (eq. 4),
spatial attention (eq. 5) and multi-scale channel attention (eq. 6), applied
in that order, each a coefficient map that keeps the feature map's shape
(003 section 6.4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets.attentionunet import AttentionBlock
from torch import nn

from VirtualContrastTraining.models.unet import UnetGenerator


def attention_gate(channels: int) -> nn.Module:
    """Oktay et al.'s additive attention gate for a skip connection of `channels` channels (MONAI)."""
    return AttentionBlock(spatial_dims=2, f_int=max(channels // 2, 1), f_g=channels, f_l=channels)


class ChannelAttention(nn.Module):
    """003 eq. 4 (CBAM): x * sigmoid(MLP(AvgPool(x)) + MLP(MaxPool(x))), one MLP shared by both descriptors.

    003 does not give the MLP's hidden width; it is CBAM's reduction ratio 16.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(True), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1)))


class SpatialAttention(nn.Module):
    """003 eq. 5 (CBAM): x * sigmoid(Conv([AvgPool_c(x), MaxPool_c(x)])), pooled across channels; CBAM's 7x7 kernel."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(pooled))


class MultiScaleChannelAttention(nn.Module):
    """003 eq. 6: x * (1/N) sum_i up(sigmoid(ChannelAttention(AvgPool_i(x)))), bilinear up-sampling.

    003 does not give N nor the pooling factors: N = 3 scales, the map averaged
    over 2x2, 4x4 and 8x8 windows (never below 1x1). The eq. 4 block is the
    same at every scale (eq. 6 writes one ChannelAttention).
    """

    def __init__(self, channels: int, scales: int = 3):
        super().__init__()
        self.channel_attention = ChannelAttention(channels)
        self.scales = scales

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        maps = []
        for i in range(1, self.scales + 1):
            pooled = F.adaptive_avg_pool2d(x, (max(h >> i, 1), max(w >> i, 1)))
            attended = torch.sigmoid(self.channel_attention(pooled))
            maps.append(F.interpolate(attended, size=(h, w), mode="bilinear", align_corners=False))
        return x * torch.stack(maps).mean(dim=0)


class AttentionModule(nn.Sequential):
    """IAMNet's inner attention module (003 Fig. 3b): channel, spatial, then multi-scale channel attention."""

    def __init__(self, channels: int):
        super().__init__(ChannelAttention(channels), SpatialAttention(), MultiScaleChannelAttention(channels))


def attention_unet(ngf: int, depth: int, *, norm: str, dropout: float, final: str) -> UnetGenerator:
    """003's Attention U-Net: the pix2pix U-Net with a gate on every skip connection."""
    return UnetGenerator(1, 1, ngf, depth, norm=norm, dropout=dropout, final=final, gate=attention_gate)


def iamnet(ngf: int, depth: int, *, norm: str, dropout: float, final: str) -> UnetGenerator:
    """003's IAMNet: the pix2pix encoder-decoder without skip connections, an attention module at its bottleneck."""
    return UnetGenerator(1, 1, ngf, depth, norm=norm, dropout=dropout, final=final, skips=False,
                         bottleneck=AttentionModule)
