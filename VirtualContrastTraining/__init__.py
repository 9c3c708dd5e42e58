"""VirtualContrastTraining: the engine of the VirtualContrast 3D Slicer extension.

Plain Python, no Slicer import anywhere. The numpy-only parts (metrics, data
readers, events) import without torch, so the Slicer GUI can use them before
torch is installed; torch and monai are imported where models are built.
"""

__version__ = "0.1.0"
