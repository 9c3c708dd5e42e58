"""The Slicer module's job without Slicer: a phantom case in an MRML scene, end to end, to one PNG.

    make demo                                        # phantom + demo model in demo-output/
    .venv/bin/python examples/slicer_core_walkthrough.py [--demo demo-output] [--out walkthrough-output/comparison.png]

It writes only under the output given (default walkthrough-output/, ignored by git). README's screenshot is
made by `--out Resources/screenshot-comparison.png`.

With the PyPI package slicer-core only (no Slicer application), it does what a
user does in the module's panel, through the same Logic calls:
1. load a held-out phantom case (LE, real DES, lesion segmentation) into a scene;
2. synthesize the DES with the demo model, as a background job followed
   through the progress protocol;
3. build the difference heatmaps and the four-view comparison layout;
4. compute CNR on the phantom's ground-truth fibroglandular and adipose masks
   (standing in for regions a reader draws) and on the lesion against a 5 mm
   ring, for LE, real DES and synthetic DES, into a table node;
5. render the four views with the table to one PNG (the README screenshot).
It then repeats step 4 on every test-split case and prints the tissue CNR as
mean ± sd per image type, the layout of Zormpas-Petridis et al. 2026, Table 2.

How far the numbers reproduce: the LE and real DES columns involve no model and are the same everywhere; the
synthesis of an image by a given model is bit-identical with 1 or 2 threads. The demo model itself is not: its
training repeats bit for bit only on the same machine with the same `demo --threads` (another summation order
steers the GAN elsewhere). Over the 14 test images the synthetic DES's tissue CNR was 0.661 ± 0.213 (2 threads,
4 identical trainings), 0.772 ± 0.184 (`--threads 1`, same machine) and 0.745 on another machine; its lesion
CNR 0.508 ± 0.745 and 0.289 ± 0.700: read the synthetic columns to about ±0.1 (tissue) and ±0.25 (lesion).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "VirtualContrast"))

from VirtualContrastLib import display, rendering  # noqa: E402
from VirtualContrastLib.cnr import LESION, REAL_DES, SYNTHETIC_DES, TISSUE  # noqa: E402
from VirtualContrastLib.headless import newScene  # noqa: E402
from VirtualContrastLib.logic import VirtualContrastLogicBase  # noqa: E402
from VirtualContrastTraining.data.imageio import read_image  # noqa: E402
from VirtualContrastTraining.data.manifest import read_manifest  # noqa: E402


def truthRegions(logic, case, reference):
    """The phantom's fibroglandular and adipose truth masks as segments of one segmentation node."""
    import slicer

    segmentation = logic.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{case.case_id} tissue regions")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    truth = Path(case.le_path).parent / "truth"
    for name in ("fibroglandular", "adipose"):
        color = rendering.REGION_COLORS[rendering.REGION_LABELS[name]]
        mask = read_image(truth / f"{case.case_id}_{name}.nrrd").array > 0
        segmentation.GetSegmentation().AddEmptySegment(name, name, color)
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask[np.newaxis].astype(np.uint8), segmentation, name,
                                                         reference)
    return segmentation


def measureCase(logic, case, model, verbose=False):
    """Load, synthesize (background job), heatmap and CNR for one manifest case; returns the nodes and result."""
    loaded = logic.loadCase(case.le_path, case.des_path, case.lesion_path or None)
    job = logic.startSynthesis(loaded.le, model, device="cpu")
    while not job.done:
        for event in job.poll():
            if verbose:
                print(f"  [{event['event']}] {job.message}")
        time.sleep(0.1)
    synthetic = job.check().result
    heatmap = logic.differenceHeatmap(loaded.des, synthetic, loaded.le)
    regions = truthRegions(logic, case, loaded.le)
    lesion = None
    if loaded.segmentation is not None:
        lesion = (loaded.segmentation, loaded.segmentation.GetSegmentation().GetNthSegmentID(0))
    result = logic.computeCNR((regions, "fibroglandular"), (regions, "adipose"),
                              {"LE": loaded.le, REAL_DES: loaded.des, SYNTHETIC_DES: synthetic},
                              lesion=lesion, ringWidthMm=5.0)
    return loaded, synthetic, heatmap, regions, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=REPO / "demo-output", help="output folder of `make demo`")
    parser.add_argument("--out", type=Path, default=REPO / "walkthrough-output" / "comparison.png",
                        help="the PNG to write (default: %(default)s, outside the tracked files)")
    args = parser.parse_args(argv)
    manifest, model = args.demo / "phantom" / "manifest.csv", args.demo / "run"
    if not manifest.is_file() or not (model / "model.safetensors").is_file():
        parser.error(f"{args.demo} holds no demo output: run `make demo` first")
    test_cases = [c for c in read_manifest(args.demo / "run" / "manifest.csv") if c.split == "test"]
    shown = next(c for c in test_cases if c.lesion_path)

    newScene()
    logic = VirtualContrastLogicBase()
    print(f"case {shown.case_id}: load, synthesize in a background job, heatmap, CNR")
    loaded, synthetic, heatmap, regions, result = measureCase(logic, shown, model, verbose=True)
    logic.showComparison(loaded.le, loaded.des, synthetic, heatmap.absolute)
    logic.showTable(result.table)
    labels = rendering.regionsLabelmap({"fibroglandular": (regions, "fibroglandular"),
                                        "adipose": (regions, "adipose")}, loaded.le, scene=logic.scene)
    display.showRegions(display.VIEWS[0][0], labels, scene=logic.scene)
    path = rendering.writeComparisonPNG(
        args.out, titles=["LE + tissue regions", "real DES", "synthetic DES",
                          "|synthetic \u2212 real| over LE"],
        title=f"phantom case {shown.case_id} (test split), synthetic DES by the demo model in {args.demo.name}/run",
        heatmap=heatmap.absolute, table=result.table, scene=logic.scene)
    print(f"wrote {path}")
    for measure, row in result.values.items():
        print(f"  {measure}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))

    print(f"\ntissue CNR (raw intensities, full resolution) on ground-truth masks, {len(test_cases)} test-split "
          "cases (mean \u00b1 sd); the report's tissue CNR is normalised at the evaluated size, another value:")
    values = {label: [] for label in ("LE", REAL_DES, SYNTHETIC_DES)}
    lesions = {label: [] for label in values}
    for case in test_cases:
        newScene()
        logic = VirtualContrastLogicBase()
        *_, case_result = measureCase(logic, case, model)
        for label in values:
            values[label].append(case_result.values[TISSUE][label])
            if LESION in case_result.values:
                lesions[label].append(case_result.values[LESION][label])
    print("| | LE | real DES | synthetic DES |\n| --- | --- | --- | --- |")
    for title, table in (("tissue CNR (raw, full resolution)", values),
                         ("lesion CNR (raw, full resolution, 5 mm ring)", lesions)):
        print(f"| {title} (n = {len(table['LE'])}) | " +
              " | ".join(f"{np.mean(v):.3f} \u00b1 {np.std(v, ddof=1):.3f}" for v in table.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
