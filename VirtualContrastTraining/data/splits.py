"""Patient-level train/val/test splits, stratified by "has a lesion mask" or by class label.

All images of one patient land in one split: LE/DES pairs of the same breast
(CC and MLO) or of both breasts are too alike for a test set to be honest
otherwise. Rofena et al. 2025 stratify their 10-fold cross-validation so that
images with segmentation maps are spread equally across folds (002, section
on experiments); the lesion-weighted loss and the lesion metrics need such
cases in every split. Perre et al. keep the proportion of malignant to
non-malignant images similar in every split (004, 3.2.2 Data Splits), which
is the "label" stratification. Everything is deterministic for a given seed
and independent of row order.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from VirtualContrastTraining.atomic import write_text_atomic
from VirtualContrastTraining.data.manifest import Case
from VirtualContrastTraining.errors import InputError

SPLITS = ("train", "val", "test")
STRATIFY = ("lesion", "label")
#: train/val/test shares of the papers' cross-validation (001, 002: 80/10/10), the default of every split draw.
PAPER_FRACTIONS = (0.8, 0.1, 0.1)
#: Beside fold manifests: the leakage of each (image-level folds as published keep a patient in several splits).
FOLDS_JSON = "folds.json"


def _patient_strata(cases: list[Case], stratify: str) -> dict[str, tuple]:
    """Stratum of each patient, in the order strata are dealt.

    "lesion": with any lesion mask (first), without. "label": the sorted set of
    the patient's image labels, so a patient with a benign and a malignant
    breast forms a stratum of its own rather than being counted as either.
    """
    if stratify not in STRATIFY:
        raise InputError(None, f"unknown stratification {stratify!r}: use {' or '.join(STRATIFY)}")
    if stratify == "lesion":
        lesion: dict[str, bool] = defaultdict(bool)
        for case in cases:
            lesion[case.patient_id] |= case.has_lesion_mask
        return {p: (not has,) for p, has in lesion.items()}  # (False,) sorts first: lesion patients first
    unlabelled = [c.case_id for c in cases if not c.label.strip()]
    if unlabelled:
        raise InputError(None, f"stratify by label: {len(unlabelled)} case(s) have an empty label column "
                         f"(e.g. {', '.join(unlabelled[:3])}); fill it for every case or stratify by lesion")
    labels: dict[str, set[str]] = defaultdict(set)
    for case in cases:
        labels[case.patient_id].add(case.label.strip())
    return {p: tuple(sorted(ls)) for p, ls in labels.items()}


def _strata(cases: list[Case], seed: int, stratify: str = "lesion") -> list[list[str]]:
    """Patient ids shuffled per seed, one list per stratum (see _patient_strata)."""
    stratum_of = _patient_strata(cases, stratify)
    rng = np.random.default_rng(seed)
    strata = []
    for stratum in sorted(set(stratum_of.values())):
        ids = sorted(p for p, s in stratum_of.items() if s == stratum)
        strata.append([ids[i] for i in rng.permutation(len(ids))])
    return strata


def _largest_remainder(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Integer counts summing to n, as close to n * fractions as possible."""
    exact = [n * f for f in fractions]
    counts = [int(np.floor(x)) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _with_splits(cases: list[Case], split_of: dict[str, str]) -> list[Case]:
    return [replace(c, split=split_of[c.patient_id]) for c in cases]


def straddling_patients(cases: list[Case]) -> list[str]:
    """The patients with images in more than one split, sorted."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for case in cases:
        splits_of[case.patient_id].add(case.split)
    return sorted(p for p, s in splits_of.items() if len(s) > 1)


def leakage_entry(cases: list[Case]) -> dict:
    """What folds.json records of one fold manifest: its patients and those straddling splits."""
    return {"patients": len({c.patient_id for c in cases}), "straddling": len(straddling_patients(cases))}


def leakage_text(entry: dict) -> str:
    """'71 of 105 patients in more than one split (image-level folds: results are optimistic)': the one
    sentence the import summary, compare and comparison.md print."""
    text = f"{entry['straddling']} of {entry['patients']} patients in more than one split"
    return f"{text} (image-level folds: results are optimistic)" if entry["straddling"] else text


def write_leakage(folder: str | os.PathLike, entries: dict[str, dict]) -> Path:
    """FOLDER/folds.json: {manifest file name: leakage_entry}; what check_splits accepts for those files."""
    path = Path(folder) / FOLDS_JSON
    write_text_atomic(path, json.dumps({"folds": entries}, indent=1, sort_keys=True) + "\n")
    return path


def read_leakage(folder: str | os.PathLike) -> dict[str, dict]:
    """{manifest file name: leakage_entry} of FOLDER/folds.json; {} without one. InputError for a broken one."""
    path = Path(folder) / FOLDS_JSON
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["folds"]
        return {str(name): {"patients": int(e["patients"]), "straddling": int(e["straddling"])}
                for name, e in entries.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(path, f"not a folds.json as `import` writes it ({type(exc).__name__}: {exc})") from None


def _declared(source, leaking: list[str]) -> bool:
    """True when `source` is a manifest whose folds.json declares exactly this leakage (folds as published)."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    entry = read_leakage(Path(source).parent).get(Path(source).name)
    return entry is not None and entry["straddling"] == len(leaking)


def check_splits(cases: list[Case], source=None) -> None:
    """Splits chosen by the user must be train/val/test and keep each patient in one split.

    A patient in two splits leaks the test set into training; a label like
    "validation" would silently drop its images from training and validation.
    The one exception: a fold manifest whose folds.json beside it declares that
    very leakage (001's image-level folds, imported as published), so that the
    published protocol can be rerun, its optimism stated wherever it is reported.
    """
    unknown = sorted({c.split for c in cases} - set(SPLITS))
    if unknown:
        raise InputError(source, f"unknown split value(s) {', '.join(map(repr, unknown))}: use {', '.join(SPLITS)}")
    leaking = straddling_patients(cases)
    if leaking and not _declared(source, leaking):
        first = sorted({c.split for c in cases if c.patient_id == leaking[0]})
        raise InputError(source, f"patient(s) {', '.join(leaking[:5])} appear in more than one split "
                         f"({', '.join(first)}): all images of a patient must share one split")


def assign_splits(
    cases: list[Case], *, seed: int, fractions: tuple[float, float, float] = PAPER_FRACTIONS, source=None,
    stratify: str = "lesion",
) -> list[Case]:
    """Cases (same order, copies) with `split` filled in by patient, each stratum (`stratify`, as the folds of
    `kfold_splits`) shared out in the same fractions.

    Splits already in the manifest are the user's decision and are kept: when
    every case has one the list comes back unchanged; a mix of filled and empty
    is refused because filling the rest could put one patient in two splits.
    With 3 or more patients, val and test get at least one patient each.
    """
    given = [bool(c.split) for c in cases]
    if all(given):
        check_splits(cases, source)
        return list(cases)
    if any(given):
        raise InputError(
            source,
            f"{sum(given)} of {len(cases)} cases have a split and the others do not: "
            "fill the split column for every case, or leave it empty for all",
        )
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise InputError(None, f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    strata = _strata(cases, seed, stratify)
    counts = [_largest_remainder(len(ids), tuple(fractions)) for ids in strata]
    if sum(len(ids) for ids in strata) >= 3:
        for k in (1, 2):  # val, test
            if sum(c[k] for c in counts) == 0:
                donor = max(counts, key=lambda c: c[0])
                donor[0] -= 1
                donor[k] += 1
    split_of = {}
    for ids, count in zip(strata, counts):
        bounds = np.cumsum([0, *count])
        for k, name in enumerate(SPLITS):
            split_of.update({p: name for p in ids[bounds[k]: bounds[k + 1]]})
    return _with_splits(cases, split_of)


def require_splits(cases: list[Case], manifest_path: str | os.PathLike) -> None:
    """InputError naming the manifest when its split column is empty: predict --split and evaluate select a
    split, and the one way to fill the column is the `split` command."""
    if not any(c.split for c in cases):
        raise InputError(manifest_path, "the split column is empty: assign splits per patient with "
                         f"`virtual-contrast split --manifest {manifest_path}`")


def regroup_by_patient(cases: list[Case], rotation: float, seed: int = 0) -> list[Case]:
    """The same images (copies, same order) with patient-level splits of about the same sizes as given.

    For image-level folds as published (001): each split's target is its image
    count in `cases`. Patients are shuffled once per seed (sorted first, so row
    order does not matter) and the order is rotated by `rotation` (fold / k), so
    that the folds' test sets differ as a cross-validation's do; then whole
    patients fill test, then val, up to their image counts, and the rest train.
    """
    target = {s: sum(c.split == s for c in cases) for s in SPLITS}
    images: dict[str, int] = defaultdict(int)
    for case in cases:
        images[case.patient_id] += 1
    ids = sorted(images)
    ids = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    start = int(round(rotation * len(ids))) % max(len(ids), 1)
    queue = ids[start:] + ids[:start]
    split_of = {}
    for split in ("test", "val"):
        filled = 0
        while queue and filled < target[split]:
            split_of[queue[0]] = split
            filled += images.pop(queue.pop(0))
    split_of.update({p: "train" for p in queue})
    return _with_splits(cases, split_of)


def kfold_splits(cases: list[Case], k: int, seed: int, stratify: str = "lesion") -> list[list[Case]]:
    """k rotations of patient folds: fold i is test, fold i+1 is val, the rest train.

    k = 10 gives the papers' 80/10/10 cross-validation (001, 002). Patients are
    dealt to folds in turn, one stratum after the other (lesion-mask patients
    first, or label by label), the deal running on across strata: each fold
    gets its share of every stratum (counts differ by at most one) and fold
    sizes differ by at most one patient.
    """
    if k < 3:
        raise InputError(None, f"k-fold cross-validation needs k >= 3 (test, val and train folds), got {k}")
    patients = [p for ids in _strata(cases, seed, stratify) for p in ids]
    if len(patients) < k:
        raise InputError(None, f"{k}-fold cross-validation needs at least {k} patients, got {len(patients)}")
    fold_of = {p: i % k for i, p in enumerate(patients)}
    folds = []
    for test in range(k):
        val = (test + 1) % k
        split_of = {p: "test" if f == test else "val" if f == val else "train" for p, f in fold_of.items()}
        folds.append(_with_splits(cases, split_of))
    return folds
