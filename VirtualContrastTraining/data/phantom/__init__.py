"""A physics-based CESM phantom: the embedded default dataset (LE, DES, lesion masks, tissue truth).

Why a phantom: the real CESM collections cannot be shipped, yet every step of the
pipeline (import, training, synthesis, CNR) needs paired LE/DES images with known
truth. The phantom gives pairs whose relation is physical, not invented (see
`physics`).

Geometry: each image is simulated as a LEFT breast (chest wall at column 0) and
flipped for a right breast, so both follow the display convention of the
project. Sizes are in mm so a case looks the same at any pixel size.

Modules:
- `anatomy`: breast outline and pectoral muscle, thickness roll-off, fibroglandular texture and fraction, vessels.
- `lesions`: lesion kinds, placement, shapes and their tissue, iodine and calcium layers.
- `physics`: attenuation and calibration constants, LE/HE/DES acquisition (`simulate_case`).
- `dataset`: the dataset on disk: DICOMs, lesion segmentations, truth, manifest (`generate_dataset`).
- `fields`: small array helpers shared by the others.
"""

from VirtualContrastTraining.data.phantom.anatomy import DENSITIES, DENSITY_FILL, VIEWS
from VirtualContrastTraining.data.phantom.dataset import GENERATOR_VERSION, generate_dataset
from VirtualContrastTraining.data.phantom.lesions import LESION_KINDS, LESION_WEIGHTS, random_lesion_kinds
from VirtualContrastTraining.data.phantom.physics import (
    BPE_IODINE,
    BPE_LEVELS,
    CALIBRATION,
    DETECTOR_MM,
    PHYSICS,
    Calibration,
    PhantomCase,
    Physics,
    simulate_case,
)

__all__ = [
    "BPE_IODINE", "BPE_LEVELS", "CALIBRATION", "DENSITIES", "DENSITY_FILL", "DETECTOR_MM", "GENERATOR_VERSION",
    "LESION_KINDS", "LESION_WEIGHTS", "PHYSICS", "VIEWS", "Calibration", "PhantomCase", "Physics",
    "generate_dataset", "random_lesion_kinds", "simulate_case",
]
