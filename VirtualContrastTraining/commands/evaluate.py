"""`virtual-contrast evaluate`: metrics of a trained model and two baselines on a manifest split."""

from __future__ import annotations

import argparse

from VirtualContrastTraining.events import EXIT_OK


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="MSE/PSNR/SSIM/VIF/lesion MAE of a model vs. the identity and linear baselines",
        description="Evaluate a trained model against the real DES images of one manifest split. Writes "
                    "per_image.csv, summary.csv, summary.md and error heatmaps into --out; prints the headline table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="RUN", help="trained model (run folder or model file)")
    parser.add_argument("--manifest", required=True, metavar="M", help="manifest CSV with DES paths and filled splits")
    parser.add_argument("--split", default="test", help="which split to evaluate (train, val or test)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder for the report")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from VirtualContrastTraining.evaluate import evaluate_run

    result = evaluate_run(args.model, args.manifest, split=args.split, out_dir=args.out, device=args.device)
    print(result.table)
    print(f"\nreport: {result.summary_md}")
    return EXIT_OK
