"""Classical masks that need no model: the body and the lungs of a chest CT.

Good enough to decide where a model should look (crop to the lungs, skip air outside the
patient), not a substitute for an organ segmentation model.
"""

from __future__ import annotations

import numpy as np

from ..errors import PastaError


def _largest_components(mask: np.ndarray, keep: int, min_fraction: float = 0.0) -> np.ndarray:
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros_like(mask, bool)
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1][:keep]
    order = [i for i in order if sizes[i] >= min_fraction * sizes[order[0]]]
    return np.isin(labels, np.asarray(order) + 1)


def _fill_slices(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


def body_mask(hu: np.ndarray) -> np.ndarray:
    """The patient: tissue above -500 HU, largest connected part, holes filled per slice."""
    from scipy import ndimage

    tissue = ndimage.binary_opening(hu > -500, iterations=2)
    body = _largest_components(tissue, keep=1)
    if not body.any():
        raise PastaError("no body found in the volume (is it a CT in Hounsfield units?)")
    return _fill_slices(body)


def lung_mask(
    hu: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), body: np.ndarray | None = None
) -> np.ndarray:
    """Both lungs (with the airways): air below -400 HU inside the body, the one or two largest
    parts over 50 mL, with vessels and nodules inside filled in slice by slice.

    Masses against the chest wall are not enclosed by air and may lie outside: use
    :func:`grow` to add a margin before cropping or restricting lesions to the lungs."""
    from scipy import ndimage

    body = body_mask(hu) if body is None else body
    air = (hu < -400) & ndimage.binary_erosion(body, iterations=2)
    air = ndimage.binary_opening(air, iterations=1)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    lungs = _largest_components(air, keep=2, min_fraction=0.1)
    if lungs.sum() * voxel_ml < 50:
        raise PastaError("no lungs found (less than 50 mL of air inside the body); is this a chest CT?")
    lungs = ndimage.binary_closing(lungs, iterations=3)
    return _fill_slices(lungs)


def grow(mask: np.ndarray, margin_mm: float, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """``mask`` grown by a box of +- ``margin_mm`` (separable maximum filter: fast at any size)."""
    from scipy import ndimage

    size = [2 * int(round(margin_mm / s)) + 1 for s in spacing[::-1]]
    return ndimage.maximum_filter(mask.astype(np.uint8), size=size) > 0


def pieces_touching(mask: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The connected pieces of ``mask`` that overlap ``target`` (a lesion found there, say)."""
    from scipy import ndimage

    pieces, _ = ndimage.label(mask)
    hit = np.unique(pieces[target & mask])
    return np.isin(pieces, hit[hit > 0])
