"""004's two-level mutual-information translation search, on the real CDD-CESM sample pairs and known shifts.

The SimpleITK (Mattes) ranking is checked against an independent histogram
mutual information (verified against scikit-learn's mutual_info_score) over
every offset of the +-10 px square, not only the points the two-level search visits.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from VirtualContrastTraining.data import registration
from VirtualContrastTraining.data.cases import shift_to_le
from VirtualContrastTraining.data.imageio import read_image
from VirtualContrastTraining.data.registration import on_bound, register_translation, sample_stride
from VirtualContrastTraining.errors import InputError

PAIRS = ("P10_L_{}_CC.png", "P10_L_{}_MLO.png", "P12_L_{}_CC.png", "P12_L_{}_MLO.png", "P207_L_{}_MLO.jpg")
BINS = 32


def _quantised(a: np.ndarray) -> np.ndarray:
    return np.digitize(a, np.linspace(a.min(), a.max(), BINS + 1)[1:-1]).ravel()


def _histogram_mi(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in MI (nats) of the 32x32 joint histogram: sum p log(p / (p_a p_b))."""
    return _labels_mi(_quantised(a), _quantised(b))


def _labels_mi(qa: np.ndarray, qb: np.ndarray) -> float:
    joint = np.bincount(qa.ravel() * BINS + qb.ravel(), minlength=BINS * BINS).reshape(BINS, BINS)
    p = joint / joint.sum()
    pa, pb = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / (pa @ pb)[nz])).sum())


def _mi_grid(le: np.ndarray, des: np.ndarray) -> dict[tuple[int, int], float]:
    """Histogram MI of every offset in the +-10 px square, on the window the search scores. The DES is
    quantised once, then its labels are shifted (same pixels as shifting the DES: the window has no fill)."""
    m = registration.SEARCH_PX
    window = (slice(m, -m), slice(m, -m))
    qa = _quantised(le[window])
    qb = _quantised(des).reshape(des.shape)
    return {(x, y): _labels_mi(qa, shift_to_le(qb, (x, y))[window]) for x in range(-m, m + 1) for y in range(-m, m + 1)}


@pytest.fixture(scope="module")
def real_pairs(cdd_sample):
    out = {}
    for name in PAIRS:
        le = read_image(cdd_sample / name.format("DM")).array.astype(np.float32)
        des = read_image(cdd_sample / name.format("CM")).array.astype(np.float32)
        out[name.format("*")] = (le, des, register_translation(le, des))
    return out


def test_histogram_mi_matches_scikit_learn(real_pairs):
    le, des, _ = real_pairs["P207_L_*_MLO.jpg"]
    assert _histogram_mi(le, des) == pytest.approx(mutual_info_score(_quantised(le), _quantised(des)), rel=1e-9)


def test_real_pairs_registered_within_10_px_with_no_less_mutual_information(real_pairs):
    for name, (le, des, result) in real_pairs.items():
        x, y = result.offset
        assert isinstance(x, int) and isinstance(y, int)
        assert abs(x) <= 10 and abs(y) <= 10, name
        assert result.mi >= result.mi_unregistered > 0, name
        assert result.stride == 1 and result.evaluations <= 49
        # An independent MI over the whole +-10 square peaks within 1 px of the offset found,
        # and rates the registered pair above the unregistered one.
        grid = _mi_grid(le, des)
        peak = max(grid, key=grid.get)
        assert max(abs(peak[0] - x), abs(peak[1] - y)) <= 1, (name, peak, result.offset)
        assert result.offset == (0, 0) or grid[result.offset] > grid[(0, 0)], name
    # The sample's P10/P12 pairs are visibly misaligned: at least one needs a shift.
    assert any(r.offset != (0, 0) for _, _, r in real_pairs.values())


def test_registration_is_deterministic(real_pairs):
    le, des, result = real_pairs["P12_L_*_CC.png"]
    assert register_translation(le, des) == result


