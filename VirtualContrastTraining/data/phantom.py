"""A physics-based CESM phantom: the embedded default dataset (LE, DES, lesion masks, tissue truth).

Why a phantom: the real CESM collections cannot be shipped, yet every step of the
pipeline (import, training, synthesis, CNR) needs paired LE/DES images with known
truth. The phantom gives pairs whose relation is physical, not invented: the
low-energy (LE) and high-energy (HE) images follow Beer-Lambert with
energy-dependent attenuation of adipose and glandular tissue, muscle, calcium and
iodine, and the dual-energy subtracted (DES) image is the weighted log
subtraction that cancels the adipose/glandular contrast, as on a real system.
What remains in DES is what a model must learn to predict from LE: iodine
(lesions, vessels, background parenchymal enhancement) and the residual
thickness "halo" of the breast periphery (Zormpas-Petridis 2026, Fig. 2).

Geometry: each image is simulated as a LEFT breast (chest wall at column 0) and
flipped for a right breast, so both follow the display convention of the
project. Sizes are in mm so a case looks the same at any pixel size.

Intensities use one fixed calibration for all cases (`CALIBRATION`), never a
per-image min-max: a pixel value means the same thing in every case, which is
what lets a model learn one consistent LE -> DES map.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from VirtualContrastTraining import __version__
from VirtualContrastTraining.atomic import atomic_dir, ensure_writable_dir, write_text_atomic
from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.errors import InputError

GENERATOR_VERSION = "1"

# Full-field detector of the GE Senographe Pristina: 2850 x 2394 pixels of 0.1 mm.
DETECTOR_MM = (285.0, 239.4)  # (height = rows, width = cols)

LESION_KINDS = {
    "mass_homogeneous": "enhancing mass (homogeneous)",
    "mass_rim": "enhancing mass (rim)",
    "mass_heterogeneous": "enhancing mass (heterogeneous)",
    "mass_nonenhancing": "non-enhancing mass",
    "nme": "non-mass enhancement",
    "calcifications": "calcifications",
}
LESION_WEIGHTS = (0.2, 0.15, 0.15, 0.15, 0.15, 0.2)  # order of LESION_KINDS
DENSITIES = ("a", "b", "c", "d")
BPE_LEVELS = ("minimal", "mild", "moderate", "marked")
VIEWS = ("CC", "MLO")


@dataclass(frozen=True)
class Physics:
    """Effective linear attenuation coefficients (1/cm) at the LE (~28 keV) and HE (~45 keV) spectrum means.

    Tissue values are in the range of Johns & Yaffe (Phys Med Biol 1987) for
    adipose and fibroglandular tissue; iodine and hydroxyapatite follow the
    NIST XCOM mass attenuation (iodine jumps ~5.5x at its 33.2 keV K-edge, so
    HE sees iodine strongly relative to tissue). Muscle is placed on the
    adipose-glandular line so that it cancels in DES like glandular tissue.
    """

    mu_adipose: tuple[float, float] = (0.30, 0.21)
    mu_glandular: tuple[float, float] = (0.44, 0.26)
    mu_muscle: tuple[float, float] = (0.46, 0.267)
    mu_calcium: tuple[float, float] = (8.0, 2.4)            # hydroxyapatite, 3.06 g/cm3
    iodine_mass_atten: tuple[float, float] = (10.5, 15.3)   # cm2/g
    # Effective detected quanta per mm2 behind the AEC reference (adipose at the
    # compressed thickness), after the system's noise filtering.
    quanta_per_mm2: tuple[float, float] = (6.0e5, 4.0e5)
    # Residual scatter-to-primary ratio (after the anti-scatter grid) and its spread.
    scatter_to_primary: tuple[float, float] = (0.05, 0.04)
    scatter_sigma_mm: float = 15.0

    @property
    def weight(self) -> float:
        """DES weight w that cancels adipose/glandular contrast: DES = ln(LE) w - ln(HE) (iodine positive)."""
        return (self.mu_glandular[1] - self.mu_adipose[1]) / (self.mu_glandular[0] - self.mu_adipose[0])


@dataclass(frozen=True)
class Calibration:
    """Fixed log-signal -> pixel-value maps shared by all cases (GE Senographe Pristina-like ranges)."""

    le_background: float = 250.0
    le_adipose: float = 1900.0      # adipose at any thickness, after AEC and thickness equalisation
    le_gain: float = 1150.0         # pixel units per unit of log attenuation
    he_background: float = 250.0
    he_adipose: float = 1950.0
    he_gain: float = 2500.0
    des_background: float = 1100.0
    des_level: float = 2000.0       # DES of iodine-free breast tissue
    des_gain: float = 8000.0        # ~92 units per mg/cm2 of iodine
    bits_stored: int = 14
    le_window: tuple[float, float] = (2350.0, 1100.0)   # [1800, 2900]
    des_window: tuple[float, float] = (2050.0, 700.0)   # [1700, 2400]


PHYSICS = Physics()
CALIBRATION = Calibration()

# ACR density: share of the glandular envelope that is actually glandular.
DENSITY_FILL = {"a": 0.15, "b": 0.35, "c": 0.6, "d": 0.85}
# Background parenchymal enhancement: iodine concentration in glandular tissue, mg/ml.
BPE_IODINE = {"minimal": 0.05, "mild": 0.15, "moderate": 0.3, "marked": 0.5}


@dataclass
class PhantomCase:
    """One simulated image pair with its truth. Arrays are (rows, cols) in the display convention."""

    le: np.ndarray               # uint16
    des: np.ndarray              # uint16
    he: np.ndarray               # uint16
    breast: np.ndarray           # bool
    fibroglandular: np.ndarray   # bool: glandular fraction > 0.5, lesions and pectoral muscle excluded
    adipose: np.ndarray          # bool: breast, not fibroglandular, not roll-off band, muscle or lesion
    pectoral: np.ndarray         # bool (MLO only)
    iodine: np.ndarray           # float32 mg/cm2, noise-free
    lesion_masks: dict[str, np.ndarray]   # segment name -> bool mask
    lesion_types: list[str]      # LESION_KINDS keys, one per lesion
    meta: dict = field(default_factory=dict)

    def image(self, array: np.ndarray, **meta) -> Image:
        """`array` with this case's geometry (origin 0, identity direction, square pixels)."""
        p = self.meta["pixel_mm"]
        return Image(array, spacing=(p, p), meta={**self.meta, **meta})


