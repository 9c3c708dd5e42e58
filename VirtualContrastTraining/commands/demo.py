"""`virtual-contrast demo`: the whole job on the embedded phantom, for a new user with no data.

phantom -> patient-level split -> train the `demo` Seg-CycleGAN -> synthesize the
held-out cases -> evaluate against the identity and linear baselines.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from VirtualContrastTraining.atomic import ensure_writable_dir
from VirtualContrastTraining.config.presets import resolve_config
from VirtualContrastTraining.data.manifest import read_manifest, write_manifest
from VirtualContrastTraining.data.phantom import generate_dataset
from VirtualContrastTraining.data.splits import assign_splits
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation.run import evaluate_run
from VirtualContrastTraining.events import EXIT_OK, EventTee, EventWriter, progress_events
from VirtualContrastTraining.synthesis import Synthesizer, manifest_inputs
from VirtualContrastTraining.synthetic_export import synthetic_name, write_synthetic_nrrd
from VirtualContrastTraining.train import train

DEMO_FRACTIONS = (0.7, 0.1, 0.2)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole job end to end on the built-in CESM phantom",
                       description="The main job on the built-in CESM phantom, with no data of your own: make the "
                       "phantom (split by patient 70/10/20), train a preset, synthesize the held-out test images and "
                       "evaluate them against the identity and linear baselines; prints the headline table and "
                       "writes everything under --out (about 5 minutes on 2 CPU cores with the demo preset).")
    p.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    p.add_argument("--cases", type=int, default=56, help="phantom images (default 56)")
    p.add_argument("--pixel-mm", type=float, default=0.5, help="phantom pixel size in mm (default 0.5)")
    p.add_argument("--seed", type=int, default=2026, help="phantom, split and training seed (default 2026)")
    p.add_argument("--preset", default="demo", help="training preset (default demo; `train --list-presets`)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default auto)")
    p.set_defaults(func=run)


DEMO_PARTS = ("phantom", "run", "synthetic", "evaluation", "train-events.jsonl")


def _fresh_output(out: Path) -> Path:
    """The demo owns its folder: a rerun replaces what an earlier demo wrote, and nothing else.

    A non-empty folder holding anything but the demo's own parts is refused, so
    a mistyped --out never wipes a user's data.
    """
    if out.is_dir() and any(out.iterdir()):
        foreign = sorted(p.name for p in out.iterdir() if p.name not in DEMO_PARTS)
        if foreign:
            raise InputError(out, f"not an earlier demo's folder (it holds {', '.join(foreign[:3])}): "
                             "choose another --out")
        for part in DEMO_PARTS[1:]:
            path = out / part
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    return ensure_writable_dir(out)


def _step(title: str) -> float:
    print(f"\n== {title}", file=sys.stderr, flush=True)
    return time.perf_counter()


def run(args: argparse.Namespace) -> int:
    out = _fresh_output(Path(args.out))
    start = time.perf_counter()

    t = _step(f"1/4 phantom: {args.cases} cases at {args.pixel_mm} mm (seed {args.seed})")
    manifest = generate_dataset(out / "phantom", args.cases, args.seed, pixel_mm=args.pixel_mm)
    config = resolve_config(args.preset, {"seed": args.seed})
    # A larger test split than the papers' 10 %: the headline table should rest on more than a handful of images.
    cases = assign_splits(read_manifest(manifest), seed=config.seed, fractions=DEMO_FRACTIONS)
    write_manifest(manifest, cases)
    counts = {s: sum(c.split == s for c in cases) for s in ("train", "val", "test")}
    print(f"  {manifest} ({counts}) in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    t = _step(f"2/4 train preset '{args.preset}' ({config.description})")
    run_dir = out / "run"
    # Training's events go to the log file; its progress and validation on to the demo's own (a bar and a line
    # per epoch in a terminal, JSON with --json).
    shown = EventWriter()
    with EventTee(out / "train-events.jsonl", label="train", events=shown, forward=("progress", "validation")) as log:
        code = train(config, manifest, run_dir, device=args.device, resume=False, events=EventWriter(stream=log))
    shown.end_stage()
    if code != EXIT_OK:
        print(f"training stopped with exit code {code}; see {out / 'train-events.jsonl'}", file=sys.stderr)
        return code
    print(f"  model in {run_dir} after {time.perf_counter() - t:.0f} s", file=sys.stderr)

    t = _step("3/4 synthesize the held-out test cases")
    synth = Synthesizer.load(run_dir, device=args.device)
    synthetic_dir = ensure_writable_dir(out / "synthetic")
    for item, des in synth.synthesize_each(manifest_inputs(manifest, "test")):
        write_synthetic_nrrd(des, synthetic_dir / synthetic_name(item.stem, "nrrd"))
    print(f"  {synthetic_dir} in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    t = _step("4/4 evaluate on the test split against the identity and linear baselines")
    result = evaluate_run(run_dir, manifest, split="test", out_dir=out / "evaluation", device=args.device,
                          progress=progress_events(shown))
    shown.end_stage()
    print(f"  done in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    print(result.table)
    print(f"\nReport (open in a browser): {result.report_html}")
    print(f"Summary: {result.summary_md}")
    print(f"Heatmaps: {result.out_dir / 'heatmaps'}")
    print(f"Total time: {(time.perf_counter() - start) / 60:.1f} min", file=sys.stderr)
    return EXIT_OK
