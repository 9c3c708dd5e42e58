"""`virtual-contrast phantom`: write the physics-based CESM phantom dataset (DICOM LE/DES, lesion masks, truth).

The default 0.1 mm pixel is the GE Senographe Pristina's full size (2850 x 2394);
the demo uses ~0.4-0.5 mm to stay fast on a laptop CPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from VirtualContrastTraining.data.phantom import generate_dataset
from VirtualContrastTraining.events import EXIT_OK, EventWriter


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "phantom", help="generate the simulated CESM dataset",
        description="Simulate CESM low-energy and dual-energy subtracted images with lesion masks and truth.")
    required = parser.add_argument_group("required")
    required.add_argument("--out", required=True, type=Path,
                          help="output folder (created; replaced if it holds a phantom)")
    parser.add_argument("--cases", type=int, default=40, help="number of images (LE/DES pairs; default 40)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same pixels (default 0)")
    parser.add_argument("--pixel-mm", type=float, default=0.1,
                        help="pixel size in mm (default 0.1, the full detector size)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    events = EventWriter()
    start = time.monotonic()
    events.emit("started", command="phantom", out=str(args.out), cases=args.cases, seed=args.seed,
                pixel_mm=args.pixel_mm)

    def progress(done: int, total: int, case_id: str) -> None:
        elapsed = time.monotonic() - start
        events.emit("progress", step=done, total_steps=total, case_id=case_id,
                    eta_s=round(elapsed / done * (total - done), 1))

    manifest = generate_dataset(args.out, args.cases, args.seed, args.pixel_mm, progress=progress)
    events.emit("finished", command="phantom", manifest=str(manifest), seconds=round(time.monotonic() - start, 2))
    return EXIT_OK
