"""`virtual-contrast presets`: the catalogue of training presets, and every field of one with where it comes from.

    virtual-contrast presets list
    virtual-contrast presets show rofena2025-segcyclegan-g35

`show` prints each field of the preset's TrainConfig, its value and its
source (config/presets.field_sources): the preset's paper when the preset
sets it, "default of TrainConfig" otherwise (with the paper whose value the
default is, where it is one), "changed from paper preset X" for a preset
scaled down from a paper's. What a paper leaves unstated is in the
description printed above the fields. `train --preset NAME --set FIELD=VALUE`
changes a field.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from VirtualContrastTraining.config.presets import PRESETS, field_sources
from VirtualContrastTraining.config.registries import cite_papers
from VirtualContrastTraining.events import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list the training presets, or show every field of one with its source",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="name, description and paper of each preset",
                       description="Name, description and paper of each training preset.")
    show = actions.add_parser("show", help="every field of one preset, its value and its source",
                              description="Every field of one preset's TrainConfig, its value and its source.")
    show.add_argument("name", metavar="NAME", help="preset name (see `virtual-contrast presets list`)")
    p.set_defaults(func=run)


def _heading(name: str) -> str:
    """The name, then the description wrapped at 100 columns and its source ("Rofena et al. 2024 (001)")."""
    config = PRESETS[name]
    description = textwrap.fill(config.description, 100, initial_indent="    ", subsequent_indent="    ")
    return f"{name}\n{description}\n    source: {cite_papers(config.source)}"


def list_presets(stream=None) -> None:
    """Each preset: its name, description and source paper; what `train --list-presets` prints too."""
    print("\n".join(_heading(name) for name in PRESETS), file=stream or sys.stdout)


def show_preset(name: str, stream=None) -> None:
    """The preset's heading, then every field of its TrainConfig as a table of field, value and source."""
    sources = field_sources(name)  # InputError with a suggestion for an unknown name
    rows = [(field, repr(value) if isinstance(value, str) else str(value), source)
            for field, (value, source) in sources.items() if field not in ("description", "source")]
    width_field = max(len(r[0]) for r in rows)
    width_value = max(len(r[1]) for r in rows)
    lines = [_heading(name), "", f"{'field':<{width_field}}  {'value':<{width_value}}  source"]
    lines += [f"{f:<{width_field}}  {v:<{width_value}}  {s}" for f, v, s in rows]
    print("\n".join(lines), file=stream or sys.stdout)


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        list_presets()
    else:
        show_preset(args.name)
    return EXIT_OK
