"""Training throughput (images/s), peak memory and achieved FLOP/s of each recipe family's step on this machine.

One row per preset (default: one per recipe family, cyclegan, pix2pix and
supervised, in the sizes of Rofena et al. 2024 unless --set changes them).
Each runs in its own child process so that its peak memory is its own
(resident set on the CPU, torch.cuda.max_memory_allocated on a GPU). Random
tensors stand in for data: the cost of a step does not depend on pixel
values; the data-loading share is measured apart (--data-share), by the real
`train` command on a phantom.

The FLOPs of one step (forward and backward, torch's FlopCounterMode, eager)
over its time give the achieved rate, shown as a share of this machine's
matmul rate in the step's precision (an 8192x8192 torch.mm; 1024 on a CPU),
the ceiling a convolution network can approach (MFU on a GPU).

The run options of VirtualContrastTraining.execution go to the recipe as
they would from `train`: --deterministic (off|on, or both in alternating
child processes), --channels-last, --compile; --amp picks the precision of
a CUDA step (auto = the preset's amp: bfloat16 where the GPU supports it,
else float16; fp16 forces float16 and its GradScaler; fp32 turns amp off).

--data-share runs `train --json` on a small phantom once per --workers count
and reads the share of the step interval spent waiting for the next batch
(its `finished` event's data_share) and its images/s.

    python benchmarks/bench_train.py [--presets rofena2024-cyclegan,...] [--steps 5] [--device cpu]
        [--set image_size=128 --set batch_size=2] [--amp auto|bf16|fp16|fp32] [--channels-last] [--compile]
        [--deterministic off|on|both] [--rounds 2]
    python benchmarks/bench_train.py --data-share [--workers 0,2] [--preset demo] [--cases 40] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: One preset per recipe family (cyclegan, pix2pix, supervised).
FAMILIES = "rofena2024-cyclegan,rofena2024-pix2pix,rofena2024-autoencoder"

TABLE_HEAD = ("| preset | model | image | batch | precision | options | s/step | images/s | GFLOP/step | GFLOP/s | "
              "share of matmul | peak RSS (MiB) | peak GPU (MiB) |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|")

SHARE_HEAD = ("| workers | epochs | steps | images/s | data-loading share | wall (s) |\n"
              "|---|---|---|---|---|---|")


def child_env() -> dict:
    """The environment of the child processes: this tree's package first on the path, installed or not (a GPU
    machine's python may hold torch but not this project)."""
    path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    return {**os.environ, "PYTHONPATH": path}


def matmul_gflops(device: str = "cpu", precision: str = "fp32", repeats: int = 5) -> float:
    """This machine's matmul rate in `precision` with torch's threads: the best of `repeats` (TF32 off)."""
    import torch  # lazy: torch

    dev = torch.device(device)
    size = 8192 if dev.type == "cuda" else 1024
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = torch.rand(size, size, device=dev, dtype=dtype), torch.rand(size, size, device=dev, dtype=dtype)
    best = min(_timed(lambda: torch.mm(a, b), dev) for _ in range(repeats + 1))
    return 2 * size**3 / best / 1e9


def _timed(work, dev) -> float:
    import torch  # lazy: torch

    start = time.perf_counter()
    work()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - start


