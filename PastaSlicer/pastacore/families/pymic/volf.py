"""Volume Fusion (VolF): the pretext task of MIS-FM's pretraining, as PyMIC's
``Crop4VolumeFusion`` and ``VolumeFusion`` transforms make it, written for this project.

From one CT (already clipped and mapped to [-1, 1], see :func:`.family.hu_to_input`):

1. **two crops** (:func:`two_views`): each scaled 0.7-1.5 per axis (a crop of patch x scale
   voxels, at most the volume), zoomed linearly (order 1) to the patch; each flipped at
   random along each axis; each contrast-adjusted (:func:`adaptive_contrast`, percentiles
   0.1-2 and 98-99.9 -> 0.1 / 0.9) and gamma-corrected (0.7-1.5); both inverted (1 - x)
   with probability 0.25. A and B lie in [0, 1].
2. **fusion** (:func:`fuse`): blocks of one random size (lung demo [5, 8, 8] to
   [20, 32, 32], never larger than the patch) on a regular grid at a random offset;
   int(0.7 x cells) cells get a label 1..K (K = class_num - 1), the rest 0;
   **fused = (l / K) A + (1 - l / K) B**. The network learns to segment the label map.

All randomness comes from one ``random.Random`` drawn in PyMIC's order (its transforms use
Python's ``random`` module), so a step's sample depends only on its seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ...errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class VolfSettings:
    """The lung VolF demo's settings (PyMIC_examples ``seg_self_sup/lung``)."""

    scale_lower: tuple = (0.7, 0.7, 0.7)
    scale_upper: tuple = (1.5, 1.5, 1.5)
    foreground_ratio: float = 0.7
    block_min: tuple = (5, 8, 8)
    block_max: tuple = (20, 32, 32)
    invert_probability: float = 0.25
    gamma_range: tuple = (0.7, 1.5)

    def check(self) -> None:
        if not 0.0 <= self.foreground_ratio <= 1.0:
            raise PastaError(f"the VolF foreground ratio must be in [0, 1], got {self.foreground_ratio}")
        if any(lo < 1 or hi < lo for lo, hi in zip(self.block_min, self.block_max)):
            raise PastaError(f"VolF block sizes must satisfy 1 <= min <= max, got {self.block_min} .. {self.block_max}")


def random_resized_crop(
    volume: np.ndarray, patch: tuple, settings: VolfSettings, rng: random.Random, to_input: Callable | None = None
) -> np.ndarray:
    """A crop of ``patch`` x a random scale per axis (at most the volume), zoomed linearly to
    ``patch``; ``to_input`` maps the cropped voxels (e.g. stored HU) onto the network's scale."""
    from scipy import ndimage

    scale = [lo + (hi - lo) * rng.random() for lo, hi in zip(settings.scale_lower, settings.scale_upper)]
    size = [min(int(p * s), n) for p, s, n in zip(patch, scale, volume.shape)]
    start = [rng.randint(0, n - c) for n, c in zip(volume.shape, size)]
    crop = volume[tuple(slice(a, a + c) for a, c in zip(start, size))]
    crop = to_input(crop) if to_input is not None else np.asarray(crop, dtype=np.float32)
    zoomed = ndimage.zoom(crop, [p / c for p, c in zip(patch, size)], order=1)
    if zoomed.shape != tuple(patch):  # rounding in zoom's output shape; never seen, but the patch is a contract
        zoomed = _fit(zoomed, patch)
    return zoomed


def _fit(array: np.ndarray, patch: tuple) -> np.ndarray:
    out = np.zeros(patch, array.dtype)
    common = tuple(slice(0, min(a, p)) for a, p in zip(array.shape, patch))
    out[common] = array[common]
    return out


def random_flip(patch: np.ndarray, rng: random.Random) -> np.ndarray:
    """Flipped along the last, middle and first axis, each with probability 0.5 (in that order)."""
    axes = [axis for axis in (-1, -2, -3) if rng.random() > 0.5]
    return np.ascontiguousarray(np.flip(patch, axes)) if axes else patch


