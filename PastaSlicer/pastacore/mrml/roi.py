"""Markups ROI node -> voxel box of a volume (rotation and parent transforms included)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError
from ..geometry.boxes import VoxelBox, box_from_corners_ras, roi_corners_ras
from ..geometry.grid import Grid

if TYPE_CHECKING:
    from collections.abc import Sequence


def roi_geometry(roi_node: object) -> tuple:
    """(centre RAS, size mm, axes as columns) of the ROI in world coordinates."""
    if roi_node is None:
        raise PastaError("no ROI selected")
    center = [0.0, 0.0, 0.0]
    roi_node.GetCenterWorld(center)
    size = [0.0, 0.0, 0.0]
    roi_node.GetSizeWorld(size)
    matrix = roi_node.GetObjectToWorldMatrix()
    axes = np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])
    axes = axes / np.linalg.norm(axes, axis=0, keepdims=True)
    return np.array(center), np.array(size), axes


def box_from_roi(roi_node: object, grid: Grid) -> VoxelBox:
    """The voxel box of ``grid`` covered by the ROI, clipped; an ROI outside the volume is an error."""
    center, size, axes = roi_geometry(roi_node)
    return box_from_corners_ras(roi_corners_ras(center, size, axes), grid, what=f"ROI '{roi_node.GetName()}'")


def add_roi(scene: object, center_ras: Sequence[float], size_mm: Sequence[float], name: str = "PASTA box") -> object:
    """A new box ROI node (Slicer's default ``Box`` type: centre and size)."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", scene.GenerateUniqueName(name))
    node.SetCenter(*[float(v) for v in center_ras])
    node.SetSize(*[float(v) for v in size_mm])
    node.CreateDefaultDisplayNodes()
    return node
