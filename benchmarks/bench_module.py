"""Timings of the Slicer module's logic on one full-size phantom image (slicer-core scene, no Slicer).

    .venv/bin/python benchmarks/bench_module.py [--model demo-output/run] [--pixel-mm 0.1]

What a user waits for after each click: loading the LE/DES DICOMs, the
synthesis job (child process start, torch import, model load, predict,
loading the result), the heatmaps, CNR on two ROIs with a lesion ring, and
rendering the four views to PNG. Without --model a tiny untrained generator
is used (the job's overhead then dominates; prediction time is in
bench_synthesis.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "VirtualContrast"), str(REPO / "Testing")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="run folder (default: a tiny untrained generator)")
    parser.add_argument("--pixel-mm", type=float, default=0.1, help="phantom pixel size (0.1 = 2850x2394-ish)")
    args = parser.parse_args(argv)

    from conftest import make_tiny_model
    from VirtualContrastLib import nodes, rendering
    from VirtualContrastLib.headless import newScene
    from VirtualContrastLib.logic import VirtualContrastLogicBase
    from VirtualContrastTraining.data.manifest import read_manifest
    from VirtualContrastTraining.data.phantom import generate_dataset

    work = Path(tempfile.mkdtemp(prefix="bench-module-"))
    case = next(c for c in read_manifest(generate_dataset(work / "ph", 1, seed=5, pixel_mm=args.pixel_mm)))
    model = args.model or make_tiny_model(work / "run", image_size=128)
    newScene()
    logic = VirtualContrastLogicBase()
    timings = {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - start
        return out

    loaded = timed("load LE + DES DICOM", lambda: logic.loadCase(case.le_path, case.des_path))
    rows, cols = nodes.imageFromVolume(loaded.le).shape
    synthetic = timed("synthesis job (start to node)", lambda: logic.synthesize(loaded.le, model, device="cpu"))
    heat = timed("difference heatmaps", lambda: logic.differenceHeatmap(loaded.des, synthetic, loaded.le))
    logic.showComparison(loaded.le, loaded.des, synthetic, heat.absolute)
    ijk_to_ras = nodes.ijkToRasArray(loaded.le)
    rois = []
    for name, (fc, fr) in (("fibroglandular", (0.6, 0.5)), ("adipose", (0.6, 0.25)), ("lesion", (0.7, 0.6))):
        roi = logic.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
        roi.SetCenter(*(ijk_to_ras @ [fc * cols, fr * rows, 0, 1])[:3])
        roi.SetSize(15, 15, 5)
        rois.append(roi)
    timed("CNR (3 images, 2 ROIs + lesion ring)", lambda: logic.computeCNR(
        rois[0], rois[1], {"LE": loaded.le, "real DES": loaded.des, "synthetic DES": synthetic}, lesion=rois[2]))
    timed("render 4 views to PNG", lambda: rendering.writeComparisonPNG(work / "views.png", heatmap=heat.absolute))

    print(f"image {cols}x{rows} at {args.pixel_mm} mm; model {'tiny untrained' if not args.model else model}")
    for name, seconds in timings.items():
        print(f"  {name:40s} {seconds:7.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
