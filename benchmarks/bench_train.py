"""Training throughput (images/s) and peak memory of a preset's train step on this machine.

Each preset runs in its own child process so that its peak resident memory
(ru_maxrss) is its own. Random tensors stand in for data: the cost of a step
does not depend on pixel values, and data loading is measured by the demo.

    python benchmarks/bench_train.py [--presets demo,rofena2025-segcyclegan-g35] [--steps 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def child(preset: str, steps: int, device: str) -> None:
    import torch

    from VirtualContrastTraining.devices import resolve_device
    from VirtualContrastTraining.config.presets import resolve_config
    from VirtualContrastTraining.recipes import build_recipe

    torch.manual_seed(0)
    config = resolve_config(preset, {})
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
        "device": str(dev), "torch_threads": torch.get_num_threads(),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="demo,rofena2025-segcyclegan-g35")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.device)
        return
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print("| preset | model | image | batch | s/step | images/s | peak RSS (MiB) | peak GPU (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in args.presets.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", preset, "--steps", str(args.steps),
                              "--device", args.device], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        gpu = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "-"
        print(f"| {r['preset']} | {r['model']} | {r['image_size']}² | {r['batch_size']} | "
              f"{r['s_per_step']:.2f} | {r['images_per_s']:.2f} | {r['peak_rss_mib']:.0f} | {gpu} |")


if __name__ == "__main__":
    main()
