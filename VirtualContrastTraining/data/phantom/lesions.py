"""Lesions: kinds, placement in the breast, shapes, and the layers they add (tissue, iodine, calcium, masks)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from VirtualContrastTraining.data.phantom.anatomy import _Anatomy
from VirtualContrastTraining.data.phantom.fields import _noise

LESION_KINDS = {
    "mass_homogeneous": "enhancing mass (homogeneous)",
    "mass_rim": "enhancing mass (rim)",
    "mass_heterogeneous": "enhancing mass (heterogeneous)",
    "mass_nonenhancing": "non-enhancing mass",
    "nme": "non-mass enhancement",
    "calcifications": "calcifications",
}
LESION_WEIGHTS = (0.2, 0.15, 0.15, 0.15, 0.15, 0.2)  # order of LESION_KINDS


def random_lesion_kinds(rng: np.random.Generator, p_lesion: float = 0.7) -> list[str]:
    """0-3 lesion kinds; a breast has at least one lesion with probability `p_lesion`."""
    if rng.uniform() >= p_lesion:
        return []
    n = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    return [str(k) for k in rng.choice(list(LESION_KINDS), size=n, p=LESION_WEIGHTS)]


@dataclass
class _LesionLayers:
    tissue_mm: np.ndarray    # chord through glandular-equivalent lesion tissue
    iodine: np.ndarray       # mg/cm2
    calcium_mm: np.ndarray   # chord through hydroxyapatite
    masks: dict[str, np.ndarray] = field(default_factory=dict)


def _place(rng, anat: _Anatomy, p, radius, taken) -> tuple[float, float]:
    """A random centre inside the compressed plateau, away from the muscle and other lesions.

    The demands relax step by step (a small breast still gets its lesion, nearer the edge).
    """
    k = max(1, int(round(1.0 / p)))  # candidates on a ~1 mm grid
    dist = anat.dist[::k, ::k]
    yy, xx = np.indices(dist.shape) * (k * p)
    free = (anat.muscle[::k, ::k] < 0.05) & (dist > 0)
    for tx, ty, tr in taken:
        free &= np.hypot(xx - tx, yy - ty) > radius + tr + 3.0
    for need in (radius + 8.0, radius + 2.0, 0.6 * radius, 2.0):
        candidates = np.flatnonzero(free & (dist >= need))
        if candidates.size:
            break
    else:
        candidates = np.flatnonzero(dist > 0)
    i = candidates[rng.integers(candidates.size)]
    y, x = float(yy.flat[i]), float(xx.flat[i])
    taken.append((x, y, radius))
    return x, y


def _local(shape, p, cx, cy, reach):
    """Index window and local (x, y) mm offsets around a centre."""
    rows, cols = shape
    r0, r1 = max(int((cy - reach) / p), 0), min(int((cy + reach) / p) + 2, rows)
    c0, c1 = max(int((cx - reach) / p), 0), min(int((cx + reach) / p) + 2, cols)
    dy = (np.arange(r0, r1, dtype=np.float32) * p - cy)[:, None]
    dx = (np.arange(c0, c1, dtype=np.float32) * p - cx)[None, :]
    return (slice(r0, r1), slice(c0, c1)), dx, dy


def _blob(rng, dx, dy, r0, irregular: float, elongation: float = 1.0):
    """Lobulated outline r(theta): (inside mask, chord mm through the body, radius relative to r(theta), r(theta))."""
    angle = rng.uniform(0, math.pi)
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = (dx * ca + dy * sa) / elongation, -dx * sa + dy * ca
    theta = np.arctan2(v, u)
    rim = np.ones_like(theta)
    for k in range(2, 7):
        rim += irregular * rng.uniform(0.0, 1.0) / k * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    r_theta = r0 * np.clip(rim, 0.5, None) * rng.uniform(0.85, 1.0)
    rel = np.hypot(u, v) / r_theta
    inside = rel < 1.0
    chord = np.where(inside, 2.0 * r_theta * np.sqrt(np.clip(1.0 - rel**2, 0.0, None)), 0.0)
    return inside, chord.astype(np.float32), rel, r_theta


def _render_lesions(rng, anat: _Anatomy, p, kinds: Sequence[str]) -> _LesionLayers:
    shape = anat.mask.shape
    layers = _LesionLayers(*(np.zeros(shape, np.float32) for _ in range(3)))
    taken: list[tuple[float, float, float]] = []
    for number, kind in enumerate(kinds, start=1):
        if kind not in LESION_KINDS:
            raise ValueError(f"unknown lesion kind {kind!r}; expected one of {', '.join(LESION_KINDS)}")
        name = f"Lesion {number} - {LESION_KINDS[kind]}"
        if kind == "calcifications":
            spread = rng.uniform(3.0, 8.0)
            cx, cy = _place(rng, anat, p, spread + 1.5, taken)
            win, dx, dy = _local(shape, p, cx, cy, spread + 2.0)
            for _ in range(int(rng.integers(6, 26))):  # specks: hydroxyapatite spheres, volume kept per pixel
                px, py = rng.normal(0.0, spread / 2.2, 2)
                px, py = np.array([px, py]) * min(1.0, spread / max(math.hypot(px, py), 1e-9))
                r = rng.uniform(0.1, 0.35)
                sigma = math.hypot(r / 2.0, 0.5 * p)  # the detector's blur of a sub-pixel speck
                g = np.exp(-((dx - px) ** 2 + (dy - py) ** 2) / (2 * sigma**2))
                layers.calcium_mm[win] += (4.0 / 3.0 * math.pi * r**3) * g / (2 * math.pi * sigma**2)
            layers.masks[name] = _disk(shape, win, dx, dy, spread + 1.5)
            continue
        if kind == "nme":
            r0 = rng.uniform(8.0, 18.0)
            elong = rng.uniform(1.4, 2.4)
            cx, cy = _place(rng, anat, p, r0 * elong, taken)
            win, dx, dy = _local(shape, p, cx, cy, r0 * elong * 1.6)
            inside, _, rel, _ = _blob(rng, dx, dy, r0, 0.6, elong)
            clumps = np.clip(_noise(rng, inside.shape, 1.2 / p) * 0.6 + 0.5, 0.0, 1.0)
            slab_cm = rng.uniform(1.0, 2.0)
            conc = rng.uniform(1.2, 2.2)  # mg/ml in the involved tissue; no density change
            layers.iodine[win] += inside * conc * slab_cm * clumps * (1.0 - 0.5 * rel**2)
            layers.masks[name] = _paste(shape, win, inside)
            continue
        r0 = rng.uniform(4.0, 11.0)
        cx, cy = _place(rng, anat, p, r0 * 1.3, taken)
        win, dx, dy = _local(shape, p, cx, cy, r0 * 1.6)
        irregular = 0.15 if kind in ("mass_homogeneous", "mass_nonenhancing") else 0.45
        inside, chord, rel, r_theta = _blob(rng, dx, dy, r0, irregular)
        layers.tissue_mm[win] += chord * rng.uniform(0.8, 1.0)
        conc = rng.uniform(1.0, 2.2)  # mg/ml
        if kind == "mass_homogeneous":
            iodine = conc * chord / 10.0
        elif kind == "mass_rim":  # necrotic core without uptake: iodine only in the outer shell
            core = 2.0 * r_theta * np.sqrt(np.clip(0.55**2 - rel**2, 0.0, None))
            iodine = 1.4 * conc * np.clip(chord - core, 0.0, None) / 10.0
        elif kind == "mass_heterogeneous":
            iodine = conc * chord / 10.0 * np.clip(0.65 + 0.5 * _noise(rng, chord.shape, 1.5 / p), 0.15, 1.5)
        else:
            iodine = np.zeros_like(chord)
        layers.iodine[win] += iodine
        layers.masks[name] = _paste(shape, win, inside)
    for name in layers.masks:
        layers.masks[name] &= anat.mask
    return layers


def _paste(shape, win, local_mask) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[win] = local_mask
    return out


def _disk(shape, win, dx, dy, radius) -> np.ndarray:
    return _paste(shape, win, dx**2 + dy**2 <= radius**2)
