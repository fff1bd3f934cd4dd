"""A class-probability heat map: an image cut into non-overlapping tiles, each tile classified.

Tiles of ``tile`` x ``tile`` pixels start at the top-left pixel and step by ``tile``; a strip at
the right or bottom narrower than a tile is not classified and stays 0 in the map (the summary says
how wide). Each tile is the very crop ``pasta patches classify`` would be given, so its value is the
probability ``classify`` reports for that crop. The map has the image's own grid (see
:func:`.images.pixel_grid`), so Slicer overlays it on the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ...errors import PastaError

if TYPE_CHECKING:
    from ...classify.heads import Head
    from ...progress import Cancelled, Progress
    from .encoder import PatchEncoder
    from .images import PixelGrid


@dataclass
class HeatMap:
    """``values`` (H, W) float32 in [0, 1]: the tile probabilities of class ``class_name`` painted
    on the image's pixels; ``tiles`` one ``(x, y, probabilities)`` per tile (x, y: its top-left pixel)."""

    values: np.ndarray
    class_name: str
    classes: tuple
    tile: int
    tiles: list
    uncovered: tuple  # (right strip, bottom strip) widths in pixels

    def mean_probabilities(self) -> np.ndarray:
        """(K,) each class's probability averaged over the tiles: the whole image's prediction."""
        return np.mean([p for _x, _y, p in self.tiles], axis=0)

    def summary(self) -> dict:
        """JSON-ready: the image's class (highest mean probability), the means, the tiles."""
        mean = self.mean_probabilities()
        return {
            "label": self.classes[int(np.argmax(mean))],
            "classes": list(self.classes),
            "mean_probabilities": [float(v) for v in mean],
            "class_name": self.class_name,
            "tile": int(self.tile),
            "tiles": len(self.tiles),
            "uncovered": [int(v) for v in self.uncovered],
            "description": self.describe(),
        }

    def describe(self) -> str:
        rows = len({y for _x, y, _p in self.tiles})
        cols = len(self.tiles) // max(rows, 1)
        text = f"{len(self.tiles)} tiles of {self.tile} px ({cols} x {rows}), p({self.class_name})"
        if any(self.uncovered):
            text += f"; the right {self.uncovered[0]} px and bottom {self.uncovered[1]} px are not covered (0)"
        return text


def tile_origins(height: int, width: int, tile: int) -> list:
    """``(x, y)`` of each whole tile, row by row from the top-left."""
    if tile < 1:
        raise PastaError(f"the tile size must be at least 1 pixel (got {tile})")
    if tile > min(height, width):
        raise PastaError(f"a {tile}-pixel tile does not fit the {width}x{height} image; choose a smaller tile")
    return [(x, y) for y in range(0, height - tile + 1, tile) for x in range(0, width - tile + 1, tile)]


def class_index(head: Head, class_name: str | None) -> int:
    """The position of ``class_name`` among the head's classes (default: the second of two)."""
    classes = head.groups[0].options
    if len(head.groups) != 1:
        raise PastaError(f"the head '{head.name}' has {len(head.groups)} output groups; a heat map needs a one-group head")
    if class_name is None:
        if len(classes) != 2:
            raise PastaError(f"the head has {len(classes)} classes ({', '.join(classes)}); choose the class to map")
        return 1
    if class_name not in classes:
        raise PastaError(f"the head has no class '{class_name}' (classes: {', '.join(classes)})")
    return classes.index(class_name)


def compute_heatmap(
    image: np.ndarray,
    encoder: PatchEncoder,
    head: Head,
    tile: int,
    class_name: str | None = None,
    batch_size: int = 16,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> HeatMap:
    """The heat map of ``image`` ((H, W, 3) uint8 RGB) for ``class_name`` of ``head``."""
    from ...errors import CancelledError

    index = class_index(head, class_name)
    height, width = image.shape[:2]
    origins = tile_origins(height, width, tile)
    values = np.zeros((height, width), np.float32)
    tiles = []
    for start in range(0, len(origins), max(1, int(batch_size))):
        if cancelled is not None and cancelled():
            raise CancelledError()
        chunk = origins[start : start + batch_size]
        crops = np.stack([image[y : y + tile, x : x + tile] for x, y in chunk])
        probabilities = head.probabilities(encoder.features(crops))[0][1]
        for (x, y), p in zip(chunk, probabilities):
            values[y : y + tile, x : x + tile] = p[index]
            tiles.append((x, y, p))
        if progress is not None:
            progress(len(tiles) / len(origins), f"{len(tiles)}/{len(origins)} tiles")
    classes = tuple(head.groups[0].options)
    return HeatMap(values, classes[index], classes, tile, tiles, (width % tile, height % tile))


def heatmap_image(heat: HeatMap, grid: PixelGrid) -> object:
    """A 2-D SimpleITK float32 image of ``heat.values`` on ``grid`` (the source image's grid)."""
    import SimpleITK as sitk

    if heat.values.shape != (grid.height, grid.width):
        raise PastaError(f"the heat map is {heat.values.shape[1]}x{heat.values.shape[0]}, the image {grid.width}x{grid.height}")
    image = sitk.GetImageFromArray(heat.values.astype(np.float32))
    image.SetOrigin(grid.origin)
    image.SetSpacing(grid.spacing)
    image.SetDirection(grid.direction)
    return image
