"""Hostile inputs of import, predict and evaluate (issue 14): synthetic images that lie about themselves,
case ids that clash as file names, identifiers where pseudonyms belong, a full disk.

Every corpus is generated here (phantom manifests, small DICOMs written by the tests' own writers); each
case goes through the real CLI (hostile.run_cli) and asserts its outcome: a clear one-line error with
nothing left behind, or a handled run whose result the case checks.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pydicom
import pytest

from conftest import make_tiny_model
from hostile import expect_clear_error, expect_handled, run_cli, snapshot
from test_import import T0, write_compression
from VirtualContrastTraining.data.imageio import read_image
from VirtualContrastTraining.data.manifest import read_manifest, write_manifest
from VirtualContrastTraining.synthetic_export import write_synthetic_dicom


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("hostile-model") / "run", image_size=64)


# ---------------------------------------------------------------- synthetic images that lie


def _disguised_synthetic(folder: Path, keep: str) -> tuple[dict[str, Path], Path]:
    """One compression (LE, HE, DES) and a synthetic DES of its LE, written by our writer, then edited to
    look real: ImageType RECOMBINED, a real series description, and every other marker but `keep` removed.
    It carries the LE's exact acquisition time, so it would win the time match against the real DES."""
    files = write_compression(folder, "P1", "L", "CC", T0)
    le = read_image(files["LE"])
    le.meta.update({"VirtualContrast.Model": "test", "VirtualContrast.Preset": "demo"})
    made = write_synthetic_dicom(le, folder / "P1_L_CC_SYNTHETIC-DES.dcm")
    ds = pydicom.dcmread(made)
    ds.ImageType = ["DERIVED", "PRIMARY", "", "RECOMBINED"]
    ds.SeriesDescription = "L CC Recombined"
    if keep != "DerivationDescription":
        ds.DerivationDescription = "recombined"
    if keep != "Manufacturer":
        ds.Manufacturer = "GE Healthcare"
    ds.save_as(made)
    if keep == "file name":
        return files, made
    return files, made.rename(folder / "P1_L_CC_2.dcm")


@pytest.mark.parametrize("keep", ["DerivationDescription", "Manufacturer", "file name"])
def test_an_edited_synthetic_dicom_is_never_paired_as_the_real_des(tmp_path, keep):
    files, disguised = _disguised_synthetic(tmp_path / "data", keep)
    manifest = tmp_path / "m.csv"
    outcome = run_cli("import", tmp_path / "data", "--out", manifest)
    expect_handled(outcome)
    [case] = read_manifest(manifest)
    assert Path(case.des_path) == files["DES"].resolve()
    assert "synthetic image: never paired as a real DES" in outcome.stdout and disguised.name in outcome.stdout


def test_a_disguised_synthetic_alone_gives_no_pair_and_no_manifest(tmp_path):
    files, _ = _disguised_synthetic(tmp_path / "data", "DerivationDescription")
    files["DES"].unlink()
    before = snapshot(tmp_path)
    outcome = run_cli("import", tmp_path / "data", "--out", tmp_path / "m.csv")
    expect_clear_error(outcome, names=tmp_path / "data", says=("no LE/DES pairs", "synthetic image"),
                       before=before, watched=(tmp_path,))


# ---------------------------------------------------------------- case ids that clash as file names


def _clashing_manifest(small_phantom: Path, folder: Path) -> Path:
    """The phantom's manifest with its first two cases renamed "a/b" and "a_b" (one file stem, "a_b"), both
    in the test split with their patients, the others in train."""
    cases = read_manifest(small_phantom)
    test_patients = {cases[0].patient_id, cases[1].patient_id}
    renamed = [replace(c, case_id={0: "a/b", 1: "a_b"}.get(k, c.case_id),
                       split="test" if c.patient_id in test_patients else "train") for k, c in enumerate(cases)]
    return write_manifest(folder / "clash.csv", renamed)


def test_predict_writes_one_file_per_case_when_ids_share_a_stem(small_phantom, model, tmp_path):
    manifest = _clashing_manifest(small_phantom, tmp_path)
    out = tmp_path / "out"
    outcome = run_cli("predict", "--model", model, "--input", manifest, "--out", out, "--device", "cpu")
    expect_handled(outcome)
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == len(read_manifest(manifest))
    clashing = [n for n in names if n.startswith("a_b")]
    assert len(clashing) == 2 and all(n.startswith("a_b-") for n in clashing), names
    others = [c.case_id for c in read_manifest(manifest) if c.case_id not in ("a/b", "a_b")]
    assert {f"{i}_SYNTHETIC-DES.nrrd" for i in others} <= set(names)  # no clash: names as they always were


