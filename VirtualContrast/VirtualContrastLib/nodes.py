"""Volume nodes <-> the engine's `Image`, with geometry carried exactly.

The engine works in LPS (as DICOM, NRRD and SimpleITK do); Slicer's nodes in
RAS. The only conversion between them lives here: IJK-to-RAS is
diag(-1, -1, 1) times IJK-to-LPS. A 2-D mammogram is a volume of one slice, so
`arrayFromVolume` gives (1, rows, cols).

Node attributes record what Slicer's volume node has no field for: the
intensity window of the source file (for contrast stretching in predict), the
breast side, and whether the pixels are synthetic.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import slicer
import vtk

from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.imageio import SITK_SUFFIXES, is_dicom_file, read_image
from VirtualContrastTraining.errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Node attributes (strings) written by this module.
ATTR_SYNTHETIC = "VirtualContrast.Synthetic"
ATTR_LATERALITY = "VirtualContrast.Laterality"
ATTR_WINDOW = "VirtualContrast.SourceWindow"  # "center,width" of the file the pixels came from
# Image meta -> node attribute, kept so that "cases from this scene" export with patient and view.
# sop_uid: a DICOM SEG is checked against the very image it segments.
META_ATTRIBUTES = {"laterality": ATTR_LATERALITY, "patient_id": "VirtualContrast.PatientID",
                   "view": "VirtualContrast.View", "sop_uid": "VirtualContrast.SOPInstanceUID"}
ATTR_PROVENANCE_PREFIX = "VirtualContrast."
ATTR_SOURCE_FILE = "VirtualContrast.SourceFile"  # the DICOM file a volume came from (a DICOM SEG is read against it)


def _vtkMatrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijkToRasArray(volumeNode) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def volumeFromImage(image: Image, name: str, scene=None, node=None):
    """A scalar volume node (new, or `node` updated) holding `image` in its own geometry."""
    scene = scene or slicer.mrmlScene
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetIJKToRASMatrix(_vtkMatrix(LPS_TO_RAS @ image.ijk_to_lps()))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(image.array)[np.newaxis])
    for key, attribute in META_ATTRIBUTES.items():
        if image.meta.get(key):
            node.SetAttribute(attribute, str(image.meta[key]))
    center, width = image.meta.get("window_center"), image.meta.get("window_width")
    if center is not None and width is not None:
        node.SetAttribute(ATTR_WINDOW, f"{float(center):g},{float(width):g}")
    if str(image.meta.get("Synthetic", "")).lower() == "true" or image.meta.get("role") == "SYNTHETIC":
        markSynthetic(node, {k: str(v) for k, v in image.meta.items() if k.startswith(ATTR_PROVENANCE_PREFIX)})
    ensureDisplay(node)
    return node


def imageFromVolume(volumeNode) -> Image:
    """The node's pixels and geometry as an engine Image (one-slice volumes only)."""
    if volumeNode is None or volumeNode.GetImageData() is None:
        raise InputError(None, f"volume {_nodeName(volumeNode)!r} holds no image")
    array = slicer.util.arrayFromVolume(volumeNode)
    if array.ndim != 3 or array.shape[0] != 1:
        raise InputError(None, f"volume {_nodeName(volumeNode)!r} has {array.shape[0]} slices; "
                               "a mammogram is one 2-D image")
    meta = {key: volumeNode.GetAttribute(attr) for key, attr in META_ATTRIBUTES.items() if volumeNode.GetAttribute(attr)}
    window = sourceWindow(volumeNode)
    if window:
        meta["window_center"], meta["window_width"] = window
    return Image.from_ijk_to_lps(array[0].copy(), LPS_TO_RAS @ ijkToRasArray(volumeNode), meta)


def sourceWindow(volumeNode) -> tuple[float, float] | None:
    """(center, width) of the source file's window, else of the node's display, else None."""
    text = volumeNode.GetAttribute(ATTR_WINDOW)
    if text:
        center, width = (float(v) for v in text.split(","))
        return center, width
    display = volumeNode.GetDisplayNode()
    if display is not None and not display.GetAutoWindowLevel() and display.GetWindow() > 0:
        return display.GetLevel(), display.GetWindow()
    return None


