"""Safetensors checkpoints with an embedded sidecar: round trips, and every way a bad file is refused."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from VirtualContrastTraining.checkpoints import (
    PICKLE_REFUSED,
    load_generator,
    load_training_state,
    read_pair,
    save_model,
    save_training_state,
    write_pair,
)
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.models.networks import define_G
from VirtualContrastTraining.config.presets import resolve_config
from VirtualContrastTraining.recipes.cyclegan import CycleGAN

CONFIG = resolve_config("demo", {"ngf": 4, "ndf": 4, "n_blocks": 1, "image_size": 32})


@pytest.fixture
def model_run(tmp_path):
    torch.manual_seed(0)
    g = define_G(1, 1, CONFIG.ngf, CONFIG.n_blocks)
    save_model(tmp_path, g, {"config": CONFIG.to_dict(), "des_output_window": [0.0, 1.0], "synthetic_output": True})
    return tmp_path, g


def test_generator_round_trip_and_no_temp_files(model_run):
    run, g = model_run
    assert sorted(p.name for p in run.iterdir()) == ["model.json", "model.safetensors"]
    for where in (run, run / "model.safetensors", run / "model.json"):
        loaded, sidecar = load_generator(where)
        assert not loaded.training
        assert sidecar["synthetic_output"] is True and sidecar["config"]["ngf"] == 4
        for (k, a), (k2, b) in zip(g.state_dict().items(), loaded.state_dict().items()):
            assert k == k2 and torch.equal(a, b)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(g.eval()(x), loaded(x))


def test_pickled_checkpoint_refused(tmp_path, model_run):
    run, g = model_run
    for name in ("weights.pt", "model.safetensors"):  # by extension, and by content under a safe name
        path = tmp_path / "pickled" / name
        path.parent.mkdir(exist_ok=True)
        torch.save(g.state_dict(), path)
        with pytest.raises(InputError, match="pickled checkpoint refused"):
            load_generator(path)
    assert "only safetensors" in PICKLE_REFUSED


def test_truncated_file_refused(model_run):
    run, _ = model_run
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(InputError, match="corrupt or truncated") as err:
        load_generator(run)
    assert str(weights) in str(err.value) and len(str(err.value).splitlines()) == 1


def test_pickle_in_safetensors_clothing_refused_but_a_0x80_header_length_is_not(tmp_path):
    """torch.save under a .safetensors name is refused by content; a real file whose header length happens
    to start with byte 0x80 (the pickle protocol marker) still loads."""
    pickled = tmp_path / "p" / "checkpoint.safetensors"
    pickled.parent.mkdir()
    torch.save({"state": torch.zeros(2)}, pickled)
    with pytest.raises(InputError, match="pickled checkpoint refused"):
        read_pair(pickled)

    weights = tmp_path / "w.safetensors"
    for pad in range(300):  # the header length grows in steps of 8: one of them ends in 0x80
        write_pair(weights, {"x": torch.arange(3.0)}, {"kind": "test", "pad": "p" * pad})
        if weights.read_bytes()[0] == 0x80:
            break
    assert weights.read_bytes()[0] == 0x80
    tensors, sidecar = read_pair(weights)
    assert torch.equal(tensors["x"], torch.arange(3.0)) and sidecar["kind"] == "test"


def test_versions_of_any_engine_are_read_in_the_one_schema(tmp_path):
    """Models saved before the one versions schema (train.package_versions: python, torch, monai, numpy,
    engine) load as they are; the engine key of earlier evaluations reads as "engine"; new ones write
    software_versions()."""
    from VirtualContrastTraining import __version__, read_versions, software_versions

    weights = tmp_path / "w.safetensors"
    earlier = {"python": "3.11.7", "torch": "2.3.0+cpu", "monai": "1.3.0", "numpy": "1.26.4", "engine": "0.1.0"}
    write_pair(weights, {"x": torch.arange(3.0)}, {"kind": "test", "versions": earlier})
    assert read_pair(weights)[1]["versions"] == earlier
    write_pair(weights, {"x": torch.arange(3.0)}, {"kind": "test", "versions": {"python": "3.11.7",
                                                                             "VirtualContrastTraining": "0.1.0"}})
    assert read_pair(weights)[1]["versions"] == {"python": "3.11.7", "engine": "0.1.0"}
    assert read_versions(None) == {} and read_versions(["numpy"]) == {}
    now = software_versions()
    assert list(now)[:2] == ["python", "engine"] and now["engine"] == __version__
    assert now["numpy"] == np.__version__ and now["torch"] == torch.__version__ and read_versions(now) == now


def test_stale_or_missing_json_copy_does_not_matter(model_run):
    """A kill between the two renames leaves new weights beside the previous checkpoint's .json: the
    sidecar embedded in the weights is the one trusted, so the new checkpoint loads with its own."""
    run, g = model_run
    stale = (run / "model.json").read_text()
    torch.manual_seed(1)
    g2 = define_G(1, 1, CONFIG.ngf, CONFIG.n_blocks)
    save_model(run, g2, {"config": CONFIG.to_dict(), "des_output_window": [0.25, 0.75], "synthetic_output": True})
    fresh = json.loads((run / "model.json").read_text())
    assert fresh["des_output_window"] == [0.25, 0.75]
    (run / "model.json").write_text(stale)  # as if killed before the .json rename
    loaded, sidecar = load_generator(run)
    assert sidecar == fresh
    assert all(torch.equal(a, b) for a, b in zip(g2.state_dict().values(), loaded.state_dict().values()))
    (run / "model.json").write_text("{ not json")
    assert load_generator(run)[1] == fresh
    (run / "model.json").unlink()
    assert load_generator(run)[1] == fresh


def test_foreign_safetensors_and_altered_weights_refused(model_run, tmp_path):
    from safetensors.torch import save_file

    run, g = model_run
    # a plain safetensors file (another tool's), even with one of our sidecars beside it
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    save_file(g.state_dict(), foreign / "model.safetensors")
    (foreign / "model.json").write_text((run / "model.json").read_text())
    with pytest.raises(InputError, match="no embedded sidecar") as err:
        load_generator(foreign)
    assert str(foreign / "model.safetensors") in str(err.value)

    # one flipped byte in the tensor data: still a valid safetensors file, but not the weights it describes
    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="do not match the sha256"):
        load_generator(run)


def test_run_folder_without_model_refused(tmp_path):
    with pytest.raises(InputError, match="no model"):
        load_generator(tmp_path)
    with pytest.raises(InputError, match="no training checkpoint"):
        load_training_state(tmp_path)


def test_training_state_round_trip_keeps_types(tmp_path):
    torch.manual_seed(0)
    recipe = CycleGAN(CONFIG)
    batch = {k: torch.rand(2, 1, 32, 32) for k in ("le", "des", "mask")}
    recipe.train_step(batch)
    import random

    state = {
        "recipe": recipe.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "epoch": 3, "position": 2, "best_metric": math.inf, "history": [{"epoch": 1, "val_l1": 0.25}],
    }
    save_training_state(tmp_path, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "checkpoint.safetensors"]
    (tmp_path / "checkpoint.json").unlink()  # only a readable copy
    back = load_training_state(tmp_path)
    assert back["epoch"] == 3 and back["position"] == 2 and back["best_metric"] == math.inf
    assert back["history"] == state["history"]
    assert torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    assert back["rng"]["python"] == state["rng"]["python"]
    np_state = back["rng"]["numpy"]
    assert np_state[0] == "MT19937" and np.array_equal(np_state[1], state["rng"]["numpy"][1])
    assert np_state[1].dtype == np.uint32
    opt = back["recipe"]["optimizers"]["G"]
    assert set(opt["state"]) == set(recipe.optimizers["G"].state_dict()["state"])  # integer keys survive
    assert isinstance(opt["param_groups"][0]["betas"], tuple)

    again = CycleGAN(CONFIG)
    again.load_state_dict(back["recipe"])
    torch.manual_seed(1)
    a = recipe.train_step(batch)
    torch.manual_seed(1)
    assert again.train_step(batch) == a
