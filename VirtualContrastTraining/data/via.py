"""Lesion annotations of a VGG Image Annotator (VIA) CSV export, as shapes and as pixel masks.

Why: CDD-CESM (the collection 004 uses; Khaled et al., Sci Data 2022) ships its
radiologists' lesion outlines as `Radiology_hand_drawn_segmentations_v2.csv`, a
VIA export with one row per region: columns `#filename, file_size,
file_attributes, region_count, region_id, region_shape_attributes,
region_attributes`, where `region_shape_attributes` is JSON naming a polygon
(`all_points_x`, `all_points_y`), an ellipse (`cx`, `cy`, `rx`, `ry`, optional
`theta`), a circle (`cx`, `cy`, `r`) or a point (`cx`, `cy`). Coordinates are
pixels of the annotated image (x = column, y = row). A point marks a lesion
without an outline; it becomes a disc of radius 25 px.

A bad row never stops the reading of the others: it is returned as a problem
(where, reason) with one short reason per kind, the detail (line, shape name)
in `where`, so an import can list them grouped. Only a file that cannot be read
or lacks the columns needed to read any row is an InputError.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage import draw

from VirtualContrastTraining.errors import InputError

POINT_RADIUS = 25  # px: a point annotation becomes a disc of this radius (the rule for CDD-CESM)
BEYOND_TOLERANCE = 0.05  # a shape may overrun its image by 5 % of the size (clipped); beyond: another size
SHAPES = {  # VIA shape name -> numeric parameters it needs
    "polygon": ("all_points_x", "all_points_y"),
    "ellipse": ("cx", "cy", "rx", "ry"),
    "circle": ("cx", "cy", "r"),
    "point": ("cx", "cy"),
}
FILE_COLUMNS = ("#filename", "filename")  # VIA 2 writes "#filename"; accept the name without "#" too
NEEDED_COLUMNS = ("region_id", "region_shape_attributes")

UNKNOWN_SHAPE = "unknown VIA shape type (known: polygon, ellipse, circle, point)"
BAD_JSON = "region shape attributes are not a JSON object"
NO_FILE = "row without a file name"
BAD_PARAMETERS = "VIA shape with missing, non-numeric or negative parameters"
BAD_POLYGON = "polygon with fewer than 3 points or unequal x and y lists"


@dataclass(frozen=True)
class Region:
    """One annotated region. `params` holds floats (polygons: tuples of floats), `theta` included for ellipses."""
    file_name: str   # as in the CSV with whitespace removed ("P1_L_DM_MLO .jpg" -> "P1_L_DM_MLO.jpg")
    shape: str       # polygon | ellipse | circle | point
    params: dict
    region_id: str
    line: int        # line of the CSV (header = 1), for messages
    source: str = "" # the CSV's file name, for messages

    @property
    def where(self) -> str:
        return f"{self.source} line {self.line}"


def normalise_name(name: str) -> str:
    """A file name without whitespace: CDD-CESM has names with stray spaces ("P1_L_CM_MLO .jpg")."""
    return "".join(str(name).split())


def read_via_csv(path: str | os.PathLike) -> tuple[list[Region], list[tuple[str, str]]]:
    """(regions, problems) of a VIA CSV export; problems are (where, reason), one per rejected row.

    Rows with empty shape attributes (`{}`, VIA's row for an image without
    regions) are neither regions nor problems.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read VIA CSV ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    file_column = next((c for c in FILE_COLUMNS if c in columns), None)
    missing = ([] if file_column else ["#filename"]) + [c for c in NEEDED_COLUMNS if c not in columns]
    if missing:
        raise InputError(path, f"VIA CSV lacks column(s) {', '.join(missing)} (header: {', '.join(columns) or 'none'})")
    regions, problems = [], []
    for row in reader:
        where = f"{path.name} line {reader.line_num}"
        region = _region(row, file_column, reader.line_num, path.name)
        if isinstance(region, Region):
            regions.append(region)
        elif region is not None:
            detail, reason = region
            problems.append((f"{where}{detail}", reason))
    return regions, problems