# Level 1 scores 25 points; level 2 the rest of the 5x5 around the best one, cut at +-10 px:
# (3, -4) and (0, 0) lie inside (24 more), (-7, 8) near the edge y = 10 (5x3: 14 more), (10, -10) in a corner (3x3: 8).
@pytest.mark.parametrize("shift, evaluations", [((3, -4), 49), ((-7, 8), 39), ((0, 0), 49), ((10, -10), 33)])
def test_known_shift_of_a_real_des_is_recovered_exactly(cdd_sample, shift, evaluations):
    """shift_to_le with the negated offset moves the DES away; the search must find `shift` itself."""
    des = read_image(cdd_sample / "P207_L_CM_MLO.jpg").array.astype(np.float32)[100:356, 100:356]
    moved = shift_to_le(des, (-shift[0], -shift[1]))
    result = register_translation(des, moved)
    assert result.offset == shift
    assert result.mi > result.mi_unregistered or shift == (0, 0)
    assert result.evaluations == evaluations


def test_known_shift_across_modalities(cdd_sample):
    """MI, unlike correlation, rates an inverted image as aligned: LE against its shifted negative."""
    le = read_image(cdd_sample / "P207_L_DM_MLO.jpg").array.astype(np.float32)[100:356, 100:356]
    result = register_translation(le, 255 - shift_to_le(le, (4, 2)))
    assert result.offset == (-4, -2)


def test_strided_sampling_keeps_whole_pixel_accuracy(cdd_sample, monkeypatch):
    des = read_image(cdd_sample / "P207_L_CM_MLO.jpg").array.astype(np.float32)
    monkeypatch.setattr(registration, "MAX_SAMPLES", 30_000)  # 492 x 492 window -> every 3rd row and column
    result = register_translation(des, shift_to_le(des, (2, -6)))
    assert result.stride == 3
    assert result.offset == (-2, 6)


def test_sample_stride_by_hand():
    assert sample_stride((512, 256)) == 1
    # 2980 x 1980 = 5 900 400 pixels scored in a 3000 x 2000 image; / 500 000 = 11.8 -> sqrt 3.4 -> 4
    assert sample_stride((3000, 2000)) == 4
    assert sample_stride((1020, 510)) == 1  # 1000 x 490 = 490 000 <= 500 000


def test_bad_inputs_are_input_errors():
    rng = np.random.default_rng(0)
    image = rng.random((64, 64))
    with pytest.raises(InputError, match="must be 2-D"):
        register_translation(image, image[None])
    with pytest.raises(InputError, match="too small"):
        register_translation(image[:20], image[:20])
    with pytest.raises(InputError, match="LE is uniform"):
        register_translation(np.zeros((64, 64)), image)
    with pytest.raises(InputError, match="DES is uniform"):
        register_translation(image, np.ones((64, 64)))


def test_a_des_of_another_size_is_registered_from_the_shared_top_left_corner():
    """004: CDD-CESM's P1_L_MLO is 1393x2129 (LE) against 1390x2341 (DES), yet at most 10 px apart."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    scene = ndimage.gaussian_filter(rng.random((300, 220)), 3)
    le = scene[:260, :200]
    des = 1.0 - scene[6:296, 3:210]                   # taller and wider, content moved by (x 3, y 6)
    result = register_translation(le, des)
    assert result.offset == (-3, -6)
    assert np.allclose(shift_to_le(des, result.offset, le.shape)[10:-10, 10:-10], 1.0 - le[10:-10, 10:-10])



def test_a_shift_beyond_the_search_stops_on_its_bound_and_a_wider_search_finds_it():
    """Generated texture (no ../shared needed): a 13 px shift. Searched +-10 the best offset lies on the bound
    (on_bound says so, the import warns); searched +-15 the shift is found and lies inside."""
    rng = np.random.default_rng(3)
    le = np.cumsum(np.cumsum(rng.normal(size=(120, 110)), axis=0), axis=1).astype(np.float32)
    des = shift_to_le(le, (-13, 4))  # aligned by (13, -4)
    narrow = register_translation(le, des)
    assert on_bound(narrow.offset) and narrow.offset[0] == 10
    wide = register_translation(le, des, search=15)
    assert wide.offset == (13, -4) and not on_bound(wide.offset, 15) and wide.mi > narrow.mi
    assert on_bound((-10, 3)) and on_bound((2, 10)) and not on_bound((9, -9))
