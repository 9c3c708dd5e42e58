"""VIA CSV annotations (CDD-CESM's lesion outlines) -> shapes -> masks: the real excerpt and hand-made bad rows.

Masks are checked against independent rasterisations: numpy's inequality for
discs and ellipses (pixel centres strictly inside), matplotlib's Path for
polygons, and against the closed-form areas (pi r^2, pi a b, shoelace).
"""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from VirtualContrastTraining.data.via import (
    BAD_JSON,
    BAD_PARAMETERS,
    BAD_POLYGON,
    NO_FILE,
    POINT_RADIUS,
    UNKNOWN_SHAPE,
    Region,
    coordinates_beyond,
    normalise_name,
    pixels_outside,
    read_via_csv,
    shape_mask,
)
from VirtualContrastTraining.errors import InputError

EXCERPT = "Radiology_hand_drawn_segmentations_v2.excerpt.csv"
CANVAS = (2600, 1400)  # rows, cols: holds every shape of the excerpt (coordinates of the original images)
HEADER = "#filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,region_attributes\n"


def _row(name: str, attrs, region_id: int = 0) -> str:
    text = attrs if isinstance(attrs, str) else json.dumps(attrs)
    return f'{name},1,{{}},1,{region_id},"{text.replace(chr(34), chr(34) * 2)}",{{}}\n'


def _grid(shape):
    return np.mgrid[0:shape[0], 0:shape[1]]


def _shoelace(xs, ys) -> float:
    return 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))


def _perimeter(xs, ys) -> float:
    return float(sum(math.hypot(xs[i] - xs[i - 1], ys[i] - ys[i - 1]) for i in range(len(xs))))


@pytest.fixture
def excerpt(cdd_sample):
    return read_via_csv(cdd_sample / EXCERPT)


def test_real_excerpt_parsed_without_problems(excerpt):
    regions, problems = excerpt
    assert problems == []
    assert len(regions) == 21
    assert Counter(r.shape for r in regions) == {"ellipse": 11, "circle": 5, "polygon": 4, "point": 1}
    assert [r.line for r in regions] == list(range(2, 23))
    first = regions[0]
    assert (first.file_name, first.shape, first.region_id, first.source) == ("P1_L_CM_MLO.jpg", "polygon", "0", EXCERPT)
    assert len(first.params["all_points_x"]) == 38
    p2 = regions[3]
    assert (p2.file_name, p2.shape, p2.region_id, p2.params) == ("P2_R_CM_CC.jpg", "circle", "3",
                                                               {"cx": 693.0, "cy": 814.0, "r": 64.0})


def test_real_excerpt_masks_have_the_canvas_shape_and_the_shapes_areas(excerpt):
    rows, cols = _grid(CANVAS)
    for region in excerpt[0]:
        mask = shape_mask(region, CANVAS)
        assert mask.shape == CANVAS and mask.dtype == bool
        assert pixels_outside(region, CANVAS) == 0
        p = region.params
        if region.shape in ("circle", "point"):
            radius = p["r"] if region.shape == "circle" else POINT_RADIUS
            expected = (rows - p["cy"]) ** 2 + (cols - p["cx"]) ** 2 < radius ** 2
            assert np.array_equal(mask, expected), region
            assert abs(mask.sum() - math.pi * radius ** 2) <= math.pi * radius  # half the perimeter
        elif region.shape == "ellipse":
            expected = ((rows - p["cy"]) / p["ry"]) ** 2 + ((cols - p["cx"]) / p["rx"]) ** 2 < 1
            assert np.array_equal(mask, expected), region
            a, b = p["rx"], p["ry"]
            perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))  # Ramanujan
            assert abs(mask.sum() - math.pi * a * b) <= perimeter / 2
        else:
            xs, ys = np.array(p["all_points_x"]), np.array(p["all_points_y"])
            inside = MplPath(np.c_[xs, ys]).contains_points(np.c_[cols.ravel(), rows.ravel()]).reshape(CANVAS)
            perimeter = _perimeter(xs, ys)
            # The two rasterisers differ only on pixel centres on the outline.
            assert (mask ^ inside).sum() <= perimeter / 4, region
            assert abs(mask.sum() - _shoelace(xs, ys)) <= perimeter / 2, region
    point = next(r for r in excerpt[0] if r.shape == "point")
    assert (point.file_name, point.params) == ("P6_R_DM_CC.jpg", {"cx": 456.0, "cy": 687.0})
    assert shape_mask(point, CANVAS).sum() == 1941  # pi * 25^2 = 1963.5, pixel centres strictly inside


