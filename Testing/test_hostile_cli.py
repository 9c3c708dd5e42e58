"""Hostile files and arguments for every command (issue 14): the wrong file, a broken file, a file of another kind.

Manifests (missing, a folder, empty, header only, binary, UTF-16, without a column, a row naming a missing
or wrong file, repeated case ids, an unknown split) go to each command that reads one; broken models
(missing, empty folder, truncated or foreign weights, unreadable sidecar) to predict and evaluate; then the
files of report, reader-study, seg, import, and arguments out of range. Every case is generated here and
asserts through Testing/hostile.py: exit 2, one line naming the file and the problem, and nothing written or
changed under the case's folder (the outputs go there).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_tiny_model
from hostile import REPO, Outcome, expect_clear_error, expect_handled, run_cli, snapshot
from VirtualContrastTraining.data.manifest import read_manifest

TINY = ("--epochs", "1", "--set", "image_size=32", "--set", "ngf=4", "--set", "n_blocks=1", "--set", "batch_size=2",
        "--device", "cpu")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """Untrained, at 64 px: large enough for every metric of evaluate (VIF needs 41 px)."""
    return make_tiny_model(tmp_path_factory.mktemp("hostile_cli_model") / "run", image_size=64)


@pytest.fixture
def case_dir(tmp_path) -> Path:
    folder = tmp_path / "case"
    folder.mkdir()
    return folder


def _rows(manifest: Path) -> tuple[list[str], list[dict]]:
    with manifest.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _write(path: Path, header: list[str], rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _absolute(source: Path, rows: list[dict]) -> list[dict]:
    """Rows whose file paths are absolute, so the manifest can move to the case folder, and with a split
    each (train, val, test in turn), so that every command gets past its split checks to the case's fault."""
    patients = sorted({row["patient_id"] for row in rows})
    for row in rows:
        for key, value in row.items():
            if key.endswith("_path") and value:
                row[key] = str((source.parent / value).resolve())
        row["split"] = ("train", "val", "test")[patients.index(row["patient_id"]) % 3]
    return rows


def with_splits(folder: Path, good: Path) -> Path:
    """A good manifest with splits, outside the case folder."""
    header, rows = _rows(good)
    return _write(folder / "good.csv", header, _absolute(good, rows))


# Each builder writes one hostile manifest into `folder` from the good one and returns (path, words it must say).
def missing(folder, good):
    return folder / "nope.csv", "not found"


def a_folder(folder, good):
    (folder / "manifest.csv").mkdir()
    return folder / "manifest.csv", "not found"


def empty(folder, good):
    (folder / "m.csv").write_bytes(b"")
    return folder / "m.csv", "empty"


def header_only(folder, good):
    header, _ = _rows(good)
    return _write(folder / "m.csv", header, []), "no rows"


def binary(folder, good):
    (folder / "m.csv").write_bytes(bytes(range(256)) * 8)
    return folder / "m.csv", "manifest"


def utf16(folder, good):
    (folder / "m.csv").write_text(good.read_text(encoding="utf-8"), encoding="utf-16")
    return folder / "m.csv", "manifest"


def without_le_column(folder, good):
    header, rows = _rows(good)
    rows = _absolute(good, rows)
    header = [h for h in header if h != "le_path"]
    return _write(folder / "m.csv", header, [{k: r[k] for k in header} for r in rows]), "le_path"


def missing_image(folder, good):
    header, rows = _rows(good)
    rows = _absolute(good, rows)
    for row in rows:
        row["le_path"] = str(folder / "gone" / "LE.nrrd")
    return _write(folder / "m.csv", header, rows), "no such file"


def image_is_text(folder, good):
    header, rows = _rows(good)
    rows = _absolute(good, rows)
    (folder / "LE.nrrd").write_text("this is not an image\n")
    for row in rows:
        row["le_path"] = str(folder / "LE.nrrd")
    return _write(folder / "m.csv", header, rows), "LE.nrrd"


def repeated_ids(folder, good):
    header, rows = _rows(good)
    rows = _absolute(good, rows)
    for row in rows:
        row["case_id"] = "same"
    return _write(folder / "m.csv", header, rows), ("case_id", "same")


def unknown_split(folder, good):
    header, rows = _rows(good)
    rows = _absolute(good, rows)
    for row in rows:
        row["split"] = "tset"
    return _write(folder / "m.csv", header, rows), "tset"


MANIFESTS = [missing, a_folder, empty, header_only, binary, utf16, without_le_column, missing_image, image_is_text,
             repeated_ids, unknown_split]


