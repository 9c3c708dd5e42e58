"""The panel's rules (VirtualContrastLib.panel) and the Widget's helpers in the Logic, headless.

The Widget only wires widgets to these; the GUI harness (test_widget_gui.py) drives the same rules
through the real panel. Here each rule is checked on its own, on a real slicer-core scene where nodes
are involved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from VirtualContrastLib import panel, sampledata
from VirtualContrastLib.training import LossChart
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.config.presets import PRESETS


# ---------------------------------------------------------------- button states

def test_nothing_is_possible_on_an_empty_panel_and_each_button_says_why():
    states = panel.buttonStates(panel.PanelState())
    assert not any(enabled for enabled, _ in states.values())
    assert "LE volume and a model" in states["synthesizeButton"][1]
    assert "output folder" in states["trainButton"][1]
    assert "manifest" in states["evaluateButton"][1]
    assert "tissue regions" in states["computeCnrButton"][1]


def test_each_action_needs_its_own_inputs():
    ready = panel.PanelState(le=True, realDes=True, synthetic=True, heatmap=True, modelPath=Path("run"),
                             tissueRegions=True, cnrTable=True, outputFolder=Path("out"),
                             evaluationManifest=Path("m.csv"), evaluationFolder=Path("ev"), sceneCases=1)
    states = panel.buttonStates(ready)
    for name in ("synthesizeButton", "showComparisonButton", "computeCnrButton", "saveCnrCsvButton", "trainButton",
                 "resumeTrainingButton", "removeSceneCaseButton", "evaluateButton"):
        assert states[name][0], name
    for name in ("cancelSynthesisButton", "cancelTrainingButton", "cancelEvaluationButton", "openReportButton"):
        assert not states[name][0], name
    # Taking one input away disables exactly the actions that need it.
    withoutModel = panel.buttonStates(panel.PanelState(**{**ready.__dict__, "modelPath": None}))
    assert not withoutModel["synthesizeButton"][0] and not withoutModel["evaluateButton"][0]
    assert withoutModel["trainButton"][0] and withoutModel["computeCnrButton"][0]


def test_a_running_job_blocks_a_second_of_its_kind_and_can_be_cancelled():
    ready = panel.PanelState(le=True, modelPath=Path("run"), outputFolder=Path("out"),
                             evaluationManifest=Path("m.csv"), evaluationFolder=Path("ev"))
    for kind, start, cancel in (("synthesis", "synthesizeButton", "cancelSynthesisButton"),
                                ("training", "trainButton", "cancelTrainingButton"),
                                ("evaluation", "evaluateButton", "cancelEvaluationButton")):
        states = panel.buttonStates(panel.PanelState(**{**ready.__dict__, "running": {kind}}))
        article = "An" if kind == "evaluation" else "A"
        assert states[start] == (False, f"{article} {kind} is running.") and states[cancel][0]
        others = [name for name in ("synthesizeButton", "trainButton", "evaluateButton") if name != start]
        assert all(states[name][0] for name in others), f"{kind} must not block the other jobs"


# ---------------------------------------------------------------- datasets

def test_dataset_choice_names_what_is_missing(tmp_path):
    with pytest.raises(InputError, match="output folder"):
        panel.datasetManifest("Manifest", None, False, manifestPath=tmp_path / "m.csv")
    with pytest.raises(InputError, match="manifest file"):
        panel.datasetManifest("Manifest", tmp_path / "run", False)
    with pytest.raises(InputError, match="DICOM folder"):
        panel.datasetManifest("DICOM folder", tmp_path / "run", False)
    with pytest.raises(InputError, match="at least one case"):
        panel.datasetManifest("Cases from this scene", tmp_path / "run", False)
    assert panel.datasetManifest("Manifest", tmp_path / "run", False, manifestPath=tmp_path / "m.csv") == \
        tmp_path / "m.csv"


def test_scene_cases_export_beside_the_run_and_resume_reuses_them(vc_logic, phantom_1mm, tmp_path):
    case = read_manifest(phantom_1mm)[0]
    loaded = vc_logic.loadManifestCase(phantom_1mm, case.case_id)
    cases = panel.SceneCases()
    label = cases.add(loaded.le, loaded.des, loaded.segmentation)
    assert label == f"{loaded.le.GetName()} + {loaded.des.GetName()} + {loaded.segmentation.GetName()}"
    run = tmp_path / "run"
    manifest = panel.datasetManifest("Cases from this scene", run, False, sceneCases=cases.cases, logic=vc_logic)
    assert manifest == tmp_path / "run-dataset" / "manifest.csv" and manifest.is_file()
    assert len(read_manifest(manifest)) == 1
    # Resume: the same dataset, not a second export (which would refuse the non-empty folder).
    assert panel.datasetManifest("Cases from this scene", run, True, sceneCases=cases.cases, logic=vc_logic) == manifest


def test_scene_cases_refuse_incomplete_or_repeated_cases_and_follow_node_removal(vc_logic, phantom_1mm):
    case = read_manifest(phantom_1mm)[0]
    loaded = vc_logic.loadManifestCase(phantom_1mm, case.case_id)
    cases = panel.SceneCases()
    with pytest.raises(InputError, match="real DES"):
        cases.add(loaded.le, None)
    cases.add(loaded.le, loaded.des)
    with pytest.raises(InputError, match="already in the list"):
        cases.add(loaded.le, loaded.des)
    assert not cases.prune(vc_logic.scene)
    vc_logic.scene.RemoveNode(loaded.des)
    assert cases.prune(vc_logic.scene) and cases.cases == []


# ---------------------------------------------------------------- presets and estimate

def test_preset_fields_reach_the_panel_typed():
    fields = {"epochs": 35.0, "batch_size": "4", "lr": 2e-4, "gamma_lesion": 35, "image_size": 128}
    assert panel.presetParameters(fields) == {"epochs": 35, "batchSize": 4, "learningRate": 2e-4, "gamma": 35.0,
                                              "imageSize": 128}


def test_gamma_is_offered_only_where_it_acts(vc_logic):
    recipes = {name: config.recipe for name, config in PRESETS.items()}
    for name, recipe in recipes.items():
        assert panel.usesGamma(vc_logic.presetFields(name)) == (recipe == "cyclegan"), name
    assert {True, False} == {panel.usesGamma(vc_logic.presetFields(name)) for name in PRESETS}


def test_default_preset_is_the_cpu_friendly_demo():
    assert panel.DEFAULT_PRESET in PRESETS
    assert PRESETS[panel.DEFAULT_PRESET].image_size <= 128


def test_training_estimate_uses_measured_throughput_only():
    demo = panel.trainingEstimate("demo", 35, 36, "cpu")
    # 35 epochs x 36 images / 4.98 images/s = 253 s
    assert "about 4 min 13 s" in demo and "36 training images" in demo
    assert "per 100 training images" in panel.trainingEstimate("demo", 10, None, "cpu")
    assert "depends on the GPU" in panel.trainingEstimate("demo", 10, 36, "cuda:0")
    assert "not measured" in panel.trainingEstimate("hosseinipour2024-pix2pix-unet512", 10, 36, "cpu")
    paper = panel.trainingEstimate("rofena2025-segcyclegan-g35", 200, 1000, "auto")
    assert "days" in paper and "GPU" in paper
    assert set(panel.CPU_IMAGES_PER_S) <= set(PRESETS)


def test_logic_estimate_counts_the_training_split(vc_logic, small_phantom):
    text = vc_logic.trainingEstimate("demo", 10, small_phantom, "cpu")
    count = sum(1 for c in read_manifest(small_phantom) if c.split in ("train", ""))
    assert f"{count} training images" in text


# ---------------------------------------------------------------- CNR volumes and job texts

def test_cnr_volumes_name_what_is_there():
    assert list(panel.cnrVolumes("le")) == ["LE"]
    assert list(panel.cnrVolumes("le", "des", "syn")) == ["LE", "real DES", "synthetic DES"]
    assert list(panel.cnrVolumes("le", None, "syn")) == ["LE", "synthetic DES"]


class _Ended:
    """An ended job as jobEndText reads it (state, result, error)."""

    def __init__(self, state, result=None, error=""):
        self.state, self.result, self.error = state, result, error


def test_job_end_texts():
    assert panel.jobEndText("training", _Ended("cancelled")) == (
        "Cancelled: the checkpoint is kept; press Resume to continue.", None)
    text, error = panel.jobEndText("evaluation", _Ended("failed", error="no test split"))
    assert text == "Failed." and error == "Evaluation failed: no test split"
    assert panel.jobEndText("evaluation", _Ended("finished", Path("ev/report.html")))[0] == "Done: ev/report.html"


# ---------------------------------------------------------------- loss chart across a scene close

def test_loss_chart_moves_to_the_next_scene_with_its_rows(mrml_scene):
    from VirtualContrastLib.headless import newScene

    chart = LossChart("run", mrml_scene)
    chart.add(1, {"G": 1.0, "D": 0.5})
    chart.add(2, {"G": 0.8, "D": 0.4})
    nextScene = newScene()
    chart.moveTo(nextScene)
    assert nextScene.IsNodePresent(chart.table) and nextScene.IsNodePresent(chart.chart)
    assert chart.chart.GetNumberOfPlotSeriesNodes() == 2
    chart.add(3, {"G": 0.7, "D": 0.3})
    table = chart.table.GetTable()
    assert table.GetNumberOfRows() == 3
    assert [table.GetValueByName(row, "G").ToDouble() for row in range(3)] == [1.0, 0.8, 0.7]


# ---------------------------------------------------------------- bundled samples

def test_sample_case_loads_ready_for_cnr(vc_logic):
    case = vc_logic.loadSampleCase()
    assert case.le.GetName() == "CESM phantom LE" and case.des.GetName() == "CESM phantom DES"
    segments = case.tissue.GetSegmentation()
    names = {segments.GetSegment(segments.GetNthSegmentID(i)).GetName() for i in range(segments.GetNumberOfSegments())}
    assert names == {"fibroglandular", "adipose"}
    ids = {segments.GetSegment(segments.GetNthSegmentID(i)).GetName(): segments.GetNthSegmentID(i)
           for i in range(segments.GetNumberOfSegments())}
    result = vc_logic.computeCNR((case.tissue, ids["fibroglandular"]), (case.tissue, ids["adipose"]),
                                 panel.cnrVolumes(case.le, case.des))
    assert all(np.isfinite(v) for row in result.values.values() for v in row.values())


def test_starter_model_is_bundled_and_labelled(vc_logic):
    path = vc_logic.starterModelPath()
    assert path is not None and vc_logic.isRunFolder(path) and sampledata.isStarterModel(path)
    assert "phantom" in sampledata.STARTER_MODEL_LABEL and "not for real" in sampledata.STARTER_MODEL_LABEL


def test_starter_model_enhances_the_sample_case(vc_logic):
    """First use: the bundled model on the bundled case, in a real child process. Its output is named as
    the phantom model's, and it is closer to the real DES than the LE is (correlation inside the breast)."""
    from VirtualContrastTraining.data.preprocessing import breast_mask
    import slicer

    case = vc_logic.loadSampleCase()
    synthetic = vc_logic.synthesize(case.le, vc_logic.starterModelPath(), device="cpu", timeout=300)
    assert synthetic.GetName().endswith("(phantom-trained demo model)")
    assert synthetic.GetAttribute("VirtualContrast.Model") == sampledata.STARTER_MODEL_LABEL
    le, des, syn = (slicer.util.arrayFromVolume(n)[0].astype(float) for n in (case.le, case.des, synthetic))
    inside = breast_mask(le)
    corr = {name: np.corrcoef(image[inside], des[inside])[0, 1] for name, image in (("LE", le), ("synthetic", syn))}
    assert corr["synthetic"] > corr["LE"] + 0.3, corr  # measured: 0.72 against 0.00


