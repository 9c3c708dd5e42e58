"""Training throughput (images/s), peak memory and achieved FLOP/s of a preset's train step on this machine.

Each preset runs in its own child process so that its peak resident memory
(ru_maxrss) is its own. Random tensors stand in for data: the cost of a step
does not depend on pixel values, and data loading is measured by the demo.

The FLOPs of one step (forward and backward, torch's FlopCounterMode) over
its time give the achieved rate, shown beside this machine's float32 matmul
rate (a 2048x2048 torch.mm), the ceiling a convolution network can approach.
`--deterministic both` times each preset with torch.use_deterministic_algorithms
off and on, in alternating child processes, as train() runs on a CPU (on):
issue 17 attributes most of the gap to the papers' own code to it.

    python benchmarks/bench_train.py [--presets demo,rofena2025-segcyclegan-g35] [--steps 5] [--device cpu]
        [--set image_size=128 --set batch_size=2] [--deterministic off|on|both] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matmul rate with torch's threads: the best of `repeats`."""
    import torch

    a, b = torch.rand(size, size), torch.rand(size, size)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def child(preset: str, steps: int, device: str, sets: list[str], deterministic: bool) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from VirtualContrastTraining.config.presets import resolve_config
    from VirtualContrastTraining.config.schema import parse_assignments
    from VirtualContrastTraining.devices import resolve_device
    from VirtualContrastTraining.recipes import build_recipe

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(deterministic)
    config = resolve_config(preset, parse_assignments(sets))
    dev = resolve_device(device)
    recipe = build_recipe(config, dev)
    b = config.batch_size
    s = config.patch_size if config.pipeline == "patches" else config.image_size
    batch = {
        "le": torch.rand(b, 1, s, s),
        "des": torch.rand(b, 1, s, s),
        "mask": (torch.rand(b, 1, s, s) > 0.95).float(),
    }
    recipe.train_step(batch)  # warm-up: allocator, kernels
    with FlopCounterMode(display=False) as counter:
        recipe.train_step(batch)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        recipe.train_step(batch)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    print(json.dumps({
        "preset": preset, "image_size": s, "batch_size": b,
        "model": f"{config.recipe}, {config.generator} ngf {config.ngf}",
        "s_per_step": seconds, "images_per_s": b / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None,
        "device": str(dev), "torch_threads": torch.get_num_threads(), "deterministic": deterministic,
        "gflop_per_step": counter.get_total_flops() / 1e9,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="demo,rofena2025-segcyclegan-g35")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="for every preset")
    parser.add_argument("--deterministic", choices=("off", "on", "both"), default="off")
    parser.add_argument("--rounds", type=int, default=1, help="alternating repeats of every configuration")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.device, args.set, args.deterministic == "on")
        return
    import torch

    ceiling = matmul_gflops()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"{torch.get_num_threads()} torch threads; float32 matmul {ceiling:.0f} GFLOP/s; --set {args.set}")
    print("| preset | model | image | batch | deterministic | s/step | images/s | GFLOP/step | GFLOP/s | "
          "share of matmul | peak RSS (MiB) | peak GPU (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    modes = ("off", "on") if args.deterministic == "both" else (args.deterministic,)
    for _ in range(args.rounds):
        for preset in args.presets.split(","):
            for mode in modes:
                sets = [f"--set={a}" for a in args.set]
                out = subprocess.run([sys.executable, __file__, "--child", preset, "--steps", str(args.steps),
                                      "--device", args.device, "--deterministic", mode, *sets],
                                     capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                gpu = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "-"
                rate = r["gflop_per_step"] / r["s_per_step"]
                print(f"| {r['preset']} | {r['model']} | {r['image_size']}² | {r['batch_size']} | {mode} | "
                      f"{r['s_per_step']:.2f} | {r['images_per_s']:.2f} | {r['gflop_per_step']:.1f} | {rate:.0f} | "
                      f"{rate / ceiling:.0%} | {r['peak_rss_mib']:.0f} | {gpu} |", flush=True)


if __name__ == "__main__":
    main()
