"""Seconds to synthesize one full-size (2850 x 2394 at 0.1 mm) DES from its LE, and the share spent resampling.

Times `Synthesizer.synthesize` end to end (read-free: preprocess, generator,
inverse preprocessing back to the LE's geometry) on a full-size phantom LE,
for a freshly initialised generator of each preset (weights do not change the
cost; torch.manual_seed(0) makes them the same in every process), or for a
trained run given with --model.

"Resampling" is the resize down to the network's input (preprocessing's
`_resize`) plus all of `postprocess` (resize back up, crop, intensity map),
timed by wrapping the two functions. With --before PATH (a plain copy of
an older version of the project, e.g. the code before issue 17), each preset
also runs under that code: both versions in child processes, alternating
(before, after, before, ...) since the cores are shared, each child timing
`--repeats` calls after one warm-up call, the load average recorded around
each; and the synthetic DES of the two versions is compared (max abs
difference, PSNR over the DES window).

    python benchmarks/bench_synthesis.py [--presets demo,rofena2025-segcyclegan-g35] [--model RUN]
        [--repeats 3] [--rounds 2] [--before /tmp/before17] [--device cpu] [--threads N]
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DES_WINDOW = (1700.0, 2400.0)


def full_size_le():
    from VirtualContrastTraining.data.phantom import simulate_case

    case = simulate_case(np.random.default_rng(0), pixel_mm=0.1, laterality="L", view="MLO", density="c")
    return case.image(case.le)


def child(spec: dict) -> dict:
    """One version of the code (whatever PYTHONPATH imports) on one model: seconds per call and in resampling."""
    import torch

    from VirtualContrastTraining import synthesis
    from VirtualContrastTraining.config.presets import resolve_config
    from VirtualContrastTraining.data import preprocessing
    from VirtualContrastTraining.data.imageio import read_image

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    spent = [0.0]

    def timed(function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start
        return wrapper

    preprocessing._resize = timed(preprocessing._resize)  # preprocess looks it up at each call
    synthesis.postprocess = timed(synthesis.postprocess)  # synthesize calls synthesis.postprocess
    le = read_image(spec["le"])
    torch.manual_seed(0)
    synth = (synthesis.Synthesizer.load(spec["model"], spec["device"]) if spec["model"] else
             synthesis.Synthesizer.untrained(resolve_config(spec["preset"]), DES_WINDOW, spec["device"]))
    out = synth.synthesize(le)  # warm-up: one-off allocations and kernel choices
    np.save(spec["out"], out.array)
    seconds, resampling = [], []
    for _ in range(spec["repeats"]):
        spent[0] = 0.0
        start = time.perf_counter()
        synth.synthesize(le)
        if synth.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        resampling.append(spent[0])
    pp = synth.patch_pipeline
    return {"seconds": seconds, "resampling": resampling, "shape": list(out.shape), "threads": torch.get_num_threads(),
            "input": f"{pp.patch_size}² patches, stride {pp.sw_stride}" if pp else f"{synth.preprocess_config.size}²"}


def run_child(code: Path, spec: dict) -> dict:
    """`child(spec)` in a new process importing the project from `code` (run from a temporary folder, so the
    current directory does not shadow it)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=tempfile.gettempdir())
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return {**json.loads(proc.stdout.splitlines()[-1]), "load": (load + os.getloadavg()[0]) / 2}


def difference(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """Max abs difference and PSNR (dB, peak = the DES window's width) between two synthetic DES."""
    diff = np.abs(after.astype(np.float64) - before.astype(np.float64))
    mse = float(np.mean(diff ** 2))
    peak = DES_WINDOW[1] - DES_WINDOW[0]
    return float(diff.max()), (float("inf") if mse == 0 else 10 * np.log10(peak ** 2 / mse))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="demo,rofena2025-segcyclegan-g35")
    parser.add_argument("--model", default="", help="a trained run folder instead of untrained presets")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per child process")
    parser.add_argument("--rounds", type=int, default=2, help="child processes per version and preset")
    parser.add_argument("--before", default="", help="a copy of an older version of the project to compare with")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    from VirtualContrastTraining.data.imageio import write_nrrd

    versions = {"before": Path(args.before), "after": ROOT} if args.before else {"after": ROOT}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared), "
          f"python {platform.python_version()}, device {args.device}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        le = full_size_le()
        le_path = str(write_nrrd(le, Path(tmp) / "le.nrrd"))
        print(f"full-size phantom LE {le.shape[0]} x {le.shape[1]} simulated in {time.perf_counter() - start:.1f} s")
        print("| model | model input | code | s per image (median; each round's best) | resampling, s (share) "
              "| load average | output shape |")
        print("|---|---|---|---|---|---|---|")
        outputs = {}
        for name in [f"trained {args.model}"] if args.model else args.presets.split(","):
            runs = {version: [] for version in versions}
            for round_ in range(args.rounds):
                for version, code in versions.items():
                    out = str(Path(tmp) / f"{version}.npy")
                    spec = {"le": le_path, "preset": name, "model": args.model, "repeats": args.repeats,
                            "device": args.device, "threads": args.threads, "out": out}
                    runs[version].append(run_child(code, spec))
                    outputs[version] = np.load(out)
            for version, rows in runs.items():
                seconds = [s for r in rows for s in r["seconds"]]
                resampling = [s for r in rows for s in r["resampling"]]
                best = ", ".join(f"{min(r['seconds']):.2f}" for r in rows)
                loads = ", ".join(f"{r['load']:.1f}" for r in rows)
                print(f"| {name} | {rows[0]['input']} | {version} | {np.median(seconds):.2f} ({best}) | "
                      f"{np.median(resampling):.2f} ({100 * sum(resampling) / sum(seconds):.0f} %) | {loads} | {rows[0]['shape'][0]} x {rows[0]['shape'][1]} |")
            if "before" in outputs:
                worst, psnr = difference(outputs["before"], outputs["after"])
                print(f"  {name}: after vs before, same weights and LE: max |difference| {worst:.3g}, "
                      f"PSNR {psnr:.1f} dB (peak: the DES window's width {DES_WINDOW[1] - DES_WINDOW[0]:g})")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