def test_evaluate_writes_one_heatmap_per_case_and_the_report_shows_both(small_phantom, model, tmp_path):
    manifest = _clashing_manifest(small_phantom, tmp_path)
    out = tmp_path / "evaluation"
    expect_handled(run_cli("evaluate", "--model", model, "--manifest", manifest, "--out", out, "--device", "cpu"))
    n_test = sum(c.split == "test" for c in read_manifest(manifest))
    heatmaps = sorted(p.name for p in (out / "heatmaps").glob("*.png"))
    assert len(heatmaps) == n_test and sum(n.startswith("a_b-") for n in heatmaps) == 2, heatmaps
    assert "is missing" not in (out / "report.html").read_text(encoding="utf-8")


# ---------------------------------------------------------------- identifiers where pseudonyms belong


def test_import_never_builds_ids_from_a_hostile_patient_id(tmp_path):
    """PatientIDs with a path separator, dots and spaces: pseudonymous ids by default; with
    --ids-from-patient-id, "A/B" and "A_B" still get one id each."""
    data = tmp_path / "data"
    write_compression(data / "one", "../A/B", "L", "CC", T0, study="1.2.1")
    write_compression(data / "two", "../A_B", "L", "CC", T0 + timedelta(days=1), study="1.2.2")
    expect_handled(run_cli("import", data, "--out", tmp_path / "m.csv"))
    ids = [c.case_id for c in read_manifest(tmp_path / "m.csv")]
    assert len(set(ids)) == 2 and all(re.fullmatch(r"P[0-9a-f]{10}_L_CC", i) for i in ids), ids
    expect_handled(run_cli("import", data, "--out", tmp_path / "plain.csv", "--ids-from-patient-id"))
    plain = sorted(c.case_id for c in read_manifest(tmp_path / "plain.csv"))
    assert plain == ["..-A-B_L_CC", "..-A_B_L_CC"]


def test_predict_deidentify_of_one_file_named_after_the_patient(tmp_path, model):
    files = write_compression(tmp_path / "in", "MRN-998877", "L", "CC", T0, roles=("LE",))
    le = files["LE"].rename(tmp_path / "in" / "MRN-998877_DOE.dcm")
    out = tmp_path / "out"
    outcome = run_cli("predict", "--model", model, "--input", le, "--out", out, "--format", "dicom",
                      "--deidentify", "--device", "cpu")
    expect_handled(outcome)
    [written] = list(out.iterdir())
    assert "998877" not in written.name and "DOE" not in written.name and "SYNTHETIC" in written.name
    assert "998877" not in outcome.stdout and "DOE" not in outcome.stdout
    assert "998877" not in pydicom.dcmread(written).PatientID


def test_evaluate_deidentify_names_a_missing_case_by_its_pseudonym(small_phantom, tmp_path):
    manifest = _clashing_manifest(small_phantom, tmp_path)
    listed = tmp_path / "synthetic.csv"
    listed.write_text("case_id,synthetic_path\nnone,x.nrrd\n", encoding="utf-8")
    before = snapshot(tmp_path)
    outcome = run_cli("evaluate", "--synthetic", listed, "--manifest", manifest, "--out", tmp_path / "ev",
                      "--deidentify")
    expect_clear_error(outcome, names=listed, says="no synthetic image", before=before, watched=(tmp_path,))
    assert "a/b" not in outcome.stderr and "PHANTOM" not in outcome.stderr and "case-" in outcome.stderr


# ---------------------------------------------------------------- a full disk


def test_predict_on_a_full_disk_emits_failed_and_leaves_no_half_written_file(small_phantom, model, tmp_path,
                                                                             monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("kept", encoding="utf-8")
    before = snapshot(out)
    real_replace = os.replace

    def full(src, dst, *args, **kwargs):
        if Path(dst).parent == out:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full)
    outcome = run_cli("predict", "--model", model, "--input", small_phantom, "--out", out, "--device", "cpu", "--json")
    expect_clear_error(outcome, names=out, says=("cannot write", "disk full"), before=before, watched=(out,))
    events = [json.loads(line) for line in outcome.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events][-1] == "failed" and "disk full" in events[-1]["error"]


def test_predict_onto_a_folder_in_the_way_of_the_output_file_is_a_clear_error(small_phantom, model, tmp_path):
    """A folder in the way of the single output file: one line, nothing written."""
    blocker = tmp_path / "x_SYNTHETIC-DES.nrrd"
    blocker.mkdir()
    case = read_manifest(small_phantom)[0]
    shutil.copy(case.le_path, tmp_path / "le.dcm")
    before = snapshot(tmp_path)
    outcome = run_cli("predict", "--model", model, "--input", tmp_path / "le.dcm", "--out", blocker, "--device", "cpu")
    expect_clear_error(outcome, names=blocker, says="cannot write", before=before, watched=(tmp_path,))
