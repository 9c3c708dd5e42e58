"""Training augmentation of the papers, applied identically to LE, DES and lesion mask.

Rofena et al. 2024/2025 (and their public code): shift up to +-10 % of the
image size, zoom +-10 %, horizontal flip, rotation up to +-15 degrees, each
drawn with probability 0.3; the segmentation map follows the same transform.

The random draws are ours (a MONAI `Randomizable`), the resampling is
MONAI's dictionary transforms: whichever of shift, zoom and rotation fire are
combined into one `Affined` (one interpolation instead of up to three), and a
flip is an exact `Flipd` on the columns. MONAI's own route, lazily composed
RandAffined transforms, fails in MONAI 1.6 when an earlier one fires and a
later one does not (it mixes 3x3 and 4x4 matrices); composing them eagerly
would blur the images once per transform. Images are resampled bilinearly,
the mask by nearest neighbour so it stays binary; outside the image is 0.

Determinism: `PairedAugmentation(sample, seed=...)` reseeds every random
transform first, so a sample's augmentation depends only on its seed, not on
what was drawn before. The training loop derives that seed from (run seed,
epoch, index) with `sample_seed`, which is what makes a resumed run replay
the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.transforms import Affined, Flipd, Randomizable
from monai.utils import convert_to_tensor

KEYS = ("le", "des", "mask")
MODES = ("bilinear", "bilinear", "nearest")
SHIFT = 0.1                  # fraction of the image size
ZOOM = 0.1                   # relative scale change
ROTATION = math.radians(15)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed for one sample of one epoch of one run."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0])


class PairedAugmentation(Randomizable):
    """Callable on a dict with keys le, des, mask (each (1, S, S)); returns float32 tensors."""

    def __init__(self, prob: float = 0.3, size: int = 256):
        self.prob = float(prob)
        self.size = int(size)
        self.randomize()

    def randomize(self, data=None) -> None:
        """Draw every number every time, so one draw never shifts the others."""
        fire = self.R.uniform(size=4) < self.prob
        shift = self.R.uniform(-SHIFT, SHIFT, size=2) * self.size
        zoom = 1.0 + self.R.uniform(-ZOOM, ZOOM, size=2)
        angle = self.R.uniform(-ROTATION, ROTATION)
        self.shift = tuple(float(s) for s in shift) if fire[0] else None
        self.zoom = tuple(float(z) for z in zoom) if fire[1] else None
        self.flip = bool(fire[2])
        self.angle = float(angle) if fire[3] else None

    def __call__(self, sample: dict, seed: int | None = None) -> dict:
        if seed is not None:
            self.set_random_state(seed=seed)
        self.randomize()
        data = {k: torch.as_tensor(sample[k], dtype=torch.float32) for k in KEYS}
        if self.shift or self.zoom or self.angle:
            data = Affined(KEYS, rotate_params=self.angle, scale_params=self.zoom, translate_params=self.shift,
                           mode=MODES, padding_mode="zeros")(data)
        if self.flip:
            data = Flipd(KEYS, spatial_axis=1)(data)
        return {**sample, **{k: convert_to_tensor(data[k], track_meta=False).float().contiguous() for k in KEYS}}


def make_augmentation(prob: float = 0.3, size: int = 256) -> PairedAugmentation:
    """The papers' augmentation for `size` x `size` images, each transform with probability `prob`."""
    return PairedAugmentation(prob=prob, size=size)
