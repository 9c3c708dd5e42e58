"""The engine's core: atomic writes, the progress protocol, the manifest."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest

from VirtualContrastTraining.atomic import atomic_dir, atomic_path, ensure_writable_dir, write_text_atomic
from VirtualContrastTraining.data.manifest import Case, fingerprint, read_manifest, write_manifest
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.events import EventTee, EventWriter, parse_event


def test_atomic_path_replaces_only_on_success(tmp_path):
    dest = tmp_path / "out.nrrd"
    write_text_atomic(dest, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            assert tmp.parent == dest.parent and tmp.name.endswith(".nrrd")  # writers pick formats by suffix
            tmp.write_text("half writ")
            raise RuntimeError("killed mid-write")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nrrd"]  # no temporary left behind
    with atomic_path(dest) as tmp:
        tmp.write_text("new")
    assert dest.read_text() == "new"


def test_outputs_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "f.txt", "x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "inner").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_atomic_dir_keeps_the_old_folder_when_the_block_fails(tmp_path):
    dest = tmp_path / "dataset"
    with atomic_dir(dest) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(dest) as tmp:
            (tmp / "b").write_text("2")
            raise ValueError("bad case")
    assert sorted(p.name for p in dest.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_ensure_writable_dir_names_the_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot create output folder") as err:
        ensure_writable_dir(tmp_path / "file" / "sub")
    assert str(tmp_path / "file" / "sub") in str(err.value)


def test_events_are_json_lines_without_nan():
    stream = io.StringIO()
    writer = EventWriter(stream)
    writer.emit("progress", step=1, losses={"G": float("nan"), "D": 0.5}, eta_s=float("inf"))
    line = stream.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    event = parse_event(line)
    # The line carries null for the non-finite values; parse_event keeps a null loss (the protocol's "no
    # value") and leaves out a known field that is null, so event.get("eta_s") is None either way.
    assert json.loads(line) == {"event": "progress", "step": 1, "losses": {"G": None, "D": 0.5}, "eta_s": None}
    assert event == {"event": "progress", "step": 1, "losses": {"G": None, "D": 0.5}}
    with pytest.raises(ValueError):
        writer.emit("no-such-event")
    assert parse_event("100%|#####| 3/3 [00:01]") is None
    assert parse_event('{"event": "unknown"}') is None
    assert parse_event("{not json") is None


def test_event_tee_logs_a_child_job_and_passes_on_what_its_parent_chose(tmp_path, capsys):
    """demo: the training's log + a line per epoch and per lifecycle event; compare: the run's progress and
    validation go on to the comparison's events, tagged with the run, its started/finished do not."""
    parent = io.StringIO()
    log = tmp_path / "run-events.jsonl"
    log.write_text("earlier\n")
    with EventTee(log, mode="a", events=EventWriter(parent), forward=("progress", "validation"),
                  tag={"run": "demo/fold_0"}, label="train") as tee:
        child = EventWriter(tee)
        child.emit("started", job="train")
        print("a tqdm line, not an event", file=tee)
        child.emit("progress", step=1, total_steps=2)
        child.emit("validation", epoch=1, metrics={"val_l1": 0.125, "note": "x"})
        child.emit("failed", error="out of memory")
    assert tee.error == "out of memory" and tee.log.closed
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier" and len(lines) == 6 and parse_event(lines[1])["event"] == "started"
    passed = [parse_event(line) for line in parent.getvalue().splitlines()]
    assert [(e["event"], e["run"]) for e in passed] == [("progress", "demo/fold_0"), ("validation", "demo/fold_0")]
    # the validation went on to the parent, whose console shows it: the tee prints only the lifecycle
    assert capsys.readouterr().err.splitlines() == ["  train started", "  train failed"]
    with EventTee(log) as quiet:  # mode "w", nothing passed on, no label: the epoch line only
        EventWriter(quiet).emit("started")
        EventWriter(quiet).emit("validation", epoch=2, metrics={"val_l1": 0.5})
    assert len(log.read_text().splitlines()) == 2 and capsys.readouterr().err == "  epoch 2: val_l1 0.5000\n"


def test_manifest_round_trip_with_relative_paths_and_fingerprint(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "le.nrrd").write_bytes(b"le")
    (data / "des.nrrd").write_bytes(b"des")
    case = Case(case_id="P1_L_CC", patient_id="P1", le_path=str(data / "le.nrrd"), des_path=str(data / "des.nrrd"),
                laterality="L", view="CC", le_window_center="2350", le_window_width="1100")
    manifest = write_manifest(data / "manifest.csv", [case])
    assert "le.nrrd" in manifest.read_text() and str(data) not in manifest.read_text()  # stored relative
    moved = tmp_path / "moved"
    data.rename(moved)
    (back,) = read_manifest(moved / "manifest.csv", require_des=True)
    assert back.le_path == str(moved / "le.nrrd") and back.window("le") == (2350.0, 1100.0)
    assert back.window("des") is None
    first = fingerprint([back])
    (moved / "des.nrrd").write_bytes(b"DES")
    assert fingerprint([back]) != first


@pytest.mark.parametrize("text, problem", [
    ("", "empty"),
    ("case_id,le_path\n", "lacks column(s) patient_id"),
    ("case_id,patient_id,le_path\n", "no rows"),
    ("case_id,patient_id,le_path\nc1,p1,\n", "line 2: empty le_path"),
    ("case_id,patient_id,le_path\nc1,p1,a.nrrd\nc1,p2,b.nrrd\n", "duplicate case_id"),
    ("case_id,patient_id,le_path,le_window_center\nc1,p1,a.nrrd,abc\n", "line 2: le_window_center 'abc' is not a number"),
])
def test_bad_manifests(tmp_path, text, problem):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=problem.replace("(", r"\(").replace(")", r"\)")) as err:
        read_manifest(path)
    assert str(path) in str(err.value)
