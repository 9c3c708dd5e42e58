"""Acquisition physics: one LE/HE/DES triple with its truth from the anatomy and the lesions (`simulate_case`).

The low-energy (LE) and high-energy (HE) images follow Beer-Lambert with
energy-dependent attenuation of adipose and glandular tissue, muscle, calcium and
iodine, and the dual-energy subtracted (DES) image is the weighted log
subtraction that cancels the adipose/glandular contrast, as on a real system.
What remains in DES is what a model must learn to predict from LE: iodine
(lesions, vessels, background parenchymal enhancement) and the residual
thickness "halo" of the breast periphery (Zormpas-Petridis 2026, Fig. 2).

Intensities use one fixed calibration for all cases (`CALIBRATION`), never a
per-image min-max: a pixel value means the same thing in every case, which is
what lets a model learn one consistent LE -> DES map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from VirtualContrastTraining.data.image import Image
from VirtualContrastTraining.data.phantom.anatomy import (
    DENSITIES,
    VIEWS,
    _glandular_fraction,
    _outline,
    _rolloff,
    _vessels,
)
from VirtualContrastTraining.data.phantom.fields import _noise, _resize
from VirtualContrastTraining.data.phantom.lesions import _render_lesions, random_lesion_kinds

# Full-field detector of the GE Senographe Pristina: 2850 x 2394 pixels of 0.1 mm.
DETECTOR_MM = (285.0, 239.4)  # (height = rows, width = cols)
BPE_LEVELS = ("minimal", "mild", "moderate", "marked")
# Background parenchymal enhancement: iodine concentration in glandular tissue, mg/ml.
BPE_IODINE = {"minimal": 0.05, "mild": 0.15, "moderate": 0.3, "marked": 0.5}


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
