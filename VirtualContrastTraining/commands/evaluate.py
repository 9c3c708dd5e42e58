"""`virtual-contrast evaluate`: every analysis of the papers for a model (or external synthetic images)
against two baselines on a manifest split, into one folder with an HTML report."""

from __future__ import annotations

import argparse

from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.data.splits import require_splits
from VirtualContrastTraining.evaluation.evaluate import COMPARISON_SIZE
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation.run import evaluate_run
from VirtualContrastTraining.events import EXIT_OK, EventWriter, progress_events


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="the papers' analyses of a model or of synthetic images: similarity, CNR, change, statistics, HTML report",
        description="Evaluate a trained model, or synthetic DES images made elsewhere, against the real DES "
                    "images of one manifest split, beside the identity and linear baselines. Writes per_image.csv, "
                    "summary.csv, histograms.csv, provenance.json, heatmaps/, report.html and summary.md into "
                    "--out; prints the headline table.",
    )
    required = parser.add_argument_group("required")
    source = required.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="RUN", help="trained model (run folder or model file)")
    source.add_argument("--synthetic", metavar="CSV",
                        help="synthetic DES files made elsewhere: a CSV with columns case_id, synthetic_path "
                             "(each image in its LE's geometry)")
    parser.add_argument("--name", help="model name for --synthetic images in the tables")
    required.add_argument("--manifest", required=True, metavar="M",
                          help="manifest CSV with DES paths and splits (`virtual-contrast split` fills them; with "
                               "--model, a manifest without splits takes the run's own)")
    parser.add_argument("--split", default="test", help="which split to evaluate: train, val or test (default test)")
    parser.add_argument("--size", type=int, default=COMPARISON_SIZE,
                        help=f"side of the compared images for patch models and --synthetic images "
                             f"(default {COMPARISON_SIZE})")
    parser.add_argument("--reader-study", metavar="CSV", help="reader ratings to analyse in the report")
    required.add_argument("--out", required=True, metavar="DIR", help="output folder for the report")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--deidentify", action="store_true",
                        help="tables, figures, file names and messages carry pseudonyms of the case ids only, "
                             "the ones predict --deidentify gives for this manifest (docs/deidentification.md)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.synthetic:  # no run folder to take the splits from: the manifest must have them
        require_splits(read_manifest(args.manifest), args.manifest)
    events = EventWriter()
    events.emit("started", command="evaluate", model=args.model or args.synthetic, manifest=args.manifest,
                split=args.split, out=args.out)
    try:
        result = evaluate_run(args.model, args.manifest, split=args.split, out_dir=args.out, device=args.device,
                              synthetic=args.synthetic, name=args.name, size=args.size,
                              reader_study=args.reader_study, deidentify=args.deidentify,
                              progress=progress_events(events))
    except InputError as exc:
        events.emit("failed", error=str(exc))
        raise
    events.emit("finished", command="evaluate", report=str(result.report_html), summary=str(result.summary_md))
    if events.console is not None:  # the table is for people; --json gives its numbers in summary.csv
        print(f"\n{result.table}\n")
    return EXIT_OK
