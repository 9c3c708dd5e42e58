"""`virtual-contrast import PATH --out ...`: a dataset into manifests, whatever form it arrives in.

PATH is recognised by its layout:
- a CDD-CESM folder ("Low energy images of CDD-CESM/", "Subtracted images of CDD-CESM/", the annotation
  workbook and VIA CSV): DM/CM pairs registered by mutual information, lesion masks, density, labels ->
  one manifest (data/cdd_cesm.py);
- VCE_CESM fold files (N/{train,val,test}.txt, or folds_acr's N/test_{a,b,c,d}.txt) with --images, the
  folder of the images -> one manifest per fold in the --out folder and folds.json with each fold's leakage
  (data/ucbm_folds.py), for `compare --fold-manifests`; kept as published, or --regroup-by-patient;
- with --pairs PATTERN, a folder of LE/DES files named any other way (data/pairs.py);
- anything else is a DICOM folder: LE and DES paired by patient, study, side, view and time
  (data/importer.py).
The summary goes to stdout (pairs, pairs with a lesion mask, what was left out grouped by reason with a
few examples), so a user sees at once why something was not imported; with --json it goes to stderr and
stdout holds the events only (progress of reading the DICOM headers or registering CDD-CESM pairs, then
"finished" with the manifest). No pair at all is an InputError (exit 2, one line).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from VirtualContrastTraining.data import pairs, ucbm_folds
from VirtualContrastTraining.data.importer import DEFAULT_TIME_TOLERANCE_S, ImportReport, import_dicom
from VirtualContrastTraining.data.registration import SEARCH_PX
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EXIT_OK, EventWriter, progress_events


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import",
        help="a DICOM folder, a CDD-CESM folder or VCE_CESM fold files into manifests",
        description=(
            "DICOM folder: scan recursively (and any DICOMDIR), pair each recombined (DES) image with the "
            "low-energy (LE) image of the same patient, study, side and view nearest in time, attach lesion "
            "segmentations (.seg.nrrd, labelmap NRRD/NIfTI, DICOM SEG) and write the manifest --out. "
            "CDD-CESM folder: pair DM (LE) with CM (DES), register each pair by mutual information, draw the "
            "VIA annotations as lesion masks, take density and pathology from the workbook. VCE_CESM fold "
            "files (folds/N/{train,val,test}.txt) with --images: one manifest per fold into the folder --out. "
            "Any other naming of LE/DES files: --pairs PATTERN (docs/data.md)."
        ),
    )
    parser.add_argument("path", metavar="PATH", help="DICOM folder, CDD-CESM folder, or folds folder")
    required = parser.add_argument_group("required")
    required.add_argument("--out", required=True, metavar="OUT", help="manifest CSV to write (a folder for fold files)")
    parser.add_argument("--images", metavar="DIR", help="fold files only: the folder holding the NRRD images")
    parser.add_argument("--regroup-by-patient", action="store_true",
                        help="fold files only: deal each fold's images into patient-level splits of the same sizes "
                             "(default: the folds as published, their leakage reported)")
    parser.add_argument("--pairs", metavar="PATTERN",
                        help='file names of the pairs, e.g. "{id}_{view}_{role}.png" (fields {id}, {role}, optional '
                             "{side}, {view}, {any}); files matched under PATH, recursively")
    parser.add_argument("--roles", metavar="LE=..,DES=..", default=None,
                        help="--pairs only: the {role} text of each role (default LE=LE,DES=DES,mask=mask)")
    parser.add_argument("--search-px", type=int, default=SEARCH_PX, metavar="N",
                        help="CDD-CESM only: registration search range in px (default %(default)s, the bound of "
                             "Perre et al. (004))")
    parser.add_argument(
        "--time-tolerance",
        type=float,
        default=DEFAULT_TIME_TOLERANCE_S,
        metavar="SECONDS",
        help="DICOM only: largest acquisition-time gap between an LE and its DES (default %(default)g)",
    )
    parser.add_argument(
        "--ids-from-patient-id",
        action="store_true",
        help="DICOM only: build case and patient ids from the PatientID (P123_L_CC). By default they are "
             "pseudonyms, stable for the same folder (docs/deidentification.md)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from VirtualContrastTraining.data import cdd_cesm  # lazy: skimage

    path = Path(args.path)
    events = EventWriter()
    if args.pairs is not None:
        report = pairs.import_pairs(path, args.out, args.pairs, pairs.parse_roles(args.roles))
        return _done(events, summary(report), args.out)
    if args.roles is not None:
        raise InputError(None, "--roles goes with --pairs PATTERN")
    if ucbm_folds.is_fold_folder(path):
        if not args.images:
            raise InputError(path, "holds fold files: give --images, the folder with their NRRD images")
        reports = ucbm_folds.import_folds(path, args.images, args.out, regroup=args.regroup_by_patient)
        return _done(events, ucbm_folds.summary(reports), args.out)
    if args.images or args.regroup_by_patient:
        raise InputError(path, "--images and --regroup-by-patient are for fold files (N/train.txt, val.txt, "
                               "test.txt); this folder has none")
    if cdd_cesm.is_cdd_cesm_folder(path):
        report = cdd_cesm.import_cdd_cesm(path, args.out, search_px=args.search_px,
                                          progress=progress_events(events))
    else:
        report = import_dicom(path, args.out, time_tolerance_s=args.time_tolerance,
                              ids_from_patient_id=args.ids_from_patient_id, progress=progress_events(events))
    return _done(events, summary(report), args.out)


def _done(events: EventWriter, text: str, out: str) -> int:
    """The summary for the person (stdout; stderr when stdout is for --json's events), then "finished"."""
    events.end_stage()
    print(text, file=sys.stdout if events.console is not None else sys.stderr, flush=True)
    events.emit("finished", command="import", out=str(out))
    return EXIT_OK


def summary(report: ImportReport) -> str:
    head = f"{len(report.cases)} LE/DES pairs, {report.n_with_lesion} with a lesion mask -> {report.manifest_path}"
    return "\n".join([head, *report.skipped_lines()])
