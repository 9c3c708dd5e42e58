"""`virtual-contrast report`: one self-contained HTML report of one or more evaluation folders.

    virtual-contrast report --evaluation runs/demo/evaluation --out report.html
    virtual-contrast report --evaluation cmp/runs/rofena2024-cyclegan/fold_*/evaluation \\
        --out cyclegan.html --reader-study readers.csv --title "CycleGAN, 10 folds"

Reads what `virtual-contrast evaluate` wrote (per_image.csv, provenance.json,
histograms.csv, heatmaps/) and writes one HTML file with inline CSS and
embedded figures: headline and cross-validation tables (Rofena et al. 2024
(001)), paired tests against the baselines (Zormpas-Petridis et al. 2026
(000)), the three settings of Hosseinipour et al. 2024 (003), 000's change and
tissue CNR analyses, per-density table (001), box plots, heatmaps of the best,
median and worst case, intensity histograms (003 Fig. 5), and the reader study (000)
when --reader-study is given. Several folders (e.g. the folds of `compare`)
are pooled per image and summarized across folds. Prints the report's path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from VirtualContrastTraining.evaluation.report import build_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="self-contained HTML report of evaluation folders",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    required = p.add_argument_group("required")
    required.add_argument("--evaluation", required=True, nargs="+", type=Path, metavar="DIR",
                          help="evaluation folder(s) written by `virtual-contrast evaluate` (several: folds, pooled)")
    required.add_argument("--out", required=True, type=Path, metavar="HTML", help="the report file to write")
    p.add_argument("--reader-study", type=Path, metavar="CSV",
                   help="reader-study CSV (as Zormpas-Petridis et al. 2026 (000)) to add to the report")
    p.add_argument("--title", help="report title (default: names the evaluated models)")
    p.add_argument("--deidentify", action="store_true",
                   help="refuse evaluation folders not written by `evaluate --deidentify`, so the report holds "
                        "pseudonyms only (docs/deidentification.md)")
    p.add_argument("--allow-mixed", action="store_true",
                   help="pool folders that differ in image size, region or case set (refused by default: one table "
                        "would mix them); the report names what differs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(build_report(args.evaluation, args.out, reader_study=args.reader_study, title=args.title,
                       deidentify=args.deidentify, allow_mixed=args.allow_mixed))
    return 0
