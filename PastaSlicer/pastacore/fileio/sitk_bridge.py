"""SimpleITK image <-> :class:`Volume` (both use LPS and [k, j, i] arrays)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..geometry.grid import Grid
from ..geometry.volume import Volume

if TYPE_CHECKING:
    import SimpleITK as sitk


def volume_from_sitk(image: sitk.Image, is_label: bool = False, meta: dict | None = None) -> Volume:
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(image)
    grid = Grid(array.shape, image.GetSpacing(), image.GetOrigin(), np.array(image.GetDirection()).reshape(3, 3))
    return Volume(array, grid, is_label=is_label, meta=dict(meta or {}))


def sitk_from_volume(volume: Volume) -> sitk.Image:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    image.SetSpacing(volume.grid.spacing)
    image.SetOrigin(volume.grid.origin)
    image.SetDirection(tuple(volume.grid.direction.ravel()))
    return image
