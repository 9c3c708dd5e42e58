"""Background jobs: real `python -m VirtualContrastTraining` children, followed through the progress protocol.

The process-tree tests run the engine (or a small fake engine) behind
launcher_stand_in.py, which behaves like PythonSlicer: the interpreter is the
Job's grandchild, and a signal to the launcher stops the launcher only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import slicer
import torch

from launcher_stand_in import write_launcher, write_script
from VirtualContrastLib import nodes
from VirtualContrastLib.jobs import CANCELLED, CHILD_EXIT_GRACE_S, FAILED, FINISHED, RUNNING, Job, JobError, stopAll
from VirtualContrastLib.training import LoadedCase, LossChart
from VirtualContrastTraining.checkpoints import load_training_state, read_pair
from VirtualContrastTraining.data.manifest import read_manifest, write_manifest
from VirtualContrastTraining.events import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_OK, parse_event
from VirtualContrastTraining.synthetic_wording import SERIES_DESCRIPTION

TIMEOUT = 300


def test_synthesis_job_loads_a_marked_synthetic_volume_in_the_le_geometry(vc_logic, phantom_1mm, tiny_model):
    case = read_manifest(phantom_1mm)[0]
    le = vc_logic.loadVolume(case.le_path)
    job = vc_logic.startSynthesis(le, tiny_model)
    job.wait(TIMEOUT).check()
    assert job.state == FINISHED and job.progress == 1.0 and job.returncode == 0
    assert [e["event"] for e in job.events] == ["started", "progress", "finished"]
    synthetic = job.result
    assert synthetic.GetName() == f"{le.GetName()} \u2013 synthetic DES"
    assert nodes.isSynthetic(synthetic) and synthetic.GetDescription() == SERIES_DESCRIPTION
    assert synthetic.GetAttribute("VirtualContrast.Model")
    assert nodes.imageFromVolume(synthetic).same_geometry(nodes.imageFromVolume(le))
    # The DES window of the model, as the real DES would be shown (make_tiny_model: 1700-2400).
    assert synthetic.GetDisplayNode().GetWindow() == pytest.approx(700.0)
    assert synthetic.GetStorageNode() is None  # nothing points into the job's deleted temporary folder
    pixels = slicer.util.arrayFromVolume(synthetic)
    assert np.isfinite(pixels).all() and pixels.std() > 0


def test_failed_child_reports_its_own_message(vc_logic, phantom_1mm, tmp_path):
    case = read_manifest(phantom_1mm)[0]
    le = vc_logic.loadVolume(case.le_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"\x80\x04 this is a pickle, not a model")
    job = vc_logic.startSynthesis(le, run).wait(TIMEOUT)
    assert job.state == FAILED and job.returncode == EXIT_BAD_INPUT
    assert "model.safetensors" in job.error and "Traceback" not in job.error
    with pytest.raises(JobError, match="model.safetensors"):
        job.check()
    assert job.result is None


def test_synthesis_refuses_a_synthetic_input_and_a_folder_without_model(vc_logic, phantom_1mm, tiny_model, tmp_path):
    from VirtualContrastTraining.errors import InputError

    le = vc_logic.loadVolume(read_manifest(phantom_1mm)[0].le_path)
    with pytest.raises(InputError, match="not a trained model"):
        vc_logic.startSynthesis(le, tmp_path)
    nodes.markSynthetic(le)
    with pytest.raises(InputError, match="itself synthetic"):
        vc_logic.startSynthesis(le, tiny_model)


@pytest.fixture
def scene_dataset(vc_logic, small_phantom, tmp_path):
    """The phantom's cases (several patients) exported from the scene, with an extra tissue segment
    that must be left out."""
    cases = []
    for case in read_manifest(small_phantom):
        loaded = vc_logic.loadCase(case.le_path, case.des_path, case.lesion_path or None)
        if loaded.segmentation is not None:
            loaded.segmentation.GetSegmentation().AddEmptySegment("fibroglandular", "fibroglandular", [0, 1, 0])
        cases.append(loaded)
    return vc_logic.exportSceneCases(cases, tmp_path / "dataset"), cases


def test_scene_cases_export_to_a_manifest_the_engine_reads(scene_dataset, small_phantom):
    manifest, cases = scene_dataset
    rows = read_manifest(manifest, require_des=True)
    assert [r.case_id for r in rows] == [c.le.GetName() for c in cases]
    # Patients survive the trip through the scene, so both views of a patient stay in one split.
    assert [r.patient_id for r in rows] == [c.patient_id for c in read_manifest(small_phantom)]
    from VirtualContrastTraining.data.segmentation import read_segments

    for row, case in zip(rows, cases):
        assert row.le_window_center and row.laterality in ("L", "R")
        if case.segmentation is not None:
            names = [name for name, _ in read_segments(row.lesion_path)]
            assert names and "fibroglandular" not in names


def test_scene_export_refuses_synthetic_and_keeps_no_partial_folder(vc_logic, phantom_1mm, tmp_path):
    from VirtualContrastTraining.errors import InputError

    case = read_manifest(phantom_1mm)[0]
    le, des = vc_logic.loadVolume(case.le_path), vc_logic.loadVolume(case.des_path)
    nodes.markSynthetic(des)
    with pytest.raises(InputError, match="synthetic"):
        vc_logic.exportSceneCases([LoadedCase(le, des)], tmp_path / "dataset")
    assert not (tmp_path / "dataset").exists()


def test_training_job_progress_cancel_with_checkpoint_and_resume(vc_logic, scene_dataset, tmp_path):
    manifest, _ = scene_dataset
    out = tmp_path / "run"
    job = vc_logic.startTraining("demo", manifest, out, device="cpu", epochs=40, batchSize=1, imageSize=32)
    while not job.done and job.epoch is None:
        job.poll()
        time.sleep(0.05)
    assert job.epoch == 1 and 0 < job.progress < 1 and "epoch 1/40" in job.message, (job.state, job.error)
    job.cancel()
    job.wait(TIMEOUT)
    assert job.state == CANCELLED and job.returncode == EXIT_CANCELLED
    assert (out / "checkpoint.safetensors").is_file()
    # The live loss chart followed the progress events.
    table = vc_logic.scene.GetFirstNodeByName("run losses").GetTable()
    assert table.GetNumberOfRows() >= 1 and table.GetColumnName(1) == "G"
    assert job.chart.GetNumberOfPlotSeriesNodes() == table.GetNumberOfColumns() - 1

    resumed = vc_logic.startTraining("demo", manifest, out, device="cpu", resume=True, epochs=2).wait(TIMEOUT)
    resumed.check()
    assert resumed.result == out and vc_logic.isRunFolder(out)
    assert resumed.events[0]["event"] == "started"


def test_dicom_folder_becomes_a_training_manifest(vc_logic, small_phantom, tmp_path):
    manifest = vc_logic.importDicomFolder(small_phantom.parent, tmp_path / "dataset")
    assert manifest == tmp_path / "dataset" / "manifest.csv"
    assert len(read_manifest(manifest, require_des=True)) == len(read_manifest(small_phantom))


def test_cancelled_synthesis_leaves_no_node(vc_logic, phantom_1mm, tiny_model):
    le = vc_logic.loadVolume(read_manifest(phantom_1mm)[0].le_path)
    before = vc_logic.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    job = vc_logic.startSynthesis(le, tiny_model)
    job.cancel()
    job.wait(TIMEOUT)
    assert job.state == CANCELLED and job.result is None and "cancelled" in job.message
    with pytest.raises(JobError, match="cancelled"):
        job.check()
    assert vc_logic.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == before


def test_drawn_tissue_segments_export_to_the_manifest_tissue_columns(vc_logic, mrml_scene, phantom_1mm, tmp_path):
    """Segments named fibroglandular and fat (adipose) become the case's tissue regions for 000's CNR."""
    from VirtualContrastTraining.data.imageio import read_image

    case = read_manifest(phantom_1mm)[0]
    le, des = vc_logic.loadVolume(case.le_path), vc_logic.loadVolume(case.des_path)
    truth = {kind: read_image(getattr(case, f"{kind}_path")).array > 0 for kind in ("fibroglandular", "adipose")}
    segmentation = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "regions")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(le)
    for segmentId, mask in (("Fibroglandular tissue", truth["fibroglandular"]), ("fat", truth["adipose"])):
        segmentation.GetSegmentation().AddEmptySegment(segmentId, segmentId, [0, 1, 0])
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask[np.newaxis].astype(np.uint8), segmentation,
                                                         segmentId, le)
    manifest = vc_logic.exportSceneCases([LoadedCase(le, des, segmentation)], tmp_path / "dataset")
    (row,) = read_manifest(manifest)
    assert row.lesion_path == ""                     # tissue is never a lesion
    for kind, mask in truth.items():
        assert np.array_equal(read_image(getattr(row, f"{kind}_path")).array > 0, mask)


# -- malformed events ------------------------------------------------------------------------------------------

HUGE = "9" * 400  # a valid JSON integer that float() cannot hold

HOSTILE_LINES = [  # (stdout line, what parse_event makes of it)
    ('{"event": "progress", "step": "x", "total_steps": null}', {"event": "progress"}),
    ('{"event": "progress", "step": 3, "epoch": {"n": 1}, "epochs": [2], "eta_s": "soon", "losses": [1, 2]}',
     {"event": "progress", "step": 3}),
    ('{"event": "progress", "step": NaN, "total_steps": Infinity, "eta_s": -Infinity, "lr": NaN}', {"event": "progress"}),
    (f'{{"event": "progress", "step": 1e999, "total_steps": {HUGE}, "eta_s": {HUGE}, "epoch": -1, "epochs": 2.5}}',
     {"event": "progress"}),
    ('{"event": "progress", "step": true, "total_steps": 4.0, "epoch": 1152921504606846976}',
     {"event": "progress", "total_steps": 4}),
    ('{"event": "progress", "step": 2, "losses": {"G": "big", "D": NaN, "F": 1e400, "H": 0.5, "I": 3}}',
     {"event": "progress", "step": 2, "losses": {"G": None, "D": None, "F": None, "H": 0.5, "I": 3.0}}),
    ('{"event": "validation", "epoch": "one", "metrics": {"val_l1": "low", "ssim": [0.9]}}',
     {"event": "validation", "metrics": {"val_l1": None, "ssim": None}}),
    ('{"event": "validation", "metrics": "none", "best": "yes"}', {"event": "validation", "best": "yes"}),
    ('{"event": "failed", "error": {"code": 1}}', {"event": "failed"}),
    ('{"event": "info", "message": 42, "extra": NaN}', {"event": "info", "extra": None}),
    ('{"event": "started", "pid": "me"}', {"event": "started"}),
    ('{"event": "cancelled", "signal": 15, "by": "SIGTERM", "step": 7}',
     {"event": "cancelled", "signal": 15, "by": "SIGTERM", "step": 7}),
    ('[1, 2, 3]', None),
    ('"progress"', None),
    ('{"event": "progress", "step": ', None),
    ('{"event": "explode"}', None),
    ('{"event": ["progress"]}', None),
    ('{"event": null}', None),
    ('{"step": 3}', None),
    (f'{{"event": "progress", "step": {"9" * 5000}}}', None),  # beyond Python's int digits limit
    ('{"event": "info", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}", None),
    ("not json at all", None),
    ("", None),
]


@pytest.mark.parametrize("line, expected", HOSTILE_LINES)
def test_parse_event_gives_typed_fields_or_plain_text(line, expected):
    assert parse_event(line) == expected


def _fake_engine(folder: Path, name: str, code: str) -> Path:
    """An executable that runs `code` instead of the engine (it ignores the `-m VirtualContrastTraining ...` it gets)."""
    script = folder / f"{name}.py"
    script.write_text(code, encoding="utf-8")
    return write_script(folder / name, [sys.executable, str(script)])


def _behindLauncher(folder: Path, code: str) -> str:
    """The stand-in launcher in front of a fake engine running `code`: a Job's `python`."""
    folder.mkdir()
    return str(write_launcher(folder, _fake_engine(folder, "engine", code)))


