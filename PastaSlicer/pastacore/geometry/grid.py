"""Voxel grids in one documented convention.

Convention used everywhere in pastacore (the ITK/DICOM one):

* arrays are indexed ``array[k, j, i]`` (slowest axis first), like SimpleITK's
  ``GetArrayFromImage`` and Slicer's ``arrayFromVolume``;
* ``spacing`` is ``(si, sj, sk)`` in mm, all positive;
* ``origin`` is the LPS position (mm) of the centre of voxel ``(i, j, k) = (0, 0, 0)``;
* ``direction`` is a 3x3 matrix whose *columns* are the LPS unit vectors of the i, j and k
  axes. It may be oblique and left-handed (negative determinant).

So ``lps = origin + direction @ (spacing * (i, j, k))``. Slicer's ``IJKToRAS`` is the same
matrix with the first two rows negated (:meth:`Grid.ijk_to_ras`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Sequence


LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class IndexBox(Protocol):
    """Index ranges per numpy axis (what :class:`~pastacore.geometry.boxes.VoxelBox` is)."""

    start: tuple
    stop: tuple


@dataclass(frozen=True)
class Grid:
    """Where the voxels of a 3D array sit in patient space (see module docstring)."""

    shape: tuple  # (nk, nj, ni): the numpy shape of arrays on this grid
    spacing: tuple = (1.0, 1.0, 1.0)
    origin: tuple = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self):
        shape = tuple(int(n) for n in self.shape)
        spacing = tuple(float(s) for s in self.spacing)
        origin = tuple(float(o) for o in self.origin)
        direction = np.array(self.direction, dtype=float).reshape(3, 3)
        if len(shape) != 3 or min(shape) < 1:
            raise PastaError(f"a volume needs three axes with at least one voxel each, got shape {shape}")
        if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise PastaError(f"voxel spacing must be positive and finite, got {spacing}")
        if not np.all(np.isfinite(origin)) or not np.all(np.isfinite(direction)):
            raise PastaError("the volume's origin or direction contains NaN or infinity")
        gram = direction.T @ direction
        if not np.allclose(gram, np.eye(3), atol=1e-4):
            raise PastaError("the volume's direction matrix is not orthonormal (sheared volumes are not supported)")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    # --- matrices ---------------------------------------------------------------------
    def ijk_to_lps(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        m[:3, 3] = self.origin
        return m

    def ijk_to_ras(self) -> np.ndarray:
        return LPS_TO_RAS @ self.ijk_to_lps()

    def lps_to_ijk(self) -> np.ndarray:
        return np.linalg.inv(self.ijk_to_lps())

    @classmethod
    def from_ijk_to_lps(cls, shape: Sequence[int], matrix: np.ndarray) -> Grid:
        matrix = np.asarray(matrix, dtype=float)
        columns = matrix[:3, :3]
        spacing = np.linalg.norm(columns, axis=0)
        if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
            raise PastaError("voxel spacing must be positive and finite (the IJK matrix has a zero column)")
        return cls(shape, tuple(spacing), tuple(matrix[:3, 3]), columns / spacing[None, :])

    @classmethod
    def from_ijk_to_ras(cls, shape: Sequence[int], matrix: np.ndarray) -> Grid:
        return cls.from_ijk_to_lps(shape, LPS_TO_RAS @ np.asarray(matrix, dtype=float))

    # --- points -----------------------------------------------------------------------
    @property
    def size_ijk(self) -> tuple:
        """Number of voxels along (i, j, k)."""
        return self.shape[::-1]

    def index_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous (i, j, k) indices, shape (..., 3), to LPS mm."""
        ijk = np.asarray(ijk, dtype=float)
        m = self.ijk_to_lps()
        return ijk @ m[:3, :3].T + m[:3, 3]

    def lps_to_index(self, lps: np.ndarray) -> np.ndarray:
        lps = np.asarray(lps, dtype=float)
        m = self.lps_to_ijk()
        return lps @ m[:3, :3].T + m[:3, 3]

    def corners_lps(self) -> np.ndarray:
        """LPS positions of the 8 corner voxel centres, shape (8, 3)."""
        ni, nj, nk = self.size_ijk
        corners = np.array([[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)], float)
        return self.index_to_lps(corners)

    def extent_mm(self, box: IndexBox | None = None) -> list:
        """Size (mm) along x, y, z of a voxel box (``start``/``stop`` per numpy axis; the whole grid
        when None), voxel footprints included: exact for axis-aligned grids, the bounding size
        of the rotated box otherwise."""
        start = (0, 0, 0) if box is None else box.start
        stop = self.shape if box is None else box.stop
        lo, hi = np.asarray(start[::-1], float), np.asarray(stop[::-1], float) - 1
        corners = np.array([(i, j, k) for i in (lo[0], hi[0]) for j in (lo[1], hi[1]) for k in (lo[2], hi[2])])
        lps = self.index_to_lps(corners)
        footprint = np.abs(self.direction) @ np.asarray(self.spacing)
        return [float(v) for v in lps.max(axis=0) - lps.min(axis=0) + footprint]

    @property
    def is_left_handed(self) -> bool:
        return bool(np.linalg.det(self.direction) < 0)

    def same_as(self, other: Grid, tol: float = 1e-4) -> bool:
        """True when both grids put every voxel at the same place (within ``tol`` mm)."""
        return self.shape == other.shape and np.allclose(self.ijk_to_lps(), other.ijk_to_lps(), atol=tol)

    def describe(self) -> str:
        sp = "x".join(f"{s:.3g}" for s in self.spacing)
        return f"{'x'.join(map(str, self.size_ijk))} voxels of {sp} mm"
