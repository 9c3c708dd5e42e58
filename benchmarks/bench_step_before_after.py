"""Our training step before issue 17 against now: same preset and config, alternating child processes, 1 thread.

"before" is the code of commit 90d9fab extracted at --before (default
/tmp/before17: `git archive 90d9fab | tar -x -C /tmp/before17`), "now" this
working tree. Each child imports its own VirtualContrastTraining (PYTHONPATH,
run from a temporary folder outside the repository, so the editable install
of the working tree cannot win) and does what its train() did on a CPU:
before 17, train() turned torch.use_deterministic_algorithms(True) on for
every CPU run; now it is off unless `train --deterministic`. Both build the
recipe with build_recipe(config, "cpu") and time train_step on random
tensors (the step's cost does not depend on pixel values).

Times are process CPU time per step (what a shared machine cannot steal)
and wall time; with one thread they agree on an idle machine. The achieved
rate is the step's FLOPs (FlopCounterMode, forward and backward) per CPU
second, beside a 1-thread float32 matmul measured the same way in this run.

    python benchmarks/bench_step_before_after.py [--preset rofena2024-cyclegan]
        [--set ngf=32 --set image_size=128 --set batch_size=2] [--steps 3] [--rounds 3] [--before /tmp/before17]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SETS = ["ngf=32", "image_size=128", "batch_size=2"]

TABLE_HEAD = ("| round | code | deterministic | CPU s/step | wall s/step | GFLOP/step | GFLOP/s (CPU time) | "
              "share of matmul |\n|---|---|---|---|---|---|---|---|")


def matmul_gflops_cpu_time(size: int = 1024, repeats: int = 5) -> float:
    """The float32 matmul rate of one thread per CPU second: the best of `repeats`."""
    import torch  # lazy: torch

    torch.set_num_threads(1)
    a, b = torch.rand(size, size), torch.rand(size, size)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.process_time()
        torch.mm(a, b)
        times.append(time.process_time() - start)
    return 2 * size**3 / min(times) / 1e9


def child(code: str, preset: str, sets: list[str], steps: int) -> None:
    """One step timing in this process, as `code`'s train() ran on a CPU; prints one JSON line."""
    import torch  # lazy: torch
    from torch.utils.flop_counter import FlopCounterMode  # lazy: torch

    import VirtualContrastTraining
    from VirtualContrastTraining.config.presets import resolve_config
    from VirtualContrastTraining.config.schema import parse_assignments
    from VirtualContrastTraining.recipes import build_recipe

    deterministic = code == "before"
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(deterministic)
    config = resolve_config(preset, parse_assignments(sets))
    recipe = build_recipe(config, "cpu")
    b, s = config.batch_size, config.image_size
    batch = {"le": torch.rand(b, 1, s, s), "des": torch.rand(b, 1, s, s),
             "mask": (torch.rand(b, 1, s, s) > 0.95).float()}
    with FlopCounterMode(display=False) as counter:
        recipe.train_step(batch)  # also the warm-up: allocator, kernels
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(steps):
        recipe.train_step(batch)
    print(json.dumps({
        "code": code, "package": VirtualContrastTraining.__file__, "deterministic": deterministic,
        "cpu_s": (time.process_time() - cpu) / steps, "wall_s": (time.perf_counter() - wall) / steps,
        "gflop_per_step": counter.get_total_flops() / 1e9, "threads": torch.get_num_threads(),
    }))


def run_child(code: str, root: Path, args, cwd: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    sets = [f"--set={a}" for a in args.set]
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", code, "--preset", args.preset,
                          "--steps", str(args.steps), *sets], capture_output=True, text=True, env=env, cwd=cwd)
    if out.returncode:
        raise RuntimeError(f"the {code} child failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if not row["package"].startswith(str(root)):
        raise RuntimeError(f"the {code} child imported {row['package']}, not the code under {root}")
    return row


def table_row(round_: int, row: dict, matmul: float) -> str:
    rate = row["gflop_per_step"] / row["cpu_s"]
    return (f"| {round_} | {row['code']} | {'on' if row['deterministic'] else 'off'} | {row['cpu_s']:.3f} | "
            f"{row['wall_s']:.3f} | {row['gflop_per_step']:.2f} | {rate:.1f} | {rate / matmul:.1%} |")


def ratio_line(name: str, key: str, rows: list[tuple[dict, dict]]) -> str:
    ratios = sorted(now[key] / before[key] for before, now in rows)
    return (f"now / before, {name}: median {statistics.median(ratios):.3f} "
            f"(range {ratios[0]:.3f}-{ratios[-1]:.3f}, {len(ratios)} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="rofena2024-cyclegan")
    parser.add_argument("--set", action="append", default=None, metavar="FIELD=VALUE",
                        help=f"config overrides (default: {' '.join(DEFAULT_SETS)})")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per child, after one warm-up")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, default=Path("/tmp/before17"), help="the code before issue 17")
    parser.add_argument("--child", choices=("before", "now"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.set = DEFAULT_SETS if args.set is None else args.set
    if args.child:
        child(args.child, args.preset, args.set, args.steps)
        return
    if not (args.before / "VirtualContrastTraining").is_dir():
        sys.exit(f"{args.before}: no VirtualContrastTraining here (git archive 90d9fab | tar -x -C {args.before})")
    matmul = matmul_gflops_cpu_time()
    load = os.getloadavg()
    print(f"{args.preset} --set {' '.join(args.set)}; 1 thread, {args.steps} timed steps per child after a "
          f"warm-up, order before-now then now-before; load average {load[0]:.2f} {load[1]:.2f} on "
          f"{os.cpu_count()} cores")
    print(f"before: {args.before} (train() turned deterministic algorithms on for CPU runs); now: {REPO} "
          f"(off by default); 1-thread float32 matmul {matmul:.1f} GFLOP/s of CPU time")
    print(TABLE_HEAD)
    pairs = []
    with tempfile.TemporaryDirectory(prefix="bench-before-after-") as cwd:
        for round_ in range(1, args.rounds + 1):
            pair = {}
            codes = (("before", args.before.resolve()), ("now", REPO))
            for code, root in codes if round_ % 2 else codes[::-1]:  # ABBA: no drift favours either
                pair[code] = run_child(code, root, args, cwd)
                print(table_row(round_, pair[code], matmul), flush=True)
            pairs.append((pair["before"], pair["now"]))
    print(ratio_line("CPU s/step", "cpu_s", pairs))
    print(ratio_line("wall s/step", "wall_s", pairs))
    print(f"load average at the end {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")


if __name__ == "__main__":
    main()
