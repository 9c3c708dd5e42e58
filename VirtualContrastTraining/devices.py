"""Choose the torch device from a user's words: auto, cpu, cuda or cuda:N."""

from __future__ import annotations

from VirtualContrastTraining.errors import InputError


def resolve_device(name: str = "auto"):
    """`auto` picks the first GPU when there is one; a GPU that is not there is an InputError."""
    import torch  # lazy: torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        index = 0 if name == "cuda" else name.split(":", 1)[1]
        if not str(index).isdigit():
            raise InputError(None, f"device {name!r}: expected cuda:N with N a number")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(index) >= count:
            raise InputError(None, f"device {name!r} is not available (this machine has {count} CUDA device(s)); use --device cpu or auto")
        return torch.device(f"cuda:{index}")
    raise InputError(None, f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
