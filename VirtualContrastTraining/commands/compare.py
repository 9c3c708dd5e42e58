"""`virtual-contrast compare`: k-fold cross-validation of several presets on identical folds.

    virtual-contrast compare --presets rofena2024-cyclegan,rofena2025-segcyclegan-g35 \\
        --manifest data/manifest.csv --out comparisons/cyclegan-vs-seg
    virtual-contrast compare --presets demo,rofena2024-cyclegan --manifest m.csv --out cmp \\
        --folds 10 --only-folds 0,1 --set epochs=2
    virtual-contrast compare --presets rofena2024-cyclegan --fold-manifests ucbm-folds --out cmp-ucbm

For each fold (patient-level, stratified; fold i test, fold i+1 val, the rest
train: 80/10/10 at --folds 10, as Rofena et al. 2024 (001) and 2025 (002)) and each preset: train a run,
evaluate its test split. Then the table of 001 Table 4.1 / 002 Table I: per
preset the mean ± sd across folds of MSE, PSNR, VIF, SSIM and lesion MAE,
written to OUT/comparison.md and OUT/comparison.csv and printed at the end.

The manifest's own split column is ignored: the folds decide. --fold-manifests
DIR runs on given folds instead, DIR/fold_<i>.csv as `virtual-contrast import
FOLDS_DIR --images ROOT --out DIR` writes them from the public VCE_CESM fold
files of CESM@UCBM (001): each file's splits are used as they are. --set applies
to every preset (e.g. --set epochs=2 to fit a budget, --set init_from=RUN to
fine-tune every fold from a pre-trained model as 002 does). --only-folds runs
a subset of the folds. Stopped (Ctrl-C, SIGTERM: exit code 75) or failed, the
same command continues: finished runs are reused, the stopped one resumed.

Spreading the runs (docs/cluster.md): --jobs N runs N runs at a time on this
machine, each in its own process, job i on cuda:(i mod G) with G GPUs (on the
CPU, each with its share of the cores). On a cluster, the same command with
--plan writes OUT/plan.json and prints the numbered runs (K = 0 .. runs-1,
preset x fold) and the command of one; with --run K it trains and evaluates
run K only (e.g. K = $SLURM_ARRAY_TASK_ID); with --collect it writes the
table and reports once every run is done. The results equal one `compare`.

Progress: JSON-lines events on stdout (the run's progress and validation,
tagged with "run", "run_index" and "runs"; "info" after each run; "finished"
at the end); a line per epoch and per run on stderr; each run's own events in
OUT/runs/<preset>/fold_<i>-events.jsonl.
"""

from __future__ import annotations

import argparse

from VirtualContrastTraining.compare import compare
from VirtualContrastTraining.config.schema import parse_assignments
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EXIT_OK, EventWriter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="k-fold cross-validation of several presets, with the papers' comparison table",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    required = p.add_argument_group("required")
    required.add_argument("--presets", required=True, metavar="A,B,...",
                          help="presets to compare, comma-separated (`virtual-contrast presets list`)")
    data = required.add_mutually_exclusive_group(required=True)
    data.add_argument("--manifest", metavar="M", help="manifest CSV of LE/DES pairs to deal the folds from")
    data.add_argument("--fold-manifests", metavar="DIR",
                      help="folder of given folds, fold_0.csv, fold_1.csv, ... (e.g. imported VCE_CESM folds)")
    required.add_argument("--out", required=True, metavar="DIR", help="comparison folder (folds, runs, table)")
    p.add_argument("--folds", type=int, metavar="K", help="number of folds to deal (default 10)")
    p.add_argument("--stratify", choices=("lesion", "label"),
                   help="spread patients with lesion masks (Rofena et al. 2025 (002); default) or each class label "
                        "(Perre et al. (004)) over the folds")
    p.add_argument("--only-folds", metavar="0,1,...", help="run only these folds (numbered from 0)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field of every preset (repeatable), e.g. --set epochs=2")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0,
                   help="deals the folds; training seed unless --set seed=... (default 0)")
    p.add_argument("--deidentify", action="store_true",
                   help="evaluate and report with pseudonyms of the case ids only (docs/deidentification.md)")
    p.add_argument("--jobs", type=_jobs, default=1, metavar="N",
                   help="runs at a time on this machine, each in its own process: job i on cuda:(i mod GPUs), or on "
                        "the CPU with cores/N threads (default 1)")
    part = p.add_mutually_exclusive_group()
    part.add_argument("--plan", action="store_true",
                      help="only write the folds and OUT/plan.json and print the runs (K: preset, fold) and the "
                           "command of one, for a scheduler (a Slurm array)")
    part.add_argument("--run", type=int, metavar="K",
                      help="only train and evaluate run K of the plan (0 .. runs-1; e.g. $SLURM_ARRAY_TASK_ID)")
    part.add_argument("--collect", action="store_true",
                      help="only write the table and reports from the finished runs of the plan")
    p.set_defaults(func=run)


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of jobs >= 1, got {text!r}")
    return int(text)


def _numbers(text: str, option: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(None, f"{option} {text!r}: expected comma-separated fold numbers, e.g. 0,1") from None


def run(args: argparse.Namespace) -> int:
    presets = [name.strip() for name in args.presets.split(",") if name.strip()]
    only = _numbers(args.only_folds, "--only-folds") if args.only_folds is not None else None
    part = "plan" if args.plan else "collect" if args.collect else "run" if args.run is not None else "all"
    if args.jobs > 1 and part != "all":
        raise InputError(None, f"--jobs spreads the runs of a whole comparison: it does not apply to --{part}")
    result = compare(presets, args.manifest, args.out, k=args.folds, stratify=args.stratify, only_folds=only,
                     overrides=parse_assignments(args.set), seed=args.seed, device=args.device, events=EventWriter(),
                     fold_manifests=args.fold_manifests, deidentify=args.deidentify, jobs=args.jobs, part=part,
                     run=args.run)
    if result.code == EXIT_OK and part == "plan":
        print(result.plan)
    elif result.code == EXIT_OK and part != "run":
        print(f"\n{result.table}\n\nreport: {result.markdown}")
    return result.code
