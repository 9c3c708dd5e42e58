"""Small array helpers shared by anatomy, lesions and acquisition: smoothstep, resampling, smoothed noise."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


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
