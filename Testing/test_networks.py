"""The ResNet generator and the 70x70 PatchGAN: layer structure, receptive field, shapes, ranges."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from VirtualContrastTraining.models.networks import ResnetBlock, define_D, define_G, receptive_field


def test_generator_structure_follows_resnet_9blocks():
    net = define_G(1, 1, ngf=64)
    assert sum(isinstance(m, ResnetBlock) for m in net.modules()) == 9
    convs = [m for m in net.model if isinstance(m, nn.Conv2d)]
    # 7x7 stem, two stride-2 downsamplings, ..., 7x7 head back to one channel
    assert convs[0].kernel_size == (7, 7) and convs[0].in_channels == 1 and convs[0].out_channels == 64
    assert [c.stride for c in convs[1:3]] == [(2, 2), (2, 2)] and convs[2].out_channels == 256
    assert convs[-1].kernel_size == (7, 7) and convs[-1].out_channels == 1
    ups = [m for m in net.model if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == 2 and all(u.stride == (2, 2) for u in ups)
    assert isinstance(net.model[0], nn.ReflectionPad2d)
    assert isinstance(net.model[-1], nn.Sigmoid)
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in net.modules()) == 2 + 2 + 2 * 9 + 1


@pytest.mark.parametrize("n_blocks", [0, 1, 4])
def test_generator_block_count_is_configurable(n_blocks):
    net = define_G(ngf=8, n_blocks=n_blocks)
    assert sum(isinstance(m, ResnetBlock) for m in net.modules()) == n_blocks


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 1, 48, 40), (1, 1, 64, 36)])
def test_generator_keeps_shape_and_range(shape):
    torch.manual_seed(0)
    net = define_G(ngf=8, n_blocks=2)
    with torch.no_grad():
        out = net(torch.rand(shape) * 4 - 2)  # inputs outside [0, 1] still map into it
    assert out.shape == shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_discriminator_is_the_70x70_patchgan():
    net = define_D(1, ndf=64, n_layers=3)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) for c in convs)
    assert receptive_field(net) == 70
    leaky = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 4 and all(m.negative_slope == 0.2 for m in leaky)
    with torch.no_grad():
        out = net(torch.rand(1, 1, 256, 256))
    assert out.shape == (1, 1, 30, 30)  # the 30x30 patch map of pix2pix for 256x256 inputs
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_receptive_field_counts_layers():
    assert receptive_field(define_D(ndf=4, n_layers=1)) == 16
    assert receptive_field(define_D(ndf=4, n_layers=2)) == 34


def test_normal_init_with_gain_002():
    torch.manual_seed(0)
    net = define_G(ngf=32, n_blocks=2)
    with torch.no_grad():
        weights = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, nn.Conv2d)])
        biases = torch.cat([m.bias for m in net.modules() if isinstance(m, nn.Conv2d)])
    assert abs(float(weights.std()) - 0.02) < 0.002
    assert abs(float(weights.mean())) < 0.002
    assert float(biases.abs().max()) == 0.0
