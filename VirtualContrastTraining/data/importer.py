"""Import a folder of CESM DICOM files: pair each DES with its LE, attach lesion masks, write a manifest.

Why pairing needs care: one CESM study holds, for each breast and view, an LE,
an HE and a recombined (DES) image from one compression, and often repeated
late-phase compressions of the same view minutes later. The images of one
compression share an acquisition time to within seconds, so within a
(patient, study, side, view) group each DES is paired with the LE nearest in
time, one-to-one, smallest gap first.

Case ids and the manifest's patient_id are pseudonyms unless asked otherwise
(`ids_from_patient_id`): "P" and ten hex digits of an HMAC of the PatientID
keyed by the SOP Instance UIDs of the paired images. The key is the folder's
own content, so the same folder gives the same ids every time, and an id cannot
be reversed by hashing a list of MRNs without the images themselves
(docs/deidentification.md).

A file is a synthetic image when any marker our writer sets says so
(synthetic_wording.SYNTHETIC_MARKER_FIELDS, the file name's FILE_SUFFIX): one
edited field does not turn it into a real DES.

Nothing in the folder aborts the import: every file that is not used is listed
in `ImportReport.skipped` with the reason, and the command prints them grouped.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from VirtualContrastTraining.data.dicom_read import DicomInfo, pixel_problem, read_header
from VirtualContrastTraining.data.dicom_seg import referenced_instances
from VirtualContrastTraining.data.imageio import is_dicom_file
from VirtualContrastTraining.data.manifest import Case, write_manifest
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import Progress
from VirtualContrastTraining.synthetic_wording import FILE_SUFFIX, SYNTHETIC_MARKER_FIELDS, SYNTHETIC_WORD

DEFAULT_TIME_TOLERANCE_S = 120.0  # LE and DES of one compression are seconds apart; repeats are minutes apart
SEG_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nrrd", ".nii")
MAX_LABELS = 255
_SEPARATORS = "_-. "
# Words of a segmentation's name, each matched at the start of a word ("breastmask", "fatty" count).
# A tissue or ground-truth word means the file is not a lesion mask whatever else matches
# (the phantom writes truth/<case>_breast.nrrd, _adipose, _fibroglandular, _iodine beside lesion-free cases);
# a lesion word is what lets a name that only extends a case's name claim it.
#: The two tissue regions of 000's CNR and the words that name each (a user's "fibro" or "fat" segment too);
#: the one tissue vocabulary of the engine, the manifest and the Slicer module.
TISSUE_REGION_WORDS = {"fibroglandular": ("fibroglandular", "glandular", "fibro"), "adipose": ("adipose", "fat")}
_TISSUE_WORDS = re.compile(
    r"(?<![a-z])(" + "|".join(word for words in TISSUE_REGION_WORDS.values() for word in words)
    + r"|breast|iodine|(ground)?truth|body|pectoral|muscle|skin)",
    re.IGNORECASE,
)
_REGION_PATTERNS = {region: re.compile(r"(?<![a-z])(" + "|".join(words) + ")", re.IGNORECASE)
                    for region, words in TISSUE_REGION_WORDS.items()}
_LESION_WORDS = re.compile(r"(?<![a-z])(lesion|mass|tumou?r|seg|label)", re.IGNORECASE)


def is_tissue_name(name: str) -> bool:
    """True for names of tissue or ground-truth masks (fibroglandular, adipose, breast, ...): never lesions.
    The Slicer module uses it too, to keep CNR tissue segments out of an exported lesion mask."""
    return bool(_TISSUE_WORDS.search(name))


def tissue_region(name: str) -> str | None:
    """The CNR tissue region a name names ("fibroglandular" or "adipose"), or None."""
    return next((region for region, pattern in _REGION_PATTERNS.items() if pattern.search(name)), None)


# One reason for all (the CLI groups files by reason); the word is in each file's name.
_TISSUE_REASON = "not a lesion mask: its name says tissue or ground truth (breast, adipose, iodine, truth, ...)"


@dataclass
class ImportReport:
    cases: list[Case]
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    manifest_path: Path | None = None

    @property
    def n_with_lesion(self) -> int:
        return sum(1 for c in self.cases if c.lesion_path)

    def skipped_by_reason(self) -> dict[str, list[str]]:
        """reason -> paths, most frequent reason first."""
        groups: dict[str, list[str]] = defaultdict(list)
        for path, reason in self.skipped:
            groups[reason].append(path)
        return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))

    def skipped_lines(self, heading: str = "skipped {n} files:", examples: int = 3) -> list[str]:
        """The import summary's lines for what was left out: `heading` (with {n}, the count), then per
        reason (most frequent first) the count and a few example paths; none when nothing was skipped."""
        groups = self.skipped_by_reason()
        lines = [heading.format(n=len(self.skipped))] if groups else []
        for reason, paths in groups.items():
            lines.append(f"  {len(paths)} x {reason}")
            lines += [f"      {p}" for p in paths[:examples]]
            if len(paths) > examples:
                lines.append(f"      ... and {len(paths) - examples} more")
        return lines


@dataclass
class _Pair:
    le: DicomInfo
    des: DicomInfo
    case_id: str = ""
    patient: str = ""     # the manifest's patient_id: a pseudonym unless ids come from PatientID
    patient_case_id: str = ""   # the case id built from the PatientID: matches segmentation names, never written
    lesion_path: str = ""


@dataclass
class _SegInfo:
    path: Path
    rows: int
    cols: int
    spacing: tuple[float, float]
    references: frozenset[str] | None = None  # a DICOM SEG's source SOP Instance UIDs; None for other files

    @property
    def stem(self) -> str:
        return _stem(self.path)


def import_dicom(
    root: str | os.PathLike,
    out_manifest: str | os.PathLike,
    *,
    time_tolerance_s: float = DEFAULT_TIME_TOLERANCE_S,
    ids_from_patient_id: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Scan `root` recursively (and any DICOMDIR in it), pair LE with DES, write `out_manifest`.

    Case ids and patient ids are pseudonyms (module docstring) unless
    `ids_from_patient_id`, when they are built from the PatientID. Reading
    the headers is what takes long on a large archive: `progress` is told
    before each file.

    InputError when `root` is not a folder or when no pair is found (then no
    manifest is written).
    """
    root = Path(root)
    out_manifest = Path(out_manifest)
    if not root.is_dir():
        raise InputError(root, "not a folder")
    skipped: list[tuple[str, str]] = []
    dicoms, seg_paths = _scan(root, exclude=out_manifest.resolve(), skipped=skipped, progress=progress)
    pairs = _pair(_usable(dicoms, skipped), time_tolerance_s, skipped)
    if not pairs:
        counts = Counter(reason for _, reason in skipped)
        top = "; ".join(f"{reason} ({n})" for reason, n in counts.most_common(3)) or "the folder is empty"
        raise InputError(root, f"no LE/DES pairs found; skipped {len(skipped)} files: {top}")
    _name_patients(pairs, pseudonymous=not ids_from_patient_id)
    _name_cases(pairs)
    _attach_segmentations(pairs, _read_segs(seg_paths, skipped), skipped)
    cases = [_case(p) for p in sorted(pairs, key=lambda p: p.case_id)]
    write_manifest(out_manifest, cases)
    return ImportReport(cases=cases, skipped=skipped, manifest_path=out_manifest)