def ensureDisplay(volumeNode) -> None:
    """Create the display node with the source window (else automatic window/level) and a grey map."""
    if volumeNode.GetDisplayNode() is None:
        volumeNode.CreateDefaultDisplayNodes()
    display = volumeNode.GetDisplayNode()
    window = None
    text = volumeNode.GetAttribute(ATTR_WINDOW)
    if text:
        window = tuple(float(v) for v in text.split(","))
    if window and window[1] > 0:
        display.AutoWindowLevelOff()
        display.SetWindowLevel(window[1], window[0])
    else:
        display.AutoWindowLevelOn()


def markSynthetic(volumeNode, provenance: dict[str, str] | None = None) -> None:
    """Synthetic pixels say so in node attributes, which Slicer saves with the scene."""
    volumeNode.SetAttribute(ATTR_SYNTHETIC, "true")
    for key, value in (provenance or {}).items():
        volumeNode.SetAttribute(key if key.startswith(ATTR_PROVENANCE_PREFIX) else ATTR_PROVENANCE_PREFIX + key,
                                str(value))


def isSynthetic(volumeNode) -> bool:
    return volumeNode is not None and volumeNode.GetAttribute(ATTR_SYNTHETIC) == "true"


def loadVolume(path: str | os.PathLike, name: str | None = None, scene=None):
    """Load a 2-D image file into a new scalar volume node.

    NRRD, NIfTI and MHA go through Slicer's own volumes logic, so the node
    keeps a storage node and Slicer's Save works as usual. DICOM, JPEG and PNG
    go through the engine's reader, which knows what Slicer's generic reader
    does not: MONOCHROME1 inversion, the MG window, ImagerPixelSpacing and
    the breast side.
    """
    scene = scene or slicer.mrmlScene
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    name = name or path.name.split(".")[0]
    suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix.lower()
    if suffix in SITK_SUFFIXES and not is_dicom_file(path):
        image = read_image(path)  # validates (one slice, greyscale) and reads our NRRD fields
        node = _volumesLogic(scene).AddArchetypeScalarVolume(str(path), name, 0, None)
        if node is None:
            raise InputError(path, "Slicer could not read this volume")
        if image.meta.get("window_center") is not None:
            node.SetAttribute(ATTR_WINDOW, f"{float(image.meta['window_center']):g},{float(image.meta['window_width']):g}")
        if str(image.meta.get("Synthetic", "")).lower() == "true":
            markSynthetic(node, {k: v for k, v in image.meta.items() if k.startswith(ATTR_PROVENANCE_PREFIX)})
        ensureDisplay(node)
        return node
    node = volumeFromImage(read_image(path), name, scene)
    if is_dicom_file(path):
        node.SetAttribute(ATTR_SOURCE_FILE, str(path.resolve()))
    return node


def dicomSourceFile(volumeNode) -> Path | None:
    """The DICOM file a volume was loaded from: ours (loadVolume), or Slicer's DICOM browser's (its instance
    UID in the application's DICOM database). None when the volume came from no DICOM file."""
    source = volumeNode.GetAttribute(ATTR_SOURCE_FILE)
    if source:
        return Path(source)
    uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
    database = getattr(slicer, "dicomDatabase", None)
    if len(uids) == 1 and database is not None:
        found = database.fileForInstance(uids[0])
        return Path(found) if found else None
    return None


def _volumesLogic(scene):
    """Slicer's volumes logic: the application's one inside Slicer, a fresh one on a bare scene."""
    modules = getattr(slicer, "modules", None)
    if modules is not None and hasattr(modules, "volumes"):
        return modules.volumes.logic()
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLScene(scene)
    return logic


def _nodeName(node) -> str:
    return node.GetName() if node is not None else "(none)"
