"""From LMNet's soft output to a lesion mask, as the public inference does it.

Thresholds 0.9, 0.8, ..., 0.3 are tried; at each the largest connected component is kept,
and the threshold whose component's volume is closest to the lesion box's volume wins (the
first one on ties). A mask under 400 voxels (50 for stones) is drawn again once.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = np.arange(0.9, 0.2, -0.1)
MIN_VOXELS, MIN_VOXELS_STONE = 400, 50


def largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def select_mask(soft: np.ndarray, reference_voxels: int) -> tuple[np.ndarray, float]:
    """(mask, threshold) of the public threshold search on LMNet's output ``soft``."""
    best, best_threshold, best_diff = np.zeros(soft.shape, bool), float(THRESHOLDS[0]), None
    for threshold in THRESHOLDS:
        mask = largest_component(soft > threshold)
        diff = abs(int(mask.sum()) - int(reference_voxels))
        if best_diff is None or diff < best_diff:
            best, best_threshold, best_diff = mask, float(threshold), diff
    return best, round(best_threshold, 2)


def too_small(mask: np.ndarray, stone: bool) -> bool:
    return int(mask.sum()) <= (MIN_VOXELS_STONE if stone else MIN_VOXELS)
