"""Regions drawn in Slicer -> pixel masks on a volume's grid.

A region is what a user draws for CNR: a markups ROI box, a markups closed
curve, or a segment of a segmentation (Segment Editor), given as the tuple
(segmentationNode, segmentId). Every mask is computed on the pixel grid of a
reference volume through its IJK-to-RAS matrix, so the same region gives the
same pixels on LE, real DES and synthetic DES (they share the LE's geometry).
A region that selects no pixel is a RegionError naming it, never an empty
array that would turn into NaN later.
"""

from __future__ import annotations

import numpy as np
import slicer
from skimage.draw import polygon2mask

from VirtualContrastLib.nodes import ijkToRasArray


class RegionError(ValueError):
    """A region that cannot be used (empty, outside the image, degenerate), with a message for the user."""


def regionName(region) -> str:
    if isinstance(region, tuple):
        segmentation, segmentId = region
        segment = segmentation.GetSegmentation().GetSegment(segmentId) if segmentation else None
        return f"segment {segment.GetName() if segment else segmentId!r} of {segmentation.GetName() if segmentation else '?'}"
    return f"{region.GetClassName().replace('vtkMRMLMarkups', '').replace('Node', '')} {region.GetName()!r}"


def _pixelCentersRas(reference) -> np.ndarray:
    """RAS positions (4, rows*cols) of the pixel centres of a one-slice volume."""
    rows, cols = slicer.util.arrayFromVolume(reference).shape[1:]
    j, i = np.mgrid[0:rows, 0:cols]
    ijk = np.stack([i.ravel(), j.ravel(), np.zeros(i.size), np.ones(i.size)])
    return ijkToRasArray(reference) @ ijk


def roiMask(roi, reference) -> np.ndarray:
    """Pixels whose centre lies inside a markups ROI box.

    The box's object frame is centred on the box and aligned with its axes, so
    a rotated box needs no special case. A box that does not reach the image
    plane in depth selects nothing (RegionError in regionMask).
    """
    rows, cols = slicer.util.arrayFromVolume(reference).shape[1:]
    objectToWorld = roi.GetObjectToWorldMatrix()
    worldToObject = np.linalg.inv([[objectToWorld.GetElement(r, c) for c in range(4)] for r in range(4)])
    local = (worldToObject @ _pixelCentersRas(reference))[:3]
    half = np.asarray(roi.GetSize(), float)[:, np.newaxis] / 2.0
    return np.all(np.abs(local) <= half, axis=0).reshape(rows, cols)


def curveMask(curve, reference) -> np.ndarray:
    """Pixels whose centre lies inside a closed curve (its interpolated outline, as Slicer draws it),
    projected onto the image plane."""
    rows, cols = slicer.util.arrayFromVolume(reference).shape[1:]
    ras = slicer.util.arrayFromMarkupsCurvePoints(curve, world=True)
    if curve.GetNumberOfControlPoints() < 3 or len(ras) < 3:
        raise RegionError(f"{regionName(curve)} has fewer than 3 points: draw a closed outline")
    ijk = np.linalg.inv(ijkToRasArray(reference)) @ np.c_[ras, np.ones(len(ras))].T
    return polygon2mask((rows, cols), np.stack([ijk[1], ijk[0]], axis=1))


def segmentMask(segmentation, segmentId: str, reference) -> np.ndarray:
    """A segment's binary labelmap resampled onto the reference volume's grid."""
    if segmentation.GetSegmentation().GetSegment(segmentId) is None:
        raise RegionError(f"segmentation {segmentation.GetName()!r} has no segment {segmentId!r}")
    labelmap = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, reference)
    return np.asarray(labelmap)[0] > 0


def regionMask(region, reference) -> np.ndarray:
    """Mask of any supported region on `reference`'s grid; RegionError when it holds no pixel."""
    if region is None:
        raise RegionError("no region selected")
    if isinstance(region, tuple):
        mask = segmentMask(region[0], region[1], reference)
    elif region.IsA("vtkMRMLMarkupsROINode"):
        mask = roiMask(region, reference)
    elif region.IsA("vtkMRMLMarkupsClosedCurveNode"):
        mask = curveMask(region, reference)
    else:
        raise RegionError(f"{region.GetName()!r} is a {region.GetClassName()}: draw an ROI box, a closed curve "
                          "or a segment")
    if not mask.any():
        raise RegionError(f"{regionName(region)} covers no pixel of {reference.GetName()!r} "
                          "(empty, or outside the image)")
    return mask
