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

`--reference` adds a third child per round for a CycleGAN preset: the step
of the public code of Rofena et al. 2024 (001, cosbidev/VCE_CESM `train_fn`,
as ../shared/notes/peer-code.md describes it; the pytorch-CycleGAN-and-pix2pix
structure) written plainly over the same networks (this tree's
build_generator / build_discriminator): discriminators first on detached
fakes, then the generators with MSE adversarial, L1 cycle x lambda_cycle and
L1 identity x lambda_identity, two Adam optimisers, each loss read with
.item() for the progress bar as such loops do, no deterministic mode. It
shows what the same architecture costs without our recipe machinery. Its
generator update does not freeze the discriminators, so it also computes
their weight gradients there (more FLOPs per step than ours).

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


def reference_step(config, torch):
    """001's CycleGAN train_fn over our networks (see the module docstring); returns step(batch)."""
    from VirtualContrastTraining.models import build_discriminator, build_generator

    G, F, D_X, D_Y = (build_generator(config), build_generator(config), build_discriminator(config),
                      build_discriminator(config))
    betas = (config.beta1, config.beta2)
    opt_gen = torch.optim.Adam([*G.parameters(), *F.parameters()], lr=config.lr, betas=betas)
    opt_disc = torch.optim.Adam([*D_X.parameters(), *D_Y.parameters()], lr=config.lr, betas=betas)
    mse, l1 = torch.nn.MSELoss(), torch.nn.L1Loss()

    def step(batch):
        x, y = batch["le"], batch["des"]
        fake_y, fake_x = G(x), F(y)
        d_y_real, d_y_fake = D_Y(y), D_Y(fake_y.detach())
        d_x_real, d_x_fake = D_X(x), D_X(fake_x.detach())
        loss_d_y = mse(d_y_real, torch.ones_like(d_y_real)) + mse(d_y_fake, torch.zeros_like(d_y_fake))
        loss_d_x = mse(d_x_real, torch.ones_like(d_x_real)) + mse(d_x_fake, torch.zeros_like(d_x_fake))
        loss_d = (loss_d_x + loss_d_y) / 2
        opt_disc.zero_grad()
        loss_d.backward()
        opt_disc.step()
        d_y_fake, d_x_fake = D_Y(fake_y), D_X(fake_x)
        adversarial = mse(d_y_fake, torch.ones_like(d_y_fake)) + mse(d_x_fake, torch.ones_like(d_x_fake))
        cycle = l1(x, F(fake_y)) + l1(y, G(fake_x))
        identity = l1(x, F(x)) + l1(y, G(y))
        loss_g = adversarial + config.lambda_cycle * cycle + config.lambda_identity * identity
        opt_gen.zero_grad()
        loss_g.backward()
        opt_gen.step()
        return {"D_X": loss_d_x.item(), "D_Y": loss_d_y.item(), "G": loss_g.item()}

    return step


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
    train_step = reference_step(config, torch) if code == "reference" else build_recipe(config, "cpu").train_step
    b, s = config.batch_size, config.image_size
    batch = {"le": torch.rand(b, 1, s, s), "des": torch.rand(b, 1, s, s),
             "mask": (torch.rand(b, 1, s, s) > 0.95).float()}
    with FlopCounterMode(display=False) as counter:
        train_step(batch)  # also the warm-up: allocator, kernels
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(steps):
        train_step(batch)
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


def ratio_line(name: str, key: str, rows: list[dict], against: str = "before") -> str:
    ratios = sorted(pair["now"][key] / pair[against][key] for pair in rows)
    return (f"now / {against}, {name}: median {statistics.median(ratios):.3f} "
            f"(range {ratios[0]:.3f}-{ratios[-1]:.3f}, {len(ratios)} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="rofena2024-cyclegan")
    parser.add_argument("--set", action="append", default=None, metavar="FIELD=VALUE",
                        help=f"config overrides (default: {' '.join(DEFAULT_SETS)})")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per child, after one warm-up")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, default=Path("/tmp/before17"), help="the code before issue 17")
    parser.add_argument("--reference", action="store_true",
                        help="also time 001's CycleGAN train_fn written plainly over the same networks")
    parser.add_argument("--child", choices=("before", "now", "reference"), help=argparse.SUPPRESS)
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
            codes = (("before", args.before.resolve()), ("now", REPO)) + ((("reference", REPO),) if args.reference
                                                                          else ())
            for code, root in codes if round_ % 2 else codes[::-1]:  # ABBA: no drift favours any
                pair[code] = run_child(code, root, args, cwd)
                print(table_row(round_, pair[code], matmul), flush=True)
            pairs.append(pair)
    print(ratio_line("CPU s/step", "cpu_s", pairs))
    print(ratio_line("wall s/step", "wall_s", pairs))
    if args.reference:
        print(ratio_line("CPU s/step", "cpu_s", pairs, against="reference"))
    print(f"load average at the end {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")


if __name__ == "__main__":
    main()
