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

from collections import defaultdict
from dataclasses import replace

import numpy as np

from VirtualContrastTraining.data.manifest import Case
from VirtualContrastTraining.errors import InputError

SPLITS = ("train", "val", "test")
STRATIFY = ("lesion", "label")


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


def check_splits(cases: list[Case], source=None) -> None:
    """Splits chosen by the user must be train/val/test and keep each patient in one split.

    A patient in two splits leaks the test set into training; a label like
    "validation" would silently drop its images from training and validation.
    """
    unknown = sorted({c.split for c in cases} - set(SPLITS))
    if unknown:
        raise InputError(source, f"unknown split value(s) {', '.join(map(repr, unknown))}: use {', '.join(SPLITS)}")
    splits_of: dict[str, set[str]] = defaultdict(set)
    for case in cases:
        splits_of[case.patient_id].add(case.split)
    leaking = sorted(p for p, s in splits_of.items() if len(s) > 1)
    if leaking:
        raise InputError(source, f"patient(s) {', '.join(leaking[:5])} appear in more than one split "
                         f"({', '.join(sorted(splits_of[leaking[0]]))}): all images of a patient must share one split")


def assign_splits(
    cases: list[Case], *, seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), source=None
) -> list[Case]:
    """Cases (same order, copies) with `split` filled in by patient.

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
    strata = _strata(cases, seed)
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