def _alive(pid: int) -> bool:
    """Whether `pid` still runs: a zombie does not (here PID 1 does not reap orphans)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _noneAlive(pids, within: float = 2.0) -> bool:
    """True once none of `pids` runs (SIGKILL is delivered asynchronously), False if one still does after `within` s."""
    deadline = time.monotonic() + within
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _pollUntil(job: Job, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{job.name}: still waiting; state {job.state}, stderr:\n{job.stderrTail()}"
        job.poll()
        time.sleep(0.01)


HOSTILE_ENGINE = f"""
import json
lines = {[line for line, _ in HOSTILE_LINES]!r}
for line in lines:
    print(line, flush=True)
print(json.dumps({{"event": "progress", "step": 1, "total_steps": 2, "epoch": 1, "epochs": 1, "losses": {{"G": 1.5}}}}))
print(json.dumps({{"event": "finished"}}))
"""


def test_hostile_events_never_break_poll(tmp_path, mrml_scene):
    """Every line of the table above from a real child, followed by the job and by the live loss chart."""
    job = Job("hostile", [], python=str(_fake_engine(tmp_path, "hostile", HOSTILE_ENGINE)))
    chart = LossChart("hostile", mrml_scene)
    chart.follow(job)
    seen = []
    job.onEvent(lambda _job, event: seen.append((_job.progress, _job.message, _job.epoch, _job.etaSeconds)))
    job.wait(30)
    assert job.state == FINISHED and job.returncode == EXIT_OK, job.stderrTail()
    assert [e["event"] for e in job.events][-2:] == ["progress", "finished"]
    assert all(0.0 <= progress <= 1.0 and isinstance(message, str) for progress, message, _, _ in seen)
    assert all(epoch is None or type(epoch) is int for _, _, epoch, _ in seen)
    assert all(eta is None or isinstance(eta, float) for _, _, _, eta in seen)
    assert chart.table.GetTable().GetNumberOfRows() == 2  # the two progress events with a losses dict


# -- the process tree: launcher, engine, grandchildren ------------------------------------------------------------

GRANDCHILD_ENGINE = """
import json, subprocess, sys
sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # inherits stdout and stderr
print(json.dumps({"event": "info", "message": f"grandchild {sleeper.pid}"}), flush=True)
print(json.dumps({"event": "finished"}), flush=True)
"""


def test_job_ends_with_its_child_even_if_a_grandchild_holds_the_pipes(tmp_path):
    start = time.monotonic()
    job = Job("leaves a sleeper", [], python=str(_fake_engine(tmp_path, "engine", GRANDCHILD_ENGINE))).wait(30)
    took = time.monotonic() - start
    assert job.state == FINISHED and job.returncode == EXIT_OK, job.stderrTail()
    assert took < CHILD_EXIT_GRACE_S + 3.0, took  # not the sleeper's 120 s
    sleeper = int(next(e["message"] for e in job.events if e["event"] == "info").split()[1])
    assert _noneAlive([sleeper]), "the job's end kills what is left of its process group"


STEPPING_ENGINE = """
import json, os, time
print(json.dumps({"event": "started", "pid": os.getpid()}), flush=True)
for step in range(1, 100000):
    print(json.dumps({"event": "progress", "step": step, "total_steps": 100000}), flush=True)
    time.sleep(0.02)
