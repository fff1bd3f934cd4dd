"""Measurements of a synthesised lesion, for reports and for the attribute-fidelity tests.

Every function takes the image array, the boolean lesion mask and the grid; sizes are in
mm along the patient axes (x = L, y = P, z = S).
"""

from __future__ import annotations

import numpy as np

from ..geometry import Grid


def extents_mm(mask: np.ndarray, grid: Grid) -> list:
    """Bounding-box size of the mask along x, y, z (mm), voxel footprints included."""
    from ..geometry.boxes import VoxelBox

    box = VoxelBox.from_mask(mask)
    return [0.0, 0.0, 0.0] if box is None else [round(v, 2) for v in grid.extent_mm(box)]


def volume_ml(mask: np.ndarray, grid: Grid) -> float:
    return float(mask.sum() * np.prod(grid.spacing) / 1000.0)


def interior(mask: np.ndarray, depth_mm: float, grid: Grid) -> np.ndarray:
    """Voxels at least ``depth_mm`` inside the mask."""
    from scipy import ndimage

    from ..geometry.boxes import VoxelBox

    result = np.zeros(mask.shape, bool)
    found = VoxelBox.from_mask(mask)
    if found is None:
        return result
    box = found.slices
    depth = ndimage.distance_transform_edt(np.pad(mask[box], 1), sampling=grid.spacing[::-1])[1:-1, 1:-1, 1:-1]
    result[box] = depth > depth_mm
    return result


def surface_area_mm2(mask: np.ndarray, grid: Grid) -> float:
    """Area of the voxel faces between the mask and the rest (an overestimate, fine for ordering)."""
    si, sj, sk = grid.spacing
    padded = np.pad(mask, 1)
    area = 0.0
    for axis, face in ((0, si * sj), (1, si * sk), (2, sj * sk)):
        area += np.count_nonzero(np.diff(padded.astype(np.int8), axis=axis)) * face
    return float(area)


def compactness(mask: np.ndarray, grid: Grid) -> float:
    """Sphericity-like 36 pi V^2 / A^3 (1 for a sphere with a true surface area; voxel faces make it lower)."""
    volume = mask.sum() * float(np.prod(grid.spacing))
    area = surface_area_mm2(mask, grid)
    return float(36 * np.pi * volume**2 / area**3) if area else 0.0


def edge_width_mm(image: np.ndarray, mask: np.ndarray, grid: Grid, inside_hu: float, outside_hu: float) -> float:
    """Mean 10-90 % transition width: voxels whose value lies between 10 % and 90 % of the way
    from ``outside_hu`` to ``inside_hu``, near the border, per unit of border area."""
    from scipy import ndimage

    spacing = grid.spacing[::-1]
    inside_d = ndimage.distance_transform_edt(mask, sampling=spacing)
    outside_d = ndimage.distance_transform_edt(~mask, sampling=spacing)
    near = (inside_d < 8) & (outside_d < 8)
    fraction = (image.astype(np.float32) - outside_hu) / (inside_hu - outside_hu)
    band = near & (fraction > 0.1) & (fraction < 0.9)
    area = surface_area_mm2(mask, grid)
    return float(band.sum() * float(np.prod(grid.spacing)) / area) if area else 0.0


def lesion_stats(image: np.ndarray, mask: np.ndarray, grid: Grid) -> dict:
    """Size, volume, mean and SD (whole lesion and interior) of a lesion."""
    values = image[mask].astype(np.float64)
    core = interior(mask, 2.0, grid) if mask.sum() > 200 else mask
    core_values = image[core].astype(np.float64) if core.any() else values
    return {
        "size_mm": extents_mm(mask, grid),
        "volume_ml": round(volume_ml(mask, grid), 3),
        "mean_hu": round(float(values.mean()), 1) if values.size else None,
        "sd_hu": round(float(values.std()), 1) if values.size else None,
        "interior_sd_hu": round(float(core_values.std()), 1) if core_values.size else None,
        "voxels": int(mask.sum()),
    }
