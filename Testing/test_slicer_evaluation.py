"""The papers' evaluation from the Slicer Logic on a real slicer-core scene: measureImages against the
engine's evaluate_images on the same files, the evaluate command as a real background job, the HTML
report and the reader study into table nodes."""

from __future__ import annotations

import csv
import html
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import slicer
from scipy import ndimage

from conftest import make_tiny_model
from VirtualContrastLib import nodes
from VirtualContrastLib.jobs import FAILED, FINISHED, JobError
from VirtualContrastLib.regions import regionMask
from VirtualContrastTraining.data.imageio import read_image
from VirtualContrastTraining.data.manifest import read_manifest, write_manifest
from VirtualContrastTraining.data.segmentation import read_lesion_mask
from VirtualContrastTraining.errors import InputError
from VirtualContrastTraining.evaluation import columns
from VirtualContrastTraining.evaluation.evaluate import IDENTITY_NAME, evaluate_images
from VirtualContrastTraining.synthetic_wording import NOT_FOR_DIAGNOSIS

TIMEOUT = 300


def _column(table_node, name: str) -> list:
    table = table_node.GetTable()
    column = table.GetColumnByName(name)
    assert column is not None, name
    return [column.GetValue(r) for r in range(table.GetNumberOfRows())]


def _same(a, b) -> bool:
    """Equal values where None, NaN and infinities count as themselves."""
    if a is None or b is None:
        return a is None and b is None
    return a == pytest.approx(b, rel=1e-9, abs=1e-12) or (math.isinf(a) and a == b)


def _truth(case, name: str) -> np.ndarray:
    """A phantom ground-truth tissue mask (the manifest's fibroglandular/adipose files)."""
    return read_image(getattr(case, f"{name}_path")).array > 0


def _segment(scene, reference, name: str, mask: np.ndarray):
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} drawn")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    segmentation.GetSegmentation().AddEmptySegment(name, name, [0, 1, 0])
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask[np.newaxis].astype(np.uint8), segmentation, name, reference)
    return segmentation


def _roi(scene, volume, name, col0, col1, row0, row1):
    """An ROI box covering pixel centres col0..col1, row0..row1 (inclusive), 4 mm deep."""
    ijk_to_ras = nodes.ijkToRasArray(volume)
    a = (ijk_to_ras @ [col0 - 0.4, row0 - 0.4, 0, 1])[:3]
    b = (ijk_to_ras @ [col1 + 0.4, row1 + 0.4, 0, 1])[:3]
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    roi.SetCenter(*((a + b) / 2))
    roi.SetSize(*np.abs(b - a)[:2], 4.0)
    return roi


def test_real_des_as_synthetic_measures_a_perfect_copy(mrml_scene, vc_logic, phantom_1mm):
    """Hand-known answers: a synthetic DES equal to the real one has MSE 0, infinite PSNR, SSIM 1, ΔCNR 0,
    and changes from the LE exactly as the real DES does."""
    case = read_manifest(phantom_1mm)[1]   # the MLO view
    loaded = vc_logic.loadCase(case.le_path, case.des_path, case.lesion_path)
    copy = nodes.volumeFromImage(nodes.imageFromVolume(loaded.des), "DES copy", mrml_scene)
    result = vc_logic.measureImages(loaded.le, loaded.des, copy, lesion=loaded.segmentation)
    v = result.values
    assert v["MSE"] == 0 and v["MAE"] == 0 and v["L1"] == 0 and v["lesion_MAE"] == 0 and v["bright_MAE"] == 0
    assert v["PSNR"] == math.inf and v["SSIM"] == pytest.approx(1.0) and v["VIF"] == pytest.approx(1.0)
    assert v["breast_dCNR"] == 0 and v["mass_dCNR"] == 0 and v["mass_L1"] == 0
    assert v["LE_synthetic_MAE"] == v["LE_DES_MAE"] > 0 and v["tissue_CNR_synthetic"] == v["tissue_CNR_DES"]
    assert v["has_lesion_mask"] and v["tissue_rois"] == "automatic" and v["model"] == "DES copy"

    # The table: one row per value, in the order of the column registry, with its paper and a note where needed.
    table = result.table
    assert table.IsA("vtkMRMLTableNode") and NOT_FOR_DIAGNOSIS in table.GetDescription()
    measures, values = _column(table, "measure"), _column(table, "value")
    papers, notes = _column(table, "paper"), _column(table, "note")
    assert measures == [c.label for c in columns.COLUMNS] and len(measures) == len(columns.keys())
    assert all(_same(value, v[c.key]) for value, c in zip(values, columns.COLUMNS))
    psnr = measures.index(columns.column("PSNR").label)
    assert values[psnr] == math.inf and notes[psnr].startswith("infinite") and papers[psnr] == "001 Rofena 2024, eq. 10"
    assert "automatic regions" in notes[measures.index(columns.column("tissue_CNR_LE").label)]
    assert measures.index(columns.column("breast_PSNR").label) < psnr       # the breast region first
    assert all(paper for paper in papers)


