"""Every generator and discriminator of the papers, built through the registry: layout, range, shape, gradients.

CPU, tiny widths (ngf/ndf 4) and 32x32 or 64x64 inputs; the layouts are
checked against the papers' descriptions (docs/models.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.networks.nets.attentionunet import AttentionBlock
from torch import nn

from VirtualContrastTraining.config.registries import DISCRIMINATORS, GENERATORS, RECIPES, load
from VirtualContrastTraining.config.schema import CHOICES, TrainConfig
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.models import build_discriminator, build_generator, builders
from VirtualContrastTraining.models.attention import (
    AttentionModule, ChannelAttention, MultiScaleChannelAttention, SpatialAttention,
)
from VirtualContrastTraining.models.autoencoder import ResidualBlock
from VirtualContrastTraining.models.networks import receptive_field
from VirtualContrastTraining.models.unet import UnetBlock

# name -> (unet_depth, input side): the smallest input the depth allows, 64 for the deeper U-Nets
SMALL = {"resnet": (8, 32), "unet": (6, 64), "ronneberger-unet": (3, 32), "attention-unet": (6, 64),
         "iamnet": (4, 64), "autoencoder": (8, 32)}


def tiny(generator: str, **overrides) -> TrainConfig:
    depth, _ = SMALL[generator]
    return TrainConfig(**{"generator": generator, "ngf": 4, "ndf": 4, "n_blocks": 1, "unet_depth": depth, **overrides})


def convs(net: nn.Module, kind: type = nn.Conv2d) -> list[nn.Module]:
    return [m for m in net.modules() if type(m) is kind]


def count(net: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in net.modules())


def first_conv(net: nn.Module) -> nn.Module:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d))


def test_the_registries_name_every_builder_once_and_each_loads():
    """Adding a network is one registry entry plus its builder: no builder without an entry, none missing."""
    entries = [*GENERATORS.values(), *DISCRIMINATORS.values(), *RECIPES.values()]
    assert all(callable(load(entry)) for entry in entries)
    named = {e.builder.partition(":")[2] for e in [*GENERATORS.values(), *DISCRIMINATORS.values()]}
    defined = {name for name, value in vars(builders).items()
               if callable(value) and getattr(value, "__module__", "") == builders.__name__}
    assert named == defined


def test_every_registered_generator_builds():
    assert set(CHOICES["generator"]) == set(SMALL)
    for name in CHOICES["generator"]:
        assert isinstance(build_generator(tiny(name)), nn.Module)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("pipeline, low, high", [("resize", 0.0, 1.0), ("patches", -1.0, 1.0)])
def test_generator_shape_range_and_gradient(name, pipeline, low, high):
    torch.manual_seed(0)
    net = build_generator(tiny(name, pipeline=pipeline))
    side = SMALL[name][1]
    x = torch.rand(2, 1, side, side) * (high - low) + low
    y = net(x)
    assert y.shape == x.shape
    y.mean().backward()
    assert float(first_conv(net).weight.grad.abs().sum()) > 0  # the loss reaches the first layer
    assert isinstance(list(net.modules())[-1], nn.Sigmoid if pipeline == "resize" else nn.Tanh)
    # blow up the last convolution: the activation must still bound the output, and reach near both ends
    last = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1]
    with torch.no_grad():
        last.weight.mul_(1e4)
        y = net.eval()(x)
    assert float(y.min()) >= low and float(y.max()) <= high
    assert float(y.max() - y.min()) > 0.5 * (high - low)


@pytest.mark.parametrize("name", ["unet", "ronneberger-unet", "attention-unet", "iamnet", "autoencoder"])
def test_input_not_divisible_is_a_clear_error(name):
    net = build_generator(tiny(name))
    with pytest.raises(InputError, match="divisible by"):
        net(torch.rand(1, 1, 36, 36))


def test_unet_is_the_pix2pix_layout():
    depth = 6
    net = build_generator(tiny("unet", unet_depth=depth, dropout=0.5, norm="batch"))
    downs, ups = convs(net), convs(net, nn.ConvTranspose2d)
    assert len(downs) == depth and len(ups) == depth
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in downs + ups)
    assert [c.out_channels for c in downs] == [4, 8, 16, 32, 32, 32]  # ngf doubling, capped at 8 ngf
    # skip connections: every up-convolution but the innermost reads encoder + decoder features (innermost first)
    assert [u.in_channels for u in ups] == [32, 64, 64, 32, 16, 8]
    assert sum(isinstance(m, UnetBlock) and m.skip for m in net.modules()) == depth - 1
    leaky = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == depth - 1 and all(m.negative_slope == 0.2 for m in leaky)
    assert count(net, nn.ReLU) == depth
    assert count(net, nn.BatchNorm2d) == (depth - 2) + (depth - 1) and count(net, nn.InstanceNorm2d) == 0
    # dropout only in the repeated 8 ngf levels between the fourth and the innermost (pytorch-CycleGAN-and-pix2pix)
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == depth - 5 and all(m.p == 0.5 for m in drops)
    assert count(build_generator(tiny("unet", unet_depth=8, dropout=0.5)), nn.Dropout) == 3  # unet_256
    assert count(build_generator(tiny("unet", unet_depth=depth)), nn.Dropout) == 0


def test_unet_norm_follows_config():
    net = build_generator(tiny("unet", norm="instance"))
    assert count(net, nn.BatchNorm2d) == 0 and count(net, nn.InstanceNorm2d) > 0
    assert all(c.bias is not None for c in convs(net))  # the reference code drops biases only before batch norm
    assert all(c.bias is None for c in convs(build_generator(tiny("unet", norm="batch"))))


def test_pix2pix_family_uses_normal_002_init():
    torch.manual_seed(0)
    for name in ("unet", "attention-unet", "iamnet"):
        net = build_generator(tiny(name, ngf=16))
        w = torch.cat([c.weight.detach().flatten() for c in convs(net) + convs(net, nn.ConvTranspose2d)])
        assert abs(float(w.std()) - 0.02) < 0.003 and abs(float(w.mean())) < 0.003, name


def test_ronneberger_unet_layout():
    depth = 3
    net = build_generator(tiny("ronneberger-unet", unet_depth=depth, dropout=0.2, norm="batch"))
    three = [c for c in convs(net) if c.kernel_size == (3, 3)]
    assert len(three) == 2 * (depth + 1) + 2 * depth  # two 3x3 convolutions per level, down and up
    assert count(net, nn.MaxPool2d) == 1 and len(convs(net, nn.ConvTranspose2d)) == depth
    assert all(u.kernel_size == (2, 2) and u.stride == (2, 2) for u in convs(net, nn.ConvTranspose2d))
    # widths double with no cap; each decoder level reads skip + up-convolved features
    assert max(c.out_channels for c in three) == 4 * 2**depth
    assert [d[0].in_channels for d in net.decoder] == [32, 16, 8]
    head = convs(net)[-1]
    assert head.kernel_size == (1, 1) and head.out_channels == 1
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 1 and drops[0].p == 0.2


def test_ronneberger_unet_uses_he_init():
    torch.manual_seed(0)
    net = build_generator(tiny("ronneberger-unet", ngf=16))
    w = net.encoder[2][0].weight.detach()  # 32 -> 64 channels, fan-in 32 * 9
    assert abs(float(w.std()) - (2 / (32 * 9)) ** 0.5) < 0.005


def test_attention_unet_gates_every_skip_connection():
    depth = 6
    net = build_generator(tiny("attention-unet", unet_depth=depth))
    gates = [m for m in net.modules() if isinstance(m, AttentionBlock)]
    assert len(gates) == depth - 1
    assert [g.W_x[0].conv.in_channels for g in gates] == [32, 32, 16, 8, 4]  # innermost first
    assert len([c for c in convs(net) if c.stride == (2, 2)]) == depth
    assert [u.in_channels for u in convs(net, nn.ConvTranspose2d)] == [32, 64, 64, 32, 16, 8]


def test_iamnet_has_no_skip_connections_and_one_attention_module_at_the_bottleneck():
    depth = 4
    net = build_generator(tiny("iamnet", unet_depth=depth))
    downs = [c for c in convs(net) if c.stride == (2, 2)]
    ups = convs(net, nn.ConvTranspose2d)
    assert len(downs) == depth and len(ups) == depth
    assert [u.in_channels for u in ups] == [32, 16, 8, 4]  # each up-convolution reads only the level below
    assert not any(isinstance(m, UnetBlock) and m.skip for m in net.modules())
    modules = [m for m in net.modules() if isinstance(m, AttentionModule)]
    assert len(modules) == 1
    assert [type(m) for m in modules[0]] == [ChannelAttention, SpatialAttention, MultiScaleChannelAttention]
    seen = []
    modules[0].register_forward_hook(lambda m, i, o: seen.append((i[0].shape, o.shape)))
    net(torch.rand(1, 1, 64, 64))
    assert seen == [((1, 32, 4, 4), (1, 32, 4, 4))]  # 64 / 2**4, widths unchanged


def test_attention_blocks_are_coefficients_in_0_1():
    """003 eqs. 4-6: each block multiplies its input by a sigmoid map: channel-wise, pixel-wise, multi-scale."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 8, 8) + 3.0  # away from 0, so ratios are well defined
    ratios = {}
    for block in (ChannelAttention(8), SpatialAttention(), MultiScaleChannelAttention(8)):
        with torch.no_grad():
            r = block(x) / x
        assert float(r.min()) > 0 and float(r.max()) < 1
        ratios[type(block)] = r
    channel, spatial, multi = ratios.values()
    assert torch.allclose(channel, channel[..., :1, :1].expand_as(channel), atol=1e-6)  # one weight per channel
    assert torch.allclose(spatial, spatial[:, :1].expand_as(spatial), atol=1e-6)  # one weight per pixel
    assert float(multi.std(dim=(2, 3)).min()) > 0  # up-sampled maps vary across the image