def _region(row: dict, file_column: str, line: int, source: str) -> Region | tuple[str, str] | None:
    """The row's Region, None for a region-less row, or (detail, reason) when the row cannot be used."""
    name = normalise_name(row.get(file_column) or "")
    if not name:
        return "", NO_FILE
    try:
        attrs = json.loads(row.get("region_shape_attributes") or "{}")
    except json.JSONDecodeError:
        return f" ({name})", BAD_JSON
    if not isinstance(attrs, dict):
        return f" ({name})", BAD_JSON
    if not attrs:
        return None
    shape = str(attrs.get("name", ""))
    if shape not in SHAPES:
        return f" ({name}: shape {shape or 'without a name'!r})", UNKNOWN_SHAPE
    params = _params(shape, attrs)
    if isinstance(params, str):
        return f" ({name}: {json.dumps(attrs)[:120]})", params
    return Region(name, shape, params, str(row.get("region_id") or "").strip(), line, source)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _params(shape: str, attrs: dict) -> dict | str:
    """The shape's parameters as floats, or the reason they cannot be used."""
    if shape == "polygon":
        xs, ys = attrs.get("all_points_x"), attrs.get("all_points_y")
        if not isinstance(xs, list) or not isinstance(ys, list):
            return BAD_PARAMETERS
        if len(xs) != len(ys) or len(xs) < 3:
            return BAD_POLYGON
        xs, ys = [_number(v) for v in xs], [_number(v) for v in ys]
        if None in xs or None in ys:
            return BAD_PARAMETERS
        return {"all_points_x": tuple(xs), "all_points_y": tuple(ys)}
    params = {key: _number(attrs.get(key)) for key in SHAPES[shape]}
    if shape == "ellipse":
        params["theta"] = _number(attrs.get("theta", 0.0))
    if any(v is None for v in params.values()) or any(params.get(k, 0.0) < 0 for k in ("rx", "ry", "r")):
        return BAD_PARAMETERS
    return params


def _bounds(region: Region) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) of the shape."""
    p = region.params
    if region.shape == "polygon":
        return min(p["all_points_x"]), max(p["all_points_x"]), min(p["all_points_y"]), max(p["all_points_y"])
    if region.shape == "ellipse":  # extent of a rotated ellipse along x and y
        c, s = math.cos(p["theta"]), math.sin(p["theta"])
        hx, hy = math.hypot(p["rx"] * c, p["ry"] * s), math.hypot(p["rx"] * s, p["ry"] * c)
    else:
        hx = hy = p["r"] if region.shape == "circle" else POINT_RADIUS
    return p["cx"] - hx, p["cx"] + hx, p["cy"] - hy, p["cy"] + hy


def coordinates_beyond(regions: list[Region], shape: tuple[int, int]) -> str:
    """"" when the regions fit an image of `shape` (rows, cols) give or take BEYOND_TOLERANCE of its size (a
    shape drawn a little over the edge is clipped); else what exceeds it, naming the file: annotations made
    on the full-size image drawn onto a resized copy would mark the wrong pixels."""
    if not regions:
        return ""
    rows, cols = shape
    x_max = max(_bounds(r)[1] for r in regions)
    y_max = max(_bounds(r)[3] for r in regions)
    if x_max <= cols * (1 + BEYOND_TOLERANCE) and y_max <= rows * (1 + BEYOND_TOLERANCE):
        return ""
    return (f"{regions[0].file_name}: coordinates up to x {x_max:.0f}, y {y_max:.0f} on an image of "
            f"{cols} x {rows} px")


def _draw(region: Region, shape: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The region rasterised (pixel centres inside the shape) on a canvas of `shape` whose pixel (0, 0) is
    pixel `origin` = (row, col) of the image."""
    r0, c0 = origin
    p = region.params
    if region.shape == "polygon":
        rr, cc = draw.polygon(np.subtract(p["all_points_y"], r0), np.subtract(p["all_points_x"], c0), shape)
    elif region.shape == "ellipse":
        # VIA draws theta like an HTML canvas, turning x towards +y (down); skimage turns the other way.
        rr, cc = draw.ellipse(p["cy"] - r0, p["cx"] - c0, p["ry"], p["rx"], shape, rotation=-p["theta"])
    else:
        radius = p["r"] if region.shape == "circle" else POINT_RADIUS
        rr, cc = draw.disk((p["cy"] - r0, p["cx"] - c0), radius, shape=shape)
    mask = np.zeros(shape, bool)
    mask[rr, cc] = True
    return mask


def shape_mask(region: Region, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (rows, cols) mask of the region on an image of `shape`, clipped to it (skimage.draw)."""
    return _draw(region, tuple(shape))


def pixels_outside(region: Region, shape: tuple[int, int]) -> int:
    """How many pixels of the rasterised region lie beyond an image of `shape` (0 when wholly inside).

    Counted by drawing the region on a canvas that covers its whole extent, so a
    shape clipped by `shape_mask` can be reported rather than silently cut.
    """
    x0, x1, y0, y1 = _bounds(region)
    origin = (math.floor(y0) - 1, math.floor(x0) - 1)
    extent = (math.ceil(y1) + 2 - origin[0], math.ceil(x1) + 2 - origin[1])
    whole = _draw(region, extent, origin)
    rows, cols = shape
    r, c = np.nonzero(whole)
    r, c = r + origin[0], c + origin[1]
    return int(np.count_nonzero((r < 0) | (c < 0) | (r >= rows) | (c >= cols)))