def _command(name: str, manifest: Path, out: Path, model: Path) -> list:
    return {
        "predict": ["predict", "--model", model, "--input", manifest, "--split", "test", "--out", out / "synthetic"],
        "evaluate": ["evaluate", "--model", model, "--manifest", manifest, "--out", out / "evaluation"],
        "train": ["train", "--preset", "demo", "--manifest", manifest, "--out", out / "run", *TINY],
        "compare": ["compare", "--presets", "demo", "--manifest", manifest, "--out", out / "comparison", "--folds",
                    "3", "--set", "epochs=1", "--set", "image_size=32", "--set", "ngf=4", "--set", "n_blocks=1",
                    "--device", "cpu"],
    }[name]


# predict --split and compare read no split column here (compare deals its own folds): unknown_split is for the
# commands that do.
MANIFEST_CASES = [pytest.param(command, build, id=f"{command}-{build.__name__}")
                  for command in ("predict", "evaluate", "train", "compare") for build in MANIFESTS
                  if not (build is unknown_split and command in ("predict", "compare"))]


@pytest.mark.parametrize("command, build", MANIFEST_CASES)
def test_a_hostile_manifest_is_refused_by_every_command_that_reads_one(command, build, small_phantom, model,
                                                                        case_dir):
    manifest, says = build(case_dir, small_phantom)
    before = snapshot(case_dir)
    outcome = run_cli(*_command(command, manifest, case_dir, model))
    expect_clear_error(outcome, names=manifest if build not in (missing_image, image_is_text) else None,
                       says=says, before=before, watched=(case_dir,))


# Broken models: each builder returns the --model path and what the message must say.
def no_model(folder):
    return folder / "no-run", "not found" if _MODEL[1] == "evaluate" else ("no such", "checkpoint")


def empty_run(folder):
    (folder / "run").mkdir()
    return folder / "run", "model"


def truncated_weights(folder):
    run = shutil.copytree(_MODEL[0], folder / "run")
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    return run, "model.safetensors"


def foreign_weights(folder):
    run = shutil.copytree(_MODEL[0], folder / "run")
    (run / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + b"\x00" * 64)
    return run, "model.safetensors"


def readable_copy_not_json(folder):
    """model.json is the readable copy of the sidecar that model.safetensors carries (and checks): handled."""
    run = shutil.copytree(_MODEL[0], folder / "run")
    (run / "model.json").write_text("{ not json")
    return run, None


def readable_copy_gone(folder):
    run = shutil.copytree(_MODEL[0], folder / "run")
    (run / "model.json").unlink()
    return run, None


MODELS = [no_model, empty_run, truncated_weights, foreign_weights, readable_copy_not_json, readable_copy_gone]
_MODEL: list[Path] = []