# ---------------------------------------------------------------- regions, settings, status

def test_region_view_follows_the_node_type(mrml_scene):
    roi = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "roi")
    curve = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsClosedCurveNode", "curve")
    segmentation = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    segmentation.GetSegmentation().AddEmptySegment("adipose", "adipose")
    assert panel.regionView(None, "") == panel.RegionView(False, False, False, "")
    assert panel.regionView(roi, "") == panel.RegionView(False, True, False, "")
    assert panel.regionView(curve, "") == panel.RegionView(False, True, True, "")
    assert panel.regionView(segmentation, "adipose") == panel.RegionView(True, False, False, "adipose")
    # A segment id recorded for another segmentation is not selected in this one.
    assert panel.regionView(segmentation, "Segment_7").segmentId == ""


def test_remembered_settings_fill_what_is_still_valid():
    settings = {panel.SETTINGS["lastModel"]: "/runs/a", panel.SETTINGS["outputFolder"]: "/runs/next",
                panel.SETTINGS["device"]: "cuda:1"}
    fields = panel.rememberedFields(settings.get, Path("/bundled"), ["auto", "cpu", "cuda:0", "cuda:1"])
    assert fields == {"modelPath": Path("/runs/a"), "outputFolder": Path("/runs/next"), "device": "cuda:1",
                      "trainDevice": "cuda:1"}
    # A fresh machine: the starter model; a GPU that is gone is not chosen.
    assert panel.rememberedFields({panel.SETTINGS["device"]: "cuda:1"}.get, Path("/bundled"), ["auto", "cpu"]) == \
        {"modelPath": Path("/bundled")}


