"""The CycleGAN / Seg-CycleGAN recipe (002 eq. 7) and the presets taken from 001 and 002."""

from __future__ import annotations

import math

import pytest
import torch

from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.config.presets import PRESETS, resolve_config
from VirtualContrastTraining.config.schema import TrainConfig, parse_assignments
from VirtualContrastTraining.recipes.cyclegan import LOSS_NAMES, CycleGAN, ImagePool, masked_l1

TINY = dict(ngf=4, ndf=4, n_blocks=1, image_size=32, batch_size=2, lr=1e-3)


def _batch(seed: int = 0, n: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, 8:16, 10:20] = 1.0
    return {"le": torch.rand(n, 1, size, size, generator=g), "des": torch.rand(n, 1, size, size, generator=g), "mask": mask}


def _recipe(**overrides) -> CycleGAN:
    torch.manual_seed(0)
    return CycleGAN(resolve_config("rofena2024-cyclegan", {**TINY, **overrides}))


def test_train_step_changes_every_network_and_losses_are_finite():
    recipe = _recipe(gamma_lesion=35)
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in recipe.networks.items()}
    losses = recipe.train_step(_batch())
    assert set(losses) == set(LOSS_NAMES)
    assert all(math.isfinite(v) for v in losses.values())
    for name, net in recipe.networks.items():
        changed = any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters()))
        assert changed, f"{name} did not change"


def test_gamma_adds_exactly_the_masked_terms():
    batch = _batch()
    x, y, s = batch["le"], batch["des"], batch["mask"]
    plain, seg = _recipe(gamma_lesion=0), _recipe(gamma_lesion=35)  # same seed: same weights
    with torch.no_grad():
        terms0, _, _ = plain.generator_terms(x, y, s)
        terms35, _, _ = seg.generator_terms(x, y, s)
        loss0, loss35 = plain.generator_loss(terms0), seg.generator_loss(terms35)
    assert terms35["cycle_lesion"] > 0 and terms35["identity_lesion"] > 0
    expected = 35 * (10 * terms35["cycle_lesion"] + 5 * terms35["identity_lesion"])
    assert torch.allclose(loss35 - loss0, expected, rtol=1e-5, atol=1e-6)
    # and without a mask there is nothing to add
    with torch.no_grad():
        t, _, _ = seg.generator_terms(x, y, torch.zeros_like(s))
    assert float(t["cycle_lesion"]) == 0.0 and torch.allclose(seg.generator_loss(t), plain.generator_loss(t))


def test_masked_l1_is_mean_over_all_pixels():
    a, b = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1  # 4 of 16 pixels
    assert float(masked_l1(a, b, mask)) == pytest.approx(4 / 16)


def test_paired_term_is_weighted_by_lambda_paired():
    batch = _batch(1)
    base, paired = _recipe(), _recipe(lambda_paired=7)
    with torch.no_grad():
        t0, fake_y, _ = base.generator_terms(batch["le"], batch["des"], batch["mask"])
        t1, _, _ = paired.generator_terms(batch["le"], batch["des"], batch["mask"])
        diff = paired.generator_loss(t1) - base.generator_loss(t0)
    assert float(t1["paired"]) == pytest.approx(float((fake_y - batch["des"]).abs().mean()), rel=1e-6)
    assert float(t0["paired"]) == 0.0  # weight 0: not computed, reported as 0
    assert torch.allclose(diff, 7 * t1["paired"], rtol=1e-5, atol=1e-6)


def test_validation_l1_is_l1_of_g_without_grad_and_restores_train_mode():
    recipe = _recipe()
    batch = _batch(2)
    with torch.no_grad():
        expected = float((recipe.G(batch["le"]) - batch["des"]).abs().mean())
    assert recipe.validation_l1(batch) == pytest.approx(expected, rel=1e-6)
    assert recipe.G.training
    assert all(p.grad is None for p in recipe.G.parameters())


def test_state_dict_round_trip_continues_identically():
    a = _recipe(pool_size=3)
    a.train_step(_batch(0))
    b = _recipe(pool_size=3)
    torch.manual_seed(5)
    b.load_state_dict(a.state_dict())
    torch.manual_seed(5)
    la = a.train_step(_batch(1))
    torch.manual_seed(5)
    lb = b.train_step(_batch(1))
    assert la == lb


def test_image_pool_keeps_at_most_size_and_returns_same_shape():
    torch.manual_seed(0)
    pool = ImagePool(3)
    for i in range(5):
        out = pool.query(torch.full((2, 1, 4, 4), float(i)))
        assert out.shape == (2, 1, 4, 4)
    assert len(pool.images) == 3
    assert ImagePool(0).query(t := torch.rand(2, 1, 4, 4)) is t


def test_amp_is_off_on_cpu():
    assert not _recipe(amp=True).amp


# --- presets ---------------------------------------------------------------------------------

def test_paper_presets_match_001_and_002():
    base = PRESETS["rofena2024-cyclegan"]
    assert (base.gamma_lesion, base.ngf, base.n_blocks, base.image_size, base.batch_size) == (0, 64, 9, 256, 8)
    assert (base.lr, base.weight_decay, base.beta1, base.beta2) == (1e-5, 1e-5, 0.5, 0.999)
    assert (base.lambda_cycle, base.lambda_identity, base.lambda_paired, base.pool_size) == (10, 5, 0, 0)
    assert (base.epochs, base.patience, base.warmup) == (200, 50, 50)
    assert base.source.startswith("001_")
    for name, gamma in (("rofena2025-segcyclegan-g35", 35), ("rofena2025-segcyclegan-g100", 100)):
        p = PRESETS[name]
        assert p.gamma_lesion == gamma and p.source.startswith("002_")
        # 002 states no warm-up: its presets keep 0 where 001's public code has 50
        assert p.warmup == 0
        assert TrainConfig.from_dict({**p.to_dict(), "gamma_lesion": 0, "warmup": base.warmup,
                                      "description": base.description, "source": base.source}) == base


def test_demo_preset_is_small_seg_cyclegan_and_says_it_uses_the_paired_term():
    demo = PRESETS["demo"]
    assert demo.gamma_lesion == 35 and demo.lambda_paired > 0
    assert demo.image_size == 128 and demo.ngf <= 32 and demo.n_blocks <= 4
    assert "paired" in demo.description.lower()


def test_resolve_config_overrides_and_errors():
    c = resolve_config("demo", {"lr": "1e-3", "epochs": "3", "amp": "false", "gamma_lesion": 100})
    assert (c.lr, c.epochs, c.amp, c.gamma_lesion, c.preset) == (1e-3, 3, False, 100.0, "demo")
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(InputError, match="valid presets: rofena2024-cyclegan"):
        resolve_config("nope", {})
    with pytest.raises(InputError, match="unknown config field.*valid fields:.*gamma_lesion"):
        resolve_config("demo", {"gama": 3})
    with pytest.raises(InputError, match="epochs"):
        resolve_config("demo", {"epochs": "many"})
    with pytest.raises(InputError, match="image_size"):
        resolve_config("demo", {"image_size": 30})
    assert parse_assignments(["lr=1e-4", " pool_size = 5"]) == {"lr": "1e-4", "pool_size": "5"}
    with pytest.raises(InputError, match="field=value"):
        parse_assignments(["lr"])
