"""`virtual-contrast` command line: one subcommand per module under `commands/`.

Each command module exposes `register(subparsers)` which adds its parser and
sets `func`. Two options are the CLI's own, added here to the commands they
concern so that they read the same everywhere:

- `--json` (every command): the progress events as JSON lines on stdout, for
  machines (the Slicer job runner asks for it); without it a terminal gets one
  readable line per event and a progress bar (`console.py`).
- `--threads N` (the commands that compute): the CPU threads of torch,
  SimpleITK and the BLAS; by default the cores this process may use.

Bad input (InputError) becomes one line on stderr and exit code 2; the exit
codes are listed in `events.py`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from VirtualContrastTraining import __version__
from VirtualContrastTraining.devices import available_cores, use_threads
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EXIT_BAD_INPUT, already_reported, use_json

COMMANDS = ("phantom", "import_dicom", "split", "train", "predict", "evaluate", "demo", "compare", "report",
            "reader_study", "seg", "presets")

#: The commands whose work is computation, where the number of CPU threads matters.
COMPUTE_COMMANDS = ("phantom", "import", "train", "predict", "evaluate", "demo", "compare", "seg")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads >= 1, got {text!r}")
    return value


def _add_common_options(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the progress events as JSON lines on stdout, for programs (docs/jobs.md)")
    if name in COMPUTE_COMMANDS:
        parser.add_argument("--threads", type=_positive, default=None, metavar="N",
                            help=f"CPU threads for the computation (default: OMP_NUM_THREADS when set, else the "
                                 f"cores this process may use: {available_cores()} here); fewer helps on a machine "
                                 f"busy with other work")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="virtual-contrast",
        description="Virtual contrast enhancement for CESM: LE -> synthetic DES.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"VirtualContrastTraining.commands.{name}")
        module.register(sub)
    for name, command_parser in sub.choices.items():
        _add_common_options(name, command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_json(args.json, args.command)
    try:
        if hasattr(args, "threads"):
            use_threads(args.threads)
        return int(args.func(args) or 0)
    except InputError as exc:
        if not already_reported(str(exc)):
            print(f"virtual-contrast {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
