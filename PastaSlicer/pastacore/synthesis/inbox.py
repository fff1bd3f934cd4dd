"""Keeping a synthetic lesion inside the box the user drew: nothing outside the box changes.

Two steps, for every backend:

1. **Fit** (before rendering): the lesion's planned size and the centre's range are chosen so
   that the lesion *and* the reach of its edge (the blend or feathering around it, which a
   backend states with ``reach_mm(plan)``) fit inside the box. A size that does not fit is
   reduced, and the plan says so.
2. **Keep** (after rendering): whatever a backend changed outside the box anyway (spicule
   tips, a protrusion pushed towards the lumen) is put back to the source's values and taken out
   of the lesion mask; the plan says how many voxels that was. With the fit, a round lesion
   needs none.

Boxes are voxel boxes of the CT's grid (already clipped to the image, so a box partly outside
the image holds the lesion in its in-image part). Sizes are along the patient axes (LPS);
the fit works in index space, so it holds for oblique grids too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError

if TYPE_CHECKING:
    from ..geometry.boxes import VoxelBox
    from ..geometry.grid import Grid
    from ..geometry.volume import Volume
    from .plan import SynthesisPlan
    from .render import Rendered

MIN_SIZE_MM = 3.0


def default_reach_mm(plan: SynthesisPlan) -> float:
    """How far past the lesion's 50 % contour a Gaussian edge of ``plan.edge_sigma_mm`` still
    changes voxels: the weight floor (0.01) lies 2.33 sigma out; + 1 mm for the linear
    resampling of the 1 mm working grid onto the CT's grid."""
    return 2.5 * float(plan.edge_sigma_mm) + 1.0


def _half_index(grid: Grid, half_mm: np.ndarray) -> np.ndarray:
    """Half-extent (i, j, k voxels) of an LPS-aligned box of half-size ``half_mm`` (x, y, z)."""
    return (np.abs(np.asarray(grid.direction, float)).T @ np.asarray(half_mm, float)) / np.asarray(grid.spacing, float)


def fit_in_box(plan: SynthesisPlan, box: VoxelBox, grid: Grid, reach_mm: float, size_requested: bool) -> tuple:
    """Shrink ``plan.size_mm`` (in place) until the lesion and its edge fit in ``box``; returns the
    range ``(low, high)`` (i, j, k, continuous indices) in which the lesion's centre keeps it all
    inside. A reduced size is noted in the plan."""
    shape = np.array(box.shape[::-1], float)  # voxels along i, j, k
    reach = float(reach_mm) / np.asarray(grid.spacing, float)  # the edge (a ball of reach_mm), in voxels along i, j, k
    room = shape / 2 - reach  # the most half the lesion may span along each index axis
    size = np.asarray(plan.size_mm, float)
    half = _half_index(grid, size / 2)
    if np.any(room <= 0):
        raise PastaError(_too_small(grid, box, reach_mm))
    factor = float(min(1.0, np.min(room / np.maximum(half, 1e-9))))
    if factor < 1.0:
        fitted = [float(np.floor(v * 10) / 10) for v in size * factor]  # 0.1 mm, rounded down
        if min(fitted) < MIN_SIZE_MM:
            raise PastaError(_too_small(grid, box, reach_mm))
        before = " x ".join(f"{v:.0f}" for v in size)
        after = " x ".join(f"{v:.0f}" for v in fitted)
        plan.size_mm = fitted
        plan.wall_thickness_mm = round(plan.wall_thickness_mm * factor, 2)
        if size_requested:
            plan.notes.append(
                f"kept inside the box: the requested size {before} mm was reduced to {after} mm so that the lesion "
                f"and its {reach_mm:.1f} mm edge fit in the box"
            )
        else:
            plan.notes.append(f"size from the box: {after} mm, leaving room for the lesion's {reach_mm:.1f} mm edge inside it")
        half = _half_index(grid, np.asarray(fitted) / 2)
    span = half + reach
    low = np.array(box.start[::-1], float) - 0.5 + span
    high = np.array(box.stop[::-1], float) - 0.5 - span
    centre = (np.array(box.start[::-1], float) + np.array(box.stop[::-1], float) - 1) / 2
    return np.minimum(low, centre), np.maximum(high, centre)


def _too_small(grid: Grid, box: VoxelBox, reach_mm: float) -> str:
    extent = " x ".join(f"{e:.0f}" for e in grid.extent_mm(box))
    return (
        f"the box ({extent} mm) is too small for a lesion of at least {MIN_SIZE_MM:g} mm and its {reach_mm:.1f} mm edge; "
        "enlarge the box"
    )


def keep_in_box(volume: Volume, rendered: Rendered, box: VoxelBox) -> int:
    """Put back the source's values of every voxel outside ``box`` that ``rendered`` changed and
    take them out of its lesion (in place; its crop becomes the crop's part in the box); returns
    how many voxels that was."""
    from ..geometry.boxes import VoxelBox

    crop = rendered.crop
    start = tuple(max(a, b) for a, b in zip(crop.start, box.start))
    stop = tuple(max(s, min(a, b)) for a, b, s in zip(crop.stop, box.stop, start))
    inside = np.zeros(crop.shape, bool)
    inner = tuple(slice(s - c, e - c) for s, e, c in zip(start, stop, crop.start))
    inside[inner] = True
    source, out = volume.array[crop.slices], rendered.array[crop.slices]
    outside = ~inside & (out != source)
    count = int(outside.sum())
    out[outside] = source[outside]
    rendered.lesion[crop.slices] &= inside
    rendered.region = rendered.region[inner] if rendered.region.shape == crop.shape else inside[inner]
    rendered.crop = VoxelBox(start, stop)
    if not rendered.lesion[rendered.crop.slices].any():
        raise PastaError("the lesion came out outside the box; move the box or make it larger")
    return count
