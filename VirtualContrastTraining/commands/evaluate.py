"""`virtual-contrast evaluate`: every analysis of the papers for a model (or external synthetic images)
against two baselines on a manifest split, into one folder with an HTML report."""

from __future__ import annotations

import argparse

from VirtualContrastTraining.evaluation.evaluate import COMPARISON_SIZE
from VirtualContrastTraining.evaluation.run import evaluate_run
from VirtualContrastTraining.events import EXIT_OK


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="image similarity, 003's settings, 000's CNR and change analyses, statistics, HTML report",
        description="Evaluate a trained model, or synthetic DES images made elsewhere, against the real DES "
                    "images of one manifest split, beside the identity and linear baselines. Writes per_image.csv, "
                    "summary.csv, histograms.csv, provenance.json, heatmaps/, report.html and summary.md into "
                    "--out; prints the headline table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="RUN", help="trained model (run folder or model file)")
    source.add_argument("--synthetic", metavar="CSV",
                        help="synthetic DES files made elsewhere: a CSV with columns case_id, synthetic_path "
                             "(each image in its LE's geometry)")
    parser.add_argument("--name", help="model name for --synthetic images in the tables")
    parser.add_argument("--manifest", required=True, metavar="M", help="manifest CSV with DES paths and filled splits")
    parser.add_argument("--split", default="test", help="which split to evaluate (train, val or test)")
    parser.add_argument("--size", type=int, default=COMPARISON_SIZE,
                        help="side of the compared images for patch models and --synthetic images")
    parser.add_argument("--reader-study", metavar="CSV", help="reader ratings to analyse in the report")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder for the report")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--deidentify", action="store_true",
                        help="tables, figures, file names and messages carry pseudonyms of the case ids only, "
                             "the ones predict --deidentify gives for this manifest (docs/deidentification.md)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = evaluate_run(args.model, args.manifest, split=args.split, out_dir=args.out, device=args.device,
                          synthetic=args.synthetic, name=args.name, size=args.size, reader_study=args.reader_study,
                          deidentify=args.deidentify)
    print(result.table)
    print(f"\nreport: {result.report_html}")
    return EXIT_OK
