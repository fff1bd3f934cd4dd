"""How well a model finds a case's lesions, as the product runs it.

A model segments the case's CT exactly as ``pasta segment`` does by default (standardised,
the model's own organ as the search region, labels mapped back onto the CT's grid), and the
lesion label is compared with the case's real lesions on that grid:

* voxel level with MONAI's metrics: Dice (``DiceMetric``), the 95th percentile Hausdorff
  distance in mm (``HausdorffDistanceMetric``) and the surface Dice at 2 mm
  (``SurfaceDiceMetric``);
* lesion level (connected pieces, 26-connectivity): real lesions found (any overlap) or
  missed, and false-positive pieces (touching no real lesion) with their volume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..inference.segmentation_model import SegmentationModel
    from ..progress import Cancelled, Progress
    from .cases import LabelledCase


SURFACE_TOLERANCE_MM = 2.0


def _crop(*masks) -> tuple:
    """The bounding box of all masks grown by 2 voxels (surface metrics need nothing outside it)."""
    union = np.logical_or.reduce(masks)
    where = np.argwhere(union)
    return tuple(slice(max(int(lo) - 2, 0), int(hi) + 3) for lo, hi in zip(where.min(0), where.max(0)))


def _value(tensor) -> float | None:
    value = float(np.asarray(tensor).ravel()[0])
    return round(value, 4) if np.isfinite(value) else None


def voxel_metrics(predicted: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> dict:
    """Dice, HD95 (mm) and surface Dice (2 mm) of two boolean masks on one grid (MONAI);
    ``spacing`` in mm along the array's axes (k, j, i). None where a metric is undefined (no
    real lesion; HD95 and surface Dice when either is empty)."""
    import torch
    from monai.metrics import DiceMetric, HausdorffDistanceMetric, SurfaceDiceMetric

    if not truth.any():
        return {"dice": None, "hd95_mm": None, "surface_dice": None}
    if not predicted.any():
        return {"dice": 0.0, "hd95_mm": None, "surface_dice": 0.0}
    box = _crop(predicted, truth)

    def onehot(mask):
        m = torch.from_numpy(np.ascontiguousarray(mask[box]))
        return torch.stack([~m, m])[None].float()

    p, t = onehot(predicted), onehot(truth)
    spacing = [float(s) for s in spacing]
    dice = DiceMetric(include_background=False)(p, t)
    hd95 = HausdorffDistanceMetric(include_background=False, percentile=95)(p, t, spacing=spacing)
    surface = SurfaceDiceMetric([SURFACE_TOLERANCE_MM], include_background=False)(p, t, spacing=spacing)
    return {"dice": _value(dice), "hd95_mm": _value(hd95), "surface_dice": _value(surface)}


def lesion_detection(predicted: np.ndarray, truth: np.ndarray, voxel_ml: float) -> dict:
    """Real lesions found / missed and false-positive pieces (count, mL) of two boolean masks."""
    from scipy import ndimage

    connect = ndimage.generate_binary_structure(3, 3)
    real, count = ndimage.label(truth, connect)
    found = np.unique(real[predicted & truth])
    pieces, _ = ndimage.label(predicted, connect)
    touching = np.unique(pieces[predicted & truth])
    false = predicted & ~np.isin(pieces, touching[touching > 0])
    false_pieces = len(np.unique(pieces[false]))
    return {
        "lesions": int(count),
        "found": int((found > 0).sum()),
        "missed": int(count - (found > 0).sum()),
        "false_positives": int(false_pieces),
        "false_positive_ml": round(float(false.sum() * voxel_ml), 2),
        "predicted_ml": round(float(predicted.sum() * voxel_ml), 2),
        "lesion_ml": round(float(truth.sum() * voxel_ml), 2),
    }


def score_lesions(predicted: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> dict:
    """Voxel and lesion-level scores; ``spacing`` along the array's axes (k, j, i)."""
    voxel_ml = float(np.prod(spacing)) / 1000
    return {**voxel_metrics(predicted, truth, spacing), **lesion_detection(predicted, truth, voxel_ml)}


def validate_case(
    model: SegmentationModel,
    case: LabelledCase,
    device: str = "auto",
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
) -> dict:
    """Segment ``case.image`` with ``model`` (a SegmentationModel) as ``pasta segment`` does and score it."""
    from ..inference.segment import segment_volume

    result = segment_volume(case.image, model, device=device, progress=progress, is_cancelled=is_cancelled)
    predicted = np.isin(result.labels.array, model.lesion_values)
    spacing = tuple(case.image.grid.spacing)[::-1]  # the grid's (i, j, k) spacing along the array's (k, j, i) axes
    return {"case": case.name, **score_lesions(predicted, case.lesion, spacing), "seconds": round(result.seconds, 1)}


def summarise(rows: list) -> dict:
    """Means of the voxel metrics over the cases where they are defined, and detection totals."""
    out = {}
    for key in ("dice", "hd95_mm", "surface_dice"):
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = round(float(np.mean(values)), 4) if values else None
    for key in ("lesions", "found", "missed", "false_positives"):
        out[key] = int(sum(r[key] for r in rows))
    out["false_positive_ml"] = round(float(sum(r["false_positive_ml"] for r in rows)), 2)
    out["cases"] = len(rows)
    return out