def test_multiscale_channel_attention_is_eq6():
    torch.manual_seed(0)
    block = MultiScaleChannelAttention(4)
    x = torch.randn(1, 4, 8, 8)
    maps = []
    for size in (4, 2, 1):
        p = nn.functional.adaptive_avg_pool2d(x, size)
        att = torch.sigmoid(block.channel_attention.mlp(p.mean((2, 3), keepdim=True))
                            + block.channel_attention.mlp(p.amax((2, 3), keepdim=True)))
        maps.append(nn.functional.interpolate(torch.sigmoid(p * att), size=(8, 8), mode="bilinear"))
    with torch.no_grad():
        assert torch.allclose(block(x), x * sum(maps) / 3, atol=1e-6)


def test_autoencoder_layout():
    net = build_generator(tiny("autoencoder", norm="batch"))
    blocks = [m for m in net.modules() if isinstance(m, ResidualBlock)]
    assert len(net.encoder) == 4 and len(net.decoder) == 3 and len(blocks) == 7  # + the 1x1 block: 4 decoder blocks
    for block in blocks:
        assert len(convs(block)) == 3 and all(c.kernel_size == (3, 3) for c in convs(block))
        assert count(block, nn.BatchNorm2d) == 4 and count(block, nn.ReLU) == 1
    assert [b.main[0].out_channels for b in net.encoder] == [4, 8, 16, 32]
    assert [b.main[0].in_channels for b in net.decoder] == [16 + 32, 8 + 16, 4 + 8]  # bypass concatenations
    head = convs(net)[-1]
    assert head.kernel_size == (1, 1) and head.in_channels == 4 and head.out_channels == 1
    calls = []
    for layer in (net.pool, net.upsample):
        layer.register_forward_hook(lambda m, i, o: calls.append((type(m), i[0].shape[-1], o.shape[-1])))
    net(torch.rand(1, 1, 32, 32))
    assert calls == [(nn.MaxPool2d, 32, 16), (nn.MaxPool2d, 16, 8), (nn.MaxPool2d, 8, 4),
                     (nn.Upsample, 4, 8), (nn.Upsample, 8, 16), (nn.Upsample, 16, 32)]


