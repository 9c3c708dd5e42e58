"""`virtual-contrast seg`: a lesion segmentation between Slicer's .seg.nrrd and DICOM SEG.

    virtual-contrast seg --to-dicom P1_L_CC_lesions.seg.nrrd --le P1_L_CC_LE.dcm --out P1_L_CC_SEG.dcm
    virtual-contrast seg --to-nrrd P1_L_CC_SEG.dcm --le P1_L_CC_LE.dcm --out P1_L_CC_lesions.seg.nrrd

A DICOM SEG goes back to PACS and opens in Slicer's DICOM browser beside its
LE; a .seg.nrrd is what Slicer's Segment Editor saves. Both directions keep one
segment per lesion and its name, on the LE's own grid (data/segmentation.py, data/dicom_seg.py).
"""

from __future__ import annotations

import argparse

from VirtualContrastTraining.data.dicom_read import read_mg_dicom
from VirtualContrastTraining.data.segmentation import lesion_segments, seg_nrrd_to_dicom_seg, write_lesion_segmentation


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "seg", help="convert a lesion segmentation between .seg.nrrd and DICOM SEG",
        description=__doc__.split("\n\n")[2].replace("\n", " "))
    required = parser.add_argument_group("required")
    direction = required.add_mutually_exclusive_group(required=True)
    direction.add_argument("--to-dicom", metavar="SEG", help=".seg.nrrd (or labelmap) to write as a DICOM SEG")
    direction.add_argument("--to-nrrd", metavar="DCM", help="DICOM SEG to write as a .seg.nrrd")
    required.add_argument("--le", required=True, metavar="LE.dcm", help="the LE DICOM the segmentation is drawn on")
    required.add_argument("--out", required=True, metavar="FILE", help="file to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.to_dicom:
        out = seg_nrrd_to_dicom_seg(args.to_dicom, args.le, args.out)
    else:
        le = read_mg_dicom(args.le)
        out = write_lesion_segmentation(args.out, lesion_segments(args.to_nrrd, le), le)
    print(f"wrote {out}")
    return 0
