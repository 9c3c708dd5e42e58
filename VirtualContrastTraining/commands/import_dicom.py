"""`virtual-contrast import DICOM_DIR --out manifest.csv`: pair LE with DES and write the manifest.

The summary goes to stdout (pairs, pairs with a lesion mask, skipped files
grouped by reason with a few example paths), so a user sees at once why a file
was left out. Exit 0 with pairs; no pair is an InputError (exit 2, one line).
"""

from __future__ import annotations

import argparse
import sys

from VirtualContrastTraining.data.importer import DEFAULT_TIME_TOLERANCE_S, ImportReport, import_dicom

EXAMPLES_PER_REASON = 3


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import",
        help="pair CESM LE/DES DICOM files of a folder into a manifest",
        description=(
            "Scan DICOM_DIR recursively (and any DICOMDIR), pair each recombined (DES) image with the "
            "low-energy (LE) image of the same patient, study, side and view nearest in time, attach "
            "lesion segmentations (.seg.nrrd, labelmap NRRD/NIfTI) and write a manifest CSV."
        ),
    )
    parser.add_argument("dicom_dir", metavar="DICOM_DIR", help="folder with the DICOM files")
    parser.add_argument("--out", required=True, metavar="MANIFEST.csv", help="manifest to write")
    parser.add_argument(
        "--time-tolerance",
        type=float,
        default=DEFAULT_TIME_TOLERANCE_S,
        metavar="SECONDS",
        help="largest acquisition-time gap between an LE and its DES (default %(default)g)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = import_dicom(args.dicom_dir, args.out, time_tolerance_s=args.time_tolerance)
    print(summary(report), file=sys.stdout)
    return 0


def summary(report: ImportReport) -> str:
    lines = [
        f"{len(report.cases)} LE/DES pairs, {report.n_with_lesion} with a lesion mask -> {report.manifest_path}",
    ]
    groups = report.skipped_by_reason()
    if groups:
        lines.append(f"skipped {len(report.skipped)} files:")
    for reason, paths in groups.items():
        lines.append(f"  {len(paths)} x {reason}")
        lines += [f"      {p}" for p in paths[:EXAMPLES_PER_REASON]]
        if len(paths) > EXAMPLES_PER_REASON:
            lines.append(f"      ... and {len(paths) - EXAMPLES_PER_REASON} more")
    return "\n".join(lines)
