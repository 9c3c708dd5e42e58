"""Two claims of the papers, measured on the phantom where the truth is known; prints the figures.

- 002: Seg-CycleGAN (gamma = 35) reproduces lesions better than plain CycleGAN:
  lesion-region MAE of `rofena2025-segcyclegan-g35` vs `rofena2024-cyclegan`.
- 003: exponential dampening (tau = 2) lowers the error on bright pixels:
  bright-pixel MAE (above the real DES 95th percentile inside the breast) of
  `hosseinipour2024-pix2pix-expdamp-t2` vs `hosseinipour2024-pix2pix-unet512` (tau = 0).

Each pair trains on one phantom (60 images of 34 patients, 0.5 mm, seed 7) with
one patient-level split (70/10/20, seed 7) and the same budget; only gamma,
or tau, differs within a pair. The paper presets are scaled down to what 2
CPU cores train in minutes (SCALE_DOWN, the same for both sides of a pair;
the warm-up of 001's code is off and patience is beyond the budget, so every
run makes exactly the same number of steps). The pairs are repeated for each
training seed given. Paired per-image differences on the 14 test images are
tested with the Wilcoxon signed-rank test (scipy).

    python benchmarks/phantom_claims.py --out /tmp/claims [--seeds 0,1] [--device cpu]

Finished runs in --out are reused, so a stopped run continues where it was.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

from VirtualContrastTraining.evaluation import columns

PHANTOM = dict(cases=60, seed=7, pixel_mm=0.5)
FRACTIONS = (0.7, 0.1, 0.2)
# (claim, its metric, baseline preset, treated preset, their short names, overrides for both)
CLAIMS = (
    ("002: gamma 35 vs plain CycleGAN", "lesion_MAE", "rofena2024-cyclegan", "rofena2025-segcyclegan-g35",
     ("CycleGAN", "Seg-CycleGAN γ 35"),
     dict(ngf=16, ndf=16, n_blocks=4, image_size=128, batch_size=4, lr=2e-4, weight_decay=0.0, patience=1000,
          warmup=0, epochs=30)),
    ("003: tau 2 vs tau 0 (pix2pix U-Net)", "bright_MAE", "hosseinipour2024-pix2pix-unet512",
     "hosseinipour2024-pix2pix-expdamp-t2", ("τ = 0", "τ = 2"),
     dict(ngf=16, ndf=16, unet_depth=7, image_size=128, batch_size=4, lr=2e-4, epochs=90, epochs_decay=60,
          patience=1000)),
)


def phantom_manifest(out: Path) -> Path:
    """The phantom with its fixed split (generated once)."""
    from VirtualContrastTraining.data.manifest import read_manifest, write_manifest
    from VirtualContrastTraining.data.phantom import generate_dataset
    from VirtualContrastTraining.data.splits import assign_splits

    split = out / "phantom" / "manifest_split.csv"
    if not split.is_file():
        manifest = generate_dataset(out / "phantom", PHANTOM["cases"], PHANTOM["seed"], pixel_mm=PHANTOM["pixel_mm"])
        write_manifest(split, assign_splits(read_manifest(manifest), seed=PHANTOM["seed"], fractions=FRACTIONS))
    return split


def trained_and_evaluated(preset: str, overrides: dict, seed: int, manifest: Path, runs: Path, device: str) -> Path:
    """RUN/evaluation/per_image.csv of `preset` trained with `overrides` and `seed` (reused when present)."""
    from VirtualContrastTraining.evaluation.run import evaluate_run
    from VirtualContrastTraining.events import EXIT_OK, EventWriter
    from VirtualContrastTraining.config.presets import resolve_config
    from VirtualContrastTraining.train import train

    run = runs / f"{preset}-s{seed}"
    per_image = run / "evaluation" / "per_image.csv"
    if per_image.is_file():
        return per_image
    print(f"training {run.name} ...", file=sys.stderr, flush=True)
    config = resolve_config(preset, {**overrides, "seed": seed})
    resume = (run / "checkpoint.safetensors").is_file()
    code = train(config, manifest, run, device=device, resume=resume, events=EventWriter(io.StringIO()))
    if code != EXIT_OK:
        raise SystemExit(f"{run}: training ended with exit code {code}")
    evaluate_run(run, manifest, split="test", out_dir=run / "evaluation", device=device)
    return per_image


def model_values(per_image: Path, metric: str) -> dict[str, float]:
    """case id -> metric of the trained model (not the baselines), images where it is defined."""
    rows = list(csv.DictReader(per_image.open(encoding="utf-8")))
    model = rows[0]["model"]  # evaluate writes the model's rows first
    return {r["case_id"]: float(r[metric]) for r in rows if r["model"] == model and r[metric] not in ("", "None")}


# Every claim's table: its own metric first, then the whole-image figures and the other region. Titles, formats
# and which direction is better from evaluation/columns.py; MAE is said to be over the whole image here.
METRICS = ("lesion_MAE", "bright_MAE", "MAE", "PSNR", "SSIM")
TITLES = {"MAE": "MAE (whole image)"}


def paired_row(metric: str, seed: int, a: dict[str, float], b: dict[str, float]) -> str:
    """One table row: mean ± sd of both models, images where the treated one is better, Wilcoxon p."""
    from scipy.stats import wilcoxon

    cases = sorted(set(a) & set(b))
    x, y = np.array([a[c] for c in cases]), np.array([b[c] for c in cases])
    column = columns.column(metric)
    better = int((y > x).sum() if column.better == "higher" else (y < x).sum())
    p = wilcoxon(x, y).pvalue if len(cases) > 1 and np.any(x != y) else float("nan")
    p_text = "< 0.001" if p < 0.001 else f"{p:.3f}"
    fmt = column.fmt
    return (f"| {TITLES.get(metric, column.title)} | {seed} | {x.mean():{fmt}} ± {x.std(ddof=1):{fmt}} | "
            f"{y.mean():{fmt}} ± {y.std(ddof=1):{fmt}} | {better}/{len(cases)} | {p_text} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the phantom and the runs (reused)")
    parser.add_argument("--seeds", default="0", help="training seeds, e.g. 0,1")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    out = Path(args.out)
    manifest = phantom_manifest(out)
    seeds = [int(s) for s in args.seeds.split(",")]
    for claim, metric, base, treated, (base_name, treated_name), overrides in CLAIMS:
        runs = {(preset, seed): trained_and_evaluated(preset, overrides, seed, manifest, out / "runs", args.device)
                for seed in seeds for preset in (base, treated)}
        print(f"\n{claim}: `{base}` vs `{treated}`\n")
        print(f"| metric | seed | {base_name} | {treated_name} | images where {treated_name} is better | Wilcoxon p |")
        print("|---|---|---|---|---|---|")
        for m in (metric, *(m for m in METRICS if m != metric)):
            for seed in seeds:
                print(paired_row(m, seed, model_values(runs[base, seed], m), model_values(runs[treated, seed], m)),
                      flush=True)


if __name__ == "__main__":
    main()