# ---------------------------------------------------------------- scanning


def _scan(root: Path, exclude: Path, skipped: list, progress: Progress | None = None,
          ) -> tuple[list[DicomInfo], list[Path]]:
    """Every file under root, classified by content; files a DICOMDIR names are added once."""
    queue = deque(sorted(p.resolve() for p in root.rglob("*") if p.is_file()))
    seen = set(queue)
    dicoms: list[DicomInfo] = []
    segs: list[Path] = []
    while queue:
        if progress is not None:  # before each file: a DICOMDIR adds to the total as it is read
            progress(len(seen) - len(queue), len(seen), "reading DICOM headers")
        path = queue.popleft()
        if path == exclude:
            continue
        if is_dicom_file(path):
            try:
                info = read_header(path)
            except InputError as exc:
                skipped.append((str(path), exc.problem))
                continue
            if info.is_dicomdir:
                for ref in _dicomdir_files(path, skipped):
                    if ref not in seen:
                        seen.add(ref)
                        queue.append(ref)
            elif info.modality == "SEG":
                segs.append(path)
            else:
                dicoms.append(info)
        elif _seg_suffix(path):
            segs.append(path)
        else:
            skipped.append((str(path), "not a DICOM file"))
    if progress is not None:
        progress(len(seen), len(seen), "reading DICOM headers")
    return dicoms, segs


