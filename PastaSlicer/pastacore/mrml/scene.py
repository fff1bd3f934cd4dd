"""A scene with the module logics registered, as desktop Slicer sets it up at start-up.

Inside the Slicer application use ``SceneContext(slicer.mrmlScene,
slicer.app.applicationLogic())``; headless (tests, command line, a web front end) use
:func:`new_scene`, which registers the logics whose node classes our scenes hold
(segmentations, markups, tables, subject hierarchy, colours, volumes).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator


_LOGICS = (
    ("Colors", "vtkSlicerColorLogic"),
    ("Volumes", "vtkSlicerVolumesLogic"),
    ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
    ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
    ("Markups", "vtkSlicerMarkupsLogic"),
    ("Tables", "vtkSlicerTablesLogic"),
)


@dataclass
class SceneContext:
    scene: object
    app_logic: object = None
    logics: dict = field(default_factory=dict)


@contextlib.contextmanager
def quiet_vtk_errors() -> Iterator[None]:
    """Headless slicer-core logs harmless errors about its missing share folder; hide them."""
    from vtkmodules.vtkCommonCore import vtkLogger, vtkOutputWindow

    window = vtkOutputWindow.GetInstance()
    previous_display = window.GetDisplayMode()
    previous_verbosity = vtkLogger.GetCurrentVerbosityCutoff()
    window.SetDisplayModeToNever()
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_OFF)
    try:
        yield
    finally:
        window.SetDisplayMode(previous_display)
        vtkLogger.SetStderrVerbosity(previous_verbosity)


@contextlib.contextmanager
def silenced_stdout() -> Iterator[None]:
    """MRML's zip code prints each archived file on the C-level stdout; keep our output clean."""
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def node_ids(scene: object) -> list:
    """IDs of every node in ``scene``, in the order they were added."""
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


@contextlib.contextmanager
def temporary_nodes(scene: object, keep: Iterable[object] = ()) -> Iterator[None]:
    """Remove, on leaving, every node added to ``scene`` inside the block (helper label maps
    and the colour tables, display and storage nodes Slicer adds for them), except ``keep``
    (nodes or IDs). What a click leaves in the scene is what it means to leave, nothing else."""
    before = set(node_ids(scene))
    try:
        yield
    finally:
        kept = {k if isinstance(k, str) else k.GetID() for k in keep if k is not None}
        for node_id in reversed(node_ids(scene)):
            if node_id not in before and node_id not in kept:
                node = scene.GetNodeByID(node_id)
                if node is not None:
                    scene.RemoveNode(node)


def new_scene() -> SceneContext:
    """A fresh headless scene with Slicer's module logics attached."""
    import slicer

    with quiet_vtk_errors():
        scene = slicer.vtkMRMLScene()
        app_logic = slicer.vtkSlicerApplicationLogic()
        app_logic.SetMRMLScene(scene)
        logics = {}
        for name, class_name in _LOGICS:
            logic = getattr(slicer, class_name)()
            logic.SetMRMLApplicationLogic(app_logic)
            logic.SetMRMLScene(scene)
            app_logic.SetModuleLogic(name, logic)
            logics[name] = logic
        app_logic.SetColorLogic(logics["Colors"])
    return SceneContext(scene, app_logic, logics)
