"""Seconds per figure: an evaluation's heatmap figure (PNG 300 dpi + SVG + PDF) and a training epoch's
progress.png plus one validation sample, on phantom images prepared at the demo's size.

These are what issue 16 added to every evaluated case and every epoch: their cost next to an epoch
(seconds on this CPU for the demo preset) and to evaluate's own work says whether they are worth it.

    python benchmarks/bench_figures.py [--size 128] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from VirtualContrastTraining.data.manifest import read_manifest
    from VirtualContrastTraining.data.phantom import generate_dataset
    from VirtualContrastTraining.data.prepared import prepare_cases
    from VirtualContrastTraining.data.preprocessing import PreprocessConfig
    from VirtualContrastTraining.evaluation.heatmap_panels import write_heatmap_panel
    from VirtualContrastTraining.evaluation.panel_facts import native_spacing, panel_facts
    from VirtualContrastTraining.training_progress import write_progress_png, write_sample_png

    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = generate_dataset(tmp / "phantom", 2, seed=0, pixel_mm=0.5)
        prepared = prepare_cases(read_manifest(manifest), PreprocessConfig(size=args.size))[0]
        synthetic = np.clip(prepared.des + 0.05 * np.random.default_rng(0).standard_normal(prepared.des.shape), 0, 1)
        facts = panel_facts(prepared, args.size, native_spacing(prepared.case.le_path))
        mask = prepared.mask if prepared.has_mask else None

        def heatmap():
            write_heatmap_panel(tmp / "case.png", prepared.le, prepared.des, synthetic, mask=mask, title="case",
                                error_vmax=0.2, vmax_source="a fixed level", facts=facts)

        history = [{"epoch": e, "G": 2.0 / e, "D": 0.3, "cycle": 0.5 / e, "val_l1": 0.2 / e, "lr": 2e-4}
                   for e in range(1, 36)]

        def epoch_outputs():
            write_progress_png(tmp / "progress.png", history)
            write_sample_png(tmp / "sample.png", prepared.le, synthetic, prepared.des, title="case, epoch 35",
                             value_range=(0.0, 1.0))

        heatmap()  # matplotlib's first figure loads fonts: not part of the cost per figure
        print(f"heatmap figure at {args.size}x{args.size} (PNG 300 dpi + SVG + PDF): "
              f"{_median_seconds(heatmap, args.repeats):.3f} s median of {args.repeats}; files "
              + ", ".join(f"{p.suffix} {p.stat().st_size / 1e3:.0f} kB" for p in sorted(tmp.glob("case.*"))))
        print(f"progress.png (35 epochs) + one validation sample: "
              f"{_median_seconds(epoch_outputs, args.repeats):.3f} s median of {args.repeats}")


if __name__ == "__main__":
    main()
