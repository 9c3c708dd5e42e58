"""The recipes' speed switches of issue 17 change speed, not results: zero-weight terms skipped, foreach Adam,
one read of the losses per step, channels_last, torch.compile, and gradients averaged across 2 real gloo ranks.
Tiny networks on CPU."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as nnf

import VirtualContrastTraining.recipes.cyclegan as cyclegan_module
import VirtualContrastTraining.recipes.pix2pix as pix2pix_module
from VirtualContrastTraining.checkpoints import (load_generator, load_training_state, save_model,
                                                 save_training_state)
from VirtualContrastTraining.config.schema import TrainConfig
from VirtualContrastTraining.execution import Execution
from VirtualContrastTraining.recipes import build_recipe

TINY = dict(ngf=4, ndf=4, n_blocks=1, image_size=32, batch_size=2, lr=1e-3, weight_decay=1e-5, amp=False)


def _recipe(name: str, execution: Execution | None = None, **overrides):
    torch.manual_seed(0)
    return build_recipe(TrainConfig(recipe=name, **{**TINY, **overrides}), "cpu", execution)


def _batch(seed: int = 0, n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, 1, 32, 32)
    mask[:, :, 8:16, 10:20] = 1.0
    return {"le": torch.rand(n, 1, 32, 32, generator=g), "des": torch.rand(n, 1, 32, 32, generator=g), "mask": mask}


def _count_calls(monkeypatch, owner, name: str) -> list[int]:
    calls = [0]
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


# --- zero-weight terms -----------------------------------------------------------------------

@pytest.mark.parametrize("weights, g_passes", [({}, 3), ({"lambda_identity": 0}, 2),
                                               ({"lambda_identity": 0, "lambda_cycle": 0}, 1)])
def test_cyclegan_skips_the_generator_passes_of_terms_that_weigh_0(weights, g_passes):
    recipe = _recipe("cyclegan", **weights)
    calls = []
    recipe.G.register_forward_hook(lambda *_: calls.append(1))
    losses = recipe.train_step(_batch())
    assert len(calls) == g_passes  # G(x), G(F(y)) for the cycle, G(y) for the identity
    for name, weight in weights.items():
        term = name.removeprefix("lambda_")
        assert losses[term] == losses[term + "_lesion"] == 0.0


def test_cyclegan_lesion_and_paired_terms_are_computed_only_when_they_weigh(monkeypatch):
    masked = _count_calls(monkeypatch, cyclegan_module, "masked_l1")
    l1 = _count_calls(monkeypatch, nnf, "l1_loss")
    counts = {}
    for gamma, paired in ((0, 0), (35, 7)):
        masked[0] = l1[0] = 0
        losses = _recipe("cyclegan", gamma_lesion=gamma, lambda_paired=paired).train_step(_batch())
        counts[gamma] = (masked[0], l1[0])
        if gamma == 0:
            assert losses["cycle_lesion"] == losses["identity_lesion"] == losses["paired"] == 0.0
        else:
            assert losses["cycle_lesion"] > 0 and losses["identity_lesion"] > 0 and losses["paired"] > 0
    assert counts[0][0] == 0 and counts[35][0] == 4  # two lesion terms, each over both domains
    assert counts[35][1] - counts[0][1] == 1  # the paired L1


def test_pix2pix_skips_the_l1_term_at_lambda_0(monkeypatch):
    calls = _count_calls(monkeypatch, pix2pix_module, "exp_dampening_l1")
    losses = _recipe("pix2pix", lambda_l1=0).train_step(_batch())
    assert calls[0] == 0 and losses["l1"] == 0.0 and losses["G"] == pytest.approx(losses["adv"], rel=1e-6)
    _recipe("pix2pix").train_step(_batch())
    assert calls[0] == 1


# --- Adam, one read per step -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["cyclegan", "pix2pix"])
def test_foreach_adam_gives_the_bits_of_the_default_for_loop_adam(name):
    fast, loop = _recipe(name), _recipe(name)
    assert all(opt.defaults["foreach"] for opt in fast.optimizers.values())
    for key, opt in loop.optimizers.items():  # torch's default on the CPU: one parameter at a time
        params = [p for group in opt.param_groups for p in group["params"]]
        c = loop.config
        loop.optimizers[key] = torch.optim.Adam(params, lr=opt.param_groups[0]["lr"], betas=(c.beta1, c.beta2),
                                                weight_decay=c.weight_decay, foreach=False)
    for step in range(3):
        assert fast.train_step(_batch(step)) == loop.train_step(_batch(step))
    for net in fast.networks:
        assert all(torch.equal(a, b) for a, b in zip(fast.networks[net].parameters(),
                                                     loop.networks[net].parameters()))


def test_step_returns_device_tensors_and_train_step_reads_them_once(monkeypatch):
    recipe = _recipe("pix2pix", tau=2.0)
    recipe.train_step(_batch(0))  # Adam's step counters exist from here on
    counters = {id(state["step"]) for opt in recipe.optimizers.values() for state in opt.state.values()}
    reads = []
    for method in ("tolist", "item", "__float__"):
        original = getattr(torch.Tensor, method)

        def read(self, *args, _method=method, _original=original, **kwargs):
            if not (_method == "item" and id(self) in counters):  # Adam reads its CPU step counters (not on CUDA)
                reads.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, read)
    recipe.set_progress(0.25)
    losses = recipe.step(_batch(1))
    assert reads == []
    assert tuple(losses) == recipe.loss_names
    assert all(v.dim() == 0 and v.dtype == torch.float32 and not v.requires_grad for v in losses.values())
    values = recipe.read_losses(losses)
    assert reads == ["tolist"]
    assert values["tau"] == 1.5 and all(math.isfinite(v) for v in values.values())
    reads.clear()
    error = recipe.validation_error(_batch(2))
    assert reads == [] and error.dim() == 0
    assert recipe.validation_l1(_batch(2)) == float(error)


def test_training_states_with_and_without_a_float16_scaler_still_load():
    """A CUDA float16 run saved its GradScaler's scale; a CPU or bfloat16 run (scaler disabled) saved {}."""
    source = _recipe("supervised")
    source.train_step(_batch())
    fp16 = {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 3}
    for scalers in ({"G": fp16}, {"G": {}}):
        target = _recipe("supervised")
        target.load_state_dict({**copy.deepcopy(source.state_dict()), "scalers": scalers})
        assert all(torch.equal(a, b) for a, b in zip(target.G.parameters(), source.G.parameters()))
        assert not target.scalers["G"].is_enabled()


