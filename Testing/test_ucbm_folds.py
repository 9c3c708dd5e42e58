"""CESM@UCBM / VCE_CESM fold files (001) read into one manifest per fold, and `compare` on those folds.

A fake CESM@UCBM tree is built once per module: phantom LE/DES pairs at 2 mm
saved as NRRD under P<n>/ with the dataset's names, and two folds written the
ways the fold files may come (windows and acr or not, a pandas index column,
file names, foreign absolute paths, Windows paths, relative paths).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from skimage.exposure import rescale_intensity

from VirtualContrastTraining.cli import main
from VirtualContrastTraining.data.prepared import prepare_case
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import read_image, write_nrrd
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.data.phantom import simulate_case
from VirtualContrastTraining.data.preprocessing import PreprocessConfig, preprocess
from VirtualContrastTraining.data.splits import FOLDS_JSON, check_splits, read_leakage
from VirtualContrastTraining.data.ucbm_folds import import_folds, is_fold_folder, read_fold, summary
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EXIT_OK, parse_event

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO.parent / "shared" / "data" / "vce-cesm-folds"

# patient -> (side, density); each patient has a CC and an MLO pair.
PATIENTS = {"P1": ("L", "b"), "P2": ("R", "c"), "P3": ("L", "a"), "P4": ("R", "d"), "P5": ("L", "b")}
# fold -> split -> patients
FOLDS = {0: {"train": ["P1", "P2", "P3"], "val": ["P4"], "test": ["P5"]},
         1: {"train": ["P2", "P3", "P4"], "val": ["P5"], "test": ["P1"]}}
# The window of each image in fold 0's files (hand-picked, different per patient, as DICOM tags would give).
LE_WINDOW = {"P1": (2300.0, 1000.0), "P2": (2350.0, 1100.0), "P3": (2400.0, 900.0), "P4": (2250.0, 1200.0),
             "P5": (2320.5, 1050.0)}
DES_WINDOW = (2050.0, 700.0)
# How fold 0 writes the acr of each patient: upper case, number, lower case.
ACR_TEXT = {"P1": "B", "P2": "3", "P3": "a", "P4": "4", "P5": "b"}
HEADER0 = ["id", "img_x", "img_y", "r_l", "wc_x", "ww_x", "wc_y", "ww_y", "acr"]


def _stem(patient: str, view: str) -> str:
    return f"{patient}_1_{PATIENTS[patient][0]}{view}"


def _write(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _fold0_row(patient: str, view: str) -> list[str]:
    """Bare file names, every optional column."""
    stem = _stem(patient, view)
    (wc, ww), (dc, dw) = LE_WINDOW[patient], DES_WINDOW
    return [stem, f"{stem}_LOW_ENERGY.nrrd", f"{stem}_RECOMBINED.nrrd", PATIENTS[patient][0],
            f"{wc:g}", f"{ww:g}", f"{dc:g}", f"{dw:g}", ACR_TEXT[patient]]


def _fold1_row(index: int, patient: str, view: str) -> list[str]:
    """A pandas index, no windows or acr, paths as another machine wrote them, side spelt out."""
    stem = _stem(patient, view)
    le = f"/home/someone/VCE_CESM/data/raw/CESM@UCBM/{patient}/{stem}_LOW_ENERGY.nrrd"
    des = {"CC": f"C:\\data\\UCBM\\{stem}_RECOMBINED.nrrd", "MLO": f"{patient}/{stem}_RECOMBINED.nrrd"}[view]
    return [str(index), stem, le, des, {"L": "left", "R": "Right"}[PATIENTS[patient][0]]]


@pytest.fixture(scope="module")
def ucbm(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ucbm")
    images = root / "CESM@UCBM"
    for n, (patient, (side, density)) in enumerate(PATIENTS.items()):
        for v, view in enumerate(("CC", "MLO")):
            case = simulate_case(np.random.default_rng([11, n, v]), pixel_mm=2.0, laterality=side, view=view,
                                 density=density, lesions=[])
            stem = _stem(patient, view)
            write_nrrd(case.image(case.le), images / patient / f"{stem}_LOW_ENERGY.nrrd")
            write_nrrd(case.image(case.des), images / patient / f"{stem}_RECOMBINED.nrrd")
    # A pair whose name says nothing of the patient (in no fold file of the fixture).
    write_nrrd(case.image(case.le), images / "anon" / "scan_LOW_ENERGY.nrrd")
    write_nrrd(case.image(case.des), images / "anon" / "scan_RECOMBINED.nrrd")
    folds = root / "folds"
    index = 0
    for split, patients in FOLDS[0].items():
        _write(folds / "0" / f"{split}.txt", [HEADER0, *(_fold0_row(p, v) for p in patients for v in ("CC", "MLO"))])
    for split, patients in FOLDS[1].items():
        rows = [["", "id", "img_x", "img_y", "r_l"]]
        for p in patients:
            for v in ("CC", "MLO"):
                rows.append(_fold1_row(index, p, v))
                index += 1
        _write(folds / "1" / f"{split}.txt", rows)
    out = root / "manifests"
    reports = import_folds(folds, images, out)
    return {"root": root, "images": images, "folds": folds, "out": out, "reports": reports}


# --- manifests ------------------------------------------------------------------------------

def test_one_manifest_per_fold_with_the_files_splits(ucbm):
    reports = ucbm["reports"]
    assert list(reports) == [0, 1]
    for fold, splits in FOLDS.items():
        assert reports[fold].manifest_path == ucbm["out"] / f"fold_{fold}.csv"
        assert reports[fold].skipped == []
        cases = read_manifest(reports[fold].manifest_path, require_des=True)
        check_splits(cases)
        assert len(cases) == 10
        assert {c.patient_id: c.split for c in cases} == {p: s for s, ps in splits.items() for p in ps}
        for c in cases:
            side = PATIENTS[c.patient_id][0]
            assert c.laterality == side
            assert c.case_id == f"{c.patient_id}_1_{side}{c.view}" and c.view in ("CC", "MLO")
            folder = ucbm["images"] / c.patient_id
            assert Path(c.le_path) == folder / f"{c.case_id}_LOW_ENERGY.nrrd"
            assert Path(c.des_path) == folder / f"{c.case_id}_RECOMBINED.nrrd"


def test_windows_and_density_come_from_the_fold_files(ucbm):
    with_windows = read_manifest(ucbm["out"] / "fold_0.csv")
    for c in with_windows:
        assert c.window("le") == LE_WINDOW[c.patient_id]
        assert c.window("des") == DES_WINDOW
        assert c.density == PATIENTS[c.patient_id][1]  # "B" -> b, "3" -> c, "4" -> d
    without = read_manifest(ucbm["out"] / "fold_1.csv")
    assert all(c.window("le") is None and c.window("des") is None and c.density == "" for c in without)


def test_prepare_case_stretches_with_the_fold_window(ucbm):
    """At the padded size (no resize) the prepared LE is the LE clipped to [wc - ww/2, wc + ww/2] and scaled
    to [0, 1] (001, 3.1), padded on the side away from the breast; scikit-image's rescale_intensity is the
    independent reference."""
    case = next(c for c in read_manifest(ucbm["out"] / "fold_0.csv") if c.patient_id == "P2" and c.view == "MLO")
    le = read_image(case.le_path).array.astype(np.float64)
    rows, cols = le.shape
    prepared = prepare_case(case, PreprocessConfig(size=rows))
    wc, ww = LE_WINDOW["P2"]
    assert prepared.params.window == (wc - ww / 2, wc + ww / 2) == (1800.0, 2900.0)
    assert prepared.params.pad_side == "left"  # a right breast: zeros on the left (001, 3.1)
    expected = rescale_intensity(np.clip(le, 1800.0, 2900.0), in_range=(1800.0, 2900.0), out_range=(0.0, 1.0))
    np.testing.assert_allclose(prepared.le[:, rows - cols:], expected, atol=1e-6)
    assert not prepared.le[:, : rows - cols].any()
    # Hand-computed pixels of P2's window: 1800 and below -> 0, 2075 -> 0.25, 2350 -> 0.5, 2900 and above -> 1.
    probe = Image(np.tile([1000.0, 1800.0, 2075.0, 2350.0, 2625.0, 2900.0, 3000.0, 5000.0], (8, 1)), spacing=(2.0, 2.0))
    stretched, _ = preprocess(probe, window=(wc, ww), config=PreprocessConfig(size=8), side="left")
    np.testing.assert_allclose(stretched[0], [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0], atol=1e-6)

    other = prepare_case(replace(case, le_window_center="2600", le_window_width="600"), PreprocessConfig(size=rows))
    assert other.params.window == (2300.0, 2900.0)
    assert np.abs(other.le - prepared.le).max() > 0.2
    same_image = next(c for c in read_manifest(ucbm["out"] / "fold_1.csv") if c.case_id == case.case_id)
    assert prepare_case(same_image, PreprocessConfig(size=rows)).params.window_source == "percentile"


# --- problems -------------------------------------------------------------------------------

def test_bad_rows_are_problems_and_the_rest_is_imported(ucbm, tmp_path):
    good = [_fold0_row(p, v) for p in ("P1", "P3") for v in ("CC", "MLO")]
    good[3][1] = str(ucbm["images"] / "P3" / f"{_stem('P3', 'MLO')}_LOW_ENERGY.nrrd")  # an existing absolute path
    stem2, stem4 = _stem("P2", "CC"), _stem("P4", "CC")
    train = _write(tmp_path / "folds" / "3" / "train.txt", [HEADER0, *good,
        ["P9_1_LCC", "P9_1_LCC_LOW_ENERGY.nrrd", "P9_1_LCC_RECOMBINED.nrrd", "L", "", "", "", "", ""],  # 6
        [*_fold0_row("P2", "CC")[:4], "abc", "1000", "", "", ""],                                        # 7
        [*_fold0_row("P2", "MLO")[:4], "2000", "0", "", "", ""],                                         # 8
        [*_fold0_row("P4", "CC")[:4], "2000", "", "", "", ""],                                           # 9
        [stem4, f"{stem4}_LOW_ENERGY.nrrd", f"{stem4}_RECOMBINED.nrrd", "X", "", "", "", "", ""],        # 10
        [stem2, f"{stem2}_LOW_ENERGY.nrrd", f"{stem2}_RECOMBINED.nrrd", "L", "", "", "", "", ""],        # 11
        _fold0_row("P2", "CC")[:5],                                                                      # 12
        [*_fold0_row("P4", "MLO")[:8], "e"],                                                             # 13
        ["x1", "scan_LOW_ENERGY.nrrd", "scan_RECOMBINED.nrrd", "R", "", "", "", "", ""],                 # 14
        _fold0_row("P1", "CC"),                                                                          # 15
    ])
    _write(tmp_path / "folds" / "3" / "val.txt", [HEADER0, _fold0_row("P4", "MLO"), _fold0_row("P5", "CC")])
    _write(tmp_path / "folds" / "3" / "test.txt", [HEADER0, _fold0_row("P5", "MLO")])
    cases, problems = read_fold(tmp_path / "folds" / "3", ucbm["images"])
    assert [(c.case_id, c.split) for c in cases] == [
        (_stem("P1", "CC"), "train"), (_stem("P1", "MLO"), "train"), (_stem("P3", "CC"), "train"),
        (_stem("P3", "MLO"), "train"), (_stem("P4", "MLO"), "val"), (_stem("P5", "CC"), "val"),
        (_stem("P5", "MLO"), "test")]  # P5 straddles val and test: kept as published
    root = ucbm["images"]
    assert problems == [
        (f"{train}:6", f"LE image (img_x) 'P9_1_LCC_LOW_ENERGY.nrrd': not found (no such path, and no file named "
                       f"P9_1_LCC_LOW_ENERGY.nrrd under {root})"),
        (f"{train}:7", "window wc_x/ww_x 'abc'/'1000' are not numbers"),
        (f"{train}:8", "window wc_x/ww_x '2000'/'0': need finite numbers and a positive width"),
        (f"{train}:9", "window wc_x/ww_x '2000'/'': give both or neither"),
        (f"{train}:10", "r_l 'X' is not a side: use R or L"),
        (f"{train}:11", f"r_l says L but the name {stem2} says R"),
        (f"{train}:12", "5 cells, the header has 9"),
        (f"{train}:13", "acr 'e' is not an ACR density (a-d or 1-4)"),
        (f"{train}:14", "no patient in the id 'x1' or the file name scan_LOW_ENERGY.nrrd (expected names like "
                        "P12_1_LCC_LOW_ENERGY.nrrd)"),
        (f"{train}:15", f"id {_stem('P1', 'CC')} was already read at {train}:2: row left out"),
    ]


def test_a_file_name_found_twice_is_a_problem(ucbm, tmp_path):
    images = tmp_path / "images"
    stem = _stem("P1", "CC")
    for folder in ("a", "b"):
        (images / folder).mkdir(parents=True)
        for suffix in ("LOW_ENERGY", "RECOMBINED"):
            name = f"{stem}_{suffix}.nrrd"
            (images / folder / name).write_bytes((ucbm["images"] / "P1" / name).read_bytes())
    header = ["id", "img_x", "img_y", "r_l"]
    for split in ("train", "val", "test"):
        _write(tmp_path / "fold" / f"{split}.txt",
               [header, [stem, f"{stem}_LOW_ENERGY.nrrd", f"a/{stem}_RECOMBINED.nrrd", "L"]] if split == "train"
               else [header])
    cases, problems = read_fold(tmp_path / "fold", images)
    assert cases == []
    name = f"{stem}_LOW_ENERGY.nrrd"
    assert problems == [(f"{tmp_path / 'fold' / 'train.txt'}:2",
                         f"LE image (img_x) '{name}': 2 files named {name} under {images}: cannot tell which")]


def test_import_reports_problems_and_skips_a_fold_without_test_images(ucbm, tmp_path):
    folds = tmp_path / "folds"
    for split, patients in {"train": ["P1", "P2"], "val": ["P3"], "test": ["P4"]}.items():
        _write(folds / "0" / f"{split}.txt", [HEADER0, *(_fold0_row(p, "CC") for p in patients)])
    _write(folds / "1" / "train.txt", [HEADER0, _fold0_row("P1", "CC")])
    _write(folds / "1" / "val.txt", [HEADER0, _fold0_row("P2", "CC")])
    _write(folds / "1" / "test.txt", [HEADER0, [*_fold0_row("P3", "CC")[:3], "?", *_fold0_row("P3", "CC")[4:]]])
    _write(folds / "2" / "train.txt", ["id\timg_x\timg_y".split("\t")])
    reports = import_folds(folds, ucbm["images"], tmp_path / "out")
    assert [f for f, r in reports.items() if r.manifest_path] == [0]
    assert reports[1].manifest_path is None and [c.case_id for c in reports[1].cases] == \
           [_stem("P1", "CC"), _stem("P2", "CC")]
    assert reports[1].skipped == [(f"{folds / '1' / 'test.txt'}:2", "r_l '?' is not a side: use R or L"),
                                  (str(folds / "1"), "fold 1 has no usable test images: no manifest written for it")]
    assert reports[2].skipped[0] == (f"{folds / '2' / 'train.txt'}:1", "header lacks column(s) r_l: expected id, "
                                     "img_x, img_y, r_l (tab-separated), optional wc_x, ww_x, wc_y, ww_y, acr")
    assert [p for p, _ in reports[2].skipped[1:]] == [str(folds / "2" / "val.txt"), str(folds / "2" / "test.txt"),
                                                       str(folds / "2")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fold_0.csv", "folds.json"]
    assert read_leakage(tmp_path / "out") == {"fold_0.csv": {"patients": 4, "straddling": 0}}
    text = summary(reports)
    assert text.splitlines()[0] == (f"fold 0: 4 LE/DES pairs (train 2, val 1, test 1) of 4 patients (train 2, val 1, "
                                    f"test 1; density a 1, b 1, c 1, d 1) -> {tmp_path / 'out' / 'fold_0.csv'}")
    assert ("fold 1: 2 LE/DES pairs (train 1, val 1, test 0) of 2 patients (train 1, val 1, test 0; density a 0, b 1, "
            "c 1, d 0) -> no manifest") in text
    assert "6 problems (rows, files or folds left out):" in text
    assert "  2 x missing: a fold needs train.txt, val.txt, test.txt" in text


def test_refusals(ucbm, tmp_path):
    with pytest.raises(InputError, match="no fold folders: expected N/train.txt"):
        import_folds(ucbm["images"], ucbm["images"], tmp_path / "a")
    with pytest.raises(InputError, match="images folder not found"):
        import_folds(ucbm["folds"], tmp_path / "nowhere", tmp_path / "b")
    with pytest.raises(InputError, match="images folder not found"):
        read_fold(ucbm["folds"] / "0", tmp_path / "nowhere")
    empty = tmp_path / "empty"
    _write(empty / "0" / "train.txt", [HEADER0])
    with pytest.raises(InputError, match=r"no fold could be imported; first problem: .*val.txt: missing"):
        import_folds(empty, ucbm["images"], tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_is_fold_folder(ucbm, tmp_path):
    assert is_fold_folder(ucbm["folds"])
    assert is_fold_folder(ucbm["folds"] / "1")  # one fold on its own
    assert not is_fold_folder(ucbm["images"])
    assert not is_fold_folder(ucbm["folds"] / "0" / "train.txt")
    assert not is_fold_folder(tmp_path / "nowhere")
    _write(tmp_path / "notes" / "7" / "readme.txt", [["x"]])
    assert not is_fold_folder(tmp_path / "notes")


def test_a_single_fold_folder_is_imported_under_its_number(ucbm, tmp_path):
    reports = import_folds(ucbm["folds"] / "1", ucbm["images"], tmp_path / "one")
    assert list(reports) == [1] and reports[1].manifest_path == tmp_path / "one" / "fold_1.csv"
    assert [c.case_id for c in read_manifest(reports[1].manifest_path)] == \
           [c.case_id for c in read_manifest(ucbm["out"] / "fold_1.csv")]


# --- compare on the imported folds ------------------------------------------------------------

def test_compare_runs_on_the_imported_folds(ucbm, tmp_path):
    out = tmp_path / "cmp"
    tiny = {"ngf": 4, "ndf": 4, "n_blocks": 1, "image_size": 48, "epochs": 1, "batch_size": 6}  # one step a fold
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["compare", "--presets", "demo", "--fold-manifests", str(ucbm["out"]), "--out", str(out),
                     "--device", "cpu", "--json", *(f"--set={k}={v}" for k, v in tiny.items())])
    assert code == EXIT_OK
    events = [e for e in map(parse_event, stdout.getvalue().splitlines()) if e]
    assert events[0]["folds"] == [0, 1] and events[0]["k"] == 2 and events[0]["manifest"] is None
    assert events[0]["fold_manifests"] == str(ucbm["out"]) and events[0]["stratify"] is None
    for fold in (0, 1):
        given = [(c.case_id, c.split, c.le_window_center) for c in read_manifest(ucbm["out"] / f"fold_{fold}.csv")]
        assert [(c.case_id, c.split, c.le_window_center)
                for c in read_manifest(out / "runs" / "demo" / f"fold_{fold}" / "manifest.csv")] == given
    report = (out / "comparison.md").read_text(encoding="utf-8")
    assert f"- Fold manifests: `{ucbm['out'].resolve()}` (2 folds): 10 images of 5 patients in all" in report
    assert "- Folds run: 0, 1 (manifests in [folds/](folds/))." in report


def test_the_import_command_recognises_fold_files(ucbm, tmp_path, capsys):
    from VirtualContrastTraining.cli import main

    out = tmp_path / "manifests"
    assert main(["import", str(ucbm["folds"]), "--images", str(ucbm["images"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("fold 0: ") and f"-> {out / 'fold_1.csv'}" in printed
    assert sorted(p.name for p in out.iterdir()) == ["fold_0.csv", "fold_1.csv", "folds.json"]
    assert main(["import", str(ucbm["folds"]), "--out", str(out)]) == 2
    assert "holds fold files: give --images" in capsys.readouterr().err


# --- folds as published: leakage kept and reported, regrouped by patient, test sets by density ----------------

def _leaky_folds(root: Path) -> Path:
    """Two folds split by image as 001's are: in each, some patients' CC and MLO lie in different splits."""
    folds = root / "leaky"
    layout = {0: {"train": [("P1", "CC"), ("P1", "MLO"), ("P2", "CC"), ("P3", "CC"), ("P3", "MLO"), ("P4", "CC")],
                  "val": [("P2", "MLO"), ("P5", "CC")], "test": [("P4", "MLO"), ("P5", "MLO")]},
              1: {"train": [("P2", "CC"), ("P2", "MLO"), ("P3", "CC"), ("P4", "CC"), ("P4", "MLO"), ("P5", "CC")],
                  "val": [("P3", "MLO"), ("P1", "CC")], "test": [("P1", "MLO"), ("P5", "MLO")]}}
    for fold, splits in layout.items():
        for split, images in splits.items():
            _write(folds / str(fold) / f"{split}.txt", [HEADER0, *(_fold0_row(p, v) for p, v in images)])
    return folds


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("folds_leakage", REPO / "benchmarks" / "folds_leakage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_level_folds_are_kept_and_their_leakage_reported(ucbm, tmp_path):
    folds = _leaky_folds(tmp_path)
    reports = import_folds(folds, ucbm["images"], tmp_path / "out")
    assert all(r.skipped == [] and len(r.cases) == 10 for r in reports.values())  # every row kept
    assert read_leakage(tmp_path / "out") == {"fold_0.csv": {"patients": 5, "straddling": 3},
                                              "fold_1.csv": {"patients": 5, "straddling": 3}}
    text = summary(reports).splitlines()
    assert text[2:] == ["fold 0: 3 of 5 patients in more than one split (image-level folds: results are optimistic)",
                        "fold 1: 3 of 5 patients in more than one split (image-level folds: results are optimistic)"]
    # Declared in folds.json, the leakage is accepted (training and evaluation read the manifest this way) ...
    check_splits(read_manifest(tmp_path / "out" / "fold_0.csv"), tmp_path / "out" / "fold_0.csv")
    # ... and refused as ever without it, or when the manifest leaks more than declared.
    copy = tmp_path / "copy" / "fold_0.csv"
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "out" / "fold_0.csv").read_bytes())
    with pytest.raises(InputError, match="appear in more than one split"):
        check_splits(read_manifest(copy), copy)
    (copy.parent / FOLDS_JSON).write_text('{"folds": {"fold_0.csv": {"patients": 5, "straddling": 2}}}')
    with pytest.raises(InputError, match="appear in more than one split"):
        check_splits(read_manifest(copy), copy)
    (copy.parent / FOLDS_JSON).write_text("{broken")
    with pytest.raises(InputError, match="not a folds.json"):
        check_splits(read_manifest(copy), copy)


def test_regroup_by_patient_keeps_the_images_and_the_split_sizes(ucbm, tmp_path):
    folds = _leaky_folds(tmp_path)
    published = import_folds(folds, ucbm["images"], tmp_path / "a")
    regrouped = import_folds(folds, ucbm["images"], tmp_path / "b", regroup=True)
    import_folds(folds, ucbm["images"], tmp_path / "c", regroup=True)  # again: the same files
    for fold in (0, 1):
        cases = read_manifest(regrouped[fold].manifest_path)
        check_splits(cases)  # patient-level: no folds.json needed
        assert [c.case_id for c in cases] == [c.case_id for c in published[fold].cases]
        assert {c.split for c in cases} == {"train", "val", "test"}
        assert (tmp_path / "c" / f"fold_{fold}.csv").read_bytes() == regrouped[fold].manifest_path.read_bytes()
    assert read_leakage(tmp_path / "b") == {f"fold_{f}.csv": {"patients": 5, "straddling": 0} for f in (0, 1)}
    tests = [{c.patient_id for c in regrouped[f].cases if c.split == "test"} for f in (0, 1)]
    assert tests[0] != tests[1]  # rotated: the folds test different patients


def test_folds_acr_gives_the_density_of_each_test_image(ucbm, tmp_path):
    acr = tmp_path / "folds_acr"
    _write(acr / "0" / "test_b.txt", [HEADER0, _fold0_row("P1", "CC")])  # acr column "B" agrees
    _write(acr / "0" / "test_d.txt", [HEADER0[:-1], _fold0_row("P4", "MLO")[:-1]])  # no acr column
    _write(acr / "0" / "test_a.txt", [HEADER0, _fold0_row("P2", "CC")])  # acr "3" (c) disagrees
    reports = import_folds(acr, ucbm["images"], tmp_path / "out")
    cases = read_manifest(reports[0].manifest_path)
    assert [(c.case_id, c.split, c.density) for c in cases] == [(_stem("P1", "CC"), "test", "b"),
                                                                (_stem("P4", "MLO"), "test", "d")]
    assert reports[0].skipped == [(f"{acr / '0' / 'test_a.txt'}:2", "acr '3' but the row is in test_a.txt")]
    assert "density a 0, b 1, c 0, d 1" in summary(reports)


def test_the_benchmark_mechanics_compare_image_and_patient_level_folds(ucbm, tmp_path):
    """benchmarks/folds_leakage.py on the leaky folds of the fixture: the real import and compare commands,
    folds.json carried into the comparison folder, the leakage in comparison.md and the started event."""
    bench = _load_benchmark()
    folds = _leaky_folds(tmp_path)
    imported = bench.import_both(folds, ucbm["images"], tmp_path)
    assert "fold 0: 3 of 5 patients in more than one split" in imported["image-level"][1]
    manifests = {label: folder for label, (folder, _) in imported.items()}
    psnr = bench.compare_both(manifests, tmp_path, "demo", "0", list(bench.TINY))  # one fold each: fast
    assert list(psnr) == ["image-level", "patient-level"] and all(list(v) == ["demo", bench.IDENTITY_NAME]
                                                                  for v in psnr.values())
    assert all(len(f) == 1 and np.isfinite(f).all() for v in psnr.values() for f in v.values())
    image_level = tmp_path / "compare" / "image-level"
    assert read_leakage(image_level / "folds") == {"fold_0.csv": read_leakage(manifests["image-level"])["fold_0.csv"]}
    report = (image_level / "comparison.md").read_text(encoding="utf-8")
    assert "- Fold 0: 3 of 5 patients in more than one split (image-level folds: results are optimistic)" in report
    assert "- Fold 0: 0 of 5 patients in more than one split" in \
        (tmp_path / "compare" / "patient-level" / "comparison.md").read_text(encoding="utf-8")
    # and into each run's evaluation provenance and the preset's HTML report (the patient-level ones say nothing)
    sentence = "3 of 5 patients in more than one split (image-level folds: results are optimistic)"
    for label, says in (("image-level", sentence), ("patient-level", "")):
        evaluation = tmp_path / "compare" / label / "runs" / "demo" / "fold_0" / "evaluation"
        assert json.loads((evaluation / "provenance.json").read_text())["split_leakage"] == says
        html = (tmp_path / "compare" / label / "reports" / "demo.html").read_text(encoding="utf-8")
        assert ("Image-level folds (evaluation): " + sentence in html) == bool(says)


@pytest.mark.skipif(not PUBLISHED.is_dir(), reason=f"001's published fold files ({PUBLISHED}) are absent on this "
                    "machine: ../shared is not beside this checkout (the fixture's folds cover the same code)")
def test_the_published_folds_import_with_stand_ins(tmp_path):
    """001's real fold files, every image a phantom stand-in under the name they give: every row imported,
    the leakage the README counts (66-77 of 105 patients per fold of folds/, 131-148 of 326 of folds_public/)."""
    bench = _load_benchmark()
    images = tmp_path / "images"
    for name in ("folds", "folds_public"):
        bench.write_stand_ins(PUBLISHED / name, images)
    expected = {"folds": (569, 105, 66, 77), "folds_public": (1003, 326, 131, 148)}
    for name, (pairs, patients, low, high) in expected.items():
        code, text = bench.run_cli(["import", str(PUBLISHED / name), "--images", str(images),
                                    "--out", str(tmp_path / name)])
        assert code == 0 and "problems" not in text
        leakage = read_leakage(tmp_path / name)
        assert len(leakage) == 10 and all(e["patients"] == patients and low <= e["straddling"] <= high
                                          for e in leakage.values())
        assert all(len(read_manifest(tmp_path / name / f"fold_{f}.csv")) == pairs for f in range(10))
    code, text = bench.run_cli(["import", str(PUBLISHED / "folds_acr"), "--images", str(images),
                                "--out", str(tmp_path / "acr")])
    assert code == 0 and "problems" not in text
    ucbm_cases = {c.case_id: c.split for c in read_manifest(tmp_path / "folds" / "fold_0.csv")}
    acr = read_manifest(tmp_path / "acr" / "fold_0.csv")
    assert acr and all(c.density in "abcd" and c.density and ucbm_cases[c.case_id] == "test" for c in acr)
