"""`virtual-contrast predict`: synthetic DES for one LE file or for every case of a manifest.

The output format follows --out's extension for one file (.nrrd, .dcm, .png, .tif/.tiff) and --format for a
folder; every format is marked synthetic and states its intensity units (docs/outputs.md)."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from VirtualContrastTraining.atomic import ensure_writable_dir
from VirtualContrastTraining.data.imageio import BITMAP_SUFFIXES, SITK_SUFFIXES
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EventWriter
from VirtualContrastTraining.synthesis import Synthesizer, file_input, manifest_inputs
from VirtualContrastTraining.synthetic_export import (
    EXTENSIONS,
    SUFFIX_FORMATS,
    check_synthetic_name,
    new_anonymizer,
    synthetic_name,
    write_synthetic_bitmap,
    write_synthetic_dicom,
    write_synthetic_nrrd,
)
from VirtualContrastTraining.synthetic_wording import PIXEL_MARKER


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="synthesize DES from LE images with a trained model",
                       description="Writes the synthetic DES in the LE's geometry (size, spacing, origin, direction) "
                                   "as NRRD, as DICOM marked DERIVED/SYNTHETIC, or as PNG/TIFF (size and spacing "
                                   "only), in the training set's DES units (docs/outputs.md).")
    required = p.add_argument_group("required")
    required.add_argument("--model", required=True, help="run folder (or its model.safetensors)")
    required.add_argument("--input", required=True,
                          help="LE image (DICOM, NRRD, PNG/JPEG; a DES or a synthetic image is refused) or a "
                               "manifest .csv (its LE column)")
    required.add_argument("--out", required=True,
                          help="output folder (files <case>_SYNTHETIC-DES.<ext>), or a file name containing "
                               "'SYNTHETIC' for one input (.nrrd, .dcm, .png, .tif or .tiff)")
    p.add_argument("--format", choices=tuple(EXTENSIONS), default=None,
                   help="output format (default: from --out's extension, else nrrd); png and tiff are 8-bit for a "
                        "model trained on 8-bit DES, else 16-bit, in the DES units either way")
    p.add_argument("--split", default="",
                   help="with a manifest: only cases of this split (e.g. test; `virtual-contrast split` fills them)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--laterality", choices=("L", "R"), default="",
                   help="single LE file: breast side when the file does not say (default: from the image)")
    p.add_argument("--le-window", metavar="CENTER,WIDTH", type=_window,
                   help="single LE file: intensity window for contrast stretching (default: the file's, "
                        "else percentiles); e.g. what a viewer shows for an NRRD that carries none")
    p.add_argument("--burn-in", action="store_true",
                   help=f"DICOM output: also draw '{PIXEL_MARKER}' into the pixels, in a corner "
                        "away from the breast (BurnedInAnnotation YES)")
    p.add_argument("--deidentify", action="store_true",
                   help="DICOM output: replace names, IDs, UIDs and dates with pseudonyms (dicognito), the same "
                        "for all files of this run, so a patient's images stay in one pseudonymous study; file "
                        "names and events carry pseudonyms of the case ids too (docs/deidentification.md)")
    p.set_defaults(func=run)


def _window(text: str) -> tuple[float, float]:
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CENTER,WIDTH (two numbers), got {text!r}") from None
    return center, width


def _output_format(out: Path, fmt: str | None) -> tuple[str, bool]:
    """(format, one file?) from --out and --format. An extension we write makes --out one file, in that format
    (--format must agree); another image extension (.jpg: lossy) is refused rather than made a folder."""
    suffix = out.suffix.lower()
    if suffix in SUFFIX_FORMATS:
        if fmt and fmt != SUFFIX_FORMATS[suffix]:
            raise InputError(out, f"--format {fmt} but the file name ends in {out.suffix}: give one of them")
        return SUFFIX_FORMATS[suffix], True
    if suffix in SITK_SUFFIXES + BITMAP_SUFFIXES:
        raise InputError(out, f"predict writes {', '.join(sorted(SUFFIX_FORMATS))} files, not {out.suffix} "
                              "(or give a folder)")
    return fmt or "nrrd", False


def _writer(fmt: str, args: argparse.Namespace):
    """The output writer; --burn-in and --deidentify are DICOM's (an NRRD, PNG or TIFF carries no patient data)."""
    if fmt != "dicom":
        if args.burn_in or args.deidentify:
            flags = " and ".join(f for f, on in (("--burn-in", args.burn_in), ("--deidentify", args.deidentify)) if on)
            raise InputError(None, f"{flags} apply to DICOM output only: add --format dicom (or --out NAME.dcm)")
        if fmt == "nrrd":
            return write_synthetic_nrrd
        return lambda image, dest: write_synthetic_bitmap(image, dest, fmt)
    anonymizer = new_anonymizer() if args.deidentify else False  # one for the whole run: consistent pseudonyms
    return lambda image, dest: write_synthetic_dicom(image, dest, burn_in=args.burn_in, deidentify=anonymizer)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    fmt, single_file = _output_format(out, args.format)
    if Path(args.input).suffix.lower() == ".csv":
        inputs = manifest_inputs(args.input, args.split, deidentify=args.deidentify)
    else:
        inputs = [file_input(args.input, args.laterality, args.le_window, deidentify=args.deidentify)]
    if single_file and len(inputs) != 1:
        raise InputError(out, "a manifest gives several outputs: --out must be a folder")
    if single_file:
        check_synthetic_name(out)
    writer = _writer(fmt, args)
    synth = Synthesizer.load(args.model, device=args.device)
    results = synth.synthesize_each(inputs)
    # The first one is made before the output folder exists, so a bad input or model leaves nothing behind.
    first = next(results)
    ensure_writable_dir(out.parent if single_file else out)
    events = EventWriter()
    events.emit("started", job="predict", model=str(args.model), n_images=len(inputs))
    written, dest = [], out
    try:
        for i, (item, des) in enumerate(itertools.chain([first], results), start=1):
            dest = out if single_file else out / synthetic_name(item.stem, fmt)
            written.append(writer(des, dest))
            events.emit("progress", step=i, total_steps=len(inputs), path=str(dest))
    except (InputError, OSError) as exc:  # a full disk, an unreadable LE: a failed event, then one line
        error = exc if isinstance(exc, InputError) else InputError(dest, f"cannot write: {exc.strerror}")
        events.emit("failed", job="predict", error=str(error), outputs=[str(p) for p in written])
        raise error from None
    events.emit("finished", job="predict", outputs=[str(p) for p in written], out=str(out))
    return 0
