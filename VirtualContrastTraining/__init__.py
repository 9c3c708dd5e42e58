"""VirtualContrastTraining: the engine of the VirtualContrast 3D Slicer extension.

Plain Python, no Slicer import anywhere. The numpy-only parts (metrics, data
readers, events) import without torch, so the Slicer GUI can use them before
torch is installed; torch and monai are imported where models are built.
"""

__version__ = "0.1.0"
# A package folder that `python -m VirtualContrastTraining` puts first on its path (__main__.py): in
# Slicer, the module's own folder of the engine's packages (VirtualContrastLib/dependencies.py).
PACKAGES_VARIABLE = "VIRTUALCONTRAST_PACKAGES"