@pytest.mark.parametrize("build", MODELS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_broken_model_is_refused_naming_its_file(command, build, small_phantom, model, case_dir, tmp_path):
    _MODEL[:] = [model, command]
    run, says = build(case_dir)
    manifest = with_splits(tmp_path, small_phantom)
    before = snapshot(case_dir)
    out = case_dir / "out"
    le = read_manifest(manifest)[0].le_path
    args = (["predict", "--model", run, "--input", le, "--out", out] if command == "predict"
            else ["evaluate", "--model", run, "--manifest", manifest, "--out", out])
    outcome = run_cli(*args)
    if says is None:
        expect_handled(outcome)
        assert out.is_dir() and any(out.iterdir())
        return
    expect_clear_error(outcome, names=None, says=says, before=before, watched=(case_dir,))
    assert str(run) in outcome.error_lines[0], outcome.error_lines


def test_predict_of_a_missing_or_foreign_input_file(model, case_dir):
    (case_dir / "notes.txt").write_text("hello")
    for path, says in ((case_dir / "LE.dcm", "no such file"), (case_dir / "notes.txt", "not a")):
        before = snapshot(case_dir)
        outcome = run_cli("predict", "--model", model, "--input", path, "--out", case_dir / "out")
        expect_clear_error(outcome, names=path, says=says, before=before, watched=(case_dir,))


@pytest.mark.parametrize("what", ["missing", "not an evaluation", "empty file as folder"])
def test_report_of_something_that_is_not_an_evaluation(what, case_dir):
    target = case_dir / "eval"
    if what == "not an evaluation":
        target.mkdir()
        (target / "notes.txt").write_text("hello")
    elif what == "empty file as folder":
        target.write_bytes(b"")
    before = snapshot(case_dir)
    outcome = run_cli("report", "--evaluation", target, "--out", case_dir / "report.html")
    expect_clear_error(outcome, names=target, says="not a folder" if what != "not an evaluation" else "not found",
                       before=before, watched=(case_dir,))


@pytest.mark.parametrize("content, says", [
    (None, "not found"),
    (b"", "empty"),
    (b"\x00\x01\x02garbage\xff", "ratings"),
    (b"reader,case\nA,c1\n", "column"),
])
def test_reader_study_of_hostile_ratings(content, says, case_dir):
    ratings = case_dir / "ratings.csv"
    if content is not None:
        ratings.write_bytes(content)
    before = snapshot(case_dir)
    outcome = run_cli("reader-study", "--ratings", ratings, "--out", case_dir / "study")
    expect_clear_error(outcome, names=ratings, says=says, before=before, watched=(case_dir,))


@pytest.mark.parametrize("direction", ["--to-dicom", "--to-nrrd"])
def test_seg_of_a_missing_or_foreign_file(direction, small_phantom, case_dir):
    le = next(Path(c.le_path) for c in read_manifest(small_phantom))
    garbage = case_dir / ("lesions.seg.nrrd" if direction == "--to-dicom" else "seg.dcm")
    garbage.write_bytes(b"not a segmentation at all")
    for source in (case_dir / "missing", garbage):
        before = snapshot(case_dir)
        outcome = run_cli("seg", direction, source, "--le", le, "--out", case_dir / "out.file")
        expect_clear_error(outcome, names=source, says=() if source == garbage else "no such file",
                           before=before, watched=(case_dir,))


@pytest.mark.parametrize("what", ["missing", "empty folder", "a text file"])
def test_import_of_nothing_importable(what, case_dir):
    source = case_dir / "dicom"
    if what == "empty folder":
        source.mkdir()
    elif what == "a text file":
        source.write_text("hello")
    before = snapshot(case_dir)
    outcome = run_cli("import", source, "--out", case_dir / "manifest.csv")
    expect_clear_error(outcome, names=source, says=(), before=before, watched=(case_dir,))


@pytest.mark.parametrize("args, says", [
    (["phantom", "--cases", "0"], "cases"),
    (["phantom", "--cases", "-3"], "cases"),
    (["phantom", "--pixel-mm", "0"], "pixel"),
    (["phantom", "--pixel-mm", "nan"], "pixel"),
    (["train", "--preset", "rofena2025-segcylcegan-g35"], "did you mean 'rofena2025-segcyclegan-g35'?"),
    (["train", "--preset", "demo", "--set", "lr"], "--set"),
    (["train", "--preset", "demo", "--set", "lr=abc"], "lr"),
    (["train", "--preset", "demo", "--set", "no_such_field=1"], "no_such_field"),
    (["train", "--preset", "demo", "--epochs", "0"], "epochs"),
    (["train", "--preset", "demo", "--lr", "-1"], "lr"),
    (["train", "--preset", "demo", "--batch-size", "0"], "batch_size"),
    (["compare", "--presets", "demo,no-such-preset"], "no-such-preset"),
    (["compare", "--presets", "demo", "--folds", "1"], "folds"),
])
def test_arguments_out_of_range_are_refused_before_anything_is_written(args, says, small_phantom, case_dir):
    out = case_dir / "out"
    extra = {"phantom": ["--out", out], "train": ["--manifest", small_phantom, "--out", out, "--device", "cpu"],
             "compare": ["--manifest", small_phantom, "--out", out, "--device", "cpu"]}[args[0]]
    before = snapshot(case_dir)
    outcome = run_cli(*args, *extra)
    expect_clear_error(outcome, names=None, says=says, before=before, watched=(case_dir,))


def test_predict_on_a_full_disk_names_the_output_and_leaves_nothing(model, small_phantom, case_dir):
    """A file-size limit (RLIMIT_FSIZE: the kernel refuses the write as a full disk would) on the real CLI in a
    child: the NRRD writer's failure is one line naming the output file, and no file, not even a temporary one,
    is left."""
    le = read_manifest(small_phantom)[0].le_path
    out = case_dir / "out"
    out.mkdir()
    before = snapshot(case_dir)
    limit = "import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048)); "
    done = subprocess.run([sys.executable, "-c", limit + "import sys; from VirtualContrastTraining.cli import main; "
                           "sys.exit(main(sys.argv[1:]))", "predict", "--model", str(model), "--input", le, "--out",
                           str(out / "synthetic.nrrd"), "--device", "cpu"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    expect_clear_error(Outcome(done.returncode, done.stdout, done.stderr), names=out / "synthetic.nrrd",
                       says="cannot write", before=before, watched=(case_dir,))
