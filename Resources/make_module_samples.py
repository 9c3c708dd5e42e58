"""Make what the Slicer module bundles: the phantom sample case and the phantom-trained starter model.

    python Resources/make_module_samples.py            # trains the demo model (about 5 min on 2 CPU cores)
    python Resources/make_module_samples.py --run demo-output/run   # or reuse a `virtual-contrast demo` run

Writes into VirtualContrast/Resources (listed in VirtualContrast/CMakeLists.txt):
- SampleData/CESM-phantom_{LE,DES}.dcm, _lesions.seg.nrrd and _tissue.seg.nrrd (segments
  "fibroglandular" and "adipose" from the phantom's truth masks), one held-out phantom image that the
  model never saw (its own seed);
- Icons/CESMPhantomCase.png, the Sample Data thumbnail (LE | DES);
- Models/phantom-demo/model.safetensors + model.json, the `demo` preset's generator (1.4 MB).
Everything is simulated by the engine's phantom; nothing comes from patients.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "VirtualContrast"))

from VirtualContrastLib import sampledata  # noqa: E402
from VirtualContrastTraining.data.imageio import read_image  # noqa: E402
from VirtualContrastTraining.data.manifest import read_manifest, resolve  # noqa: E402
from VirtualContrastTraining.data.phantom import generate_dataset  # noqa: E402
from VirtualContrastTraining.data.segmentation import write_lesion_segmentation  # noqa: E402

#: Seed of the sample case: not one of the demo's (2026), so the starter model never trained on it.
SAMPLE_SEED = 515
PIXEL_MM = 0.5  # as the demo's phantom, which the starter model learned


def trained_run(run: Path | None, work: Path) -> Path:
    """The run folder of a `virtual-contrast demo`: the given one, or a fresh demo trained now."""
    if run is not None:
        return run
    subprocess.run([sys.executable, "-m", "VirtualContrastTraining", "demo", "--out", str(work / "demo")], check=True)
    return work / "demo" / "run"


def write_sample_case(work: Path) -> None:
    """One phantom image with a mass: DICOM LE/DES, its lesion segmentation and a tissue segmentation."""
    manifest = generate_dataset(work / "phantom", 4, seed=SAMPLE_SEED, pixel_mm=PIXEL_MM)
    case = next(c for c in read_manifest(manifest) if c.lesion_path)
    out = sampledata.SAMPLE_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    for role, column in (("LE", "le_path"), ("DES", "des_path"), ("lesions", "lesion_path")):
        shutil.copyfile(resolve(manifest, getattr(case, column)), out / sampledata.SAMPLE_FILES[role])
    le = read_image(resolve(manifest, case.le_path))
    tissue = {name: read_image(resolve(manifest, getattr(case, f"{name}_path"))).array > 0
              for name in ("fibroglandular", "adipose")}
    write_lesion_segmentation(out / sampledata.SAMPLE_FILES["tissue"], tissue, le)
    write_thumbnail(le.array, read_image(resolve(manifest, case.des_path)).array)


def write_thumbnail(le: np.ndarray, des: np.ndarray) -> None:
    """LE | DES side by side, each at the 1-99 % window of its breast pixels, as the Sample Data button's icon."""
    from matplotlib.figure import Figure

    from VirtualContrastTraining.data.preprocessing import breast_mask

    breast = breast_mask(le)
    figure = Figure(figsize=(2.4, 1.6), dpi=80)
    for index, image in enumerate((le, des)):
        axes = figure.add_axes((index / 2, 0, 0.5, 1))
        low, high = np.percentile(image[breast], (1, 99))
        axes.imshow(image, cmap="gray", vmin=low, vmax=high)
        axes.set_axis_off()
    sampledata.THUMBNAIL.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(sampledata.THUMBNAIL)


def copy_model(run: Path) -> None:
    """The trained generator and its sidecar (config, preprocessing, provenance) into Models/phantom-demo."""
    sampledata.STARTER_MODEL.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "model.json"):
        shutil.copyfile(run / name, sampledata.STARTER_MODEL / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="a finished `virtual-contrast demo` run folder to take the model from")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        copy_model(trained_run(args.run, work))
        write_sample_case(work)
    print(f"wrote {sampledata.SAMPLE_FOLDER}, {sampledata.THUMBNAIL} and {sampledata.STARTER_MODEL}")


if __name__ == "__main__":
    main()