"""


def test_a_failing_callback_fails_the_job_and_kills_its_tree(tmp_path):
    """A progress callback that raises (e.g. a loss chart of a closed scene) must not make every poll() raise:
    the job fails with that error and no process of its tree is left."""
    job = Job("stepping", [], python=str(_fake_engine(tmp_path, "stepping", STEPPING_ENGINE)))

    def broken(_job, event):
        if event["event"] == "progress" and event.get("step") == 3:
            raise RuntimeError("table of a closed scene")

    job.onEvent(broken)
    job.wait(30)  # poll() never raises
    assert job.state == "failed" and "RuntimeError: table of a closed scene" in job.error
    assert _noneAlive([job.enginePid, job._process.pid])



def test_an_engine_that_outlives_its_launcher_runs_on_until_killed(tmp_path):
    job = Job("orphan", [], python=_behindLauncher(tmp_path / "orphan", STEPPING_ENGINE))
    _pollUntil(job, lambda: job.enginePid is not None)
    assert job.enginePid != job._process.pid  # the engine is the launcher's child, as behind PythonSlicer
    os.kill(job._process.pid, signal.SIGKILL)  # the launcher goes (as when a signal stops the launcher only)
    _pollUntil(job, lambda: job._process.poll() is not None)
    stepBefore = job.events[-1].get("step", 0)
    time.sleep(CHILD_EXIT_GRACE_S + 0.5)
    job.poll()
    assert job.state == RUNNING and job.events[-1]["step"] > stepBefore, "the engine runs on and is followed"
    job.kill()  # the launcher is gone: the kill must reach the engine through its group
    job.wait(10)
    assert job.state == CANCELLED
    assert _noneAlive([job.enginePid])


STUBBORN_ENGINE = """
import json, os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # deaf to cancel(): no handler, no look at the stop file
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          "time.sleep(120)"])
print(json.dumps({"event": "started", "pid": os.getpid()}), flush=True)
print(json.dumps({"event": "info", "message": str(child.pid)}), flush=True)
time.sleep(120)
"""

POLITE_ENGINE = """
import json, os, signal, sys, time
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append("SIGTERM"))
print(json.dumps({"event": "started", "pid": os.getpid()}), flush=True)
while not stop and not os.path.exists(os.environ["VIRTUAL_CONTRAST_STOP_FILE"]):
    time.sleep(0.02)