def _dicomdir_files(path: Path, skipped: list) -> list[Path]:
    """Files referenced by a DICOMDIR's records (resolved); missing ones are reported, not returned.

    The records are read directly rather than through pydicom's FileSet, which
    silently drops references to missing files.
    """
    try:
        records = pydicom.dcmread(path).DirectoryRecordSequence
    except Exception as exc:  # a broken DICOMDIR must not stop the folder scan
        skipped.append((str(path), f"unreadable DICOMDIR ({str(exc).strip()[:120]})"))
        return []
    refs = []
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        ref = path.parent.joinpath(*parts)
        if not ref.is_file():  # media written in upper case, copied to a case-sensitive disk in lower case
            ref = path.parent.joinpath(*(p.lower() for p in parts))
        if ref.is_file():
            refs.append(ref.resolve())
        else:
            skipped.append((str(path.parent.joinpath(*parts)), "referenced by DICOMDIR but missing"))
    return refs


def _usable(dicoms: list[DicomInfo], skipped: list) -> list[DicomInfo]:
    """LE and DES images that can be paired; everything else goes to `skipped` with its reason."""
    usable = []
    seen_sops: set[str] = set()
    for info in dicoms:
        reason = pixel_problem(info)
        if reason is None:
            reason = _role_problem(info)
        if reason is None and info.sop_uid in seen_sops:
            reason = "duplicate: same SOP Instance UID as an earlier file"
        if reason is None and not info.patient_id:
            reason = "no PatientID: cannot group images by patient"
        if reason is None and not info.laterality:
            reason = "laterality unknown (no ImageLaterality, Laterality or L/R in the description)"
        if reason is None and not info.view:
            reason = "view unknown (no ViewPosition, ViewCodeSequence or view in the description)"
        if reason:
            skipped.append((info.path, reason))
            continue
        if info.sop_uid:
            seen_sops.add(info.sop_uid)
        usable.append(info)
    return usable


def _role_problem(info: DicomInfo) -> str | None:
    if info.role == "SYNTHETIC" or synthetic_marker(info.path):
        return "synthetic image: never paired as a real DES"
    if info.role == "HE":
        return "high-energy image: not used"
    if not info.role:
        return "role unknown: not recognisably LE, DES or HE (ImageType, processing code, description)"
    return None


def synthetic_marker(path: str | os.PathLike) -> str:
    """The first synthetic marker of a DICOM file (a header field or its name), or "" when none says so.

    Reads the few marker fields again (DicomInfo has only ImageType and SeriesDescription): a file whose
    ImageType and description were edited still says synthetic in DerivationDescription or Manufacturer.
    """
    if FILE_SUFFIX.lower() in Path(path).name.lower():
        return "file name"
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(SYNTHETIC_MARKER_FIELDS))
    except Exception:  # read_header read it a moment ago; a file changing under us is not synthetic by that
        return ""
    for keyword in SYNTHETIC_MARKER_FIELDS:
        value = ds.get(keyword)
        text = " ".join(map(str, value)) if isinstance(value, (list, pydicom.multival.MultiValue)) else str(value or "")
        if SYNTHETIC_WORD in re.findall(r"[A-Z0-9]+", text.upper()):
            return keyword
    return ""