def test_shapes_outside_the_image_are_clipped_and_counted(excerpt):
    by_line = {r.line: r for r in excerpt[0]}
    small = (512, 256)  # the sample's resized P10 images: the original coordinates overshoot them
    wholly = by_line[19]  # P10_L_DM_CC ellipse at (310, 1692): beyond both the 256 columns and the 512 rows
    assert shape_mask(wholly, small).sum() == 0
    assert pixels_outside(wholly, small) == shape_mask(wholly, CANVAS).sum() == 5111
    inside = by_line[20]  # P10_L_DM_CC circle at (68, 470) r 39: rows 431..509 fit
    assert pixels_outside(inside, small) == 0 and shape_mask(inside, small).sum() == 4765
    partly = by_line[15]  # P10_L_CM_CC ellipse at (62, 502), ry 31: rows 471..533 straddle row 511
    clipped = shape_mask(partly, small)
    full = shape_mask(partly, CANVAS)
    assert np.array_equal(clipped, full[:512, :256])
    assert pixels_outside(partly, small) == full.sum() - clipped.sum() == full[512:].sum() > 0


def test_pixels_outside_by_hand():
    # A disc of radius 3 centred on pixel (0, 0): the 5x5 centres with |row|, |col| <= 2 (2^2 + 2^2 < 9, 3^2 is not),
    # of which the 3x3 with row, col >= 0 lie on the image.
    region = Region("x.jpg", "circle", {"cx": 0.0, "cy": 0.0, "r": 3.0}, "0", 2)
    rr, cc = np.mgrid[-3:4, -3:4]
    disc = rr ** 2 + cc ** 2 < 9
    assert disc.sum() == 25
    inside = int(disc[3:, 3:].sum())  # quadrant with row >= 0 and col >= 0
    assert inside == 9
    assert shape_mask(region, (10, 10)).sum() == inside
    assert pixels_outside(region, (10, 10)) == 25 - inside == 16
    assert pixels_outside(region, (1, 1)) == 24
    far = Region("x.jpg", "point", {"cx": -100.0, "cy": 50.0}, "0", 2)
    assert shape_mask(far, (100, 100)).sum() == 0
    assert pixels_outside(far, (100, 100)) == 1941


def test_rotated_ellipse_follows_via_canvas_convention():
    """VIA draws theta like an HTML canvas (y down): the rx axis turns from +x towards +y."""
    theta = 0.5
    region = Region("x.jpg", "ellipse", {"cx": 60.0, "cy": 50.0, "rx": 30.0, "ry": 5.0, "theta": theta}, "0", 2)
    mask = shape_mask(region, (100, 120))
    rows, cols = _grid((100, 120))
    dx, dy = cols - 60.0, rows - 50.0
    u, v = dx * math.cos(theta) + dy * math.sin(theta), -dx * math.sin(theta) + dy * math.cos(theta)
    expected = (u / 30.0) ** 2 + (v / 5.0) ** 2 < 1
    assert (mask ^ expected).sum() <= 4  # the same set up to pixel centres on the outline
    along = (round(50 + 25 * math.sin(theta)), round(60 + 25 * math.cos(theta)))
    mirrored = (round(50 - 25 * math.sin(theta)), round(60 + 25 * math.cos(theta)))
    assert mask[along] and not mask[mirrored]
    assert pixels_outside(region, (100, 120)) == 0
    # bounds of the rotated ellipse are exact: on a canvas cut just inside its lowest pixel, pixels are outside
    lowest = int(np.nonzero(mask.any(axis=1))[0].max())
    assert pixels_outside(region, (lowest, 120)) == mask[lowest:].sum() > 0