time.sleep(0.5)  # writing a checkpoint, after the launcher has died of the SIGTERM
print(json.dumps({"event": "cancelled"}), flush=True)
sys.exit(75)
"""


def test_stop_all_leaves_no_process_of_any_tree(tmp_path):
    stubborn = Job("stubborn", [], python=_behindLauncher(tmp_path / "stubborn", STUBBORN_ENGINE))
    polite = Job("polite", [], python=_behindLauncher(tmp_path / "polite", POLITE_ENGINE))
    _pollUntil(stubborn, lambda: len(stubborn.events) == 2)
    _pollUntil(polite, lambda: polite.enginePid is not None)
    grandchild = int(stubborn.events[1]["message"])
    pids = [stubborn._process.pid, stubborn.enginePid, grandchild, polite._process.pid, polite.enginePid]
    assert all(_alive(pid) for pid in pids)
    start = time.monotonic()
    stopAll([stubborn, None, polite], timeoutS=1.5)
    took = time.monotonic() - start
    assert took < 1.5 + CHILD_EXIT_GRACE_S + 1.0, took
    # Its launcher died of cancel()'s SIGTERM; the deaf engine, killed later, had no last event to tell its code.
    assert stubborn.state == CANCELLED and stubborn.returncode == -signal.SIGTERM
    # The polite engine saved and exited 75 on its own; its launcher had died of the SIGTERM.
    assert polite.state == CANCELLED and polite.returncode == EXIT_CANCELLED and polite._process.returncode < 0
    assert _noneAlive(pids, within=0.5)
    assert not stubborn.stopFile.exists() and not polite.stopFile.exists()


PREPARING_ENGINE = """
import json, os, sys, time
from VirtualContrastTraining.data.prepared import prepare_cases
from VirtualContrastTraining.events import EXIT_CANCELLED, EventWriter, StopRequest


