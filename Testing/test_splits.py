"""Patient-level, lesion-stratified, deterministic splits and k-fold rotations."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from VirtualContrastTraining.data.manifest import Case
from VirtualContrastTraining.data.splits import assign_splits, kfold_splits
from VirtualContrastTraining.errors import InputError


def make_cases(patients=30, lesion_patients=10, images_per_patient=3):
    cases = []
    for p in range(patients):
        for i in range(images_per_patient):
            lesion = f"P{p}_{i}.seg.nrrd" if p < lesion_patients and i == 0 else ""
            cases.append(Case(case_id=f"P{p}_{i}", patient_id=f"P{p}", le_path=f"P{p}_{i}_le.nrrd",
                              lesion_path=lesion))
    return cases


def split_of_patients(cases):
    by_patient = defaultdict(set)
    for c in cases:
        by_patient[c.patient_id].add(c.split)
    return by_patient


def test_patient_level_and_fractions():
    cases = make_cases()
    out = assign_splits(cases, seed=1)
    assert [c.case_id for c in out] == [c.case_id for c in cases]
    assert all(c.split == "" for c in cases)  # the input is not modified
    by_patient = split_of_patients(out)
    assert all(len(s) == 1 for s in by_patient.values())
    counts = Counter(s.pop() for s in by_patient.values())
    assert counts == {"train": 24, "val": 3, "test": 3}


def test_lesion_patients_spread_across_splits():
    out = assign_splits(make_cases(patients=30, lesion_patients=10), seed=5)
    lesion = Counter(c.split for c in out if c.has_lesion_mask)
    assert lesion == {"train": 8, "val": 1, "test": 1}


def test_deterministic_per_seed_and_independent_of_order():
    cases = make_cases()
    a = {c.case_id: c.split for c in assign_splits(cases, seed=3)}
    shuffled = cases[:]
    random.Random(0).shuffle(shuffled)
    b = {c.case_id: c.split for c in assign_splits(shuffled, seed=3)}
    c = {c.case_id: c.split for c in assign_splits(cases, seed=4)}
    assert a == b and a != c


def test_small_datasets_still_get_val_and_test():
    out = assign_splits(make_cases(patients=3, lesion_patients=1), seed=0)
    assert sorted(s.pop() for s in split_of_patients(out).values()) == ["test", "train", "val"]
    one = assign_splits(make_cases(patients=1, lesion_patients=0), seed=0)
    assert {c.split for c in one} == {"train"}


def test_existing_splits_kept_and_mixtures_refused():
    cases = [Case(case_id=f"c{i}", patient_id=f"p{i}", le_path="x", split=s)
             for i, s in enumerate(["train", "test", "val"])]
    assert assign_splits(cases, seed=0) == cases
    cases[1].split = ""
    with pytest.raises(InputError, match="2 of 3 cases have a split"):
        assign_splits(cases, seed=0)
    with pytest.raises(InputError, match="fractions"):
        assign_splits(make_cases(patients=3), seed=0, fractions=(0.5, 0.5, 0.5))


def test_kfold_rotates_test_and_val_and_stratifies():
    cases = make_cases(patients=20, lesion_patients=10, images_per_patient=2)
    folds = kfold_splits(cases, k=10, seed=2)
    assert len(folds) == 10
    tested = Counter()
    for fold in folds:
        by_patient = split_of_patients(fold)
        assert all(len(s) == 1 for s in by_patient.values())
        counts = Counter(next(iter(s)) for s in by_patient.values())
        assert counts == {"train": 16, "val": 2, "test": 2}
        lesion_test = {c.patient_id for c in fold if c.split == "test" and c.has_lesion_mask}
        assert len(lesion_test) == 1  # 10 lesion patients dealt over 10 folds
        tested.update(p for p, s in by_patient.items() if "test" in s)
    assert set(tested.values()) == {1} and len(tested) == 20  # each patient tested exactly once
    again = kfold_splits(list(reversed(cases)), k=10, seed=2)
    assert [{c.case_id: c.split for c in f} for f in again] == [{c.case_id: c.split for c in f} for f in folds]


def test_kfold_rejects_impossible_requests():
    with pytest.raises(InputError, match="k >= 3"):
        kfold_splits(make_cases(patients=5), k=2, seed=0)
    with pytest.raises(InputError, match="at least 10 patients"):
        kfold_splits(make_cases(patients=5), k=10, seed=0)


def test_given_splits_must_not_leak_a_patient_or_use_unknown_names():
    cases = assign_splits(make_cases(patients=6, lesion_patients=2), seed=0)
    assert assign_splits(cases, seed=5) == cases  # the user's valid splits are kept as they are
    leaking = [c if c.case_id != "P0_1" else Case(**{**c.__dict__, "split": "test" if c.split != "test" else "train"})
               for c in cases]
    with pytest.raises(InputError, match="P0 appear in more than one split") as err:
        assign_splits(leaking, seed=0, source="m.csv")
    assert str(err.value).startswith("m.csv: ")
    renamed = [Case(**{**c.__dict__, "split": "validation" if c.split == "val" else c.split}) for c in cases]
    with pytest.raises(InputError, match="unknown split value.*'validation'.*use train, val, test"):
        assign_splits(renamed, seed=0)
