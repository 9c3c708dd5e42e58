"""001's published folds: image-level (as published) against patient-level (regrouped), on phantom stand-ins.

001's fold files split CESM@UCBM by image: in every fold most patients have
images in train and in test. What that leakage is worth is measured here where
the images are ours: each image the fold files name is written as a phantom
stand-in under that very name (write_stand_ins: one simulated breast per
patient, side and view drawn from a few simulated breasts with a gain of
the patient's own, each image with its own noise, so a patient's repeats are
alike as real repeats are). Then

1. `import` of the fold folders as published (prints pairs per fold and the
   leakage lines) and with --regroup-by-patient;
2. `compare` of one preset on the first folds of each (a tiny budget) and the
   difference in test PSNR, image-level minus patient-level, beside the same
   difference of the identity baseline (DES = LE, nothing learnt): the two
   kinds of folds test different images, and the identity's difference is
   what the test images alone account for. Only the rest can be leakage.

No claim about CESM@UCBM follows: the stand-ins are phantoms, not its images.

    python benchmarks/folds_leakage.py --folds ../shared/data/vce-cesm-folds/folds --out /tmp/leak \\
        [--only-folds 0,1] [--preset demo] [--set epochs=1 image_size=48 ngf=4 n_blocks=1]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import re
import sys
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from VirtualContrastTraining.cli import main as cli_main
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import write_nrrd
from VirtualContrastTraining.data.phantom import simulate_case
from VirtualContrastTraining.evaluation.evaluate import IDENTITY_NAME

TINY = ("epochs=1", "image_size=48", "ngf=4", "n_blocks=1")  # VIF needs 41 px or more
PIXEL_MM = 5.0  # stand-ins of about 57 x 48 px: enough for a 32 px model, thousands written in seconds
_SIDE_VIEW = re.compile(r"_([LR])_?(CC|MLO)", re.IGNORECASE)
_DENSITY = "abcd"
BASES = 12  # simulated breasts per side and view; patients share them, each with its own gain


def _named_images(folds_dir: Path) -> dict[str, str]:
    """{img_x or img_y as written (backslashes made /): id} of every fold file under `folds_dir`."""
    named = {}
    for path in sorted(folds_dir.rglob("*.txt")):
        rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")), delimiter="\t")
        for row in rows:
            for column in ("img_x", "img_y"):
                named[row[column].replace("\\", "/")] = row["id"]
    return named


def _stand_in(name: str, case_id: str, cache: dict) -> np.ndarray:
    """The phantom LE or DES (by the name: low energy / DM vs recombined / CM) of the id's breast: one of
    BASES simulated breasts per side and view, with a gain of the patient's own (a patient's images are alike
    as real repeats are) and noise of the image's own."""
    patient = int(re.match(r"P(\d+)", case_id).group(1))
    side, view = (g.upper() for g in _SIDE_VIEW.search(case_id).groups())
    key = (patient % BASES, side, view)
    if key not in cache:
        cache[key] = simulate_case(np.random.default_rng([key[0], ord(side), len(view)]), pixel_mm=PIXEL_MM,
                                   laterality=side, view=view, density=_DENSITY[key[0] % 4], lesions=[])
    case = cache[key]
    des = re.search(r"recombined|_CM_", name, re.IGNORECASE) is not None
    image = (case.des if des else case.le).astype(np.float64)
    gain = np.random.default_rng(patient).uniform(0.9, 1.1)
    noise = np.random.default_rng(zlib.crc32(name.encode())).normal(0.0, 15.0, image.shape)
    return image * gain + noise


