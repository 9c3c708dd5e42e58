"""MRML-level logic of the VirtualContrast module: nodes <-> engine images, regions and CNR, heatmaps,
display, background jobs, training from the scene. Imports slicer (MRML), vtk, numpy and the engine,
never qt, so it runs under the PyPI package slicer-core as well as inside Slicer."""
