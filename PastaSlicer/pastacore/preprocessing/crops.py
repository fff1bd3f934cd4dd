"""PASTA's classification crops, each with the transform back to the grid it came from.

* :func:`organ_crop` — plain-CT detection: the organ's bounding box +- 32 voxels (clipped
  to the volume), padded centrally to at least ``size`` per axis, then resized trilinearly
  (align_corners=False) to exactly ``size`` (128^3 in PASTA). Larger boxes are squashed.
* :func:`lesion_crop` — a fixed-size box (96^3 in PASTA) centred on the lesion, padded
  where it leaves the volume.

Both return a :class:`Crop` whose :meth:`Crop.to_source` places an array computed on the
crop (a mask, a heat map) back onto the full source array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PastaError


@dataclass
class Crop:
    """``array`` (shape ``size``) cut from ``source_shape`` at ``box`` (start, stop per axis)."""

    array: np.ndarray
    box: tuple  # ((start0, stop0), (start1, stop1), (start2, stop2)) in source voxels, stop exclusive
    pad: tuple  # ((before0, after0), ...) voxels of padding added around the box
    source_shape: tuple

    @property
    def padded_shape(self) -> tuple:
        return tuple(stop - start + b + a for (start, stop), (b, a) in zip(self.box, self.pad))

    def to_source(self, result: np.ndarray, is_label: bool = True, fill: int = 0) -> np.ndarray:
        """Map an array on the crop grid back onto the full source grid."""
        result = np.asarray(result)
        if result.shape != self.array.shape:
            raise PastaError(f"result shape {result.shape} is not the crop shape {self.array.shape}")
        padded = _resize(result, self.padded_shape, nearest=is_label)
        inner = tuple(slice(b, b + stop - start) for (start, stop), (b, _) in zip(self.box, self.pad))
        out = np.full(self.source_shape, fill, dtype=padded.dtype)
        out[tuple(slice(start, stop) for start, stop in self.box)] = padded[inner]
        return out


def _resize(array: np.ndarray, shape, nearest: bool) -> np.ndarray:
    """Trilinear (align_corners=False) or nearest resize, as torch's ``interpolate`` does."""
    if tuple(array.shape) == tuple(shape):
        return array.copy()
    out = array.astype(array.dtype if nearest else np.float32)
    for axis, n_out in enumerate(shape):
        n_in = out.shape[axis]
        if n_in == n_out:
            continue
        scale = n_in / n_out
        if nearest:
            index = np.minimum(np.floor(np.arange(n_out) * scale).astype(np.intp), n_in - 1)
            out = np.take(out, index, axis=axis)
            continue
        c = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0, n_in - 1)
        i0 = np.minimum(np.floor(c).astype(np.intp), max(n_in - 2, 0))
        w = (c - i0).astype(np.float32)
        shape_w = [1, 1, 1]
        shape_w[axis] = n_out
        lower = np.take(out, i0, axis=axis)
        upper = np.take(out, np.minimum(i0 + 1, n_in - 1), axis=axis)
        out = lower + (upper - lower) * w.reshape(shape_w)
    return out


def mask_box(mask: np.ndarray, margin: int = 0) -> tuple:
    """Bounding box (start, stop) per axis of the non-zero voxels, +- ``margin``, clipped."""
    from ..geometry.boxes import VoxelBox

    box = VoxelBox.from_mask(mask, margin)
    if box is None:
        raise PastaError("the mask is empty; there is no organ or lesion to crop around")
    return tuple(zip(box.start, box.stop))


def organ_crop(
    image: np.ndarray,
    organ_mask: np.ndarray,
    size: tuple[int, int, int] = (128, 128, 128),
    margin: int = 32,
    pad_value: float = 0.0,
) -> Crop:
    """PASTA's plain-CT crop: organ box +- ``margin``, centred pad to >= ``size``, resize to ``size``."""
    if image.shape != organ_mask.shape:
        raise PastaError(f"organ mask shape {organ_mask.shape} does not match image shape {image.shape}")
    box = mask_box(organ_mask, margin)
    cut = image[tuple(slice(a, b) for a, b in box)]
    pad = tuple(((max(s - n, 0)) // 2, max(s - n, 0) - (max(s - n, 0)) // 2) for n, s in zip(cut.shape, size))
    padded = np.pad(cut, pad, constant_values=pad_value)
    return Crop(_resize(padded, size, nearest=False), box, pad, image.shape)


def lesion_crop(
    image: np.ndarray, lesion_mask: np.ndarray, size: tuple[int, int, int] = (96, 96, 96), pad_value: float = 0.0
) -> Crop:
    """A ``size`` box centred on the lesion's bounding box; padding where it leaves the volume."""
    if image.shape != lesion_mask.shape:
        raise PastaError(f"lesion mask shape {lesion_mask.shape} does not match image shape {image.shape}")
    lesion_box = mask_box(lesion_mask)
    box, pad = [], []
    for (a, b), s, n in zip(lesion_box, size, image.shape):
        start = (a + b) // 2 - s // 2
        stop = start + s
        box.append((max(start, 0), min(stop, n)))
        pad.append((max(-start, 0), max(stop - n, 0)))
    cut = image[tuple(slice(a, b) for a, b in box)]
    padded = np.pad(cut, tuple(pad), constant_values=pad_value)
    return Crop(padded, tuple(box), tuple(pad), image.shape)
