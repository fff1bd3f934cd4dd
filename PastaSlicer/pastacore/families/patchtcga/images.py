"""Pathology images as 8-bit RGB arrays, their ids, and the pixel grid Slicer puts them on.

Images are read with Pillow (PNG, TIFF, JPEG, an SVS's full-resolution page...): 8-bit RGB as it
is, greyscale, palette and RGBA (alpha dropped) converted to RGB; other modes (16-bit, float) are
refused rather than silently rescaled. The grid is the one SimpleITK gives the file (what Slicer
shows when it loads the image as a one-slice volume); an image SimpleITK reads otherwise gets the
plain pixel grid (origin 0, spacing 1, identity).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Sequence

RGB_MODES = ("RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr")


def image_id(path: str | Path) -> str:
    """The row id of an image: its file name without the last extension (``a/b/tile_3.png`` -> ``tile_3``)."""
    return Path(path).stem


def check_unique_ids(paths: Sequence[str | Path]) -> list:
    """The ids of ``paths``; PastaError when two images share one (their rows could not be told apart)."""
    ids = [image_id(p) for p in paths]
    seen = {}
    for path, ident in zip(paths, ids):
        if ident in seen:
            raise PastaError(f"{seen[ident]} and {path} have the same id '{ident}'; give each image its own file name")
        seen[ident] = path
    return ids


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of the image file ``path``."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise PastaError(f"image {path} does not exist")
    try:
        with Image.open(path) as image:
            if image.mode not in RGB_MODES:
                raise PastaError(
                    f"{path.name} is a {image.mode} image; patches must be 8-bit RGB (or greyscale): convert it first"
                )
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PastaError(f"cannot read {path.name} as an image ({str(exc).splitlines()[0][:100]})") from None
    if min(array.shape[:2]) < 1:
        raise PastaError(f"{path.name} has no pixels")
    return np.ascontiguousarray(array)


def rgb_from_array(array: np.ndarray, what: str = "the image") -> np.ndarray:
    """(H, W, 3) uint8 RGB from an image array: (H, W) grey, (H, W, 3|4) colour, or a one-slice
    volume's (1, H, W[, C]) as Slicer's ``arrayFromVolume`` gives it."""
    array = np.asarray(array)
    if array.ndim in (3, 4) and array.shape[0] == 1 and (array.ndim == 4 or array.shape[-1] not in (3, 4)):
        array = array[0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise PastaError(f"{what} is not a 2-D RGB or greyscale image (array shape {tuple(array.shape)})")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
            raise PastaError(f"{what} holds {array.dtype} values outside 0..255; patches must be 8-bit RGB")
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array[..., :3])


@dataclass(frozen=True)
class PixelGrid:
    """Where an image's pixels lie, as SimpleITK (and so Slicer) places them (LPS, mm)."""

    width: int
    height: int
    origin: tuple = (0.0, 0.0)
    spacing: tuple = (1.0, 1.0)
    direction: tuple = (1.0, 0.0, 0.0, 1.0)
    from_file: bool = False


def pixel_grid(path: str | Path, width: int, height: int) -> PixelGrid:
    """The 2-D grid SimpleITK reads for ``path`` when it has ``width`` x ``height`` pixels; else the plain one."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return PixelGrid(width, height)
    if reader.GetDimension() != 2 or tuple(reader.GetSize()) != (width, height):
        return PixelGrid(width, height)
    return PixelGrid(width, height, tuple(reader.GetOrigin()), tuple(reader.GetSpacing()), tuple(reader.GetDirection()), True)
