"""Breast anatomy of a LEFT breast, in mm: compressed outline with the pectoral muscle (MLO), thickness
roll-off at the edge, fibroglandular texture and glandular fraction (ACR density), vessels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from VirtualContrastTraining.data.phantom.fields import _noise, _resize, _smoothstep

DENSITIES = ("a", "b", "c", "d")
VIEWS = ("CC", "MLO")

# ACR density: share of the glandular envelope that is actually glandular.
DENSITY_FILL = {"a": 0.15, "b": 0.35, "c": 0.6, "d": 0.85}


def _rolloff(d_mm, t0_mm: float, radius_mm: float):
    """Compressed thickness at distance d inside the skin line: a semicircular edge of radius R, then flat."""
    d = np.clip(d_mm, 0.0, radius_mm)
    return np.where(d_mm > 0, t0_mm * np.sqrt(np.clip(1.0 - (1.0 - d / radius_mm) ** 2, 0.0, 1.0)), 0.0)


@dataclass
class _Anatomy:
    mask: np.ndarray
    dist: np.ndarray        # mm from the skin line, inside the breast
    depth: np.ndarray       # per row: mm from the chest wall to the skin line
    muscle: np.ndarray      # pectoral muscle fraction 0..1
    nipple: tuple[float, float]   # (x, y) mm
    gland_center: float     # y (mm) and vertical scale of the glandular cone
    gland_scale: float


def _outline(rng, rows, cols, p, view, size) -> _Anatomy:
    """Compressed breast outline (left breast), pectoral muscle for MLO."""
    H, W = rows * p, cols * p
    y = np.arange(rows, dtype=np.float32) * p
    x = np.arange(cols, dtype=np.float32)[None, :] * p
    a = min(rng.uniform(85.0, 145.0) * size, W - 12.0)
    q = rng.uniform(1.8, 2.5)
    if view == "CC":
        yc = H / 2 + rng.uniform(-12.0, 12.0)
        b_up = min(rng.uniform(70.0, 105.0) * size, yc - 8.0)
        b_dn = min(rng.uniform(70.0, 105.0) * size, H - yc - 8.0)
        u = np.where(y < yc, (yc - y) / b_up, (y - yc) / b_dn)
        depth = a * np.clip(1.0 - np.abs(u) ** q, 0.0, None) ** (1.0 / q)
        gland_center, gland_scale = yc, 0.8 * (b_up + b_dn) / 2
    else:  # MLO: hangs from the axilla (top edge) down to an elliptical inferior contour
        bottom = H * rng.uniform(0.75, 0.93)
        b = min(rng.uniform(75.0, 110.0) * size, 0.55 * bottom)
        yc = bottom - b
        a_top = a * rng.uniform(0.35, 0.55)
        t = np.clip(y / yc, 0.0, 1.0)
        upper = a_top + (a - a_top) * (1.0 - (1.0 - t) ** 2)
        lower = a * np.clip(1.0 - np.abs((y - yc) / b) ** q, 0.0, None) ** (1.0 / q)
        depth = np.where(y <= yc, upper, lower)
        gland_center, gland_scale = yc, 0.6 * bottom
    wobble = ndimage.gaussian_filter1d(rng.standard_normal(rows), 20.0 / p, mode="nearest")
    depth = (depth * (1.0 + 0.03 * wobble / (wobble.std() + 1e-12))).astype(np.float32)
    mask = x < depth[:, None]
    muscle = np.zeros((rows, cols), np.float32)
    if view == "MLO":
        x_p = a_top * rng.uniform(0.55, 0.9)
        y_p = yc * rng.uniform(0.5, 0.9)
        edge = x_p * np.clip(1.0 - y / y_p, 0.0, None) ** rng.uniform(0.8, 1.2)
        muscle = np.clip((edge[:, None] - x) / p / 2.0 + 0.5, 0.0, 1.0) * mask
    dist = ndimage.distance_transform_edt(mask, sampling=p).astype(np.float32)
    y_n = int(np.clip(round(yc / p), 0, rows - 1))
    return _Anatomy(mask, dist, depth, muscle.astype(np.float32), (float(depth[y_n]), yc), gland_center, gland_scale)


def _texture(rng, shape, p, nipple) -> np.ndarray:
    """Fibroglandular texture: ridges converging to the nipple plus multi-scale clumps (unit sd)."""
    rows, cols = shape
    y = (np.arange(rows, dtype=np.float32) * p)[:, None]
    x = (np.arange(cols, dtype=np.float32) * p)[None, :]
    rho = np.hypot(nipple[0] - x, y - nipple[1])
    phi = np.arctan2(y - nipple[1], nipple[0] - x + 1e-3)
    # Noise on a polar grid: long along rho (strands, ducts), narrow across the angle.
    d_rho, d_phi = 1.0, 0.006
    n_rho, n_phi = int(rho.max() / d_rho) + 2, int(2 * math.pi / d_phi) + 2
    polar = _noise(rng, (n_rho, n_phi), (6.0, 1.5))
    coords = np.stack([rho / d_rho, (phi + math.pi) / d_phi])
    strands = ndimage.map_coordinates(polar, coords, order=1, mode="nearest")
    ridges = np.exp(-((strands / 0.45) ** 2))   # thin bright lines where the field crosses zero
    clumps = sum(w * _noise(rng, shape, s / p) for w, s in ((0.5, 1.0), (0.8, 2.5), (1.0, 6.0)))
    field_ = 0.8 * (ridges - ridges.mean()) / (ridges.std() + 1e-12) + clumps / clumps.std()
    return (field_ / field_.std()).astype(np.float32)


def _glandular_fraction(rng, anat: _Anatomy, p, density) -> np.ndarray:
    """Glandular fraction 0..1 of the soft tissue along each ray; the ACR density sets how much of the cone is filled."""
    rows, cols = anat.mask.shape
    tg = max(p, 0.3)  # texture grid: finer than 0.3 mm adds nothing visible
    grid = (max(2, int(round(rows * p / tg))), max(2, int(round(cols * p / tg))))
    tex = _resize(_texture(rng, grid, tg, anat.nipple), (rows, cols))
    y = (np.arange(rows, dtype=np.float32) * p)[:, None]
    x = (np.arange(cols, dtype=np.float32) * p)[None, :]
    envelope = (
        _smoothstep(anat.dist, 2.0, 14.0)
        * _smoothstep(x, 3.0, 22.0)
        * np.exp(-np.abs((y - anat.gland_center) / anat.gland_scale) ** 4)
        * (1.0 - anat.muscle)
    ).astype(np.float32)
    f_max = 0.85
    fill = DENSITY_FILL[density] * rng.uniform(0.85, 1.15)
    inside = anat.mask[::2, ::2]
    env_s, tex_s = envelope[::2, ::2][inside], tex[::2, ::2][inside]
    target = fill * env_s.mean()
    lo, hi = -6.0, 6.0
    for _ in range(30):  # threshold so that the mean fraction in the cone matches the density
        thr = (lo + hi) / 2
        mean = (env_s / (1.0 + np.exp(-(tex_s - thr) / 0.6))).mean()
        lo, hi = (thr, hi) if mean > target else (lo, thr)
    return (f_max * envelope / (1.0 + np.exp(-(tex - thr) / 0.6))).astype(np.float32)


def _vessels(rng, anat: _Anatomy, p) -> np.ndarray:
    """Chord length (mm) through a few meandering, tapering vessels running from the chest wall towards the nipple."""
    rows, cols = anat.mask.shape
    seed = np.zeros((rows, cols), bool)
    radius = np.zeros((rows, cols), np.float32)
    ys = np.flatnonzero(anat.depth > 30.0) * p
    for _ in range(int(rng.integers(3, 8))):
        y0 = rng.uniform(ys.min(), ys.max())
        x0 = rng.uniform(2.0, 25.0)
        y1 = np.clip(y0 + rng.uniform(-35.0, 35.0), ys.min(), ys.max())
        x1 = anat.depth[int(y1 / p)] * rng.uniform(0.5, 0.92)
        length = math.hypot(x1 - x0, y1 - y0)
        t = np.linspace(0.0, 1.0, max(2, int(length / (0.5 * p))))
        nx, ny = -(y1 - y0) / length, (x1 - x0) / length
        wander = rng.uniform(2.0, 7.0) * np.sin(2 * math.pi * rng.uniform(0.5, 1.8) * t + rng.uniform(0, 2 * math.pi))
        wander += rng.uniform(0.5, 2.0) * np.sin(2 * math.pi * rng.uniform(2.0, 5.0) * t + rng.uniform(0, 2 * math.pi))
        r = rng.uniform(0.45, 1.1) * (1.0 - 0.5 * t)
        cols_i = np.clip(np.round((x0 + (x1 - x0) * t + nx * wander) / p).astype(int), 0, cols - 1)
        rows_i = np.clip(np.round((y0 + (y1 - y0) * t + ny * wander) / p).astype(int), 0, rows - 1)
        seed[rows_i, cols_i] = True
        np.maximum.at(radius, (rows_i, cols_i), r.astype(np.float32))
    r_idx, c_idx = np.nonzero(seed)
    margin = int(np.ceil(1.2 / p)) + 1
    r0, r1 = max(r_idx.min() - margin, 0), min(r_idx.max() + margin + 1, rows)
    c0, c1 = max(c_idx.min() - margin, 0), min(c_idx.max() + margin + 1, cols)
    dist, idx = ndimage.distance_transform_edt(~seed[r0:r1, c0:c1], sampling=p, return_indices=True)
    near_r = radius[r0:r1, c0:c1][idx[0], idx[1]]
    chord = np.zeros((rows, cols), np.float32)
    chord[r0:r1, c0:c1] = 2.0 * np.sqrt(np.clip(near_r**2 - dist**2, 0.0, None))
    return chord * anat.mask
