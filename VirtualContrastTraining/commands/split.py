"""`virtual-contrast split`: fill a manifest's split column, by patient, stratified as `compare` deals its folds.

    virtual-contrast split --manifest data/manifest.csv
    virtual-contrast split --manifest data/manifest.csv --val 0.15 --test 0.15 --seed 1 --out data/split-1.csv
    virtual-contrast split --manifest data/manifest.csv --stratify label --overwrite

An imported manifest has no splits; `train` assigns them itself when the
column is empty (80/10/10 by patient, seed of the preset), but `predict
--split` and `evaluate` need them written down. With the same seed and
fractions this command gives the very splits `train` would draw. All images
of a patient land in one split; patients with a lesion mask (Rofena et al. 2025 (002),
the default) or each class label (Perre et al. (004)) are shared out over the splits in
the same fractions (data/splits.py). Splits already in the manifest are the
user's decision: replacing them takes --overwrite. The manifest is rewritten
atomically (or --out is written); the counts per split are printed.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from VirtualContrastTraining.data.manifest import Case, read_manifest, write_manifest
from VirtualContrastTraining.data.splits import PAPER_FRACTIONS, SPLITS, STRATIFY, assign_splits
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EXIT_OK, EventWriter

# What `train` draws for a manifest without splits.
DEFAULT_VAL, DEFAULT_TEST = PAPER_FRACTIONS[1:]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="assign the manifest's train/val/test splits by patient, stratified",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    required = p.add_argument_group("required")
    required.add_argument("--manifest", required=True, metavar="CSV", help="manifest whose split column to fill")
    p.add_argument("--val", type=float, default=DEFAULT_VAL, metavar="FRACTION",
                   help=f"share of the patients in the validation split (default {DEFAULT_VAL:g})")
    p.add_argument("--test", type=float, default=DEFAULT_TEST, metavar="FRACTION",
                   help=f"share of the patients in the test split (default {DEFAULT_TEST:g})")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw: same seed, same splits (default 0)")
    p.add_argument("--stratify", choices=STRATIFY, default=STRATIFY[0],
                   help="spread patients with lesion masks (Rofena et al. 2025 (002); default) or each class label "
                        "(Perre et al. (004)) over the splits")
    p.add_argument("--out", metavar="CSV",
                   help="write the split manifest here (default: rewrite --manifest in place, atomically)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace splits the manifest already has (and an existing --out file)")
    p.set_defaults(func=run)


def _fractions(val: float, test: float) -> tuple[float, float, float]:
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise InputError(None, f"--val {val:g} and --test {test:g} must be shares in [0, 1) that leave some "
                         "patients for training (val + test < 1)")
    return 1 - val - test, val, test


def _refuse_overwrite(manifest: Path, out: Path, cases: list[Case]) -> None:
    """Splits in the manifest, or another file at --out, are the user's: replacing them takes --overwrite."""
    given = sum(bool(c.split) for c in cases)
    if given:
        raise InputError(manifest, f"{given} of {len(cases)} cases already have a split: add --overwrite to "
                         "draw new ones (or --out NEW.csv --overwrite to keep this file)")
    if out.exists() and out.resolve() != manifest.resolve():
        raise InputError(out, "exists: add --overwrite to replace it, or choose another --out")


def split_counts(cases: list[Case]) -> dict[str, dict[str, int]]:
    """{split: {"images", "patients", "lesion_patients"}} for train, val and test."""
    patients, lesion = defaultdict(set), defaultdict(set)
    for case in cases:
        patients[case.split].add(case.patient_id)
        if case.has_lesion_mask:
            lesion[case.split].add(case.patient_id)
    return {s: {"images": sum(c.split == s for c in cases), "patients": len(patients[s]),
                "lesion_patients": len(lesion[s])} for s in SPLITS}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def run(args: argparse.Namespace) -> int:
    manifest = Path(args.manifest)
    out = Path(args.out) if args.out else manifest
    fractions = _fractions(args.val, args.test)
    cases = read_manifest(manifest)
    if not args.overwrite:
        _refuse_overwrite(manifest, out, cases)
    cleared = [replace(c, split="") for c in cases]
    split = assign_splits(cleared, seed=args.seed, fractions=fractions, source=manifest, stratify=args.stratify)
    write_manifest(out, split)
    counts = split_counts(split)
    events = EventWriter()
    for name, n in counts.items():
        events.emit("info", message=f"{name}: {_count(n['images'], 'image')} of {_count(n['patients'], 'patient')} "
                                    f"({n['lesion_patients']} with a lesion mask)")
    events.emit("finished", job="split", manifest=str(out), seed=args.seed, stratify=args.stratify,
                fractions=list(fractions), counts=counts)
    return EXIT_OK
