"""Checkpoints that cannot run code: safetensors weights + a JSON sidecar, written atomically.

A pickled checkpoint (torch.save) executes code when loaded, so one received
from a stranger is a risk; this module neither writes nor reads pickle. Every
checkpoint is a pair NAME.safetensors + NAME.json; the weights are written
first, then the sidecar, each through a temporary file and a rename, and a
reader only trusts a pair whose sidecar names the sha256 of the weights. A
process killed at any moment therefore leaves either the old pair or the new
one, never a mixed or half-written one that would be trusted.

Run folder:
    config.json                        resolved TrainConfig
    checkpoint.safetensors/.json       full training state, for `--resume`
    model.safetensors/.json            best generator G, for inference
    history.csv                        per-epoch losses and validation metrics

Training states are nested trees (dicts, lists, tuples, scalars, tensors,
numpy arrays: the recipe's state_dict, optimiser states, RNG states). Tensors
go to the safetensors file under their path in the tree ("recipe.networks.G.
model.1.weight"); everything else goes to the sidecar as tagged JSON, so
integer dict keys (optimiser states), tuples (RNG states) and inf/nan survive
a round trip unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from VirtualContrastTraining.atomic import atomic_path, write_text_atomic
from VirtualContrastTraining.errors import InputError

STATE_NAME = "checkpoint"
MODEL_NAME = "model"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
PICKLE_REFUSED = "pickled checkpoint refused: it could run code; only safetensors are loaded"
FORMAT = "virtual-contrast-checkpoint"
FORMAT_VERSION = 1


# --- tree <-> (tensors, JSON) --------------------------------------------------------------

def _encode(obj: Any, key: str, tensors: dict) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"$tensor": key}
    if isinstance(obj, np.ndarray):
        return {"$ndarray": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), key, tensors)
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"$float": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        return {"$items": [[k, _encode(v, f"{key}.{k}", tensors)] for k, v in obj.items()]}
    raise TypeError(f"cannot store a {type(obj).__name__} at {key!r} in a checkpoint")


def _decode(obj: Any, tensors: dict) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "$tensor" in obj:
        return tensors[obj["$tensor"]]
    if "$ndarray" in obj:
        return np.asarray(obj["$ndarray"], dtype=obj["dtype"])
    if "$float" in obj:
        return float(obj["$float"])
    if "$tuple" in obj:
        return tuple(_decode(v, tensors) for v in obj["$tuple"])
    if "$items" in obj:
        return {k: _decode(v, tensors) for k, v in obj["$items"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


# --- one safetensors + sidecar pair --------------------------------------------------------

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_pair(weights_path: Path, tensors: dict, sidecar: dict) -> Path:
    """Weights first, then the sidecar that names their sha256; both atomically."""
    from safetensors.torch import save

    data = save(tensors)
    with atomic_path(weights_path) as tmp:
        tmp.write_bytes(data)
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, "weights_file": weights_path.name,
            "weights_sha256": _sha256(data), **sidecar}
    write_text_atomic(weights_path.with_suffix(".json"), json.dumps(full, indent=1, allow_nan=False) + "\n")
    return weights_path


def refuse_pickle(path: Path, head: bytes) -> None:
    """torch.save files are zip archives ("PK") or raw pickles (0x80 protocol byte)."""
    if path.suffix.lower() in PICKLE_SUFFIXES or head[:2] == b"PK" or head[:1] == b"\x80":
        raise InputError(path, PICKLE_REFUSED)


def read_pair(weights_path: Path) -> tuple[dict, dict]:
    """(tensors, sidecar) of a trusted pair; InputError for anything that is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise InputError(weights_path, "no such checkpoint file")
    data = weights_path.read_bytes()
    refuse_pickle(weights_path, data[:2])
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise InputError(weights_path, f"corrupt or truncated safetensors file ({str(exc)[:120]})") from None
    sidecar_path = weights_path.with_suffix(".json")
    if not sidecar_path.is_file():
        raise InputError(sidecar_path, f"sidecar missing: {weights_path.name} cannot be trusted without it")
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(sidecar_path, f"unreadable sidecar ({exc})") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT:
        raise InputError(sidecar_path, f"not a {FORMAT} sidecar")
    if sidecar.get("weights_sha256") != _sha256(data):
        raise InputError(weights_path, f"sha256 does not match the one named in {sidecar_path.name}: "
                         "the weights were changed or the pair was mixed")
    return tensors, sidecar


# --- training state (resume) ---------------------------------------------------------------

def save_training_state(run_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    """RUN/checkpoint.safetensors + .json: the full state as a tree (see the module docstring)."""
    tensors: dict = {}
    tree = {k: _encode(v, k, tensors) for k, v in state.items()}
    return write_pair(Path(run_dir) / f"{STATE_NAME}.safetensors", tensors, {"kind": "training_state", "state": tree})


def has_training_state(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / f"{STATE_NAME}.json").is_file()


def load_training_state(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / f"{STATE_NAME}.safetensors"
    if not path.is_file():
        raise InputError(run_dir, "no training checkpoint to resume from (checkpoint.safetensors is missing)")
    tensors, sidecar = read_pair(path)
    if sidecar.get("kind") != "training_state":
        raise InputError(path, "not a training-state checkpoint")
    try:
        return _decode(sidecar["state"], tensors)
    except KeyError as exc:
        raise InputError(path, f"checkpoint names tensor {exc} that the weights file lacks") from None


# --- inference model -----------------------------------------------------------------------

def save_model(run_dir: str | os.PathLike, generator, sidecar: dict[str, Any]) -> Path:
    """RUN/model.safetensors + .json: the generator's weights and what predict needs to use them.

    `sidecar` must hold "config" (TrainConfig.to_dict()) so that load_generator can rebuild G.
    """
    if "config" not in sidecar:
        raise ValueError("a model sidecar needs the resolved training config")
    tensors = {k: v for k, v in generator.state_dict().items()}
    return write_pair(Path(run_dir) / f"{MODEL_NAME}.safetensors", tensors, {"kind": "generator", **sidecar})


def model_path(path: str | os.PathLike) -> Path:
    """A run folder, a model .safetensors or its .json sidecar -> the .safetensors path."""
    path = Path(path)
    if path.is_dir():
        candidate = path / f"{MODEL_NAME}.safetensors"
        if not candidate.is_file():
            raise InputError(path, "run folder has no model (model.safetensors is missing: was training finished?)")
        return candidate
    if path.suffix.lower() == ".json":
        return path.with_suffix(".safetensors")
    return path


def load_generator(path: str | os.PathLike, device: str = "cpu"):
    """(G in eval mode on `device`, sidecar dict), rebuilt from the sidecar's config via define_G."""
    from VirtualContrastTraining.models.networks import define_G
    from VirtualContrastTraining.presets import TrainConfig

    weights = model_path(path)
    tensors, sidecar = read_pair(weights)
    if sidecar.get("kind") != "generator" or not isinstance(sidecar.get("config"), dict):
        raise InputError(weights, "not a generator checkpoint (its sidecar has no generator config)")
    config = TrainConfig.from_dict(sidecar["config"])
    net = define_G(1, 1, config.ngf, config.n_blocks)
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        raise InputError(weights, f"weights do not fit the generator described by the sidecar ({str(exc)[:160]})") from None
    return net.to(device).eval(), sidecar