def child(spec: dict) -> None:
    """Time `spec`'s preset in this process and print one JSON line (see measure)."""
    import torch  # lazy: torch
    from torch.utils.flop_counter import FlopCounterMode  # lazy: torch

    from VirtualContrastTraining.config.presets import resolve_config
    from VirtualContrastTraining.config.schema import parse_assignments
    from VirtualContrastTraining.devices import resolve_device
    from VirtualContrastTraining.execution import Execution, amp_dtype
    from VirtualContrastTraining.recipes import build_recipe

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(spec["deterministic"])
    sets = list(spec["sets"]) + (["amp=false"] if spec["amp"] == "fp32" else ["amp=true"] if spec["amp"] != "auto"
                                 else [])
    config = resolve_config(spec["preset"], parse_assignments(sets))
    dev = resolve_device(spec["device"])
    if spec["amp"] == "fp16":
        torch.cuda.is_bf16_supported = lambda *args, **kwargs: False  # amp_dtype then picks float16 + GradScaler
    execution = Execution(deterministic=spec["deterministic"], channels_last=spec["channels_last"],
                          compile=spec["compile"])
    recipe = build_recipe(config, dev, execution)
    b = config.batch_size
    s = config.patch_size if config.pipeline == "patches" else config.image_size
    batch = {
        "le": torch.rand(b, 1, s, s),
        "des": torch.rand(b, 1, s, s),
        "mask": (torch.rand(b, 1, s, s) > 0.95).float(),
    }
    recipe.train_step(batch)  # warm-up: allocator, kernels, compilation
    recipe.train_step(batch)
    with torch.compiler.set_stance("force_eager"), FlopCounterMode(display=False) as counter:
        recipe.train_step(batch)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        recipe.train_step(batch)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = (time.perf_counter() - start) / spec["steps"]
    precision = ({torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype(dev)]
                 if config.amp and dev.type == "cuda" else "fp32")
    print(json.dumps({
        **spec, "image_size": s, "batch_size": b, "precision": precision,
        "model": f"{config.recipe}, {config.generator} ngf {config.ngf}",
        "s_per_step": seconds, "images_per_s": b / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
        "device": str(dev), "torch_threads": torch.get_num_threads(),
        "gflop_per_step": counter.get_total_flops() / 1e9,
    }))


def measure(preset: str, *, steps: int = 5, device: str = "cpu", sets=(), amp: str = "auto",
            deterministic: bool = False, channels_last: bool = False, compile: bool = False,
            timeout: float | None = None) -> dict:
    """One preset's step timed in a child process: s/step, images/s, GFLOP/step, peak memory, precision."""
    spec = {"preset": preset, "steps": steps, "device": device, "sets": list(sets), "amp": amp,
            "deterministic": deterministic, "channels_last": channels_last, "compile": compile}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                         timeout=timeout, env=child_env())
    if out.returncode:
        raise RuntimeError(f"{preset} {spec}: child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def options_text(row: dict) -> str:
    """The run options of a row, as `train` spells them ('-' when none)."""
    names = [name for name, on in (("--deterministic", row["deterministic"]), ("--channels-last", row["channels_last"]),
                                   ("--compile", row["compile"])) if on]
    return " ".join(names) or "-"


def significant(x: float) -> str:
    """`x` with 3 significant digits and no exponent (GFLOP from 0.01 to 10^4)."""
    return f"{x:.{max(0, 2 - math.floor(math.log10(abs(x))))}f}" if x else "0"


def table_row(row: dict, ceilings: dict[str, float]) -> str:
    """A row of TABLE_HEAD; the share is of the matmul rate in the row's precision."""
    gpu = f"{row['peak_gpu_mib']:.0f}" if row["peak_gpu_mib"] is not None else "-"
    rate = row["gflop_per_step"] / row["s_per_step"]
    return (f"| {row['preset']} | {row['model']} | {row['image_size']}² | {row['batch_size']} | {row['precision']} | "
            f"{options_text(row)} | {row['s_per_step']:.3f} | {row['images_per_s']:.2f} | "
            f"{significant(row['gflop_per_step'])} | {significant(rate)} | {rate / ceilings[row['precision']]:.1%} | "
            f"{row['peak_rss_mib']:.0f} | {gpu} |")


def make_phantom(folder: Path, cases: int, pixel_mm: float) -> Path:
    """A phantom through the real CLI (`phantom`); returns its manifest."""
    subprocess.run([sys.executable, "-m", "VirtualContrastTraining", "phantom", "--out", str(folder),
                    "--cases", str(cases), "--pixel-mm", str(pixel_mm)], check=True, capture_output=True,
                   env=child_env())
    return folder / "manifest.csv"


def data_share(manifest: Path, run_dir: Path, workers: int, *, preset: str = "demo", epochs: int = 1,
               device: str = "cpu", sets=(), timeout: float | None = None) -> dict:
    """`train --json` with `workers` DataLoader workers: the share of the step interval spent waiting for data."""
    sets = [f"--set={a}" for a in sets]
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "VirtualContrastTraining", "train", "--json", "--preset", preset,
                          "--manifest", str(manifest), "--out", str(run_dir), "--epochs", str(epochs),
                          "--device", device, "--workers", str(workers), *sets],
                         capture_output=True, text=True, timeout=timeout, env=child_env())
    wall = time.perf_counter() - start
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    finished = [e for e in events if e["event"] == "finished"]
    if out.returncode or not finished:
        raise RuntimeError(f"train --workers {workers} failed:\n{out.stderr[-3000:]}")
    steps = max((e["step"] for e in events if e["event"] == "progress"), default=0)
    return {"workers": workers, "epochs": epochs, "steps": steps, "images_per_s": finished[-1]["images_per_s"],
            "data_share": finished[-1]["data_share"], "wall_s": wall}


