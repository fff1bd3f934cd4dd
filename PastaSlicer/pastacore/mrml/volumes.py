"""Volume node <-> :class:`~pastacore.geometry.Volume` with the exact IJKToRAS matrix."""

from __future__ import annotations

import numpy as np

from ..errors import PastaError
from ..geometry.grid import Grid
from ..geometry.volume import Volume


def _vtk_matrix(array):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def _numpy_matrix(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def node_from_volume(scene: object, volume: Volume, name: str, node: object | None = None) -> object:
    """Add ``volume`` to ``scene`` as a new scalar (or labelmap) volume node; never reuses a user node
    unless ``node`` is given explicitly."""
    import slicer.util

    if node is None:
        class_name = "vtkMRMLLabelMapVolumeNode" if volume.is_label else "vtkMRMLScalarVolumeNode"
        node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))
    node.SetIJKToRASMatrix(_vtk_matrix(volume.grid.ijk_to_ras()))
    node.CreateDefaultDisplayNodes()
    return node


def grid_from_node(node: object) -> Grid:
    import vtk

    if node is None or node.GetImageData() is None:
        raise PastaError("the selected volume has no image data")
    if node.GetParentTransformNode() is not None:
        raise PastaError(f"volume '{node.GetName()}' is under a transform; harden the transform first")
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    dims = node.GetImageData().GetDimensions()
    return Grid.from_ijk_to_ras(dims[::-1], _numpy_matrix(matrix))


def volume_from_node(node: object, copy: bool = True) -> Volume:
    """Copy a volume node's voxels and geometry into a :class:`Volume` (``copy=False``: a
    read-only view of the node's voxels, for a measurement on the GUI thread that must be quick)."""
    import slicer.util

    grid = grid_from_node(node)
    array = np.array(slicer.util.arrayFromVolume(node), copy=True) if copy else slicer.util.arrayFromVolume(node).view()
    if not copy:
        array.flags.writeable = False
    if array.ndim != 3:
        raise PastaError(f"volume '{node.GetName()}' has {array.ndim} dimensions per voxel array; a scalar 3D volume is needed")
    is_label = node.IsA("vtkMRMLLabelMapVolumeNode")
    meta = {"node_name": node.GetName()}
    return Volume(array, grid, is_label=is_label, meta=meta)