# ---------------------------------------------------------------- pairing


def _pair(infos: list[DicomInfo], tolerance_s: float, skipped: list) -> list[_Pair]:
    groups: dict[tuple, list[DicomInfo]] = defaultdict(list)
    for info in infos:
        groups[(info.patient_id, info.study_uid, info.laterality, info.view)].append(info)
    pairs = []
    for members in groups.values():
        les = [i for i in members if i.role == "LE"]
        dess = [i for i in members if i.role == "DES"]
        matched = _match(les, dess, tolerance_s)
        pairs += [_Pair(le, des) for le, des in matched]
        used = {id(x) for pair in matched for x in pair}
        for info in les + dess:
            if id(info) not in used:
                other = "DES" if info.role == "LE" else "LE"
                skipped.append(
                    (info.path, f"unpaired {info.role}: no {other} of the same study, side and view within {tolerance_s:g} s")
                )
    return pairs


def _match(les: list[DicomInfo], dess: list[DicomInfo], tolerance_s: float) -> list[tuple[DicomInfo, DicomInfo]]:
    """One-to-one, greedy by smallest time gap. Without times, only a lone LE/DES pair is unambiguous."""
    if len(les) == 1 and len(dess) == 1 and (les[0].acquisition_time is None or dess[0].acquisition_time is None):
        return [(les[0], dess[0])]
    gaps = []
    for i, le in enumerate(les):
        for j, des in enumerate(dess):
            if le.acquisition_time and des.acquisition_time:
                gap = abs((des.acquisition_time - le.acquisition_time).total_seconds())
                if gap <= tolerance_s:
                    gaps.append((gap, le.acquisition_time, i, j))
    taken_le, taken_des, matched = set(), set(), []
    for _, _, i, j in sorted(gaps):
        if i not in taken_le and j not in taken_des:
            taken_le.add(i)
            taken_des.add(j)
            matched.append((les[i], dess[j]))
    return matched


def _name_patients(pairs: list[_Pair], *, pseudonymous: bool) -> None:
    """Each pair's patient: its PatientID, or (`pseudonymous`) "P" + 10 hex digits of an HMAC-SHA256 of it
    keyed by the sorted SOP Instance UIDs of all paired images: stable for one folder, and not
    reversible by hashing candidate MRNs without the images."""
    if not pseudonymous:
        for pair in pairs:
            pair.patient = pair.le.patient_id
        return
    key = hashlib.sha256("\n".join(sorted(i.sop_uid or i.path for p in pairs for i in (p.le, p.des))).encode())
    for pair in pairs:
        pair.patient = "P" + hmac.new(key.digest(), pair.le.patient_id.encode(), hashlib.sha256).hexdigest()[:10]


def _name_cases(pairs: list[_Pair]) -> None:
    """f"{patient}_{side}_{view}", then _2, _3 for repeats in time order (also across studies); the same
    from the PatientID into `patient_case_id`, the name users give their segmentation files."""
    for pair, name in zip(pairs, _names(pairs, lambda p: p.patient)):
        pair.case_id = name
    for pair, name in zip(pairs, _names(pairs, lambda p: p.le.patient_id)):
        pair.patient_case_id = name


def _names(pairs: list[_Pair], patient_of) -> list[str]:
    by_base: dict[str, list[int]] = defaultdict(list)
    for k, pair in enumerate(pairs):
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{patient_of(pair)}_{pair.le.laterality}_{pair.le.view}")
        by_base[base].append(k)
    names = [""] * len(pairs)
    for base, members in by_base.items():
        members.sort(key=lambda k: (pairs[k].le.acquisition_time is None, pairs[k].le.acquisition_time or 0,
                                    pairs[k].le.path))
        for n, k in enumerate(members, start=1):
            names[k] = base if n == 1 else f"{base}_{n}"
    return names