def test_module_values_equal_the_engine_on_the_same_files(mrml_scene, vc_logic, phantom_1mm):
    """LE standing in for the synthetic DES; the fibroglandular region painted as a segment, the adipose
    one drawn as an ROI box, the lesion the case's segmentation: every value equals evaluate_images on
    the files read by the engine, with masks built independently of the module."""
    case = read_manifest(phantom_1mm)[1]
    loaded = vc_logic.loadCase(case.le_path, case.des_path, case.lesion_path)
    le_as_synthetic = nodes.volumeFromImage(nodes.imageFromVolume(loaded.le), "LE as synthetic", mrml_scene)
    fibro = _truth(case, "fibroglandular")
    # The first 9x9 box wholly inside the true adipose tissue, drawn as an ROI.
    row, col = np.argwhere(ndimage.binary_erosion(_truth(case, "adipose"), np.ones((9, 9), bool)))[0]
    box = np.zeros_like(fibro)
    box[row - 4:row + 5, col - 4:col + 5] = True
    adipose_roi = _roi(mrml_scene, loaded.le, "adipose", col - 4, col + 4, row - 4, row + 4)
    assert np.array_equal(regionMask(adipose_roi, loaded.le), box)

    result = vc_logic.measureImages(loaded.le, loaded.des, le_as_synthetic, lesion=loaded.segmentation,
                                    fibroglandular=(_segment(mrml_scene, loaded.le, "fibroglandular", fibro),
                                                    "fibroglandular"),
                                    adipose=adipose_roi)
    le = read_image(case.le_path)
    expected = evaluate_images(le, read_image(case.des_path), le, fibroglandular=fibro, adipose=box,
                               lesion=read_lesion_mask(case.lesion_path, reference=le))
    assert result.values["tissue_rois"] == expected["tissue_rois"] == "manifest"
    different = [k for k in columns.keys() if not _same(result.values[k], expected[k])]
    assert not different, [(k, result.values[k], expected[k]) for k in different]
    assert all(math.isfinite(result.values[k]) for k in columns.keys())  # the phantom case defines every value
    # 000 Table 2: the recombination cancels the tissue contrast that the LE shows.
    assert result.values["tissue_CNR_LE"] > 3 * abs(result.values["tissue_CNR_DES"])
    notes = dict(zip(_column(result.table, "measure"), _column(result.table, "note")))
    assert notes[columns.column("adipose_mean_LE").label] == "the regions given"
    assert notes[columns.column("MSE").label] == ""