def share_row(row: dict) -> str:
    return (f"| {row['workers']} | {row['epochs']} | {row['steps']} | {row['images_per_s']:.2f} | "
            f"{row['data_share']:.1%} | {row['wall_s']:.1f} |")


def run_data_share(args) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-share-") as tmp:
        manifest = make_phantom(Path(tmp) / "phantom", args.cases, args.pixel_mm)
        print(f"data-loading share: train --json --preset {args.preset} on a {args.cases}-image phantom at "
              f"{args.pixel_mm} mm, --device {args.device}, --set {args.set}")
        print(SHARE_HEAD)
        for _ in range(args.rounds):
            for workers in (int(w) for w in args.workers.split(",")):
                row = data_share(manifest, Path(tmp) / f"run-{workers}", workers, preset=args.preset,
                                 epochs=args.epochs, device=args.device, sets=args.set)
                print(share_row(row), flush=True)


def run_steps(args) -> None:
    import torch  # lazy: torch

    precisions = ("fp32", "bf16", "fp16") if args.device.startswith("cuda") else ("fp32",)
    ceilings = {p: matmul_gflops(args.device, p) for p in precisions}
    rates = ", ".join(f"{p} matmul {ceilings[p]:.0f} GFLOP/s" for p in precisions)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, --device {args.device}; {rates}; "
          f"--set {args.set}")
    print(TABLE_HEAD)
    modes = (False, True) if args.deterministic == "both" else (args.deterministic == "on",)
    for _ in range(args.rounds):
        for preset in args.presets.split(","):
            for deterministic in modes:
                row = measure(preset, steps=args.steps, device=args.device, sets=args.set, amp=args.amp,
                              deterministic=deterministic, channels_last=args.channels_last, compile=args.compile)
                print(table_row(row, ceilings), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=FAMILIES)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="for every preset")
    parser.add_argument("--amp", choices=("auto", "bf16", "fp16", "fp32"), default="auto")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--deterministic", choices=("off", "on", "both"), default="off")
    parser.add_argument("--rounds", type=int, default=1, help="alternating repeats of every configuration")
    parser.add_argument("--data-share", action="store_true", help="measure the data-loading share instead")
    parser.add_argument("--workers", default="0,2", help="--data-share: DataLoader worker counts")
    parser.add_argument("--preset", default="demo", help="--data-share: the preset trained")
    parser.add_argument("--cases", type=int, default=40, help="--data-share: phantom images")
    parser.add_argument("--pixel-mm", type=float, default=0.5, help="--data-share: phantom pixel size")
    parser.add_argument("--epochs", type=int, default=2, help="--data-share: epochs per run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
    elif args.data_share:
        run_data_share(args)
    else:
        run_steps(args)


if __name__ == "__main__":
    main()