# ---------------------------------------------------------------- small field helpers


def _smoothstep(x, lo: float, hi: float):
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _resize(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling, corner-aligned (cheap: two gathers, no coordinate arrays)."""
    out = a
    for axis, n in enumerate(shape):
        m = out.shape[axis]
        pos = np.linspace(0.0, m - 1.0, n) if n > 1 else np.zeros(1)
        i0 = np.floor(pos).astype(np.intp)
        i1 = np.minimum(i0 + 1, m - 1)
        w = (pos - i0).astype(np.float32)
        w = w[:, None] if axis == 0 else w[None, :]
        out = np.take(out, i0, axis=axis) * (1 - w) + np.take(out, i1, axis=axis) * w
    return out.astype(np.float32)


def _noise(rng: np.random.Generator, shape, sigma) -> np.ndarray:
    """Gaussian-filtered white noise, normalised to zero mean and unit sd."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="reflect")
    return (n - n.mean()) / (n.std() + 1e-12)


def _rolloff(d_mm, t0_mm: float, radius_mm: float):
    """Compressed thickness at distance d inside the skin line: a semicircular edge of radius R, then flat."""
    d = np.clip(d_mm, 0.0, radius_mm)
    return np.where(d_mm > 0, t0_mm * np.sqrt(np.clip(1.0 - (1.0 - d / radius_mm) ** 2, 0.0, 1.0)), 0.0)


# ---------------------------------------------------------------- anatomy


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


# ---------------------------------------------------------------- lesions


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


# ---------------------------------------------------------------- acquisition


def simulate_case(
    rng: np.random.Generator,
    *,
    pixel_mm: float = 0.1,
    laterality: str = "L",
    view: str = "CC",
    density: str = "b",
    bpe: str = "mild",
    lesions: Sequence[str] | None = None,
    size: float | None = None,
    thickness_mm: float | None = None,
    physics: Physics = PHYSICS,
    calibration: Calibration = CALIBRATION,
) -> PhantomCase:
    """Simulate one LE/HE/DES triple with its truth.

    `lesions` lists LESION_KINDS keys (None: drawn at random, about 70 % of
    cases get at least one). The anatomy, the lesions and the quantum noise use
    independent streams spawned from `rng`, so the same generator state with a
    different lesion list gives the same breast and the same noise: tests use
    that to measure exactly what a lesion adds to LE and to DES.
    """
    if laterality not in ("L", "R") or view not in VIEWS or density not in DENSITIES or bpe not in BPE_LEVELS:
        raise ValueError(f"bad case parameters: {laterality=}, {view=}, {density=}, {bpe=}")
    if not 0.05 <= pixel_mm <= 5.0:
        raise ValueError(f"pixel size {pixel_mm} mm is outside 0.05-5 mm")
    rng_anatomy, rng_lesion, rng_noise = rng.spawn(3)
    if lesions is None:
        lesions = random_lesion_kinds(rng_lesion)
    size = rng_anatomy.uniform(0.75, 1.2) if size is None else size
    t0 = rng_anatomy.uniform(40.0, 70.0) if thickness_mm is None else thickness_mm
    p = float(pixel_mm)
    rows, cols = (int(math.floor(s / p + 0.5)) for s in DETECTOR_MM)

    anat = _outline(rng_anatomy, rows, cols, p, view, size)
    radius = t0 / 2.0
    thick = _rolloff(anat.dist, t0, radius).astype(np.float32)
    skin_mm = 1.5
    skin = thick - _rolloff(anat.dist - skin_mm, t0 - 2 * skin_mm, radius - skin_mm).astype(np.float32)
    muscle_mm = anat.muscle * np.minimum(rng_anatomy.uniform(10.0, 25.0), thick - skin)
    soft = np.clip(thick - skin - muscle_mm, 0.0, None)
    f = _glandular_fraction(rng_anatomy, anat, p, density)
    vessels = _vessels(rng_anatomy, anat, p)
    patch = _resize(np.clip(0.6 + 0.5 * _noise(rng_anatomy, (rows // 20 + 2, cols // 20 + 2), 6.0 / (20 * p)), 0.1, None), (rows, cols))
    # The system's own thickness model assumes a slightly wider edge: its error is the DES halo.
    halo = rng_anatomy.uniform(1.0, 1.15)
    thick_est = _rolloff(anat.dist, t0, radius * halo).astype(np.float32)

    les = _render_lesions(rng_lesion, anat, p, lesions)
    extra = np.clip((les.tissue_mm + vessels) / np.maximum(soft, 1e-3), 0.0, 1.0)
    f_total = f + (1.0 - f) * extra
    iodine = (
        BPE_IODINE[bpe] * f * soft / 10.0 * patch     # mg/ml x cm
        + 0.1 * muscle_mm / 10.0                      # perfused muscle
        + 3.0 * vessels / 10.0                        # blood, ~3 mg/ml at 2 min
        + les.iodine
    ).astype(np.float32) * anat.mask

    cm = 0.1
    glandular_cm = (f_total * soft + skin) * cm
    adipose_cm = (1.0 - f_total) * soft * cm
    t0_cm = t0 * cm
    logs = []
    for e in (0, 1):  # 0 = LE, 1 = HE
        atten = (
            physics.mu_adipose[e] * adipose_cm
            + physics.mu_glandular[e] * glandular_cm
            + physics.mu_muscle[e] * muscle_mm * cm
            + physics.mu_calcium[e] * les.calcium_mm * cm
            + physics.iodine_mass_atten[e] * iodine * 1e-3
        ).astype(np.float32)
        primary = np.exp(-atten)
        # Low-frequency residual scatter, generated where the beam crosses tissue.
        k = max(1, int(round(2.0 / p)))
        coarse = _resize(primary * (thick / t0), (rows // k + 2, cols // k + 2))
        scatter = physics.scatter_to_primary[e] * _resize(
            ndimage.gaussian_filter(coarse, physics.scatter_sigma_mm / (k * p), mode="constant"), (rows, cols)
        )
        # Quantum noise: AEC sets the exposure so adipose at thickness t0 gets the reference quanta.
        quanta = physics.quanta_per_mm2[e] * p * p * np.exp(-(atten - physics.mu_adipose[e] * t0_cm))
        noise = rng_noise.standard_normal((rows, cols), dtype=np.float32) / np.sqrt(quanta)
        # Log attenuation as measured, after the system's uniform scatter correction. Outside
        # the breast the presentation processing shows a flat background: only noise is kept.
        measured = -np.log(primary + scatter) + noise + math.log1p(physics.scatter_to_primary[e])
        logs.append((measured, noise))
    (le_in, le_out), (he_in, he_out) = logs
    w = physics.weight
    k_thick = physics.mu_adipose[1] - w * physics.mu_adipose[0]
    c = calibration
    inside = anat.mask
    le = np.where(inside, c.le_adipose + c.le_gain * (le_in - physics.mu_adipose[0] * thick_est * cm),
                  c.le_background + c.le_gain * le_out)
    he = np.where(inside, c.he_adipose + c.he_gain * (he_in - physics.mu_adipose[1] * thick_est * cm),
                  c.he_background + c.he_gain * he_out)
    des = np.where(inside, c.des_level + c.des_gain * (he_in - w * le_in - k_thick * thick_est * cm),
                   c.des_background + c.des_gain * (he_out - w * le_out))

    lesion_any = np.zeros_like(inside)
    for m in les.masks.values():
        lesion_any |= m
    pectoral = anat.muscle > 0.5
    fibro = inside & (f > 0.5) & ~pectoral & ~lesion_any
    adipose = inside & ~fibro & (anat.dist >= radius) & (anat.muscle == 0) & ~lesion_any
    meta = {
        "pixel_mm": p, "laterality": laterality, "view": view, "density": density, "bpe": bpe,
        "thickness_mm": round(float(t0), 2), "halo_factor": round(float(halo), 3), "des_weight": w,
    }
    flip = (lambda a: np.ascontiguousarray(a[:, ::-1])) if laterality == "R" else (lambda a: a)
    quant = lambda a: flip(np.clip(np.rint(a), 0, 2**c.bits_stored - 1).astype(np.uint16))  # noqa: E731
    return PhantomCase(
        le=quant(le), des=quant(des), he=quant(he),
        breast=flip(inside), fibroglandular=flip(fibro), adipose=flip(adipose), pectoral=flip(pectoral),
        iodine=flip(iodine), lesion_masks={k: flip(v) for k, v in les.masks.items()},
        lesion_types=list(lesions), meta=meta,
    )


def random_lesion_kinds(rng: np.random.Generator, p_lesion: float = 0.7) -> list[str]:
    """0-3 lesion kinds; a breast has at least one lesion with probability `p_lesion`."""
    if rng.uniform() >= p_lesion:
        return []
    n = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    return [str(k) for k in rng.choice(list(LESION_KINDS), size=n, p=LESION_WEIGHTS)]


# ---------------------------------------------------------------- dataset on disk


def _uid(seed: int, pixel_mm: float, *parts: str) -> str:
    """Deterministic UID: reruns with the same seed and pixel size give identical files."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["virtualcontrast-phantom", str(seed), f"{pixel_mm:g}", *parts])


def _write_case(folder: Path, case: PhantomCase, *, case_id: str, patient_id: str, patient_no: int,
                study_uid: str, seed: int, series_no: int, when: datetime):
    """LE and DES DICOMs, lesion .seg.nrrd (only when there are lesions) and truth NRRDs; returns the manifest row."""
    from pydicom.dataset import Dataset

    from VirtualContrastTraining.data.dicom_write import MG_FOR_PRESENTATION, write_mg_dicom
    from VirtualContrastTraining.data.imageio import write_nrrd
    from VirtualContrastTraining.data.manifest import Case
    from VirtualContrastTraining.data.segmentation import write_lesion_segmentation

    p, lat, view = case.meta["pixel_mm"], case.meta["laterality"], case.meta["view"]
    c = CALIBRATION
    # Row direction (increasing column) and column direction (increasing row) in patient terms.
    orientation = ["A" if lat == "L" else "P", ("R" if lat == "L" else "L") if view == "CC" else ("FR" if lat == "L" else "FL")]
    common = dict(spacing_mm=(p, p), patient_id=patient_id, patient_name=f"PHANTOM^{patient_no:04d}",
                  study_uid=study_uid, laterality=lat, view=view, bits_stored=c.bits_stored,
                  manufacturer="VirtualContrast phantom")
    le_sop = _uid(seed, p, case_id, "LE", "sop")
    le_path = write_mg_dicom(
        folder / f"{case_id}_LE.dcm", case.le, image_type=["ORIGINAL", "PRIMARY", "", "LOW_ENERGY"],
        series_uid=_uid(seed, p, case_id, "LE", "series"), sop_uid=le_sop, window=c.le_window,
        series_description=f"{lat} {view} Low Energy", series_number=series_no, acquisition_datetime=when,
        processing_code="GEMS_FFDM_PV", extra={"PatientOrientation": orientation}, **common)
    source = Dataset()
    source.ReferencedSOPClassUID = MG_FOR_PRESENTATION
    source.ReferencedSOPInstanceUID = le_sop
    des_when = when + timedelta(seconds=4)
    des_path = write_mg_dicom(
        folder / f"{case_id}_DES.dcm", case.des, image_type=["DERIVED", "PRIMARY", "", "RECOMBINED"],
        series_uid=_uid(seed, p, case_id, "DES", "series"), sop_uid=_uid(seed, p, case_id, "DES", "sop"),
        window=c.des_window, series_description=f"{lat} {view} Recombined", series_number=series_no + 1,
        acquisition_datetime=des_when, processing_code="GEMS_CESM_1",
        extra={"PatientOrientation": orientation, "SourceImageSequence": [source],
               "DerivationDescription": f"ln(HE) - {case.meta['des_weight']:.4f} ln(LE), thickness compensated"},
        **common)
    reference = case.image(case.le)
    lesion_path = ""
    if case.lesion_masks:
        lesion_path = str(write_lesion_segmentation(folder / f"{case_id}_lesions.seg.nrrd", case.lesion_masks, reference))
    truth = folder / "truth"
    for name in ("breast", "fibroglandular", "adipose"):
        write_nrrd(reference.with_array(getattr(case, name).astype(np.uint8)), truth / f"{case_id}_{name}.nrrd")
    write_nrrd(reference.with_array(case.iodine), truth / f"{case_id}_iodine.nrrd", {"units": "mg/cm2"})
    return Case(
        case_id=case_id, patient_id=patient_id, le_path=str(le_path), des_path=str(des_path),
        lesion_path=lesion_path, study_uid=study_uid, laterality=lat, view=view,
        le_time=when.isoformat(timespec="seconds"), des_time=des_when.isoformat(timespec="seconds"),
        le_window_center=f"{c.le_window[0]:g}", le_window_width=f"{c.le_window[1]:g}",
        des_window_center=f"{c.des_window[0]:g}", des_window_width=f"{c.des_window[1]:g}",
        density=case.meta["density"], bpe=case.meta["bpe"], lesion_types=";".join(case.lesion_types),
    )


def generate_dataset(out_dir: str | Path, n_cases: int, seed: int, pixel_mm: float = 0.1,
                     progress=None) -> Path:
    """Write `n_cases` images grouped into patients under `out_dir`; returns the manifest path.

    A patient has one breast imaged in CC and MLO (sometimes one view only):
    same laterality, density, BPE and lesion kinds, one StudyInstanceUID, so
    patient-level splits keep both views together. The dataset is built in a
    temporary folder and renamed at the end: a failure leaves no half-written
    dataset. `progress(done, total, case_id)` is called after each case.
    """
    out_dir = Path(out_dir)
    if n_cases < 1:
        raise InputError(None, f"--cases must be at least 1 (got {n_cases})")
    if seed < 0:
        raise InputError(None, f"--seed must be >= 0 (got {seed})")
    if not 0.05 <= pixel_mm <= 5.0:
        raise InputError(None, f"--pixel-mm must be within 0.05-5 mm (got {pixel_mm})")
    if out_dir.is_file() or (out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "phantom.json").is_file()):
        raise InputError(out_dir, "exists and is not a phantom dataset; choose a new or empty folder")
    ensure_writable_dir(out_dir.parent)
    rows = []
    with atomic_dir(out_dir) as tmp:
        patient_no = 0
        while len(rows) < n_cases:
            patient_no += 1
            rng = np.random.default_rng([seed, patient_no])
            laterality = str(rng.choice(["L", "R"]))
            density = str(rng.choice(DENSITIES, p=[0.1, 0.4, 0.4, 0.1]))
            bpe = str(rng.choice(BPE_LEVELS, p=[0.35, 0.35, 0.2, 0.1]))
            kinds = random_lesion_kinds(rng)
            size, t0 = rng.uniform(0.75, 1.2), rng.uniform(40.0, 65.0)
            both = rng.uniform() < 0.75 and n_cases - len(rows) >= 2
            views = list(VIEWS) if both else [str(rng.choice(VIEWS))]
            patient_id = f"PHANTOM-{patient_no:04d}"
            study_uid = _uid(seed, pixel_mm, patient_id, "study")
            start = datetime(2024, 1, 1, 8, 0) + timedelta(days=patient_no - 1, minutes=int(rng.integers(0, 480)))
            for v, view in enumerate(views):
                case = simulate_case(
                    np.random.default_rng([seed, patient_no, v]), pixel_mm=pixel_mm, laterality=laterality,
                    view=view, density=density, bpe=bpe, lesions=kinds, size=size,
                    thickness_mm=t0 + (4.0 if view == "MLO" else 0.0))
                case_id = f"{patient_id}_{laterality}_{view}"
                rows.append(_write_case(tmp / patient_id, case, case_id=case_id, patient_id=patient_id,
                                        patient_no=patient_no, study_uid=study_uid, seed=seed,
                                        series_no=1 + 2 * v, when=start + timedelta(seconds=90 * v)))
                if progress:
                    progress(len(rows), n_cases, case_id)
        from VirtualContrastTraining.data.manifest import write_manifest

        write_manifest(tmp / "manifest.csv", rows)
        info = {
            "generator": "VirtualContrast phantom", "generator_version": GENERATOR_VERSION,
            "package_version": __version__, "seed": seed, "pixel_mm": pixel_mm, "cases": n_cases,
            "patients": patient_no, "calibration": asdict(CALIBRATION),
            "physics": {**asdict(PHYSICS), "des_weight": PHYSICS.weight},
            "des": "des_level + des_gain * (ln-attenuation HE - w ln-attenuation LE - thickness term)",
        }
        write_text_atomic(tmp / "phantom.json", json.dumps(info, indent=2) + "\n")
    return out_dir / "manifest.csv"