def adaptive_contrast(patch: np.ndarray, low_percentile: float, high_percentile: float) -> np.ndarray:
    """Piecewise-linear contrast: [min, v0) -> [0, 0.1), [v0, v1] -> [0.1, 0.9], (v1, max] -> (0.9, 1],
    v0 / v1 the given percentiles. A patch without spread between them (PyMIC would divide by
    zero there) maps that part to 0.5."""
    v_min, v_max = float(patch.min()), float(patch.max())
    v0, v1 = np.percentile(patch, [low_percentile, high_percentile])
    out = np.empty_like(patch, dtype=np.float32)
    lower, upper = patch < v0, patch > v1
    middle = ~(lower | upper)
    out[lower] = (patch[lower] - v_min) * 0.1 / (v0 - v_min) if lower.any() else 0.0
    out[middle] = (patch[middle] - v0) / (v1 - v0) * 0.8 + 0.1 if v1 > v0 else 0.5
    out[upper] = 0.9 + 0.1 * (patch[upper] - v1) / (v_max - v1) if upper.any() else 0.0
    return out


def gamma_correction(patch: np.ndarray, gamma_range: tuple, rng: random.Random) -> np.ndarray:
    """(x - min) / (max - min) raised to a random gamma, mapped back to [min, max]; a constant
    patch is left as it is (and draws no gamma)."""
    v_min, v_max = float(patch.min()), float(patch.max())
    if not v_min < v_max:
        return patch
    gamma = rng.random() * (gamma_range[1] - gamma_range[0]) + gamma_range[0]
    unit = (patch - v_min) / (v_max - v_min)
    return (np.power(unit, gamma) * (v_max - v_min) + v_min).astype(np.float32)


def two_views(
    volume: np.ndarray, patch: tuple, settings: VolfSettings, rng: random.Random, to_input: Callable | None = None
) -> tuple:
    """``(A, B)``: two augmented crops of ``volume`` (D, H, W), each of shape ``patch``, in [0, 1]."""
    a = random_resized_crop(volume, patch, settings, rng, to_input)
    b = random_resized_crop(volume, patch, settings, rng, to_input)
    a, b = random_flip(a, rng), random_flip(b, rng)
    views = []
    for view in (a, b):
        low, high = rng.uniform(0.1, 2.0), rng.uniform(98, 99.9)
        views.append(gamma_correction(adaptive_contrast(view, low, high), settings.gamma_range, rng))
    if rng.random() < settings.invert_probability:
        views = [1.0 - v for v in views]
    return views[0].astype(np.float32), views[1].astype(np.float32)


def fusion_labels(shape: tuple, classes: int, settings: VolfSettings, rng: random.Random) -> np.ndarray:
    """The label map (uint8, 0..K, K = classes - 1) of blocks on a regular grid (see the module notes)."""
    k = classes - 1
    if k < 1:
        raise PastaError(f"VolF needs at least 2 classes (class_num), got {classes}")
    block = [rng.randint(lo, min(hi, n)) if lo <= n else n for lo, hi, n in zip(settings.block_min, settings.block_max, shape)]
    offset = [rng.randint(0, n % b) for n, b in zip(shape, block)]
    cells = [n // b for n, b in zip(shape, block)]
    total = cells[0] * cells[1] * cells[2]
    foreground = int(total * settings.foreground_ratio)
    chosen = [1] * foreground + [0] * (total - foreground)
    rng.shuffle(chosen)
    labels = np.zeros(shape, np.uint8)
    index = 0
    for d in range(cells[0]):
        for h in range(cells[1]):
            for w in range(cells[2]):
                if chosen[index]:
                    corner = [o + c * b for o, c, b in zip(offset, (d, h, w), block)]
                    labels[tuple(slice(c, c + b) for c, b in zip(corner, block))] = rng.randint(1, k)
                index += 1
    return labels


def fuse(a: np.ndarray, b: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """fused = (l / K) a + (1 - l / K) b, K = classes - 1 (float32)."""
    alpha = labels.astype(np.float32) / np.float32(classes - 1)
    return (alpha * a + (1.0 - alpha) * b).astype(np.float32)


@dataclass
class VolfSample:
    a: np.ndarray
    b: np.ndarray
    fused: np.ndarray
    labels: np.ndarray


def volf_sample(
    volume: np.ndarray, patch: tuple, classes: int, settings: VolfSettings, rng: random.Random, to_input: Callable | None = None
) -> VolfSample:
    """One VolF training pair from ``volume`` (D, H, W; in [-1, 1], or mapped there by
    ``to_input``): the two views, the fused image (the network's input) and the label map (its target)."""
    a, b = two_views(volume, tuple(patch), settings, rng, to_input)
    labels = fusion_labels(tuple(patch), classes, settings, rng)
    return VolfSample(a, b, fuse(a, b, labels, classes), labels)
