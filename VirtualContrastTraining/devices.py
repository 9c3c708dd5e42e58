"""Choose the torch device from a user's words (auto, cpu, cuda or cuda:N), and the CPU threads to use."""

from __future__ import annotations

import os
import sys

import SimpleITK as sitk

from VirtualContrastTraining.errors import InputError

#: The environment variables that the OpenMP and BLAS libraries read for their thread count.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), which on a shared machine or in a container can be
    fewer than the machine has: what torch's own default (all the machine's cores) oversubscribes."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _threads_from_environment() -> int | None:
    """OMP_NUM_THREADS when the user set it to a whole number: their choice stands unless --threads says else."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def use_threads(threads: int | None) -> int:
    """Use `threads` CPU threads (None: OMP_NUM_THREADS if set, else available_cores()) in torch, SimpleITK, the BLAS and the child processes
    this one starts; returns the number.

    Torch reads OMP_NUM_THREADS when it is imported, so a command that has not loaded it yet does not pay for
    loading it here; one that has is told directly. The BLAS read their variables when numpy loads them, which
    is too late in this process, but their count matters little next to torch's.
    """
    threads = threads or _threads_from_environment() or available_cores()
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    return threads


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
