"""The GPU figures of issue 17 in one prepared run: img/s per paper preset, MFU, bf16 vs fp32, channels_last, compile.

Meant for a lent GPU with a few minutes of device time (one call, about
8 minutes in all; each measurement has its own timeout, and a failed or
timed-out one becomes a row saying so instead of ending the run):

- the measured matmul peak of the GPU in bf16, fp16 and fp32 (8192x8192
  torch.mm, TF32 off), the denominators of MFU;
- every paper preset at the paper's size and batch, amp as configured
  (bfloat16 where supported): s/step, images/s, GFLOP/step, achieved
  GFLOP/s, MFU (share of the matmul peak in the step's precision), peak
  GPU memory (bench_train.py's child processes);
- the three recipe families (one preset each) in fp32 (amp off), and with
  --channels-last, to compare with the bf16 rows;
- --compile for one preset;
- the data-loading share of the step interval with 0 and 4 DataLoader
  workers: the real `train --json` on a phantom (bench_train.data_share).

Rows go to stderr as they are measured; the markdown tables go to stdout at
the end and, when $OUT is set, to $OUT/gpu_figures.md (rewritten after every
row, so a run cut short keeps what it measured) with the raw rows in
$OUT/gpu_figures.jsonl. The data-loading share runs before channels_last and
compile, which matter less, and no measurement starts after --budget-s.
On a GPU the fp32 rows' convolutions use cuDNN's default TF32; the matmul
peaks are measured with TF32 off.

--cpu-smoke runs the same sequence on the CPU at tiny sizes, to check the
script where no GPU is; --parts picks sections and --presets the presets
of every section (the test runs one of each).

    python benchmarks/gpu_figures.py                      # on the GPU machine
    python benchmarks/gpu_figures.py --cpu-smoke [--parts presets,fp32,channels_last,compile,data_share]
        [--presets rofena2024-pix2pix]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_train import (FAMILIES, SHARE_HEAD, TABLE_HEAD, data_share, make_phantom, matmul_gflops, measure,
                         share_row, table_row)

#: Every paper's presets at the paper's size and batch (config/presets.py); the scaled-down demo is not one.
PAPER_PRESETS = ("rofena2024-cyclegan,rofena2024-pix2pix,rofena2024-autoencoder,rofena2025-segcyclegan-g35,"
                 "hosseinipour2024-pix2pix-unet512,perre2025-unet,zormpas2026-cyclegan-patch")
COMPILED = "rofena2024-cyclegan"
PARTS = ("presets", "fp32", "channels_last", "compile", "data_share")

#: --cpu-smoke: tiny networks and images, every preset still its own recipe and generator.
SMOKE_SETS = ["image_size=64", "patch_size=64", "batch_size=2", "ngf=8", "ndf=8", "n_blocks=1", "unet_depth=4"]


class Report:
    """The markdown so far, by section (the step table, the data-loading table, the footer): each line goes to
    stderr as it comes and the whole is rewritten under $OUT, so that a run cut short keeps what it measured;
    main prints the whole to stdout at the end."""

    def __init__(self, out: str | None, header: str):
        self.out = Path(out) if out else None
        self.sections = {"steps": [header, TABLE_HEAD], "share": [], "end": []}
        print(f"{header}\n{TABLE_HEAD}", file=sys.stderr, flush=True)
        if self.out:
            (self.out / "gpu_figures.jsonl").unlink(missing_ok=True)

    def add(self, line: str, raw: dict | None = None, section: str = "steps") -> None:
        self.sections[section].append(line)
        print(line, file=sys.stderr, flush=True)
        if self.out:
            (self.out / "gpu_figures.md").write_text(self.text())
            if raw is not None:
                with open(self.out / "gpu_figures.jsonl", "a") as f:
                    f.write(json.dumps(raw) + "\n")

    def text(self) -> str:
        return "\n".join(line for lines in self.sections.values() for line in lines) + "\n"


def time_left(args, wanted: float) -> float:
    """The timeout of the next measurement: `wanted`, or less near the end of --budget-s (0: none may start)."""
    left = args.deadline - time.perf_counter()
    return min(wanted, left) if left >= 30 else 0


def step_rows(report: Report, presets: str, ceilings: dict, args, timeout: float, **options) -> None:
    """One table row per preset with `options` (bench_train.measure's), or a row saying why it failed."""
    for preset in presets.split(","):
        if not (left := time_left(args, timeout)):
            report.add(f"| {preset} | skipped ({options}): --budget-s spent |")
            continue
        try:
            row = measure(preset, steps=args.steps, device=args.device, sets=args.set, timeout=left, **options)
            report.add(table_row(row, ceilings), row)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            report.add(f"| {preset} | failed ({options}): {str(error).strip().splitlines()[-1][:200]} |")


def share_rows(report: Report, args, timeout: float) -> None:
    with tempfile.TemporaryDirectory(prefix="gpu-figures-") as tmp:
        manifest = make_phantom(Path(tmp) / "phantom", args.cases, args.pixel_mm)
        report.add(f"\nData-loading share: train --json --preset {args.share_preset} --epochs {args.epochs}, "
                   f"a {args.cases}-image phantom at {args.pixel_mm} mm, --set {' '.join(args.set) or '-'}\n",
                   section="share")
        report.add(SHARE_HEAD, section="share")
        for workers in args.workers:
            if not (left := time_left(args, timeout)):
                report.add(f"| {workers} | skipped: --budget-s spent |", section="share")
                continue
            try:
                row = data_share(manifest, Path(tmp) / f"run-{workers}", workers, preset=args.share_preset,
                                 epochs=args.epochs, device=args.device, sets=args.set, timeout=left)
                report.add(share_row(row), row, section="share")
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                report.add(f"| {workers} | failed: {str(error).strip().splitlines()[-1][:200]} |", section="share")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (checks the script)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"sections to run, of {','.join(PARTS)}")
    parser.add_argument("--presets", help="every section with these presets only (comma-separated)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--budget-s", type=float, default=450, help="no measurement starts after this many seconds")
    args = parser.parse_args()
    smoke = args.cpu_smoke
    args.device = "cpu" if smoke else "cuda"
    args.set = SMOKE_SETS if smoke else []
    args.steps = 1 if smoke else args.steps
    args.cases, args.pixel_mm, args.epochs = (6, 2.0, 1) if smoke else (96, 0.5, 2)
    args.share_preset = "demo" if smoke else "rofena2024-cyclegan"
    args.workers = (0, 2) if smoke else (0, 4)
    parts = args.parts.split(",")
    paper, families, compiled = ((args.presets,) * 3 if args.presets
                                 else (FAMILIES if smoke else PAPER_PRESETS, FAMILIES, COMPILED))
    import torch  # lazy: torch

    precisions = ("fp32",) if smoke else ("bf16", "fp16", "fp32")
    ceilings = {p: matmul_gflops(args.device, p) for p in precisions}
    if args.device == "cuda":
        torch.cuda.empty_cache()  # the matmuls' memory back to the children, whose peak the table reports
    name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    report = Report(os.environ.get("OUT"), (
        f"# GPU figures (benchmarks/gpu_figures.py{' --cpu-smoke' if smoke else ''})\n\n"
        f"{name}, torch {torch.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; matmul peak "
        + ", ".join(f"{p} {ceilings[p]:.0f} GFLOP/s" for p in precisions)
        + f"; {args.steps} timed steps per row" + (f"; --set {' '.join(args.set)}" if args.set else "") + "\n"))
    start = time.perf_counter()
    args.deadline = start + (float("inf") if smoke else args.budget_s)
    timeout = 300 if smoke else 120
    # In the order of what matters most, should the budget run out: the data-loading table prints last.
    if "presets" in parts:
        step_rows(report, paper, ceilings, args, timeout)
    if "fp32" in parts and not smoke:  # on the CPU every row is already float32
        step_rows(report, families, ceilings, args, timeout, amp="fp32")
    if "data_share" in parts:
        share_rows(report, args, 2 * timeout)
    if "channels_last" in parts:
        step_rows(report, families, ceilings, args, timeout, channels_last=True)
    if "compile" in parts:
        step_rows(report, compiled, ceilings, args, 2 * timeout, compile=True)
    report.add(f"\n{time.perf_counter() - start:.0f} s of measurements; load average {os.getloadavg()[0]:.2f}",
               section="end")
    print(report.text(), end="")


if __name__ == "__main__":
    main()
