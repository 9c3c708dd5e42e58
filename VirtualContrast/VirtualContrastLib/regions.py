"""Regions drawn in Slicer -> pixel masks on a volume's grid.

A region is what a user draws for CNR: a markups ROI box, a markups closed
curve, or a segment of a segmentation (Segment Editor), given as the tuple
(segmentationNode, segmentId). Every mask is computed on the pixel grid of a
reference volume through its IJK-to-RAS matrix, so the same region gives the
same pixels on LE, real DES and synthetic DES (they share the LE's geometry).
A region that selects no pixel is a RegionError naming it, never an empty
array that would turn into NaN later.

Only numpy and Slicer are used: this module is imported when Slicer loads
the module, before the engine's packages (scikit-image among them) are
installed, so the closed-curve fill is done here by scanlines.
"""

from __future__ import annotations

import numpy as np
import slicer

from VirtualContrastLib.nodes import ijkToRasArray


class RegionError(ValueError):
    """A region that cannot be used (empty, outside the image, degenerate), with a message for the user."""


def regionName(region) -> str:
    if isinstance(region, tuple):
        segmentation, segmentId = region
        segment = segmentation.GetSegmentation().GetSegment(segmentId) if segmentation else None
        return f"segment {segment.GetName() if segment else segmentId!r} of {segmentation.GetName() if segmentation else '?'}"
    return f"{region.GetClassName().replace('vtkMRMLMarkups', '').replace('Node', '')} {region.GetName()!r}"


def roiMask(roi, reference) -> np.ndarray:
    """Pixels whose centre lies inside a markups ROI box.

    The box's object frame is centred on the box and aligned with its axes, so
    a rotated box needs no special case. Only pixels within the box's
    bounding rectangle in IJK are tested (a full-size mammogram has millions).
    A box that does not reach the image plane in depth selects nothing
    (RegionError in regionMask).
    """
    rows, cols = slicer.util.arrayFromVolume(reference).shape[1:]
    objectToWorld = roi.GetObjectToWorldMatrix()
    objectToWorld = np.array([[objectToWorld.GetElement(r, c) for c in range(4)] for r in range(4)])
    half = np.asarray(roi.GetSize(), float) / 2.0
    corners = np.array([[sx, sy, sz, 1.0] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * [*half, 1.0]
    rasToIjk = np.linalg.inv(ijkToRasArray(reference))
    ijk = (rasToIjk @ objectToWorld @ corners.T)[:2]
    i0, j0 = (max(int(np.floor(v)), 0) for v in ijk.min(axis=1))
    i1, j1 = min(int(np.ceil(ijk[0].max())), cols - 1), min(int(np.ceil(ijk[1].max())), rows - 1)
    mask = np.zeros((rows, cols), dtype=bool)
    if i0 > i1 or j0 > j1:
        return mask
    j, i = np.mgrid[j0:j1 + 1, i0:i1 + 1]
    centers = np.stack([i.ravel(), j.ravel(), np.zeros(i.size), np.ones(i.size)])
    local = (np.linalg.inv(objectToWorld) @ ijkToRasArray(reference) @ centers)[:3]
    mask[j0:j1 + 1, i0:i1 + 1] = np.all(np.abs(local) <= half[:, np.newaxis], axis=0).reshape(i.shape)
    return mask


def curveMask(curve, reference) -> np.ndarray:
    """Pixels whose centre lies inside a closed curve (its interpolated outline, as Slicer draws it),
    projected onto the image plane."""
    rows, cols = slicer.util.arrayFromVolume(reference).shape[1:]
    ras = slicer.util.arrayFromMarkupsCurvePoints(curve, world=True)
    if curve.GetNumberOfControlPoints() < 3 or len(ras) < 3:
        raise RegionError(f"{regionName(curve)} has fewer than 3 points: draw a closed outline")
    ijk = np.linalg.inv(ijkToRasArray(reference)) @ np.c_[ras, np.ones(len(ras))].T
    return polygonMask((rows, cols), ijk[0], ijk[1])


def polygonMask(shape: tuple[int, int], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pixels of a (rows, cols) grid whose centre (column i, row j) lies inside the polygon with
    vertices (x, y), by the even-odd rule on each row: the edges crossing the row's centre line
    (half-open in y, so a vertex on the line counts once) cut it into inside and outside runs."""
    rows, cols = shape
    mask = np.zeros(shape, dtype=bool)
    x0, y0 = np.asarray(x, float), np.asarray(y, float)
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for j in range(max(int(np.ceil(y0.min())), 0), min(int(np.floor(y0.max())), rows - 1) + 1):
        crossing = (y0 <= j) != (y1 <= j)
        if not crossing.any():
            continue
        t = (j - y0[crossing]) / (y1[crossing] - y0[crossing])
        xs = np.sort(x0[crossing] + t * (x1[crossing] - x0[crossing]))
        for left, right in zip(xs[0::2], xs[1::2]):
            start, stop = max(int(np.ceil(left)), 0), min(int(np.floor(right)), cols - 1)
            if start <= stop:
                mask[j, start:stop + 1] = True
    return mask


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
