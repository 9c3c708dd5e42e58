"""`import PATH --pairs PATTERN`: LE/DES pairs named any way, through the real CLI, read back and prepared.

The folder is generated: phantom pairs at 2 mm saved as 16-bit PNGs named
`<id>_<view>_LE.png` / `<id>_<view>_DES.png` (a common export), one lesion mask
named by the same pattern, an LE without its DES and a file of another kind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hostile import run_cli
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.data.pairs import compile_pattern, parse_roles
from VirtualContrastTraining.data.phantom import simulate_case
from VirtualContrastTraining.data.prepared import prepare_case
from VirtualContrastTraining.data.preprocessing import PreprocessConfig
from VirtualContrastTraining.errors import InputError

IDS = {"anon01": "CC", "anon02": "MLO", "anon03": "CC"}


def _png(array: np.ndarray, path: Path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.clip(array, 0, 65535).astype(np.uint16)), str(path))


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export") / "pairs"
    root.mkdir()
    for n, (pid, view) in enumerate(IDS.items()):
        lesions = ["mass_homogeneous"] if n == 0 else []
        case = simulate_case(np.random.default_rng(n), pixel_mm=2.0, view=view, lesions=lesions)
        _png(case.le, root / f"{pid}_{view}_LE.png")
        _png(case.des, root / f"{pid}_{view}_DES.png")
        if n == 0:
            _png(next(iter(case.lesion_masks.values())).astype(np.uint16), root / f"{pid}_{view}_mask.png")
    _png(case.le, root / "anon04_CC_LE.png")  # its DES is missing
    (root / "notes.txt").write_text("exported 2026")
    return root


def test_a_folder_of_named_pngs_is_imported_read_back_and_prepared(export, tmp_path):
    out = tmp_path / "cases.csv"
    done = run_cli("import", export, "--out", out, "--pairs", "{id}_{view}_{role}.png", "--roles", "LE=LE,DES=DES")
    assert done.code == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"3 LE/DES pairs, 0 with a lesion mask -> {out}"
    assert "  1 x LE without its DES: left out\n      1: anon04_CC_LE.png" in done.stdout
    assert "  1 x files that do not match the pattern: ignored\n      2: anon01_CC_mask.png, notes.txt" in done.stdout
    cases = read_manifest(out, require_des=True)
    assert [(c.case_id, c.patient_id, c.view, c.laterality) for c in cases] == [
        ("anon01_CC", "anon01", "CC", ""), ("anon02_MLO", "anon02", "MLO", ""), ("anon03_CC", "anon03", "CC", "")]
    assert Path(cases[1].des_path) == export / "anon02_MLO_DES.png"
    prepared = prepare_case(cases[0], PreprocessConfig(size=64))
    assert prepared.le.shape == prepared.des.shape == (64, 64) and prepared.le.max() > 0.5
    # The same command again gives the same manifest (ids are the names, not counters).
    first = out.read_bytes()
    assert run_cli("import", export, "--out", out, "--pairs", "{id}_{view}_{role}.png",
                   "--roles", "LE=LE,DES=DES").code == 0
    assert out.read_bytes() == first


def test_the_lesion_mask_by_the_same_pattern(export, tmp_path):
    out = tmp_path / "m.csv"
    assert run_cli("import", export, "--out", out, "--pairs", "{id}_{view}_{role}.png",
                   "--roles", "LE=LE,DES=DES,mask=mask").code == 0
    cases = {c.case_id: c for c in read_manifest(out)}
    assert Path(cases["anon01_CC"].lesion_path) == export / "anon01_CC_mask.png"
    assert cases["anon02_MLO"].lesion_path == ""
    prepared = prepare_case(cases["anon01_CC"], PreprocessConfig(size=64))
    assert prepared.has_mask and prepared.mask.sum() > 0


def test_side_from_the_name_and_a_pattern_with_folders(tmp_path):
    root = tmp_path / "by_role"
    for role in ("low", "recombined"):
        (root / role).mkdir(parents=True)
        for side in ("left", "right"):
            case = simulate_case(np.random.default_rng(len(side)), pixel_mm=2.0, lesions=[])
            _png(case.le if role == "low" else case.des, root / role / f"P7-{side}-MLO.png")
    out = tmp_path / "s.csv"
    done = run_cli("import", root, "--out", out, "--pairs", "{role}/{id}-{side}-{view}.png",
                   "--roles", "LE=low,DES=recombined")
    assert done.code == 0, done.stderr
    assert [(c.case_id, c.laterality) for c in read_manifest(out)] == [("P7_L_MLO", "L"), ("P7_R_MLO", "R")]


@pytest.mark.parametrize("args, message", [
    (["--pairs", "{view}_{role}.png"], "lacks {id}: e.g."),
    (["--pairs", "{id}_{view}.png"], "lacks {role}: e.g."),
    (["--pairs", "{id}_{colour}_{role}.png"], "unknown field {colour}"),
    (["--pairs", "{id}_{view}_{role}.jpg"], "no file matches --pairs"),
    (["--pairs", "{id}_{role}.png", "--roles", "LE=LE"], "names no token for DES"),
    (["--pairs", "anon04_{view}_{role}.png".replace("anon04", "{id}"), "--roles", "LE=LE,DES=nothing"],
     "no complete LE/DES pair matches"),
    (["--roles", "LE=a,DES=b"], "--roles goes with --pairs"),
])
def test_bad_patterns_are_one_line(export, tmp_path, args, message):
    done = run_cli("import", export, "--out", tmp_path / "x.csv", *args)
    assert done.code == 2 and not done.escaped
    assert len(done.error_lines) == 1 and message in done.error_lines[0]
    assert not (tmp_path / "x.csv").exists()


def test_pattern_parts():
    roles = parse_roles(None)
    regex = compile_pattern("{id}_{side}{view}_{role}.png", roles)
    assert regex.fullmatch("P1_LCC_lesion.png").groupdict() == {"id": "P1", "side": "L", "view": "CC",
                                                                "role": "lesion"}
    assert regex.fullmatch("P1_LCC_LE.tif") is None
    with pytest.raises(InputError, match="given twice"):
        compile_pattern("{id}_{id}_{role}", roles)