# --- channels_last, compile ------------------------------------------------------------------

def test_channels_last_trains_the_same_in_nhwc(tmp_path):
    plain, nhwc = _recipe("cyclegan"), _recipe("cyclegan", Execution(channels_last=True))
    x, y, s = nhwc.inputs(_batch())
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in (x, y, s))
    wide = [p for net in nhwc.networks.values() for p in net.parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert wide and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in wide)
    for step in range(2):
        a, b = plain.train_step(_batch(step)), nhwc.train_step(_batch(step))
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6)
    _round_trip(nhwc, tmp_path)


@pytest.mark.parametrize("execution", [Execution(compile=True), Execution(channels_last=True)])
def test_the_model_of_a_switched_recipe_saves_and_loads(tmp_path, execution):
    recipe = _recipe("supervised", execution)
    save_model(tmp_path, recipe.generator, {"config": recipe.config.to_dict(), "des_output_window": [0.0, 1.0],
                                           "synthetic_output": True})
    G, _ = load_generator(tmp_path)
    expected = recipe.generator.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in G.state_dict().items())


# inductor builds G with gcc: 131 s cold on a loaded 2-core machine, 5 s from its cache (/tmp/torchinductor_*)
def test_compile_trains_and_keeps_the_state_dict_names(tmp_path):
    plain, compiled = _recipe("supervised"), _recipe("supervised", Execution(compile=True))
    losses = compiled.train_step(_batch())
    assert losses == pytest.approx(plain.train_step(_batch()), rel=1e-4, abs=1e-6)
    assert list(compiled.G.state_dict()) == list(plain.G.state_dict())
    _round_trip(compiled, tmp_path)


