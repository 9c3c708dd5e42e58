"""Checkpoints that cannot run code: safetensors weights with their JSON sidecar inside, written atomically.

A pickled checkpoint (torch.save) executes code when loaded, so one received
from a stranger is a risk; this module neither writes nor reads pickle. A
checkpoint is one file, NAME.safetensors, whose header metadata embeds the
sidecar (format, config, ..., the sha256 of the tensor data and the sha256
of the sidecar itself: an edited des_output_window is refused like an edited
weight; the values predict relies on are also range-checked); it is
written to a temporary name and renamed, so that single rename commits it and
a process killed at any moment leaves either the old checkpoint or the new
one, never a mixed or half-written one. NAME.json, written after it (also
atomically), is a human- and Slicer-readable copy of the same sidecar; readers
here never trust it, because after a kill between the two renames it can be
one checkpoint behind.

Run folder:
    config.json                        resolved TrainConfig
    checkpoint.safetensors (+ .json)   full training state, for `--resume`
    model.safetensors (+ .json)        best generator G, for inference
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

from VirtualContrastTraining import read_versions
from VirtualContrastTraining.atomic import atomic_path, write_text_atomic
from VirtualContrastTraining.config.schema import TrainConfig
from VirtualContrastTraining.data.preprocessing import size_range_problem
from VirtualContrastTraining.errors import InputError

STATE_NAME = "checkpoint"
MODEL_NAME = "model"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
PICKLE_REFUSED = "pickled checkpoint refused: it could run code; only safetensors are loaded"
FORMAT = "virtual-contrast-checkpoint"
# 3: the sidecar carries its own sha256; 2: the sidecar is embedded in the safetensors header (still read);
# 1: only in NAME.json, no longer read.
FORMAT_VERSION = 3
SIDECAR_KEY = "sidecar"
SIDECAR_SHA_KEY = "sidecar_sha256"


# --- tree <-> (tensors, JSON) --------------------------------------------------------------

def _encode(obj: Any, key: str, tensors: dict) -> Any:
    import torch  # lazy: torch

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


# --- one safetensors file with its sidecar embedded --------------------------------------

def _sha256(data) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_json_object(text: str | bytes, where: str | os.PathLike | None, what: str) -> dict:
    """The JSON object in `text`; InputError naming `where` when it is not valid JSON or not an object."""
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InputError(where, f"unreadable {what} ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(where, f"{what} must be a JSON object")
    return data


def read_json_object(path: str | os.PathLike, what: str) -> dict:
    """The JSON object stored in the file `path`; InputError naming the file otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"unreadable {what} ({getattr(exc, 'strerror', None) or exc})") from None
    return parse_json_object(text, path, what)


def _sidecar_sha256(sidecar: dict) -> str:
    """The sha256 of the sidecar without its own hash, as canonical JSON (sorted keys: the same after a round trip)."""
    rest = {k: v for k, v in sidecar.items() if k != SIDECAR_SHA_KEY}
    return _sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode("utf-8"))  # NaN: an edit, hashed


def _header_length(data: bytes) -> int:
    """A safetensors file: 8-byte little-endian header length, the JSON header, then the tensor data."""
    return int.from_bytes(data[:8], "little")


def write_pair(weights_path: Path, tensors: dict, sidecar: dict) -> Path:
    """One atomic rename commits the checkpoint: the sidecar travels inside the safetensors header.

    The sidecar names the sha256 of the file's tensor-data section (which does
    not depend on the header). NAME.json is written afterwards as a readable copy
    only; nothing trusts it.
    """
    from safetensors.torch import save  # lazy: safetensors

    bare = save(tensors)
    weights_sha = _sha256(memoryview(bare)[8 + _header_length(bare):])
    del bare
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, "weights_file": weights_path.name,
            "weights_sha256": weights_sha, **sidecar}
    full[SIDECAR_SHA_KEY] = _sidecar_sha256(full)
    data = save(tensors, metadata={SIDECAR_KEY: json.dumps(full, separators=(",", ":"), allow_nan=False)})
    with atomic_path(weights_path) as tmp:
        tmp.write_bytes(data)
    write_text_atomic(weights_path.with_suffix(".json"), json.dumps(full, indent=1, allow_nan=False) + "\n")
    return weights_path


def refuse_pickle(path: Path, head: bytes) -> None:
    """torch.save files are zip archives ("PK") or raw pickles (0x80 protocol byte).

    `head` is the file's first 9 bytes or more. A safetensors file has "{" at
    offset 8 (its JSON header begins there), which neither a zip nor a pickle
    has, so a header length whose low byte happens to be 0x80 is not mistaken for
    a pickle.
    """
    is_safetensors = head[8:9] == b"{"
    if path.suffix.lower() in PICKLE_SUFFIXES or (not is_safetensors and (head[:2] == b"PK" or head[:1] == b"\x80")):
        raise InputError(path, PICKLE_REFUSED)