def _case(pair: _Pair) -> Case:
    le, des = pair.le, pair.des
    return Case(
        case_id=pair.case_id,
        patient_id=pair.patient,
        le_path=le.path,
        des_path=des.path,
        lesion_path=pair.lesion_path,
        study_uid=le.study_uid,
        laterality=le.laterality,
        view=le.view,
        le_time=le.acquisition_time.isoformat() if le.acquisition_time else "",
        des_time=des.acquisition_time.isoformat() if des.acquisition_time else "",
        # DicomInfo's window is in the scale read_mg_dicom gives the pixels (MONOCHROME1 inverted),
        # which is what prepare_case applies it to.
        le_window_center=_num(le.window_center),
        le_window_width=_num(le.window_width),
        des_window_center=_num(des.window_center),
        des_window_width=_num(des.window_width),
    )


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


# ---------------------------------------------------------------- segmentations


def _seg_suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in SEG_SUFFIXES if name.endswith(s)), "")


def _stem(path: Path) -> str:
    suffix = _seg_suffix(path) or path.suffix
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def _read_segs(paths: list[Path], skipped: list) -> list[_SegInfo]:
    segs = []
    for path in paths:
        try:
            segs.append(_read_seg_info(path))
        except InputError as exc:
            skipped.append((str(path), exc.problem))
    return segs