def _round_trip(recipe, tmp_path) -> None:
    """The training state of `recipe` saves, and loads into a recipe built without the switch."""
    save_training_state(tmp_path, {"recipe": recipe.state_dict()})
    fresh = _recipe(recipe.config.recipe)
    fresh.load_state_dict(load_training_state(tmp_path)["recipe"])
    assert all(torch.equal(a, b) for a, b in zip(fresh.generator.parameters(), recipe.generator.parameters()))


# --- torch.distributed (gloo, 2 processes) ---------------------------------------------------

# (global batch size, samples of rank 0) per step: two even steps, then an uneven one (set_share).
DDP_STEPS = ((2, 1), (2, 1), (3, 2))


def _ddp_rank(rank: int, world: int, rendezvous: str, out: str) -> None:
    """One rank: its part of each global batch, losses reduced as the training loop does (losses x share, SUM)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        recipe = _recipe("cyclegan")
        history = []
        for step, (n_global, n_first) in enumerate(DDP_STEPS):
            batch = _batch(step, n_global)
            part = slice(0, n_first) if rank == 0 else slice(n_first, n_global)
            n_rank = part.stop - part.start
            recipe.set_share(n_rank * world / n_global)
            losses = recipe.step({k: v[part] for k, v in batch.items()})
            stacked = torch.stack([losses[name] for name in recipe.loss_names]) * (n_rank / n_global)
            dist.all_reduce(stacked)
            history.append((dict(zip(recipe.loss_names, stacked.tolist())), copy.deepcopy(recipe.G.state_dict())))
        if rank == 0:
            torch.save(history, out)
    finally:
        dist.destroy_process_group()


def _biases_before_instance_norm(net: torch.nn.Module) -> set[str]:
    """Names of the conv biases that an InstanceNorm follows: it subtracts their mean, so their gradient is 0 in
    exact arithmetic and Adam (which divides by the gradient's own scale) turns float rounding into +-lr steps."""
    names = set()
    for prefix, module in net.named_modules():
        children = list(module.named_children())
        for (name, conv), (_, norm) in zip(children, children[1:]):
            if isinstance(norm, torch.nn.InstanceNorm2d) and getattr(conv, "bias", None) is not None:
                names.add(f"{prefix}.{name}.bias".lstrip("."))
    return names


def test_two_gloo_ranks_train_as_one_process_with_the_whole_batch(tmp_path):
    """Differences measured (2 even steps, then the uneven one; lr 1e-3): losses 6e-8, 1.1e-6, 1.2e-6 (relative
    3e-6 at most); weights 6.8e-7, 6.8e-7, 1.7e-5 (2 % of one Adam step) except the biases that instance norm
    cancels (see above); G(probe) in [0, 1]: 2.4e-7, 3.6e-7, 4.1e-5. The bounds below leave a margin of ~5."""
    out = tmp_path / "rank0.pt"
    mp.spawn(_ddp_rank, args=(2, str(tmp_path / "rendezvous"), str(out)), nprocs=2, join=True)
    ranks = torch.load(out)
    single = _recipe("cyclegan")
    cancelled = _biases_before_instance_norm(single.G)
    assert len(cancelled) == 7  # 3 down, 2 in the residual block, 2 up
    probe, twin = _batch(9)["le"], copy.deepcopy(single.G).eval()
    for step, (n_global, _) in enumerate(DDP_STEPS):
        losses = single.train_step(_batch(step, n_global))
        ddp_losses, ddp_state = ranks[step]
        assert ddp_losses == pytest.approx(losses, rel=2e-5, abs=5e-6)
        for name, value in single.G.state_dict().items():
            if name not in cancelled:
                torch.testing.assert_close(ddp_state[name], value, rtol=0, atol=1e-4)
        twin.load_state_dict(ddp_state)
        with torch.no_grad():
            torch.testing.assert_close(twin(probe), single.G.eval()(probe), rtol=0, atol=2e-4)
        single.G.train()