def slow_prepare(case, config):
    if case:  # cases after the first go to the pool's workers
        print(json.dumps({"event": "info", "message": f"worker {os.getpid()}"}), flush=True)
    time.sleep(1.0 if case == 0 else 0.3)  # the first case's time sends the other 6 to a pool of 2
    return case


if __name__ == "__main__":
    events = EventWriter()
    with StopRequest() as stop:
        events.emit("started")
        prepared = prepare_cases(list(range(7)), None, workers=2, prepare=slow_prepare)
        if stop:
            events.emit("cancelled", by=stop.by, message=f"prepared {prepared}")
            sys.exit(EXIT_CANCELLED)
    events.emit("finished")
"""


def test_a_cancel_during_parallel_data_preparation_lets_the_pool_finish(tmp_path):
    """train prepares big datasets in a pool of processes, which share the engine's process group: cancel()'s
    SIGTERM (like a Ctrl-C's SIGINT in a terminal) reaches them too, and must not break the pool. The engine
    stops after the preparation, as train does before its first step."""
    job = Job("preparing", [], python=str(_fake_engine(tmp_path, "engine", PREPARING_ENGINE)))
    _pollUntil(job, lambda: job.done or any(e["event"] == "info" for e in job.events))
    job.cancel()
    job.wait(60)
    assert job.state == CANCELLED and job.returncode == EXIT_CANCELLED, job.stderrTail()
    assert job.events[-1]["message"] == f"prepared {list(range(7))}" and job.events[-1]["by"] == "SIGTERM"


# -- a real training behind the launcher: cancel, checkpoint, exact resume ----------------------------------------

TRAIN = ["--preset", "demo", "--device", "cpu", "--image-size", "32", "--epochs", "2", "--batch-size", "1",
         "--set", "ngf=4", "--set", "ndf=4", "--set", "n_blocks=1"]
TOTAL_STEPS = 4  # 2 epochs of the 2 training images


@pytest.fixture(scope="module")
def tiny_phantom(tmp_path_factory) -> Path:
    """The 4-image phantom (2 patients): one patient trains (2 steps per epoch), the other validates."""
    from VirtualContrastTraining.data.phantom import generate_dataset

    manifest = generate_dataset(tmp_path_factory.mktemp("tiny") / "ph", 4, seed=7, pixel_mm=2.0)
    cases = read_manifest(manifest)
    patients = sorted({c.patient_id for c in cases})
    return write_manifest(manifest, [replace(c, split="train" if c.patient_id == patients[0] else "val")
                                     for c in cases])


def _weights(run: Path) -> dict[str, str]:
    """sha256 of the tensors of the best model and of the final training state (networks, optimisers, RNG states)."""
    return {name: read_pair(run / f"{name}.safetensors")[1]["weights_sha256"] for name in ("model", "checkpoint")}


def _waitAll(jobs: dict[str, Job], onProgress=None, timeout: float = 180.0) -> None:
    """Poll the jobs side by side until all have ended; `onProgress[name](job)` once, at its first progress event."""
    pending = dict(onProgress or {})
    deadline = time.monotonic() + timeout
    while not all(job.done for job in jobs.values()):
        assert time.monotonic() < deadline, {name: (job.state, job.stderrTail()) for name, job in jobs.items()}
        for name, job in jobs.items():
            job.poll()
            if name in pending and any(e["event"] == "progress" for e in job.events):
                pending.pop(name)(job)
        time.sleep(0.01)


def test_training_behind_a_launcher_stops_with_a_checkpoint_and_resumes_bit_exactly(tiny_phantom, tmp_path):
    """A real `train` behind the stand-in launcher, stopped at its first progress event by Job.cancel() (SIGTERM
    to the group and the stop file) or by the stop file alone (what reaches the engine on Windows), resumed
    with --resume, ends with the weights and the whole training state of an uninterrupted run, bit for bit.
    The three runs, then the two resumes, run side by side to keep the test short."""
    launcher = str(write_launcher(tmp_path))
    runs = {name: tmp_path / name for name in ("straight", "cancel", "stop file")}
    args = lambda name: ["train", "--manifest", str(tiny_phantom), "--out", str(runs[name])]
    jobs = {"straight": Job("straight", [*args("straight"), *TRAIN]),  # no launcher: the reference
            "cancel": Job("cancel", [*args("cancel"), *TRAIN], python=launcher),
            "stop file": Job("stop file", [*args("stop file"), *TRAIN], python=launcher)}
    _waitAll(jobs, {"cancel": Job.cancel, "stop file": lambda job: job.stopFile.touch()})
    assert jobs["straight"].state == FINISHED, jobs["straight"].stderrTail()
    for name in ("cancel", "stop file"):
        job = jobs[name]
        assert job.state == CANCELLED and job.returncode == EXIT_CANCELLED, (name, job.returncode, job.stderrTail())
        cancelled = job.events[-1]
        assert cancelled["event"] == "cancelled" and 1 <= cancelled["step"] < TOTAL_STEPS
        assert load_training_state(runs[name])["global_step"] == cancelled["step"]
        assert job.enginePid != job._process.pid and not _alive(job.enginePid)  # the engine was the grandchild
        assert not job.stopFile.exists()
    assert jobs["cancel"].events[-1]["by"] == "SIGTERM" and jobs["cancel"].events[-1]["signal"] == signal.SIGTERM
    # The SIGTERM to the group stopped the launcher too (it has no handler): that 75 is the engine's own, as its
    # last event states. With the stop file alone the launcher, never signalled, passed the engine's 75 on.
    assert jobs["cancel"]._process.returncode == -signal.SIGTERM
    assert jobs["stop file"].events[-1]["by"] == "stop file" and "signal" not in jobs["stop file"].events[-1]
    assert jobs["stop file"]._process.returncode == EXIT_CANCELLED

    resumed = {name: Job(f"resume {name}", [*args(name), "--resume"], python=launcher) for name in ("cancel", "stop file")}
    _waitAll(resumed)
    reference = _weights(runs["straight"])
    straightModel = read_pair(runs["straight"] / "model.safetensors")[0]
    for name, job in resumed.items():
        assert job.state == FINISHED and job.returncode == EXIT_OK, job.stderrTail()
        assert job.events[0]["resumed_at_step"] == jobs[name].events[-1]["step"]
        assert _weights(runs[name]) == reference
        model = read_pair(runs[name] / "model.safetensors")[0]
        assert model.keys() == straightModel.keys() and all(torch.equal(model[k], straightModel[k]) for k in model)
        print(f"\n{name}: stopped by {jobs[name].events[-1]['by']} at step {jobs[name].events[-1]['step']}/"
              f"{TOTAL_STEPS}, engine pid {jobs[name].enginePid} behind launcher pid {jobs[name]._process.pid} "
              f"(launcher exit {jobs[name]._process.returncode}, job returncode {jobs[name].returncode}); resumed: "
              f"sha256 {_weights(runs[name])}, {len(model)} model tensors torch.equal to the uninterrupted run's")
    print(f"uninterrupted: sha256 {reference}")
