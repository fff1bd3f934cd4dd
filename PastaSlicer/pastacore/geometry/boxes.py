"""Boxes in patient space (a possibly rotated ROI, or two RAS corners) -> voxel boxes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError
from .grid import LPS_TO_RAS, Grid

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True)
class VoxelBox:
    """Half-open index ranges per numpy axis: ``array[k0:k1, j0:j1, i0:i1]``."""

    start: tuple  # (k0, j0, i0)
    stop: tuple  # (k1, j1, i1)

    @property
    def slices(self) -> tuple:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    @property
    def shape(self) -> tuple:
        return tuple(b - a for a, b in zip(self.start, self.stop))

    @classmethod
    def from_mask(cls, mask: np.ndarray, margin: int = 0) -> VoxelBox | None:
        """The box of the non-zero voxels of ``mask`` (+- ``margin`` voxels, clipped); None when empty.
        Found from the mask's projections on each axis, so it costs one pass over the mask."""
        start, stop = [], []
        for axis in range(mask.ndim):
            hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
            if hits.size == 0:
                return None
            start.append(max(int(hits[0]) - margin, 0))
            stop.append(min(int(hits[-1]) + 1 + margin, mask.shape[axis]))
        return cls(tuple(start), tuple(stop))


def box_from_corners_ras(corners_ras: np.ndarray, grid: Grid, what: str = "the box") -> VoxelBox:
    """The voxels whose centres fall within the index-space bounds of ``corners_ras`` (N x 3),
    clipped to the volume. A box entirely outside the volume is an error."""
    corners = np.asarray(corners_ras, dtype=float).reshape(-1, 3)
    if not np.all(np.isfinite(corners)):
        raise PastaError(f"{what} has non-finite coordinates")
    lps = corners * LPS_TO_RAS[:3, :3].diagonal()
    ijk = grid.lps_to_index(lps)
    lo = np.ceil(ijk.min(axis=0) - 1e-6).astype(int)
    hi = np.floor(ijk.max(axis=0) + 1e-6).astype(int) + 1
    size = np.array(grid.size_ijk)
    if np.any(hi <= 0) or np.any(lo >= size):
        raise PastaError(f"{what} lies entirely outside the volume ({grid.describe()})")
    lo, hi = np.clip(lo, 0, size), np.clip(hi, 0, size)
    if np.any(hi <= lo):
        raise PastaError(f"{what} contains no voxel centre of the volume; make it larger")
    return VoxelBox(tuple(int(v) for v in lo[::-1]), tuple(int(v) for v in hi[::-1]))


def box_from_ras_bounds(bounds: Sequence[float], grid: Grid) -> VoxelBox:
    """``bounds`` = (R1, A1, S1, R2, A2, S2): two opposite corners of an axis-aligned RAS box."""
    values = np.asarray(bounds, dtype=float)
    if values.shape != (6,):
        raise PastaError("a RAS box needs six numbers: R1,A1,S1,R2,A2,S2")
    a, b = values[:3], values[3:]
    corners = np.array([[x, y, z] for x in (a[0], b[0]) for y in (a[1], b[1]) for z in (a[2], b[2])])
    return box_from_corners_ras(corners, grid)


def roi_corners_ras(center: Sequence[float], size: Sequence[float], axes: np.ndarray = np.eye(3)) -> np.ndarray:
    """The 8 corners of a box with ``center`` (RAS), ``size`` (mm) and unit ``axes`` (columns, RAS)."""
    center, half, axes = np.asarray(center, float), np.asarray(size, float) / 2, np.asarray(axes, float)
    if np.any(half <= 0):
        raise PastaError(f"the box size must be positive, got {tuple(np.asarray(size, float))}")
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    return center + (signs * half) @ axes.T
