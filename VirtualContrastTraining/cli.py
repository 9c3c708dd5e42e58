"""`virtual-contrast` command line: one subcommand per module under `commands/`.

Each command module exposes `register(subparsers)` which adds its parser and
sets `func`. Bad input (InputError) becomes one line on stderr and exit code 2;
the exit codes are listed in `events.py`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from VirtualContrastTraining import __version__
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EXIT_BAD_INPUT

COMMANDS = ("phantom", "import_dicom", "train", "predict", "evaluate", "demo", "compare", "report", "reader_study",
            "seg")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="virtual-contrast",
        description="Virtual contrast enhancement for CESM: LE -> synthetic DES.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"VirtualContrastTraining.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"virtual-contrast {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
