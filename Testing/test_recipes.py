"""Loss terms (recipes/losses.py), the Pix2Pix and Supervised recipes, the CycleGAN's gan_loss / cycle_ssim / data
range options and the learning-rate schedule every recipe shares (recipes/base.py). Tiny networks on CPU."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as nnf
from skimage.metrics import structural_similarity

from VirtualContrastTraining.config.schema import TrainConfig
from VirtualContrastTraining.recipes import build_recipe
from VirtualContrastTraining.recipes.base import linear_decay_factor
from VirtualContrastTraining.recipes.losses import (annealed_tau, cycle_distance, exp_dampening_l1, gan_loss,
                                                    ssim_loss, value_range)

TINY = dict(ngf=4, ndf=4, n_blocks=1, image_size=32, batch_size=2, lr=1e-3, amp=False)


def _config(recipe: str, **overrides) -> TrainConfig:
    return TrainConfig(recipe=recipe, **{**TINY, **overrides})


def _recipe(recipe: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_recipe(_config(recipe, **overrides))


def _batch(seed: int = 0, lo: float = 0.0, hi: float = 1.0, n: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    le, des = (lo + (hi - lo) * torch.rand(n, 1, size, size, generator=g) for _ in range(2))
    return {"le": le, "des": des}


def _weights(recipe) -> dict[str, list[torch.Tensor]]:
    return {name: [p.detach().clone() for p in net.parameters()] for name, net in recipe.networks.items()}


# --- losses ----------------------------------------------------------------------------------

def test_exp_dampening_l1_is_003_eq7_and_plain_l1_at_tau_0():
    pred = torch.tensor([[[[0.2, 0.9], [0.5, 0.0]]]])
    target = torch.tensor([[[[0.0, 1.0], [0.25, 0.75]]]])
    tau = 2.0
    # by hand: w = exp(-tau (1 - y)) = exp(-2), 1, exp(-1.5), exp(-0.5); |y - G| = 0.2, 0.1, 0.25, 0.75; mean of 4
    expected = (math.exp(-2) * 0.2 + 1.0 * 0.1 + math.exp(-1.5) * 0.25 + math.exp(-0.5) * 0.75) / 4
    assert float(exp_dampening_l1(pred, target, tau)) == pytest.approx(expected, rel=1e-6)
    # w is not normalised (003 eq. 7 has no normaliser): with tau > 0 the loss is below the plain L1
    assert expected < float((pred - target).abs().mean())
    assert float(exp_dampening_l1(pred, target, 0.0)) == pytest.approx(float((pred - target).abs().mean()), rel=1e-7)
    # the same images in [-1, 1]: w from the target mapped back to [0, 1], |y - G| in [-1, 1] units (twice as large)
    in_pm1 = exp_dampening_l1(2 * pred - 1, 2 * target - 1, tau, (-1.0, 1.0))
    assert float(in_pm1) == pytest.approx(2 * expected, rel=1e-6)


def test_tau_anneals_linearly_to_0_with_progress():
    assert [annealed_tau(2.0, p) for p in (0.0, 0.25, 0.5, 1.0)] == [2.0, 1.5, 1.0, 0.0]
    recipe = _recipe("supervised", tau=3.0)
    batch = _batch()
    reported = []
    for progress in (0.0, 0.5, 1.0):
        recipe.set_progress(progress)
        reported.append(recipe.train_step(batch)["tau"])
    assert reported == [3.0, 1.5, 0.0]


def test_gan_loss_lsgan_is_mse_and_bce_takes_logits():
    pred = torch.tensor([0.3, -1.2, 2.0])
    assert float(gan_loss(pred, True, "lsgan")) == pytest.approx(float(((pred - 1) ** 2).mean()))
    assert float(gan_loss(pred, False, "lsgan")) == pytest.approx(float((pred ** 2).mean()))
    assert float(gan_loss(pred, True, "bce")) == pytest.approx(float(-torch.log(torch.sigmoid(pred)).mean()), rel=1e-6)
    expected_fake = float(-torch.log(1 - torch.sigmoid(pred)).mean())
    assert float(gan_loss(pred, False, "bce")) == pytest.approx(expected_fake, rel=1e-6)
    with pytest.raises(ValueError, match="gan_loss"):
        gan_loss(pred, True, "wgan")


@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_ssim_loss_is_one_minus_the_standard_ssim(data_range):
    g = torch.Generator().manual_seed(3)
    a = torch.rand(1, 1, 32, 32, generator=g)
    b = (a + 0.3 * torch.rand(1, 1, 32, 32, generator=g)).clamp(0, 1)
    if data_range == 2.0:
        a, b = 2 * a - 1, 2 * b - 1
    reference = structural_similarity(a[0, 0].numpy(), b[0, 0].numpy(), data_range=data_range, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False)
    assert float(ssim_loss(a, b, data_range)) == pytest.approx(1 - reference, abs=1e-5)


def test_cycle_distance_mixes_mae_and_ssim_and_is_0_for_identical_images():
    batch = _batch(4)
    a, b = batch["le"], batch["des"]
    mae = float((a - b).abs().mean())
    assert float(cycle_distance(a, b, 0.0, 1.0)) == pytest.approx(mae, rel=1e-6)
    half = float(cycle_distance(a, b, 0.5, 1.0))
    assert half == pytest.approx(0.5 * mae + 0.5 * float(ssim_loss(a, b, 1.0)), rel=1e-6)
    assert half != pytest.approx(mae, rel=1e-3)
    assert float(cycle_distance(a, a.clone(), 0.5, 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_value_range_follows_the_pipeline():
    assert value_range(_config("pix2pix")) == (0.0, 1.0)
    assert value_range(_config("pix2pix", pipeline="patches", patch_size=32)) == (-1.0, 1.0)


# --- pix2pix ---------------------------------------------------------------------------------

def test_pix2pix_discriminator_judges_two_channel_pairs():
    recipe = _recipe("pix2pix")
    first_conv = next(m for m in recipe.D.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 2
    with pytest.raises(RuntimeError):
        recipe.D(torch.rand(1, 1, 32, 32))


@pytest.mark.parametrize("name", ["pix2pix", "supervised"])
def test_one_step_changes_every_network_and_returns_the_declared_losses(name):
    recipe = _recipe(name, tau=1.0)
    before = _weights(recipe)
    losses = recipe.train_step(_batch())
    assert tuple(losses) == recipe.loss_names
    assert set(recipe.headline) <= set(recipe.loss_names)
    assert all(math.isfinite(v) for v in losses.values())
    for net_name, net in recipe.networks.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[net_name], net.parameters())), f"{net_name} unchanged"


@pytest.mark.parametrize("mode", ["bce", "lsgan"])
def test_pix2pix_updates_d_first_then_g_against_the_updated_d(mode):
    """Losses recomputed by hand: D's on the weights before the step, G's adversarial term with the new D."""
    recipe = _recipe("pix2pix", gan_loss=mode, d_sigmoid=False, tau=2.0)
    recipe.set_progress(0.5)
    batch = _batch(1)
    x, y = batch["le"], batch["des"]
    G_old, D_old = copy.deepcopy(recipe.G), copy.deepcopy(recipe.D)
    losses = recipe.train_step(batch)
    with torch.no_grad():
        fake = G_old(x)
        loss_D = 0.5 * (gan_loss(D_old(torch.cat([x, y], 1)), True, mode)
                        + gan_loss(D_old(torch.cat([x, fake], 1)), False, mode))
        adv = gan_loss(recipe.D(torch.cat([x, fake], 1)), True, mode)  # recipe.D: already updated
        adv_old_d = gan_loss(D_old(torch.cat([x, fake], 1)), True, mode)
        l1 = exp_dampening_l1(fake, y, 1.0)  # tau 2 halfway through: 1
    assert losses["D"] == pytest.approx(float(loss_D), rel=1e-5)
    assert losses["adv"] == pytest.approx(float(adv), rel=1e-5)
    assert losses["adv"] != pytest.approx(float(adv_old_d), rel=1e-4)  # so the order is visible in the numbers
    assert losses["l1"] == pytest.approx(float(l1), rel=1e-5)
    assert losses["tau"] == 1.0
    assert losses["G"] == pytest.approx(losses["adv"] + 100 * losses["l1"], rel=1e-5)


def test_pix2pix_bce_and_lsgan_give_different_adversarial_losses():
    batch = _batch(2)
    bce = _recipe("pix2pix", gan_loss="bce", d_sigmoid=False).train_step(batch)
    lsgan = _recipe("pix2pix", gan_loss="lsgan", d_sigmoid=False).train_step(batch)  # same seed: same weights
    assert bce["l1"] == pytest.approx(lsgan["l1"], rel=1e-6)  # the same G(x) before the step
    assert bce["D"] != pytest.approx(lsgan["D"], rel=1e-3)


def test_supervised_loss_is_the_dampened_l1_of_g():
    recipe = _recipe("supervised", tau=2.0)
    batch = _batch(3)
    with torch.no_grad():
        expected = exp_dampening_l1(recipe.G(batch["le"]), batch["des"], 2.0)
    losses = recipe.train_step(batch)
    assert losses["G"] == losses["l1"] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("name, overrides", [("pix2pix", {"tau": 1.0}), ("supervised", {}),
                                             ("cyclegan", {"cycle_ssim": 0.5})])
def test_state_dict_round_trip_resumes_the_same_next_step(name, overrides):
    a = _recipe(name, **overrides)
    a.set_progress(0.1)
    a.train_step(_batch(0))
    b = _recipe(name, seed=7, **overrides)  # other initial weights, then a's state
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    results = []
    for recipe in (a, b):
        recipe.set_progress(0.2)
        torch.manual_seed(5)
        results.append((recipe.train_step(_batch(1)), [p.detach().clone() for p in recipe.generator.parameters()]))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(p, q) for p, q in zip(results[0][1], results[1][1]))


# --- cyclegan options ------------------------------------------------------------------------

def test_cyclegan_default_adversarial_loss_is_still_mse_on_a_sigmoid_discriminator():
    recipe = _recipe("cyclegan")
    x, y = _batch(5)["le"], _batch(5)["des"]
    with torch.no_grad():
        terms, fake_y, _ = recipe.generator_terms(x, y, torch.zeros_like(x))
        pred = recipe.D_Y(fake_y)
    assert 0 <= float(pred.min()) and float(pred.max()) <= 1
    assert float(terms["adv_G"]) == pytest.approx(float(nnf.mse_loss(pred, torch.ones_like(pred))), rel=1e-6)


def test_cyclegan_bce_trains_on_logits():
    recipe = _recipe("cyclegan", gan_loss="bce", d_sigmoid=False)
    x, y = _batch(5)["le"], _batch(5)["des"]
    with torch.no_grad():
        terms, fake_y, _ = recipe.generator_terms(x, y, torch.zeros_like(x))
        pred = recipe.D_Y(fake_y)
    assert float(terms["adv_G"]) == pytest.approx(float(nnf.softplus(-pred).mean()), rel=1e-5)  # -log sigmoid
    assert all(math.isfinite(v) for v in recipe.train_step(_batch(5)).values())


def test_cyclegan_cycle_ssim_changes_only_the_cycle_term():
    batch = _batch(6)
    x, y = batch["le"], batch["des"]
    plain, mixed = _recipe("cyclegan"), _recipe("cyclegan", cycle_ssim=0.5)  # same seed: same weights
    with torch.no_grad():
        t0, fake_y, fake_x = plain.generator_terms(x, y, torch.zeros_like(x))
        t1, _, _ = mixed.generator_terms(x, y, torch.zeros_like(x))
        rec_x, rec_y = plain.F(fake_y), plain.G(fake_x)
    expected = cycle_distance(rec_x, x, 0.5, 1.0) + cycle_distance(rec_y, y, 0.5, 1.0)
    assert float(t1["cycle"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(t1["cycle"]) != pytest.approx(float(t0["cycle"]), rel=1e-3)
    assert all(float(t0[k]) == pytest.approx(float(t1[k]), rel=1e-6) for k in t0 if k != "cycle")


def test_cyclegan_patch_pipeline_uses_tanh_and_an_ssim_range_of_2():
    recipe = _recipe("cyclegan", pipeline="patches", patch_size=32, cycle_ssim=0.5)
    assert recipe.data_range == 2.0
    batch = _batch(7, lo=-1.0, hi=1.0)
    with torch.no_grad():
        out = recipe.G(batch["le"])
    assert float(out.min()) >= -1 and float(out.min()) < 0  # tanh, not sigmoid
    assert all(math.isfinite(v) for v in recipe.train_step(batch).values())


# --- learning-rate schedule (recipes/base.py) ------------------------------------------------

def test_linear_decay_is_flat_then_falls_linearly_towards_0():
    # 003: 100 fixed + 200 decay epochs
    factors = [linear_decay_factor(e, 300, 200) for e in range(1, 301)]
    assert factors[:100] == [1.0] * 100
    steps = [factors[i] - factors[i + 1] for i in range(100, 299)]
    assert all(s == pytest.approx(1 / 201) for s in steps)
    assert 0 < factors[-1] < 0.01
    assert [linear_decay_factor(e, 10, 0) for e in (1, 10)] == [1.0, 1.0]


def test_recipe_lr_follows_the_decay_and_the_plateau_halving():
    recipe = _recipe("supervised", epochs=4, epochs_decay=2, lr=1e-3)
    lrs = [recipe.lr]
    for epoch in range(1, 4):
        recipe.end_epoch(epoch, None)
        lrs.append(recipe.lr)
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3 * (1 - 1 / 3), 1e-3 * (1 - 2 / 3)])

    recipe = _recipe("supervised", plateau_patience=2, lr=1e-3)
    lrs = []
    for epoch, val in enumerate([1.0, 0.9, 0.95, 0.9, 0.91, 0.92, 0.5], start=1):
        recipe.end_epoch(epoch, val)
        lrs.append(recipe.lr)
    # bad epochs: 3rd and 4th (not below 0.9) -> halved; 5th and 6th -> halved again; 7th improves
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    assert all(g["lr"] == pytest.approx(2.5e-4) for opt in recipe.optimizers.values() for g in opt.param_groups)
