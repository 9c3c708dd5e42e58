"""Difference heatmaps between a synthetic and a real DES, as volume nodes in the synthetic's geometry.

Two maps, in the DES's own intensity units:
- absolute |synthetic - real|: where the model is wrong, whatever the sign;
- signed synthetic - real: red where the model adds enhancement the real DES
  does not have, blue where it misses some.
Outside the breast (Otsu on the LE, or on the real DES when no LE is given)
both maps are 0: the air around the breast says nothing about the model and
would otherwise dominate the colour scale. When the real DES is on another
grid, it is resampled (linear) onto the synthetic's grid and the node says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import slicer

from VirtualContrastLib.display import showHeatmap
from VirtualContrastLib.nodes import imageFromVolume, volumeFromImage
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.preprocessing import breast_mask
from VirtualContrastTraining.errors import InputError

ATTR_RESAMPLED = "VirtualContrast.ResampledRealDES"


@dataclass
class Heatmap:
    absolute: object
    signed: object
    # 99th percentile of |error| inside the breast: the top of both colour scales.
    scaleMax: float


def _onGrid(real, synthetic):
    """The real DES as an Image on the synthetic's grid (resampled when the grids differ)."""
    real_img, synth_img = imageFromVolume(real), imageFromVolume(synthetic)
    if real_img.same_geometry(synth_img):
        return real_img, False

    resampled = sitk.Resample(real_img.to_sitk(), synth_img.to_sitk(), sitk.Transform(), sitk.sitkLinear, 0.0,
                              sitk.sitkFloat32)
    return synth_img.with_array(sitk.GetArrayFromImage(resampled)[0]), True


def differenceHeatmap(realDesNode, syntheticNode, leNode=None, scene=None) -> Heatmap:
    """Absolute and signed difference volumes "<synthetic name> – |difference|" / "– difference"."""
    scene = scene or slicer.mrmlScene
    for role, node in (("real DES", realDesNode), ("synthetic DES", syntheticNode)):
        if node is None or node.GetImageData() is None:
            raise InputError(None, f"difference heatmap: no {role} volume selected")
    real, resampled = _onGrid(realDesNode, syntheticNode)
    synth = imageFromVolume(syntheticNode)
    breast_source = imageFromVolume(leNode).array if leNode is not None else real.array
    if breast_source.shape != synth.shape:
        breast_source = real.array
    inside = breast_mask(breast_source)
    signed = np.where(inside, synth.array.astype(np.float32) - real.array.astype(np.float32), np.float32(0))
    absolute = np.abs(signed)
    scale = float(np.percentile(absolute[inside], 99)) if inside.any() else float(absolute.max())
    scale = max(scale, 1e-6)
    base = syntheticNode.GetName()
    nodes = {}
    for kind, array, title in (("absolute", absolute, "|difference|"), ("signed", signed, "difference")):
        name = f"{base} \u2013 {title}"
        existing = scene.GetFirstNodeByName(name)
        grid = Image(array, synth.spacing, synth.origin, synth.direction)
        node = volumeFromImage(grid, name, scene, node=existing if existing and existing.IsA(
            "vtkMRMLScalarVolumeNode") else None)
        node.SetAttribute(ATTR_RESAMPLED, "true" if resampled else "false")
        node.SetAttribute("VirtualContrast.HeatmapOf", f"{syntheticNode.GetName()} - {realDesNode.GetName()}")
        showHeatmap(node, signed=kind == "signed", scaleMax=scale, scene=scene)
        nodes[kind] = node
    return Heatmap(nodes["absolute"], nodes["signed"], scale)
