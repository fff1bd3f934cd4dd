"""PASTA standardisation: 1 mm isotropic voxels in PASTA's canonical orientation.

PASTA's public code reorients to nibabel axcodes (L, P, S) and resamples to 1 mm, which
is the *identity* direction in ITK/LPS terms: voxel i runs towards the patient's left,
j towards posterior, k towards superior (Slicer ``IJKToRAS = diag(-1, -1, 1)``). Its
README's word "RAS" is wrong; we follow what the code produces.

Differences from the reference script, on purpose:

* the caller says whether a volume is an image or a label map (the script guessed from the
  minimum value, which mislabels pre-windowed CT and negative labels);
* the grid is exactly 1 mm (the script's ``scipy.ndimage.zoom`` grid is slightly off 1 mm
  while the header claims 1 mm), covering the voxel centres of the input, and oblique
  inputs become truly axis-aligned;
* the transform is kept, so every result maps back onto the original grid
  (:meth:`Standardized.to_source`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PastaError
from ..fileio.readers import as_label
from .grid import Grid
from .resample import LINEAR, NEAREST, resample
from .volume import Volume

PASTA_SPACING = 1.0
RESAMPLE_BYTES = 12  # per target voxel at the peak of a resampling: float32 planes, result and a copy


def standard_grid(source: Grid, spacing: float = PASTA_SPACING) -> Grid:
    """Identity-direction grid with ``spacing`` mm covering all voxel centres of ``source``."""
    from ..memory import check_fits

    if not (np.isfinite(spacing) and spacing > 0):
        raise PastaError(f"the target spacing must be a positive number of mm, got {spacing:g}")
    corners = source.corners_lps()
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    counts = np.floor((hi - lo) / spacing + 1e-4) + 1
    shape = "x".join(f"{c:.0f}" if c < 1e9 else f"{c:.2g}" for c in counts)
    check_fits(float(np.prod(counts)) * RESAMPLE_BYTES, f"a {spacing:g} mm grid ({shape} voxels)", "choose a larger spacing")
    counts = counts.astype(int)
    return Grid(tuple(counts[::-1]), (spacing,) * 3, tuple(lo), np.eye(3))


def _looks_like_labels(volume: Volume) -> bool:
    array = volume.array
    if not np.issubdtype(array.dtype, np.integer) or array.min() < 0:
        return False
    sample = array[:: max(1, array.shape[0] // 8), ::4, ::4]
    return len(np.unique(sample)) <= 64 and int(array.max()) <= 1000


@dataclass
class Standardized:
    """A volume on the PASTA grid plus the grid it came from."""

    volume: Volume
    source_grid: Grid

    def to_source(self, result: np.ndarray | Volume, is_label: bool | None = None) -> Volume:
        """Map an array or volume on the standard grid back onto the original grid."""
        array = result.array if isinstance(result, Volume) else np.asarray(result)
        if array.shape != self.volume.grid.shape:
            raise PastaError(f"result shape {array.shape} is not the standard grid's {self.volume.grid.shape}")
        label = result.is_label if isinstance(result, Volume) and is_label is None else bool(is_label)
        volume = Volume(array, self.volume.grid, is_label=label)
        return resample(volume, self.source_grid, NEAREST if volume.is_label else LINEAR)


def standardize(volume: Volume, *, is_label: bool, spacing: float = PASTA_SPACING) -> Standardized:
    """Resample ``volume`` to PASTA's grid; linear for images, nearest neighbour for labels."""
    volume.check_finite()
    if is_label:
        volume = as_label(volume)
    else:
        if volume.is_label or _looks_like_labels(volume):
            raise PastaError("this volume looks like a label map (few non-negative integer values); standardise it as a label")
        volume = volume.with_array(volume.array, is_label=False)
    target = standard_grid(volume.grid, spacing)
    fill = 0 if is_label else min(float(volume.array.min()), -1024.0)
    return Standardized(resample(volume, target, fill=fill), volume.grid)