def write_stand_ins(folds_dir: str | Path, images_root: str | Path) -> int:
    """Write a phantom stand-in for every image the fold files under `folds_dir` name, at the relative path
    they give, under `images_root`: NRRD (raw units) for .nrrd, 8-bit greyscale for .jpg/.png. The number
    of files written."""
    cache: dict = {}
    named = _named_images(Path(folds_dir))
    for name, case_id in named.items():
        path = Path(images_root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = _stand_in(name, case_id, cache)
        if path.suffix.lower() == ".nrrd":
            write_nrrd(_image(pixels), path)
        else:
            scaled = np.clip((pixels - 1000.0) / 2000.0 * 255.0, 0, 255).astype(np.uint8)
            sitk.WriteImage(sitk.GetImageFromArray(scaled), str(path))
    return len(named)


def _image(pixels: np.ndarray) -> Image:
    return Image(np.clip(pixels, 0, 65535).astype(np.uint16), spacing=(PIXEL_MM, PIXEL_MM))


def run_cli(args: list[str]) -> tuple[int, str]:
    """(exit code, stdout) of the real CLI."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(args)
    return code, out.getvalue()


def import_both(folds_dir: Path, images: Path, out: Path) -> dict[str, tuple[Path, str]]:
    """{"image-level": (manifests, import summary), "patient-level": (...)} of the real `import` command."""
    done = {}
    for label, extra in (("image-level", []), ("patient-level", ["--regroup-by-patient"])):
        manifests = out / "manifests" / label
        code, text = run_cli(["import", str(folds_dir), "--images", str(images), "--out", str(manifests), *extra])
        if code != 0:
            raise SystemExit(f"import {label} failed with exit code {code}")
        done[label] = (manifests, text)
    return done


def fold_psnr(comparison: Path, model: str) -> list[float]:
    """A model's (preset's or baseline's) per-fold test PSNR from comparison.csv."""
    with open(comparison / "comparison.csv", encoding="utf-8", newline="") as fh:
        return [float(r["PSNR"]) for r in csv.DictReader(fh) if r["model"] == model and r["fold"].isdigit()]


def compare_both(manifests: dict[str, Path], out: Path, preset: str, only_folds: str, settings: list[str],
                 device: str = "cpu") -> dict[str, dict[str, list[float]]]:
    """{label: {preset, identity baseline: per-fold test PSNR}} of `compare` on each folder of fold manifests
    (finished runs in `out` are reused)."""
    psnr = {}
    for label, folder in manifests.items():
        target = out / "compare" / label
        code, _ = run_cli(["compare", "--presets", preset, "--fold-manifests", str(folder), "--out", str(target),
                           "--only-folds", only_folds, "--device", device, *(f"--set={s}" for s in settings)])
        if code != 0:
            raise SystemExit(f"compare on {label} folds failed with exit code {code}")
        psnr[label] = {model: fold_psnr(target, model) for model in (preset, IDENTITY_NAME)}
    return psnr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", required=True, type=Path, help="a fold folder (e.g. vce-cesm-folds/folds)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--only-folds", default="0,1")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--set", nargs="*", default=list(TINY))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    images = args.out / "images"
    print(f"{write_stand_ins(args.folds, images)} stand-in images under {images}")
    imported = import_both(args.folds, images, args.out)
    for label, (_, text) in imported.items():
        print(f"\n== import {label}\n{text}")
    psnr = compare_both({k: v[0] for k, v in imported.items()}, args.out, args.preset, args.only_folds, args.set,
                        args.device)
    print(f"\n== compare {args.preset}, folds {args.only_folds}, --set {' '.join(args.set)}")
    diffs = {}
    for model in (args.preset, IDENTITY_NAME):
        for label, models in psnr.items():
            values = models[model]
            print(f"{model}, {label}: test PSNR per fold {', '.join(f'{v:.3f}' for v in values)}; "
                  f"mean {np.mean(values):.3f} dB")
        diffs[model] = np.mean(psnr["image-level"][model]) - np.mean(psnr["patient-level"][model])
        print(f"{model}: image-level minus patient-level {diffs[model]:+.3f} dB")
    print(f"beyond what the test images account for (the identity's difference): "
          f"{diffs[args.preset] - diffs[IDENTITY_NAME]:+.3f} dB, the leakage's optimism on these stand-ins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
