"""De-identification end to end (issue 14): import + predict + evaluate + report of a DICOM folder whose
PatientID and PatientName are recognisable; no byte of any output, nor of what the commands printed,
holds either (docs/deidentification.md).

The folder is the phantom's DICOM (data/phantom) with the patient attributes set to a realistic MRN and
name and the files renamed after nothing in particular: the names users give their files are theirs.
"""

from __future__ import annotations

import base64
import csv
import re
import shutil
from pathlib import Path

import pydicom
import pytest

from conftest import make_tiny_model
from hostile import expect_handled, run_cli
from VirtualContrastTraining.data.manifest import read_manifest

PATIENTS = {  # phantom patient -> (PatientID, PatientName) of the folder
    f"PHANTOM-{k:04d}": (f"MRN-{code}-{surname}", f"{surname}^{given}")
    for k, (code, surname, given) in enumerate([("QX7734", "SMITH", "JOHN^Q"), ("ZB2210", "JONES", "MARY"),
                                                ("KP5150", "BROWNING", "ANNA"), ("WT0913", "OKAFOR", "GRACE"),
                                                ("LM4471", "NAKAMURA", "YUKI"), ("HD8820", "SCHULTZ", "PETRA")],
                                               start=1)
}
SECRETS = [word.encode() for mrn, name in PATIENTS.values()
           for word in (mrn, mrn.split("-")[1], name, name.split("^")[0], name.replace("^", " "))]


@pytest.fixture(scope="module")
def dicom_folder(tmp_path_factory) -> Path:
    """The phantom's LE/DES DICOM (and lesion .seg.nrrd) under neutral names, with real-looking patients."""
    from VirtualContrastTraining.data.phantom import generate_dataset

    root = tmp_path_factory.mktemp("deid")
    phantom = generate_dataset(root / "phantom", 6, seed=7, pixel_mm=2.0)
    folder = root / "dicom"
    folder.mkdir()
    for k, case in enumerate(read_manifest(phantom), start=1):
        mrn, name = PATIENTS[case.patient_id]
        for role, path in (("LE", case.le_path), ("DES", case.des_path)):
            ds = pydicom.dcmread(path)
            ds.PatientID, ds.PatientName = mrn, name
            ds.save_as(folder / f"img_{k:02d}_{role}.dcm", enforce_file_format=True)
        if case.lesion_path:
            shutil.copy(case.lesion_path, folder / f"img_{k:02d}_LE_lesions.seg.nrrd")
    return folder


def _with_splits(manifest: Path) -> None:
    """The first patient's cases to test, the others' to train (evaluate needs splits)."""
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    first = rows[0]["patient_id"]
    for row in rows:
        row["split"] = "test" if row["patient_id"] == first else "train"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _found(data: bytes) -> list[bytes]:
    return [s for s in SECRETS if s.lower() in data.lower()]


# matplotlib's SVG breaks its base64 into lines: the data runs over whitespace (b64decode skips it)
BASE64_URI = re.compile(rb"data:[\w/+.-]+;base64,\s*([A-Za-z0-9+/=\s]+)")


def _content(path: Path) -> bytes:
    """What a file says: its bytes, with each base64 data URI (the report's embedded figures) decoded. Base64
    text has only 64 letters, so a case-insensitive search finds a 5-letter name in it by chance (a clean-clone
    run found "SMITH" inside a figure's encoding); decoded, the figure is searched as the bytes it is."""
    data = path.read_bytes()
    return BASE64_URI.sub(lambda m: b"<figure>", data) + b"".join(
        base64.b64decode(m.group(1)) for m in BASE64_URI.finditer(data))


def test_the_search_finds_what_the_input_holds(dicom_folder):
    """The check below is a real one: the same byte search finds the MRN and name in the input DICOM."""
    assert all(_found(p.read_bytes()) for p in dicom_folder.glob("*.dcm"))


def test_deidentified_import_predict_evaluate_report_hold_no_patient_identifier(dicom_folder, tmp_path):
    out = tmp_path / "out"
    manifest = out / "manifest.csv"
    printed = []

    def cli(*args):
        outcome = run_cli(*args)
        printed.append(outcome.stdout + outcome.stderr + outcome.escaped)
        expect_handled(outcome)
        return outcome

    cli("import", dicom_folder, "--out", manifest)
    _with_splits(manifest)
    model = make_tiny_model(out / "model", image_size=64)
    predicted = cli("predict", "--model", model, "--input", manifest, "--split", "test", "--out", out / "synthetic",
                    "--format", "dicom", "--burn-in", "--deidentify", "--device", "cpu", "--json")
    assert '"event": "finished"' in predicted.stdout
    cli("evaluate", "--model", model, "--manifest", manifest, "--split", "test", "--out", out / "evaluation",
        "--deidentify", "--device", "cpu")
    cli("report", "--evaluation", out / "evaluation", "--out", out / "report.html", "--deidentify")

    files = [p for p in out.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".csv", ".dcm", ".png", ".json", ".html", ".md", ".safetensors"} <= kinds, kinds
    assert len(list((out / "synthetic").glob("*.dcm"))) == sum(c.split == "test" for c in read_manifest(manifest))
    hits = {str(p.relative_to(out)): _found(_content(p)) for p in files}
    hits.update({f"printed by command {i}": _found(text.encode()) for i, text in enumerate(printed)})
    assert not {where: words for where, words in hits.items() if words}, "patient identifiers written"
    print(f"searched {len(files)} files ({', '.join(sorted(kinds))}) and {len(printed)} commands' output")


def test_report_deidentify_refuses_a_folder_evaluated_without_it(dicom_folder, tmp_path):
    manifest = tmp_path / "manifest.csv"
    expect_handled(run_cli("import", dicom_folder, "--out", manifest))
    _with_splits(manifest)
    model = make_tiny_model(tmp_path / "model", image_size=64)
    expect_handled(run_cli("evaluate", "--model", model, "--manifest", manifest, "--split", "test",
                           "--out", tmp_path / "evaluation", "--device", "cpu"))
    refused = run_cli("report", "--evaluation", tmp_path / "evaluation", "--out", tmp_path / "r.html", "--deidentify")
    assert refused.code == 2 and "evaluate with --deidentify first" in refused.stderr
    assert not (tmp_path / "r.html").exists()