def _read_seg_info(path: Path) -> _SegInfo:
    """Size and spacing of a segmentation from its header; InputError when it is not a labelmap.

    A Slicer .seg.nrrd may be cropped to its segments' extent: its full
    reference geometry is then read from Segmentation_ConversionParameters.
    Integer images wider than 8 bits are read once to count their labels, so an
    LE saved as uint16 NRRD is not taken for a mask.
    """
    if is_dicom_file(path):
        return _read_dicom_seg_info(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(path, "ignored: unreadable image header") from None
    is_seg = path.name.lower().endswith(".seg.nrrd") or reader.HasMetaDataKey("Segment0_ID")
    pixel = reader.GetPixelID()
    integer_types = (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32,
                     sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64, sitk.sitkVectorUInt8, sitk.sitkVectorInt8)
    if pixel not in integer_types:
        raise InputError(path, f"ignored: not a segmentation or labelmap ({sitk.GetPixelIDValueAsString(pixel)} pixels)")
    if not is_seg and reader.GetNumberOfComponents() != 1:
        raise InputError(path, "ignored: not a segmentation or labelmap (several components per pixel)")
    if not is_seg and pixel not in (sitk.sitkUInt8, sitk.sitkInt8):
        n_labels = len(np.unique(sitk.GetArrayFromImage(reader.Execute())))
        if n_labels > MAX_LABELS + 1:
            raise InputError(path, f"ignored: not a labelmap ({n_labels} distinct values)")
    size, spacing = reader.GetSize(), reader.GetSpacing()
    if len(size) == 3 and size[2] != 1:
        raise InputError(path, f"ignored: a volume of {size[2]} slices, not a 2-D mask")
    cols, rows, sx, sy = size[0], size[1], spacing[0], spacing[1]
    if is_seg and reader.HasMetaDataKey("Segmentation_ConversionParameters"):
        ref = _reference_geometry(reader.GetMetaData("Segmentation_ConversionParameters"))
        if ref:
            cols, rows, sx, sy = ref
    return _SegInfo(path=path, rows=rows, cols=cols, spacing=(sx, sy))


def _read_dicom_seg_info(path: Path) -> _SegInfo:
    """A DICOM SEG: its size and the LEs it segments, from the header (data/dicom_seg.py)."""
    info = read_header(path)
    return _SegInfo(path=path, rows=info.rows, cols=info.cols, spacing=info.spacing or (1.0, 1.0),
                    references=frozenset(referenced_instances(path)))


def _reference_geometry(params: str) -> tuple[int, int, float, float] | None:
    """(cols, rows, sx, sy) from Slicer's "Reference image geometry" conversion parameter:
    16 values of the 4x4 IJK-to-RAS matrix then the extent i0;i1;j0;j1;k0;k1."""
    match = re.search(r"Reference image geometry\|([^|]*)\|", params)
    if not match:
        return None
    try:
        values = [float(v) for v in match.group(1).split(";") if v.strip()]
    except ValueError:
        return None
    if len(values) != 22:
        return None
    m = np.array(values[:16]).reshape(4, 4)[:3, :3]
    i0, i1, j0, j1 = values[16:20]
    return int(i1 - i0 + 1), int(j1 - j0 + 1), float(np.linalg.norm(m[:, 0])), float(np.linalg.norm(m[:, 1]))


def _name_score(seg_stem: str, target: str) -> tuple[int, int]:
    """(2, n): same name; (1, n): one name is the other plus a separated prefix/suffix; (0, 0): no match.

    n, the length of the shared name, ranks more specific matches higher:
    "P1_L_CC_late_LE_lesion" belongs to the LE "P1_L_CC_late_LE", not to case "P1_L_CC".
    A score says only that the names fit; whether the file is a lesion mask is
    `_not_a_lesion_mask`'s question.
    """
    a, b = seg_stem.lower(), target.lower()
    if not a or not b:
        return 0, 0
    if a == b:
        return 2, len(a)
    short, long = sorted((a, b), key=len)
    if (long.startswith(short) and long[len(short)] in _SEPARATORS) or (
        long.endswith(short) and long[-len(short) - 1] in _SEPARATORS
    ):
        return 1, len(short)
    return 0, 0


def _name_rest(seg_stem: str, target: str) -> str:
    """What the segmentation's name adds to the case name it matched (`target`): "_lesions" of
    "P1_L_CC_lesions", so that words of a patient ID ("SKINNER") are not taken for words about the file."""
    a, b = seg_stem.lower(), target.lower()
    if len(a) <= len(b):
        return ""  # same name, or the segmentation's name is the shorter one: it adds nothing
    return seg_stem[len(b):] if a.startswith(b) and a[len(b)] in _SEPARATORS else seg_stem[: len(a) - len(b)]


def _not_a_lesion_mask(seg: _SegInfo, rest: str, name_score: int, case_id: str) -> str | None:
    """Why a segmentation that names a case is still not its lesion mask, or None.

    `rest` is the part of the name beyond the case name it matched. Tissue and
    ground-truth masks are never lesion masks; a name that only shares a prefix or
    suffix with the case's must be a Slicer .seg.nrrd or say lesion, mass, tumour,
    seg or label, so "P1_L_CC_notes.nrrd" does not pass for a lesion mask.
    """
    if _TISSUE_WORDS.search(rest):
        return _TISSUE_REASON
    if name_score == 1 and not seg.path.name.lower().endswith(".seg.nrrd") and not _LESION_WORDS.search(rest):
        return (f"not taken as a lesion mask: its name shares only a prefix or suffix with case {case_id}, "
                "has no lesion word (lesion, mass, tumour, seg, label) and is no .seg.nrrd")
    return None


def _attach_segmentations(pairs: list[_Pair], segs: list[_SegInfo], skipped: list) -> None:
    """By name first (seg stem vs case id and LE file stem), then by geometry among the LEs of its folder.

    A name matches when it equals the case id (or the one the PatientID would
    give) or the LE's file stem, or is one of them plus a separated
    prefix/suffix. Such an extended name is taken only for a Slicer .seg.nrrd
    or a name with a lesion word (lesion, mass, tumour, seg, label); a name
    with a tissue or ground-truth word (breast, adipose, fat, fibroglandular,
    glandular, iodine, truth, body, pectoral, muscle, skin) is never a lesion
    mask, by name or by geometry: each is skipped with its reason, so a
    lesion-free case stays without a mask instead of getting a tissue map.
    When several files claim the same case, the best claim wins: closer name,
    then a .seg.nrrd, then a lesion word, then path order. A DICOM SEG names
    the image it segments: it goes to the case of that LE before any other
    file claims a case, and by nothing else (`_attach_dicom_segs`).
    """
    claims, unmatched = [], []
    for seg in _attach_dicom_segs(pairs, segs, skipped):
        scored = []
        for pair in pairs:
            names = (pair.case_id, pair.patient_case_id, Path(pair.le.path).stem)
            score, target = max((_name_score(seg.stem, t), t) for t in names)
            if score[0]:
                scored.append((score, pair, target))
        if not scored:
            if _TISSUE_WORDS.search(seg.stem):
                skipped.append((str(seg.path), _TISSUE_REASON))
            else:
                unmatched.append(seg)
            continue
        best = max(s for s, _, _ in scored)
        winners = [(p, t) for s, p, t in scored if s == best]
        if len(winners) > 1:
            ids = ", ".join(p.case_id for p, _ in winners[:3])
            skipped.append((str(seg.path), f"segmentation name matches several cases ({ids})"))
            continue
        pair, target = winners[0]
        rest = _name_rest(seg.stem, target)
        reason = _not_a_lesion_mask(seg, rest, best[0], pair.case_id)
        if reason:
            skipped.append((str(seg.path), reason))
            continue
        is_seg = seg.path.name.lower().endswith(".seg.nrrd")
        claims.append(((best, is_seg, bool(_LESION_WORDS.search(rest))), seg, pair))
    for _, seg, pair in sorted(claims, key=lambda c: c[0], reverse=True):  # stable: path order among equals
        _give(pair, seg, skipped)
    for seg in unmatched:
        folder = seg.path.parent.resolve()
        same = [
            p for p in pairs
            if Path(p.le.path).parent.resolve() == folder
            and (p.le.rows, p.le.cols) == (seg.rows, seg.cols)
            and np.allclose(p.le.spacing or (1.0, 1.0), seg.spacing, rtol=1e-3, atol=1e-4)
        ]
        if len(same) == 1:
            _give(same[0], seg, skipped)
        else:
            where = "no LE" if not same else f"{len(same)} LEs"
            skipped.append((str(seg.path), f"segmentation matches no case by name and {where} of its folder by geometry"))


def _attach_dicom_segs(pairs: list[_Pair], segs: list[_SegInfo], skipped: list) -> list[_SegInfo]:
    """Each DICOM SEG to the cases whose LE it references by SOP Instance UID; returns the other files.

    A SEG of a DES or of an image outside the pairs is skipped with its reason:
    the lesion mask of a case lives on its LE's pixels.
    """
    le_by_sop = {p.le.sop_uid: p for p in pairs if p.le.sop_uid}
    des_sops = {p.des.sop_uid for p in pairs if p.des.sop_uid}
    others = []
    for seg in segs:
        if seg.references is None:
            others.append(seg)
            continue
        targets = [le_by_sop[uid] for uid in sorted(seg.references) if uid in le_by_sop]
        for pair in targets:
            _give(pair, seg, skipped)
        if targets:
            continue
        if seg.references & des_sops:
            reason = "DICOM SEG of a DES image: a case's lesion mask must segment its LE"
        elif seg.references:
            reason = "DICOM SEG of an image that is no LE of an imported pair (by SOP Instance UID)"
        else:
            reason = "DICOM SEG names no source image: cannot tell which LE it segments"
        skipped.append((str(seg.path), reason))
    return others


def _give(pair: _Pair, seg: _SegInfo, skipped: list) -> None:
    if pair.lesion_path:
        skipped.append((str(seg.path), f"another segmentation is already attached to case {pair.case_id}"))
    else:
        pair.lesion_path = str(seg.path)
