"""Seconds per training step of the demo preset with `--threads 1` and `--threads N`, on an idle machine and
with a competing CPU-bound process on one core: what `--threads` is for.

Issue 16 measured 140 s vs 12 s per epoch with torch's default thread count vs OMP_NUM_THREADS=1 on a
loaded 2-core machine. Each run is the real CLI (`train --estimate --json`, 1 warm-up + 3 timed steps on
the demo preset), so what is timed is exactly a training step.

    python benchmarks/bench_threads.py [--threads 1,2] [--cases 12]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _busy() -> None:
    while True:
        pass


def _seconds_per_step(manifest: Path, threads: int) -> float:
    done = subprocess.run([sys.executable, "-m", "VirtualContrastTraining", "train", "--preset", "demo",
                           "--manifest", str(manifest), "--estimate", "--device", "cpu", "--threads", str(threads),
                           "--json"], cwd=REPO, capture_output=True, text=True, check=True,
                          env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"})
    estimates = [e for e in map(json.loads, done.stdout.splitlines()) if e.get("estimate")]
    return float(estimates[-1]["seconds_per_step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}")
    parser.add_argument("--cases", type=int, default=12)
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",")]

    from VirtualContrastTraining.data.phantom import generate_dataset

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        manifest = generate_dataset(Path(tmp) / "phantom", args.cases, seed=0, pixel_mm=0.5)
        for load in ("idle", "one core busy"):
            hog = multiprocessing.Process(target=_busy, daemon=True) if load != "idle" else None
            if hog:
                hog.start()
            try:
                for threads in counts:
                    print(f"{load:>14}: --threads {threads}: {_seconds_per_step(manifest, threads):.3f} s/step "
                          f"(demo preset, 128x128, batch 4)", flush=True)
            finally:
                if hog:
                    hog.terminate()


if __name__ == "__main__":
    main()
