"""`virtual-contrast train`: train a preset on a manifest, with its progress on the terminal (--json: events).

    virtual-contrast train --preset demo --manifest data/manifest.csv --out runs/demo
    virtual-contrast train --preset rofena2024-cyclegan --manifest data/manifest.csv --estimate
    virtual-contrast train --out runs/demo --manifest data/manifest.csv --resume
    virtual-contrast train --list-presets

--estimate times a few real steps on the device and prints seconds per
step, the planned steps, the total time and the peak memory, then exits
without writing anything; a real run prints the same after its first steps.
A GPU-sized preset on the CPU gets a warning naming a scaled-down run.

The run folder gets progress.png (losses, validation L1, learning rate per
epoch), samples/ (a few fixed validation cases per epoch, samples/index.html)
and, with --tensorboard, TensorBoard event files in tensorboard/.

Transfer learning (001, 002: pre-train on one dataset, fine-tune on another):
    virtual-contrast train --preset rofena2024-cyclegan --manifest public/manifest.csv --out runs/pretrain
    virtual-contrast train --preset rofena2025-segcyclegan-g35 --manifest ucbm/manifest.csv \\
        --out runs/finetune --init-from runs/pretrain

--init-from takes a run folder (every network of its last training state:
generators and discriminators) or a model file (the generator only); the
architecture must match the preset's. Optimiser moments and the schedule start
afresh. It applies to a new run only, not to --resume.

Options such as --epochs or --gamma override single fields of the preset;
--set field=value reaches every field of TrainConfig. With --resume the
config saved in the run folder is the base: a --preset, when given, must be
the one the run was started from, and only the options given on this command
line change it (only epochs, patience and val_every may change; e.g. --epochs
extends the schedule).

--overwrite reuses a folder that holds a run (say one that failed): its
files are deleted once the new run's data are ready, and a folder holding
anything else is refused. A second Ctrl-C or SIGTERM stops at once, keeping
the last checkpoint. See docs/training-runs.md.

Speed options change how the steps run, not what is learnt (they are not
config fields): --deterministic for bitwise repeatable steps (a run started
with it keeps it on --resume), --workers N data-loading processes (default 0
on the CPU, 4 on a GPU), --channels-last and --compile (measured in
docs/benchmarks.md; off by default). Several GPUs or nodes: the same command
under torchrun, e.g.
    torchrun --nproc_per_node 4 -m VirtualContrastTraining train --preset rofena2024-cyclegan \\
        --manifest data/manifest.csv --out runs/cyclegan
each process takes its share of every batch of --batch-size; rank 0 writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from VirtualContrastTraining.commands.presets import list_presets
from VirtualContrastTraining.config.presets import resolve_config
from VirtualContrastTraining.config.schema import apply_overrides, parse_assignments
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EXIT_OK, EventWriter
from VirtualContrastTraining.execution import Execution
from VirtualContrastTraining.train import CONFIG_FILE, estimate, load_run_config, train

# CLI option -> TrainConfig field
SHORTCUTS = {"epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "gamma": "gamma_lesion",
             "image_size": "image_size"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a preset of the papers (cycle-GAN, Seg-CycleGAN, pix2pix, supervised): "
                                     "LE -> DES",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", help="named configuration (see --list-presets); required, except with --resume")
    p.add_argument("--manifest", help="manifest CSV of LE/DES pairs (splits assigned per patient when empty); "
                   "required, except with --list-presets")
    p.add_argument("--out", help="run folder: config, checkpoints, model, history, progress.png, samples; "
                   "required, except with --estimate or --list-presets")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--estimate", action="store_true",
                   help="time a few real steps and print s/step, planned steps, total time and peak memory; "
                        "writes nothing")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files into <out>/tensorboard (needs the tensorboard package)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="reuse --out although it holds a run (a failed or unwanted one): its files are deleted once "
                        "the new run's data are ready; refused when the folder holds anything else")
    p.add_argument("--epochs", type=int, help="maximum number of epochs")
    p.add_argument("--batch-size", type=int, help="images per step")
    p.add_argument("--lr", type=float, help="learning rate of both Adam optimisers")
    p.add_argument("--gamma", type=float, help="gamma_lesion: weight of the lesion-masked terms (0 = CycleGAN)")
    p.add_argument("--image-size", type=int, help="side of the square network input")
    p.add_argument("--init-from", metavar="PATH",
                   help="transfer learning: start from this run folder or model file instead of random weights "
                        "(pre-train on one manifest, fine-tune on another)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any config field (repeatable), e.g. --set pool_size=50")
    p.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    speed = p.add_argument_group("speed (how the steps run, not what is learnt; docs/benchmarks.md)")
    speed.add_argument("--deterministic", action="store_true",
                       help="deterministic algorithms for bitwise repeatable steps and exact resume (within noise on "
                            "a CPU, docs/benchmarks.md; on a GPU also no cuDNN autotuning); kept on --resume of a run "
                            "started with it")
    speed.add_argument("--workers", type=_workers, metavar="N",
                       help="data-loading worker processes (default: 0 on the CPU, up to 4 on a GPU)")
    speed.add_argument("--channels-last", action="store_true",
                       help="NHWC memory format for networks and images (for GPU tensor cores)")
    speed.add_argument("--compile", action="store_true",
                       help="torch.compile every network (its first steps compile for minutes)")
    p.set_defaults(func=run)


def _workers(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of processes (0 or more), got {text!r}")
    return int(text)


def execution_from_args(args: argparse.Namespace) -> Execution:
    return Execution(deterministic=args.deterministic, workers=args.workers, channels_last=args.channels_last,
                     compile=args.compile)


def resolve_from_args(args: argparse.Namespace):
    """The TrainConfig the arguments describe: the preset, or with --resume the run's saved config.

    With --resume only the overrides given on this command line are applied
    to the saved config (train() then refuses any that changes a step).
    """
    overrides = parse_assignments(args.set)
    overrides.update({field: getattr(args, opt) for opt, field in SHORTCUTS.items() if getattr(args, opt) is not None})
    if args.init_from:
        if args.resume:
            raise InputError(None, "--init-from starts a new run from other weights; "
                             "it cannot be combined with --resume")
        if not Path(args.init_from).exists():
            raise InputError(args.init_from, "--init-from: no such run folder or model file")
        # Absolute, so the config saved in the run folder still names the source when read from elsewhere.
        overrides["init_from"] = str(Path(args.init_from).absolute())
    if not args.resume:
        return resolve_config(args.preset, overrides)
    saved = load_run_config(args.out)
    if args.preset and args.preset != saved.preset:
        started = f"preset {saved.preset!r}" if saved.preset else "a custom config (no preset)"
        raise InputError(Path(args.out) / CONFIG_FILE, f"--resume --preset {args.preset}: this run was started "
                         f"from {started}; leave --preset out or give that one")
    return apply_overrides(saved, overrides)


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        list_presets()
        return EXIT_OK
    needs_out = not args.estimate or args.resume  # --estimate writes nothing; with --resume it reads the run
    missing = [opt for opt, value in (("--manifest", args.manifest), ("--out", args.out or not needs_out)) if not value]
    if not args.preset and not args.resume:
        missing.insert(0, "--preset")
    if missing:
        raise InputError(None, f"missing {', '.join(missing)} (see virtual-contrast train --help)")
    if args.estimate:
        return estimate(resolve_from_args(args), args.manifest, device=args.device,
                        execution=execution_from_args(args), events=EventWriter())
    return train(resolve_from_args(args), args.manifest, args.out, device=args.device, resume=args.resume,
                 overwrite=args.overwrite, tensorboard=args.tensorboard, execution=execution_from_args(args),
                 events=EventWriter())