def test_bad_rows_are_reported_one_reason_per_kind(tmp_path):
    csv_path = tmp_path / "segs.csv"
    csv_path.write_text(HEADER + "".join([
        _row("P1_L_DM_CC .jpg", {"name": "circle", "cx": 10, "cy": 20, "r": 5}),       # 2: ok, stray space
        _row("P1_L_DM_CC.jpg", {"name": "rect", "x": 1, "y": 2, "width": 3, "height": 4}),  # 3
        _row("P1_L_DM_CC.jpg", "{not json"),                                         # 4
        _row("P1_L_DM_CC.jpg", {"cx": 1, "cy": 2}),                                  # 5: no name
        _row("P1_L_DM_CC.jpg", {"name": "ellipse", "cx": 1, "cy": 2, "rx": 3}),      # 6: no ry
        _row("P1_L_DM_CC.jpg", {"name": "circle", "cx": 1, "cy": 2, "r": -3}),       # 7
        _row("P1_L_DM_CC.jpg", {"name": "polygon", "all_points_x": [1, 2], "all_points_y": [1, 2]}),  # 8
        _row("P1_L_DM_CC.jpg", {"name": "point", "cx": "a", "cy": 2}),               # 9
        _row("", {"name": "point", "cx": 1, "cy": 2}),                               # 10
        _row("P2_R_DM_CC.jpg", {}),                                                  # 11: image without regions
        _row("P1_L_DM_CC.jpg", "[1, 2]"),                                            # 12
        _row("P1_L_DM_CC.jpg", {"name": "point", "cx": 5, "cy": 6}, region_id=7),    # 13: ok
    ]))
    regions, problems = read_via_csv(csv_path)
    assert [(r.file_name, r.shape, r.line, r.region_id) for r in regions] == [
        ("P1_L_DM_CC.jpg", "circle", 2, "0"), ("P1_L_DM_CC.jpg", "point", 13, "7")]
    assert [(where.split(" (")[0], reason) for where, reason in problems] == [
        ("segs.csv line 3", UNKNOWN_SHAPE), ("segs.csv line 4", BAD_JSON), ("segs.csv line 5", UNKNOWN_SHAPE),
        ("segs.csv line 6", BAD_PARAMETERS), ("segs.csv line 7", BAD_PARAMETERS), ("segs.csv line 8", BAD_POLYGON),
        ("segs.csv line 9", BAD_PARAMETERS), ("segs.csv line 10", NO_FILE), ("segs.csv line 12", BAD_JSON)]
    assert "shape 'rect'" in problems[0][0]


def test_missing_columns_or_unreadable_file_are_input_errors(tmp_path):
    no_shape = tmp_path / "a.csv"
    no_shape.write_text("#filename,file_size,region_id\nx.jpg,1,0\n")
    with pytest.raises(InputError, match="lacks column.*region_shape_attributes") as info:
        read_via_csv(no_shape)
    assert info.value.path == str(no_shape)
    no_file = tmp_path / "b.csv"
    no_file.write_text("name,region_id,region_shape_attributes\n")
    with pytest.raises(InputError, match="#filename"):
        read_via_csv(no_file)
    binary = tmp_path / "c.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(InputError, match="cannot read VIA CSV"):
        read_via_csv(binary)
    with pytest.raises(InputError, match="cannot read VIA CSV"):
        read_via_csv(tmp_path / "absent.csv")


def test_file_names_lose_stray_whitespace():
    assert normalise_name(" P1_L_CM_MLO .jpg ") == "P1_L_CM_MLO.jpg"
    assert normalise_name("P1_L_CM_MLO.jpg") == "P1_L_CM_MLO.jpg"


def test_coordinates_beyond_the_image_name_the_file():
    """A shape a little over the edge (within 5 %) is for clipping; a shape far beyond means the annotation was
    made on another size of the image (full-size coordinates on a resized copy)."""
    inside = Region("P1_L_DM_CC.jpg", "circle", {"cx": 50.0, "cy": 40.0, "r": 10.0}, "0", 2)
    edge = Region("P1_L_DM_CC.jpg", "circle", {"cx": 98.0, "cy": 40.0, "r": 6.0}, "1", 3)   # to x 104 of 100
    far = Region("P1_L_DM_CC.jpg", "point", {"cx": 400.0, "cy": 300.0}, "2", 4)
    assert coordinates_beyond([], (80, 100)) == ""
    assert coordinates_beyond([inside, edge], (80, 100)) == ""
    assert coordinates_beyond([inside, far], (80, 100)) == (
        f"P1_L_DM_CC.jpg: coordinates up to x {400 + POINT_RADIUS}, y {300 + POINT_RADIUS} on an image of 100 x 80 px")
    assert coordinates_beyond([inside, far], (400, 500)) == ""
