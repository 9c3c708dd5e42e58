"""A scene that behaves like Slicer's, built from the PyPI package slicer-core (no application).

Used by the tests and by scripts that run the module's logic without Slicer
(examples/slicer_core_walkthrough.py, which makes README's screenshot). Inside Slicer none of this is needed: the
application has already made all of it.
"""

from __future__ import annotations

import types

import slicer
import vtk


def newScene():
    """A fresh scene set as `slicer.mrmlScene`, with the application, colour, volumes, segmentations,
    markups, tables and plots logics attached and a layout logic that creates view nodes."""
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)
    vtk.vtkObject.GlobalWarningDisplayOff()
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app.SetModuleLogic("Colors", colors)
    logics = {"Colors": colors}
    for name, cls in (("Volumes", slicer.vtkSlicerVolumesLogic),
                      ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                      ("Markups", slicer.vtkSlicerMarkupsLogic),
                      ("Tables", slicer.vtkSlicerTablesLogic),
                      ("Plots", slicer.vtkSlicerPlotsLogic)):
        logic = cls()
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
        logics[name] = logic
    layout = slicer.vtkMRMLLayoutLogic()
    layout.SetMRMLScene(scene)
    # slicer.util reaches module logics as slicer.modules.<name>.logic(), as in the application.
    slicer.modules = types.SimpleNamespace(**{
        name.lower(): types.SimpleNamespace(logic=(lambda logic=logic: logic)) for name, logic in logics.items()})
    # Keep the logics alive as long as the scene.
    scene._virtualContrastLogics = (app, layout, logics)
    return scene
