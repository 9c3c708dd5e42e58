"""Seconds and memory to synthesize one full-size DES with the dense sliding window of 000.

One full-size phantom LE (2850 x 2394 pixels of 0.1 mm, as the GE Senographe
Pristina images of 000) goes through `Synthesizer.synthesize` of the
zormpas2026-cyclegan-patch preset: Otsu breast box resampled to 1 mm,
ResNet generator with ngf 64 and 9 residual blocks (the paper's size), 128 x
128 windows every `stride` pixels averaged, back to the LE's grid. The
generator is untrained (fresh weights): the cost does not depend on the
weights. The phantom is simulated once, in a process of its own that writes
it to a temporary NRRD; each stride runs in its own process that reads it. So
the peak resident memory (resource.getrusage ru_maxrss, which on Linux a
child inherits from its parent at fork) is the synthesis's own, not the
simulation's (~1 GB); "before" is the peak after reading the LE and building
the network.

    python benchmarks/bench_sliding_window.py [--strides 16,32,64] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

PRESET = "zormpas2026-cyclegan-patch"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def simulate_le(path: str) -> str:
    """The full-size phantom LE (0.1 mm pixels), written as NRRD to `path`."""
    from VirtualContrastTraining.data.imageio import write_nrrd
    from VirtualContrastTraining.data.phantom import simulate_case

    case = simulate_case(np.random.default_rng(0), pixel_mm=0.1, laterality="L", view="MLO", density="c")
    return str(write_nrrd(case.image(case.le), path))


def _in_fresh_process(function, *args):
    """function(*args) in a new spawned process: its own peak memory, no warm caches from earlier runs."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def run_stride(le_path: str, stride: int, device: str, threads: int) -> dict:
    """One synthesis with `stride` in this (fresh) process: timings, window count, peak memory."""
    import torch

    from VirtualContrastTraining.data.imageio import read_image
    from VirtualContrastTraining.data.patches import preprocess_patches
    from VirtualContrastTraining.config.presets import resolve_config
    from VirtualContrastTraining.synthesis import Synthesizer

    if threads:
        torch.set_num_threads(threads)
    le = read_image(le_path)
    config = resolve_config(PRESET, {"sw_stride": stride})
    torch.manual_seed(0)
    synth = Synthesizer.untrained(config, (1700.0, 2400.0), device)
    dev = synth.device
    windows = []
    synth.generator.register_forward_pre_hook(lambda module, args: windows.append(len(args[0])))
    before = _peak_mib()
    start = time.perf_counter()
    box, _ = preprocess_patches(le, synth.patch_pipeline)
    preprocess_seconds = time.perf_counter() - start
    seconds = []
    for _ in range(2):  # the first call in a process also pays one-off kernel and allocator set-up
        windows.clear()
        start = time.perf_counter()
        out = synth.synthesize(le)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    assert out.same_geometry(le)
    return {"stride": stride, "seconds": seconds, "preprocess_seconds": preprocess_seconds, "windows": sum(windows), "forward_passes": len(windows),
            "sw_batch_size": synth.sw_batch_size(),
            "box": box.shape, "le": le.shape, "before_mib": before, "peak_mib": _peak_mib(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(dev)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strides", default="16,32,64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {multiprocessing.cpu_count()} CPU cores, "
          f"python {platform.python_version()}; load average {os.getloadavg()[0]:.1f} (other processes share the cores)")
    with tempfile.TemporaryDirectory() as tmp:
        le_path = _in_fresh_process(simulate_le, str(Path(tmp) / "le.nrrd"))
        rows = [_in_fresh_process(run_stride, le_path, int(stride), args.device, args.threads)
                for stride in args.strides.split(",")]
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    first = rows[0]
    print(f"torch {first['torch']}, device {first['device']}, {first['threads']} threads; LE {first['le'][0]} x "
          f"{first['le'][1]} at 0.1 mm, breast box at 1 mm {first['box'][0]} x {first['box'][1]}; "
          f"{PRESET}: ResNet ngf 64, 9 blocks, untrained; patch 128; {first['sw_batch_size']} windows per forward pass "
          "(Synthesizer.sw_batch_size: 8 on the CPU, from free memory on CUDA)")
    print("| stride | windows (forward passes) | synthesize, s: first call, second call | "
          "box preprocessing alone, s | peak RSS before, MiB | peak RSS, MiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stride']} | {r['windows']} ({r['forward_passes']}) | {r['seconds'][0]:.1f}, {r['seconds'][1]:.1f} | "
              f"{r['preprocess_seconds']:.1f} | {r['before_mib']:.0f} | {r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