def test_undefined_values_are_nan_with_a_note_and_bad_regions_name_themselves(mrml_scene, vc_logic, phantom_1mm):
    case = read_manifest(phantom_1mm)[0]
    loaded = vc_logic.loadCase(case.le_path, case.des_path, case.lesion_path)
    result = vc_logic.measureImages(loaded.le, loaded.des, loaded.le, size=64)   # no lesion region given
    assert result.values["lesion_MAE"] is None and result.values["mass_L1"] is None
    rows = dict(zip(_column(result.table, "measure"), zip(_column(result.table, "value"),
                                                         _column(result.table, "note"))))
    assert math.isnan(rows["lesion MAE"][0]) and rows["lesion MAE"][1] == "no lesion region given"
    assert math.isnan(rows["mass CNR, real DES"][0]) and rows["mass CNR, real DES"][1] == "no lesion region given"
    # 003's 64-pixel patch at 512 is 8 pixels at 64x64: the breast CNR stays defined.
    assert math.isfinite(rows["breast CNR, real DES"][0]) and rows["breast CNR, real DES"][1] == ""
    # One segment of a segmentation names the lesion as well as the whole node.
    segment_id = loaded.segmentation.GetSegmentation().GetNthSegmentID(0)
    one = vc_logic.measureImages(loaded.le, loaded.des, loaded.le, lesion=(loaded.segmentation, segment_id), size=64)
    assert one.values["has_lesion_mask"] and one.values["lesion_MAE"] > 0

    far = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "far away")
    far.SetCenter(5000, 5000, 0)
    far.SetSize(5, 5, 5)
    with pytest.raises(InputError, match="adipose region: .*'far away' covers no pixel"):
        vc_logic.measureImages(loaded.le, loaded.des, loaded.le, adipose=far,
                               fibroglandular=_roi(mrml_scene, loaded.le, "fibroglandular", 10, 20, 10, 20))
    with pytest.raises(InputError, match="fibroglandular region: choose one segment"):
        vc_logic.measureImages(loaded.le, loaded.des, loaded.le, fibroglandular=loaded.segmentation, adipose=far)
    with pytest.raises(InputError, match="no synthetic DES volume selected"):
        vc_logic.measureImages(loaded.le, loaded.des, None)
    nodes.markSynthetic(loaded.des)
    with pytest.raises(InputError, match="is marked synthetic: the real DES must be a real image"):
        vc_logic.measureImages(loaded.le, loaded.des, loaded.le)


RATINGS = """case_id,reader,endpoint,image,rating,truth
c1,A,lesion,clinical,yes,yes
c2,A,lesion,clinical,yes,yes
c3,A,lesion,clinical,no,no
c4,A,lesion,clinical,no,no
c1,A,lesion,synthetic,yes,yes
c2,A,lesion,synthetic,no,yes
c3,A,lesion,synthetic,no,no
c4,A,lesion,synthetic,yes,no
c1,B,lesion,clinical,yes,yes
c2,B,lesion,clinical,yes,yes
c3,B,lesion,clinical,yes,no
c4,B,lesion,clinical,no,no
c1,B,lesion,synthetic,yes,yes
c2,B,lesion,synthetic,yes,yes
c3,B,lesion,synthetic,no,no
c4,B,lesion,synthetic,no,no
"""


@pytest.fixture(scope="module")
def evaluated(small_phantom, tmp_path_factory):
    """`virtual-contrast evaluate` of a tiny 64-pixel model on the 6-image phantom, split by patient (each
    patient's images in one split), run through the Logic as a real background child process."""
    from VirtualContrastLib.headless import newScene
    from VirtualContrastLib.logic import VirtualContrastLogicBase

    folder = tmp_path_factory.mktemp("slicer-evaluate")
    cases = read_manifest(small_phantom)
    patients = list(dict.fromkeys(c.patient_id for c in cases))   # 4: two with two views, two with one
    splits = {patient: ("train", "val")[i] if i < 2 else "test" for i, patient in enumerate(patients)}
    manifest = write_manifest(folder / "manifest.csv", [replace(c, split=splits[c.patient_id]) for c in cases])
    assert [c.split for c in read_manifest(manifest)].count("test") == 2
    run = make_tiny_model(folder / "run", image_size=64)
    ratings = folder / "ratings.csv"
    ratings.write_text(RATINGS, encoding="utf-8")
    logic = VirtualContrastLogicBase(newScene())
    job = logic.startEvaluation(manifest, folder / "evaluation", modelPath=run, device="cpu", readerStudy=ratings)
    job.wait(TIMEOUT)
    return job, folder, manifest, run


def _reader_section(page: str) -> str:
    return page.split('id="reader"')[1]


def _model_name(run: Path) -> str:
    """The name evaluate gives the model: its family, preset and changes, from the sidecar the checkpoint code wrote."""
    from VirtualContrastTraining.config.registries import model_name
    from VirtualContrastTraining.synthesis import sidecar_preset_changes

    sidecar = json.loads((run / "model.json").read_text())
    return model_name(sidecar["config"], sidecar_preset_changes(sidecar))