@pytest.mark.parametrize("input_nc", [1, 2])
def test_zormpas_discriminator(input_nc):
    net = build_discriminator(TrainConfig(discriminator="zormpas", ndf=4), input_nc=input_nc)
    cs = convs(net)
    assert [c.stride for c in cs] == [(2, 2)] * 3 + [(1, 1)]  # three down-convolutional blocks, one convolution
    assert cs[0].in_channels == input_nc and [c.out_channels for c in cs] == [4, 8, 16, 1]
    assert count(net, nn.InstanceNorm2d) == 3 and count(net, nn.LeakyReLU) == 3
    assert isinstance(list(net.modules())[-1], nn.Sigmoid)
    assert receptive_field(net) == 46
    with torch.no_grad():
        out = net(torch.randn(2, input_nc, 32, 32) * 10)
    assert out.shape == (2, 1, 3, 3) and float(out.min()) >= 0 and float(out.max()) <= 1
    logits = build_discriminator(TrainConfig(discriminator="zormpas", ndf=4, d_sigmoid=False), input_nc)
    assert not any(isinstance(m, nn.Sigmoid) for m in logits.modules())


@pytest.mark.parametrize("name", ["patchgan", "zormpas"])
def test_discriminators_judge_pix2pix_pairs_and_pass_gradients(name):
    net = build_discriminator(TrainConfig(discriminator=name, ndf=4, d_sigmoid=False, norm="batch"), input_nc=2)
    assert first_conv(net).in_channels == 2
    assert count(net, nn.BatchNorm2d) > 0 and count(net, nn.InstanceNorm2d) == 0
    net(torch.rand(2, 2, 64, 64)).mean().backward()
    assert float(first_conv(net).weight.grad.abs().sum()) > 0


def test_every_generator_survives_a_checkpoint_round_trip(tmp_path):
    """Weights and batch-norm statistics go through safetensors and come back into a rebuilt network."""
    from VirtualContrastTraining import checkpoints

    for name in sorted(SMALL):
        torch.manual_seed(0)
        config = tiny(name, norm="batch")
        net = build_generator(config)
        side = SMALL[name][1]
        net(torch.rand(2, 1, side, side))  # a training-mode pass moves the running statistics
        checkpoints.save_model(tmp_path / name, net, {"config": config.to_dict(), "des_output_window": [0.0, 1.0]})
        loaded, _ = checkpoints.load_generator(tmp_path / name)
        x = torch.rand(1, 1, side, side)
        with torch.no_grad():
            assert torch.equal(loaded(x), net.eval()(x)), name


def test_the_parameter_table_of_docs_models_md_is_what_the_code_builds():
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("model_table", root / "benchmarks" / "model_table.py")
    model_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model_table)
    assert model_table.table() in (root / "docs" / "models.md").read_text(encoding="utf-8")
