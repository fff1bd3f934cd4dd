"""The segmentation sidecar: ``<stem>.json`` beside a label map, as ``pasta segment`` writes it
and ``pasta report`` reads it.

Content: ``{"labels": {"2": {"name", "terminology", "color"}}, "voxels": {...}, "model": {...},
"candidates": {...}, ...}``; a plain ``{"2": "liver tumor"}`` (label value -> name) is read too.
The stem drops the image suffix (:func:`pastacore.fileio.readers.image_stem`): ``x.nii.gz``, ``x.nrrd``,
``x.seg.nrrd`` and ``x.mha`` all have ``x.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..fileio.readers import image_stem

if TYPE_CHECKING:
    from .segment import SegmentationResult


def sidecar_path(seg_path: str | Path) -> Path:
    """Where the sidecar of the label map ``seg_path`` is."""
    return Path(seg_path).with_name(image_stem(seg_path) + ".json")


def sidecar_content(result: SegmentationResult) -> dict:
    """The sidecar of a :class:`~pastacore.inference.segment.SegmentationResult`: label names,
    voxels per label, the model, the run and each lesion candidate with its confidence."""
    import numpy as np

    return {
        "labels": {
            str(value): {"name": info.name, "terminology": info.terminology, "color": list(info.color)}
            for value, info in sorted(result.segments.items())
        },
        "voxels": {str(v): int(n) for v, n in zip(*np.unique(result.labels.array, return_counts=True)) if v},
        "model": result.model,
        "device": result.device,
        "seconds": round(result.seconds, 2),
        "patches_run": result.tiles_run,
        "patches_total": result.tiles_total,
        "notes": result.notes,
        "warnings": result.warnings,
        "candidates": result.candidates_json(),
    }


def write_sidecar(path: str | Path, description: dict) -> None:
    """Write ``description`` as a sidecar file at ``path`` (the :func:`sidecar_path` of the label
    map, or its staged copy inside :func:`pastacore.fileio.atomic.atomic_outputs`)."""
    Path(path).write_text(json.dumps(description, indent=2), encoding="utf-8")


def read_sidecar(seg_path: str | Path) -> dict:
    """The sidecar of ``seg_path`` as a dict; ``{}`` when there is none or it is not a JSON object."""
    path = sidecar_path(seg_path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