def test_synthesis_status_names_the_heatmap_sign():
    assert panel.synthesisText("LE – synthetic DES", True) == "Done: LE – synthetic DES, with heatmaps (synthetic − real)"
    assert panel.synthesisText("LE – synthetic DES", False) == "Done: LE – synthetic DES"


def test_signed_heatmap_and_delta_cnr_are_synthetic_minus_real(vc_logic):
    """One sign convention: the signed heatmap and ΔCNR are synthetic − real, as in the report."""
    import slicer

    from VirtualContrastLib.nodes import imageFromVolume, volumeFromImage

    case = vc_logic.loadSampleCase()
    des = imageFromVolume(case.des)
    brighter = volumeFromImage(des.with_array(des.array.astype(np.float32) + 10.0), "brighter", vc_logic.scene)
    heatmap = vc_logic.differenceHeatmap(case.des, brighter, case.le)
    signed = slicer.util.arrayFromVolume(heatmap.signed)[0]
    assert signed.max() == pytest.approx(10.0) and signed.min() >= 0.0
    segments = case.tissue.GetSegmentation()
    ids = {segments.GetNthSegment(i).GetName(): segments.GetNthSegmentID(i) for i in range(2)}
    result = vc_logic.computeCNR((case.tissue, ids["fibroglandular"]), (case.tissue, ids["adipose"]),
                                 panel.cnrVolumes(case.le, case.des, case.le))
    for measure, delta in result.delta.items():
        assert delta == pytest.approx(result.values[measure]["synthetic DES"] - result.values[measure]["real DES"])