def test_evaluation_job_writes_the_report(evaluated):
    job, folder, _, run = evaluated
    job.check()
    assert job.state == FINISHED and job.returncode == 0
    assert job.result == (folder / "evaluation" / "report.html").resolve() and job.result.is_file()
    page = job.result.read_text(encoding="utf-8")
    assert html.escape(_model_name(run)) in page and "Not for diagnosis" in page
    assert html.escape(str(folder / "ratings.csv")) in _reader_section(page)   # --reader-study reached the child
    with open(folder / "evaluation" / "per_image.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # The two test images for the model and both baselines (a train split exists: the linear one too).
    assert len(rows) == 3 * 2 and {r["split"] for r in rows} == {"test"}
    assert {r["model"] for r in rows} >= {_model_name(run), IDENTITY_NAME}


def test_bad_manifest_fails_the_job_naming_the_file(vc_logic, evaluated, tmp_path):
    _, _, manifest, run = evaluated
    bad = tmp_path / "bad manifest.csv"
    cases = read_manifest(manifest)
    write_manifest(bad, [replace(c, split="validation" if c.split == "val" else c.split) for c in cases])
    job = vc_logic.startEvaluation(bad, tmp_path / "evaluation", modelPath=run, device="cpu").wait(TIMEOUT)
    assert job.state == FAILED and job.result is None
    assert str(bad) in job.error and "validation" in job.error and "Traceback" not in job.error
    with pytest.raises(JobError, match="bad manifest.csv"):
        job.check()
    # Caught before any process starts: a missing manifest, a model and a list at once, a folder without model.
    with pytest.raises(InputError, match="no such manifest"):
        vc_logic.startEvaluation(tmp_path / "absent.csv", tmp_path / "e", modelPath=run)
    with pytest.raises(InputError, match="not both"):
        vc_logic.startEvaluation(manifest, tmp_path / "e", modelPath=run, synthetic=manifest)
    with pytest.raises(InputError, match="not a trained model"):
        vc_logic.startEvaluation(manifest, tmp_path / "e", modelPath=tmp_path)




def test_reader_study_fills_tables_with_the_hand_counted_measures(vc_logic, tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(RATINGS, encoding="utf-8")
    study = vc_logic.readerStudy(path, nResamples=200)
    assert study.result.n_resamples == 200 and study.table.IsA("vtkMRMLTableNode")
    rows = list(zip(_column(study.table, "reader"), _column(study.table, "image"), _column(study.table, "accuracy"),
                    _column(study.table, "sensitivity"), _column(study.table, "specificity"),
                    _column(study.table, "kappa")))
    # Counted by hand from RATINGS: (reader, image) -> (accuracy, sensitivity, specificity).
    expected = {("A", "clinical"): (1.0, 1.0, 1.0), ("A", "synthetic"): (0.5, 0.5, 0.5),
                ("B", "clinical"): (0.75, 1.0, 0.5), ("B", "synthetic"): (1.0, 1.0, 1.0),
                ("all readers", "clinical"): (7 / 8, 1.0, 0.75), ("all readers", "synthetic"): (6 / 8, 0.75, 0.75)}
    assert {(r, i): (a, se, sp) for r, i, a, se, sp, _ in rows} == expected   # exact binary fractions
    assert all(math.isnan(kappa) for *_, kappa in rows)     # a binary endpoint has no kappa
    assert _column(study.table, "n") == [4.0] * 4 + [8.0] * 2   # pooled rows: both readers' ratings
    assert len(rows) == len(study.result.rows)
    tests = study.testsTable.GetTable()
    assert tests.GetNumberOfRows() == 3 and _column(study.testsTable, "reader") == ["A", "B", "all readers"]
    path.write_text("case_id,reader,rating\nc1,A,yes\n", encoding="utf-8")
    with pytest.raises(InputError, match="ratings.csv.*missing column"):
        vc_logic.readerStudy(path)


def test_build_report_in_process(vc_logic, evaluated, tmp_path):
    _, folder, _, run = evaluated
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(RATINGS, encoding="utf-8")
    out = vc_logic.buildReport([folder / "evaluation"], tmp_path / "again.html", readerStudy=ratings)
    assert out == tmp_path / "again.html"
    page = out.read_text(encoding="utf-8")
    assert html.escape(_model_name(run)) in page and "Not for diagnosis" in page
    assert html.escape(str(ratings)) in _reader_section(page)
    single = vc_logic.buildReport(folder / "evaluation", tmp_path / "single.html")   # one folder, not a list
    assert "No reader study was given" in _reader_section(single.read_text(encoding="utf-8"))
    with pytest.raises(InputError):
        vc_logic.buildReport([tmp_path / "no evaluation here"], tmp_path / "x.html")
