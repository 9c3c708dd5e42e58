"""Seconds per image for every analysis of `evaluate`, and for building the HTML report.

Times `evaluate_arrays` (MSE, PSNR, SSIM, VIF, MAE, L1, L2, lesion and
bright-pixel MAE, 003's settings with breast and mass CNR, 000's change and
tissue CNR) on phantom images prepared at each size, for three models (a
synthetic DES plus the two baselines, as evaluate does), then the report of
that evaluation (report.build_report: statistics, figures, HTML).

    python benchmarks/bench_evaluate.py [--sizes 256,512] [--images 8]
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()

    from VirtualContrastTraining.data.prepared import prepare_cases
    from VirtualContrastTraining.data.manifest import read_manifest
    from VirtualContrastTraining.data.phantom import generate_dataset
    from VirtualContrastTraining.data.preprocessing import PreprocessConfig
    from VirtualContrastTraining.evaluation.evaluate import evaluate_arrays, identity_baseline
    from VirtualContrastTraining.evaluation.report import build_report

    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        manifest = generate_dataset(Path(tmp) / "phantom", args.images, seed=0, pixel_mm=0.5)
        cases = read_manifest(manifest)
        print("| size | images x models | s per image and model | report build (s) |")
        print("|---|---|---|---|")
        for size in (int(s) for s in args.sizes.split(",")):
            prepared = prepare_cases(cases, PreprocessConfig(size=size))
            arrays = [{"case_id": p.case.case_id, "density": p.case.density, "le": p.le, "des": p.des,
                       "mask": p.mask if p.has_mask else None} for p in prepared]
            rng = np.random.default_rng(0)
            predictions = {"noisy DES": [np.clip(a["des"] + rng.normal(0, 0.05, a["des"].shape), 0, 1)
                                         for a in arrays],
                           "identity": [identity_baseline(a["le"]) for a in arrays],
                           "blurred DES": [np.clip(a["des"] * 0.9, 0, 1) for a in arrays]}
            start = time.perf_counter()
            rows = evaluate_arrays(arrays, predictions)
            per_image = (time.perf_counter() - start) / len(rows)
            report_s = _report_time(rows, Path(tmp) / f"evaluation-{size}", build_report)
            print(f"| {size} | {len(arrays)} x {len(predictions)} | {per_image:.3f} | {report_s:.2f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


def _report_time(rows, folder: Path, build_report) -> float:
    """Write the evaluation folder's tables as evaluate does (no heatmaps) and time the report."""
    import json

    from VirtualContrastTraining.atomic import write_text_atomic
    from VirtualContrastTraining.evaluation.evaluate import summarize
    from VirtualContrastTraining.evaluation.evaluation_folder import csv_text
    from VirtualContrastTraining import software_versions

    folder.mkdir(parents=True)
    write_text_atomic(folder / "per_image.csv", csv_text(rows))
    write_text_atomic(folder / "summary.csv", csv_text(summarize(rows)))
    write_text_atomic(folder / "provenance.json", json.dumps({
        "model_name": rows[0]["model"], "preset": "benchmark", "split": "test", "n_images": len(rows),
        "versions": software_versions()}))
    start = time.perf_counter()
    build_report([folder], folder / "report.html")
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
