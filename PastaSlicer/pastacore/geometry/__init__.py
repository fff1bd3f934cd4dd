"""Voxels in patient space: grids (LPS, ``array[k, j, i]``), volumes, boxes, resampling, the 1 mm standard grid."""

from .grid import Grid  # noqa: F401
from .volume import Volume  # noqa: F401
