"""VirtualContrastTraining: the engine of the VirtualContrast 3D Slicer extension.

Plain Python, no Slicer import anywhere. The numpy-only parts (metrics, data
readers, events) import without torch, so the Slicer GUI can use them before
torch is installed; torch and monai are imported where models are built.
"""

import platform
from importlib import metadata

__version__ = "0.1.0"
# A package folder that `python -m VirtualContrastTraining` puts first on its path (__main__.py): in
# Slicer, the module's own folder of the engine's packages (VirtualContrastLib/dependencies.py).
PACKAGES_VARIABLE = "VIRTUALCONTRAST_PACKAGES"

# Distributions whose versions change the numbers: recorded, when installed, with every model and evaluation.
VERSIONED = ("numpy", "scipy", "scikit-image", "scikit-learn", "torch", "monai", "SimpleITK", "pydicom", "matplotlib")
# Keys of earlier versions records, read as today's: provenance.json named the engine "VirtualContrastTraining".
_EARLIER_VERSION_KEYS = {"VirtualContrastTraining": "engine"}


def software_versions() -> dict[str, str]:
    """The one versions record, of model sidecars and evaluations (provenance.json): "python", "engine",
    then each installed distribution of VERSIONED by its distribution name, from its metadata (no import)."""
    versions = {"python": platform.python_version(), "engine": __version__}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def read_versions(record) -> dict[str, str]:
    """A versions record as software_versions() writes it, from one written now or earlier (models saved
    before the one schema hold python, torch, monai, numpy and engine: a subset; earlier provenance.json
    named the engine "VirtualContrastTraining"). Anything but a dict is no record: {}."""
    if not isinstance(record, dict):
        return {}
    return {_EARLIER_VERSION_KEYS.get(str(k), str(k)): str(v) for k, v in record.items()}
