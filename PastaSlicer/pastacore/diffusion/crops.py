"""Geometry between the user's CT and the networks' crops.

The networks work on 1 mm crops in LesionDiffusion's array order: (superior, anterior, left)
for the axes (0, 1, 2), i.e. a nibabel LAS volume transposed. pastacore's 1 mm grid with the
identity direction is (superior, posterior, left): the same up to reversing axis 1, which
:func:`to_model` / :func:`from_model` do. Crops are centred on the lesion; voxels beyond
the CT read as air (-1024 HU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..geometry import Grid, Volume
from ..geometry.boxes import VoxelBox
from ..geometry.resample import LINEAR, NEAREST, resample

if TYPE_CHECKING:
    from collections.abc import Sequence


AIR_HU = -1024.0


def working_grid(center_lps: np.ndarray, shape: tuple[int, int, int]) -> Grid:
    """A 1 mm identity-direction grid of ``shape`` (k, j, i) centred on ``center_lps``."""
    shape = tuple(int(n) for n in shape)
    center = np.asarray(center_lps, float)
    half = (np.array(shape[::-1], float) - 1) / 2  # (i, j, k)
    return Grid(shape, (1.0, 1.0, 1.0), tuple(center - half), np.eye(3))


def centered(full_shape: tuple[int, ...], crop_shape: tuple[int, ...]) -> tuple:
    """Slices of a ``crop_shape`` block centred in ``full_shape``."""
    return tuple(slice((f - c) // 2, (f - c) // 2 + c) for f, c in zip(full_shape, crop_shape))


def to_model(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array[..., ::-1, :])


from_model = to_model  # reversing an axis is its own inverse


def resample_image(volume: Volume, grid: Grid) -> np.ndarray:
    return resample(volume, grid, LINEAR, fill=AIR_HU).array.astype(np.float32)


def resample_mask(mask: np.ndarray, source: Grid, grid: Grid) -> np.ndarray:
    return resample(Volume(mask.astype(np.uint8), source, is_label=True), grid, NEAREST, fill=0).array > 0


def box_on_grid(box: VoxelBox | None, source: Grid, grid: Grid) -> np.ndarray:
    """The user's box (voxels of ``source``) as a mask on ``grid`` (all true without a box)."""
    if box is None:
        return np.ones(grid.shape, bool)
    origin = source.index_to_lps(np.array(box.start[::-1], float))
    sub = Grid(box.shape, source.spacing, tuple(origin), source.direction)
    return resample_mask(np.ones(box.shape, bool), sub, grid)


def lesion_box(grid: Grid, center_lps: np.ndarray, size_mm: Sequence[float]) -> np.ndarray:
    """The filled lesion bounding box (centre +- size/2, LPS axes) on an identity 1 mm grid."""
    lo = grid.lps_to_index(np.asarray(center_lps, float) - np.asarray(size_mm, float) / 2)
    hi = grid.lps_to_index(np.asarray(center_lps, float) + np.asarray(size_mm, float) / 2)
    start = np.clip(np.ceil(np.minimum(lo, hi) - 1e-6).astype(int), 0, grid.size_ijk)
    stop = np.clip(np.floor(np.maximum(lo, hi) + 1e-6).astype(int) + 1, 0, grid.size_ijk)
    stop = np.maximum(stop, np.minimum(start + 1, grid.size_ijk))
    mask = np.zeros(grid.shape, bool)
    mask[start[2] : stop[2], start[1] : stop[1], start[0] : stop[0]] = True
    return mask
