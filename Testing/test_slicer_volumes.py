"""VirtualContrastLib nodes and loading against a real MRML scene (slicer-core)."""

from __future__ import annotations

import numpy as np
import pytest
import slicer

from VirtualContrastLib import nodes
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import read_image, write_nrrd
from VirtualContrastTraining.data.manifest import read_manifest
from VirtualContrastTraining.errors import InputError


def _rotated_image() -> Image:
    rng = np.random.default_rng(0)
    return Image(rng.integers(0, 4000, (30, 20)).astype(np.uint16), spacing=(0.5, 0.7), origin=(10.0, -20.0, 3.0),
                 direction=(0, 1, 0, -1, 0, 0, 0, 0, 1), meta={"window_center": 2000, "window_width": 1000,
                                                               "laterality": "L", "patient_id": "P7", "view": "CC"})


def test_volume_from_image_round_trips_pixels_geometry_and_attributes(mrml_scene):
    image = _rotated_image()
    node = nodes.volumeFromImage(image, "le", mrml_scene)
    back = nodes.imageFromVolume(node)
    assert np.array_equal(back.array, image.array) and back.array.dtype == image.array.dtype
    assert back.same_geometry(image, tol=1e-9)
    assert back.meta == {"laterality": "L", "patient_id": "P7", "view": "CC",
                         "window_center": 2000.0, "window_width": 1000.0}
    # RAS of pixel (column 3, row 5) is the LPS position with x and y negated.
    lps = np.asarray(image.origin) + 3 * 0.5 * np.array([0, -1, 0]) + 5 * 0.7 * np.array([1, 0, 0])
    ras = nodes.ijkToRasArray(node) @ [3, 5, 0, 1]
    np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1])
    display = node.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (1000.0, 2000.0)


def test_dicom_geometry_matches_slicer_own_reader(mrml_scene, vc_logic, phantom_1mm):
    """Our MG reader and Slicer's volumes logic put the phantom DICOM on the same RAS grid."""
    case = read_manifest(phantom_1mm)[0]
    ours = vc_logic.loadVolume(case.le_path)
    theirs = slicer.vtkSlicerVolumesLogic()
    theirs.SetMRMLScene(mrml_scene)
    reference = theirs.AddArchetypeScalarVolume(str(case.le_path), "slicer-reader", 0, None)
    assert np.array_equal(slicer.util.arrayFromVolume(ours), slicer.util.arrayFromVolume(reference))
    np.testing.assert_allclose(nodes.ijkToRasArray(ours), nodes.ijkToRasArray(reference), atol=1e-6)
    assert ours.GetName() == case.case_id + "_LE"
    assert ours.GetAttribute(nodes.ATTR_WINDOW) == f"{float(case.le_window_center):g},{float(case.le_window_width):g}"
    assert ours.GetAttribute(nodes.ATTR_LATERALITY) == case.laterality


def test_nrrd_loads_through_volumes_logic_with_storage_and_synthetic_marks(vc_logic, tmp_path):
    image = _rotated_image()
    image.meta.update({"Synthetic": "true", "VirtualContrast.Model": "demo run"})
    path = write_nrrd(image, tmp_path / "x_SYNTHETIC-DES.nrrd", {"Synthetic": "true",
                                                                "VirtualContrast.Model": "demo run",
                                                                "VirtualContrast.WindowCenter": "2000",
                                                                "VirtualContrast.WindowWidth": "1000"})
    node = vc_logic.loadVolume(path)
    assert node.GetStorageNode() is not None and node.GetStorageNode().GetFileName() == str(path)
    assert nodes.isSynthetic(node) and node.GetAttribute("VirtualContrast.Model") == "demo run"
    assert nodes.imageFromVolume(node).same_geometry(image, tol=1e-6)
    assert node.GetDisplayNode().GetWindow() == 1000.0


def test_bitmap_loads_like_cdd_cesm_jpeg(vc_logic, tmp_path):
    import SimpleITK as sitk

    pixels = (np.arange(40 * 30) % 251).astype(np.uint8).reshape(40, 30)
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(tmp_path / "P1_L_DM_CC.png"))
    node = vc_logic.loadVolume(tmp_path / "P1_L_DM_CC.png")
    assert np.array_equal(slicer.util.arrayFromVolume(node)[0], pixels)


def test_real_cdd_cesm_jpeg_pair(vc_logic, cdd_sample):
    le_path = next(p for p in sorted(cdd_sample.rglob("*.jpg")) if "_DM_" in p.name)
    node = vc_logic.loadVolume(le_path)
    assert slicer.util.arrayFromVolume(node).shape == (1, *read_image(le_path).shape)


def test_case_with_segmentation(vc_logic, phantom_1mm):
    case = next(c for c in read_manifest(phantom_1mm) if c.lesion_path)
    loaded = vc_logic.loadCase(case.le_path, case.des_path, case.lesion_path)
    assert loaded.segmentation.GetSegmentation().GetNumberOfSegments() >= 1
    segment_id = loaded.segmentation.GetSegmentation().GetNthSegmentID(0)
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(loaded.segmentation, segment_id, loaded.le)
    assert mask.shape == slicer.util.arrayFromVolume(loaded.le).shape and mask.any()


def test_bad_files_name_the_file(vc_logic, tmp_path):
    bad = tmp_path / "broken.nrrd"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="broken.nrrd"):
        vc_logic.loadVolume(bad)
    with pytest.raises(InputError, match="missing.dcm.*no such file"):
        vc_logic.loadVolume(tmp_path / "missing.dcm")
    with pytest.raises(InputError, match="broken.nrrd"):
        vc_logic.loadSegmentation(bad)
    assert vc_logic.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


def test_one_pixel_geometry_for_both_halves(mrml_scene):
    """Image.ijk_to_lps is the one IJK -> LPS helper: a volume node gets exactly its matrix (as RAS), and
    from_ijk_to_lps reads any such matrix back, an oblique, flipped grid included."""
    import slicer

    from VirtualContrastLib.nodes import LPS_TO_RAS, ijkToRasArray, imageFromVolume, volumeFromImage
    from VirtualContrastTraining.data.image import Image

    c, s = np.cos(0.3), np.sin(0.3)
    image = Image(np.arange(12, dtype=np.float32).reshape(3, 4), spacing=(0.07, 0.1), origin=(5.0, -2.0, 1.5),
                  direction=(c, -s, 0.0, -s, -c, 0.0, 0.0, 0.0, -1.0))
    again = Image.from_ijk_to_lps(image.array, image.ijk_to_lps())
    assert again.same_geometry(image, tol=1e-9) and np.allclose(again.direction, image.direction)
    node = volumeFromImage(image, "oblique", mrml_scene)
    assert np.allclose(ijkToRasArray(node), LPS_TO_RAS @ image.ijk_to_lps())
    back = imageFromVolume(node)
    assert back.same_geometry(image, tol=1e-6) and np.array_equal(back.array, image.array)
    assert slicer.util.arrayFromVolume(node).shape == (1, 3, 4)