def read_pair(weights_path: Path) -> tuple[dict, dict]:
    """(tensors, sidecar) of one of our checkpoints; InputError for anything else.

    The sidecar is the copy embedded in the file's own header, so it always
    belongs to these weights; the NAME.json beside the file is ignored (a
    process killed between the two renames leaves it one checkpoint behind).
    """
    from safetensors import SafetensorError  # lazy: safetensors
    from safetensors.torch import load  # lazy: safetensors

    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise InputError(weights_path, "no such checkpoint file")
    try:
        data = weights_path.read_bytes()
    except OSError as exc:
        raise InputError(weights_path, f"unreadable checkpoint ({exc.strerror or exc})") from None
    refuse_pickle(weights_path, data[:16])
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise InputError(weights_path, f"corrupt or truncated safetensors file ({str(exc)[:120]})") from None
    n = _header_length(data)
    header = parse_json_object(data[8:8 + n], weights_path, "safetensors header")
    embedded = (header.get("__metadata__") or {}).get(SIDECAR_KEY)
    if not isinstance(embedded, str):
        raise InputError(weights_path, f"not a {FORMAT} file: its header has no embedded sidecar "
                         "(written by another tool or an older engine version)")
    sidecar = parse_json_object(embedded, weights_path, "embedded sidecar")
    if sidecar.get("format") != FORMAT:
        raise InputError(weights_path, f"the embedded sidecar is not a {FORMAT} sidecar")
    version = sidecar.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(weights_path, f"checkpoint format version {version!r} is newer than this engine's "
                         f"({FORMAT_VERSION}); update the engine")
    if sidecar.get("weights_sha256") != _sha256(memoryview(data)[8 + n:]):
        raise InputError(weights_path, "the tensor data do not match the sha256 recorded in the file's own header: "
                         "the file was altered or damaged")
    if version >= 3 and sidecar.get(SIDECAR_SHA_KEY) != _sidecar_sha256(sidecar):
        raise InputError(weights_path, "the embedded sidecar does not match its own sha256: its fields "
                         "(des_output_window, preprocessing, config) were altered or damaged")
    if "versions" in sidecar:  # one schema: the record of an earlier engine is read as today's
        sidecar["versions"] = read_versions(sidecar["versions"])
    return tensors, sidecar


# --- training state (resume) ---------------------------------------------------------------

def save_training_state(run_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    """RUN/checkpoint.safetensors (+ its readable .json copy): the full state as a tree (see the module docstring)."""
    tensors: dict = {}
    tree = {k: _encode(v, k, tensors) for k, v in state.items()}
    return write_pair(Path(run_dir) / f"{STATE_NAME}.safetensors", tensors, {"kind": "training_state", "state": tree})


def has_training_state(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / f"{STATE_NAME}.safetensors").is_file()


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
    """RUN/model.safetensors (+ its readable .json copy): the generator's weights and what predict needs to use them.

    `sidecar` must hold "config" (TrainConfig.to_dict()) so that load_generator can rebuild G.
    """
    if "config" not in sidecar:
        raise ValueError("a model sidecar needs the resolved training config")
    # contiguous: a channels_last network's weights are NHWC views, which safetensors refuses
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
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
    """(G in eval mode on `device`, sidecar dict), rebuilt from the sidecar's config via build_generator."""
    from VirtualContrastTraining.models import build_generator  # lazy: torch

    weights = model_path(path)
    tensors, sidecar = read_pair(weights)
    if sidecar.get("kind") != "generator" or not isinstance(sidecar.get("config"), dict):
        raise InputError(weights, "not a generator checkpoint (its sidecar has no generator config)")
    config = TrainConfig.from_dict(sidecar["config"], where=weights)
    _check_generator_sidecar(weights, sidecar)
    net = build_generator(config)
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        raise InputError(weights, f"weights do not fit the generator described by the sidecar ({str(exc)[:160]})") from None
    return net.to(device).eval(), sidecar


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_generator_sidecar(weights: Path, sidecar: dict) -> None:
    """The sidecar fields predict uses as they are, checked where they enter (the hash catches edits; this,
    files written wrongly or by hand): the DES output window and the network input side."""
    window = sidecar.get("des_output_window")
    if not (isinstance(window, list) and len(window) == 2 and all(map(_finite_number, window))
            and window[0] < window[1]):
        raise InputError(weights, f"des_output_window {window!r} in the model's sidecar must be two finite "
                         "numbers, low < high")
    preprocessing = sidecar.get("preprocessing")
    if sidecar.get("pipeline", "resize") == "resize" and isinstance(preprocessing, dict):
        size = preprocessing.get("size")
        problem = (size_range_problem("preprocessing size", size) if type(size) is int  # noqa: E721 - not bool
                   else f"preprocessing size {size!r} must be an integer")
        if problem:
            raise InputError(weights, f"{problem} (model sidecar)")


def load_initial_weights(recipe, path: str | os.PathLike) -> str:
    """Transfer learning (001, 002: pre-train on one dataset, fine-tune on another): copy weights into `recipe`.

    From a run folder with a training checkpoint every network comes across
    (generators and discriminators; optimiser moments and schedule start
    afresh); otherwise the model file's generator initialises G only.
    Returns what was loaded, for the log. Shapes must match: a preset with
    another architecture is an InputError naming the file.
    """
    path = Path(path)
    if path.is_dir() and has_training_state(path):
        source = path / f"{STATE_NAME}.safetensors"
        networks = load_training_state(path)["recipe"]["networks"]
    else:
        source = model_path(path)
        tensors, sidecar = read_pair(source)
        if sidecar.get("kind") != "generator":
            raise InputError(source, "init_from: not a generator model nor a run folder with a training checkpoint")
        networks = {"G": tensors}
    targets = recipe.networks
    missing = sorted(set(targets) - set(networks)) if len(networks) > 1 else []
    if missing:
        raise InputError(source, f"init_from: the checkpoint has no {', '.join(missing)} (another recipe?)")
    for name, weights in networks.items():
        if name not in targets:
            continue
        try:
            targets[name].load_state_dict(weights)
        except RuntimeError as exc:
            raise InputError(source, f"init_from: weights of {name} do not fit this preset's network "
                             f"({str(exc)[:160]})") from None
    return f"{', '.join(n for n in networks if n in targets)} from {source}"
