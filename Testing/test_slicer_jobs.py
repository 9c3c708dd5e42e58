"""Background jobs: real `python -m VirtualContrastTraining` children, followed through the progress protocol."""

from __future__ import annotations

import time

import numpy as np
import pytest
import slicer

from VirtualContrastLib import nodes
from VirtualContrastLib.jobs import CANCELLED, FAILED, FINISHED, JobError
from VirtualContrastLib.training import LoadedCase
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.events import EXIT_BAD_INPUT, EXIT_CANCELLED
from VirtualContrastTraining.synthetic_export import SERIES_DESCRIPTION

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
