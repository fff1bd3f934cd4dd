"""Save and reload a whole scene as a Slicer data bundle (``.mrb``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import PastaError
from ..fileio.atomic import atomic_outputs
from .scene import SceneContext, new_scene, quiet_vtk_errors, silenced_stdout


def save_mrb(scene: object, path: str | Path, overwrite: bool = False) -> Path:
    """Write every node (with its data files) into one ``.mrb`` archive, atomically.

    The path is made absolute first: MRML resolves a relative bundle path against the scene's
    root directory, not the working directory, and fails."""
    path = Path(path).absolute()
    if path.suffix.lower() != ".mrb":
        raise PastaError(f"{path.name}: a scene bundle must end in .mrb")
    _compress_storage(scene)
    with atomic_outputs(path, overwrite=overwrite) as temp, quiet_vtk_errors(), silenced_stdout():
        if not scene.WriteToMRB(str(temp)) or not temp.is_file():
            raise PastaError(f"writing the scene bundle {path} failed")
    return path


def _compress_storage(scene):
    """Give every storable node a storage node that writes compressed files."""
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if not node.IsA("vtkMRMLStorableNode"):
            continue
        if node.GetStorageNode() is None:
            node.AddDefaultStorageNode()
        storage = node.GetStorageNode()
        if storage is not None and hasattr(storage, "SetUseCompression"):
            storage.SetUseCompression(1)


def load_mrb(path: str | Path, context: SceneContext | None = None) -> SceneContext:
    """Open a ``.mrb`` into ``context`` (a new headless scene by default)."""
    path = Path(path).absolute()
    if not path.is_file():
        raise PastaError(f"{path} does not exist")
    context = context or new_scene()
    extract = Path(tempfile.mkdtemp(prefix="pasta-mrb-"))
    with quiet_vtk_errors(), silenced_stdout():
        ok = context.app_logic.OpenSlicerDataBundle(str(path), str(extract))
    if not ok:
        raise PastaError(f"cannot open {path.name}: not a valid Slicer scene bundle")
    return context
