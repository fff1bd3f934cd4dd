"""Train a few-shot head on labelled feature rows and write it with its metrics: ``HEAD.pt`` (the
head, :func:`.heads.save_head`) and ``HEAD.json`` (the cross-validated metrics), as
``pasta train-classifier`` does; shared with the task process (heads trained from a front end).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

HEAD_SUFFIXES = (".pt", ".pth")


@dataclass
class TrainedHead:
    """A head trained on every labelled row, with its cross-validated ``result`` (HEAD.json) and
    the ``meta`` stored in the head file."""

    head: object
    result: dict
    meta: dict
    unlabelled: list


def metrics_path(out: str | Path) -> Path:
    """HEAD.json beside HEAD.pt."""
    out = Path(out)
    return out.with_suffix(".json") if out.suffix else out.with_name(out.name + ".json")


def train_head(
    ids: Sequence[str],
    features: np.ndarray,
    labels: dict,
    column: str,
    out: str | Path,
    kind: str = "linear",
    folds: int = 5,
    seed: int = 0,
    l2: float = 1.0,
) -> TrainedHead:
    """Cross-validate, then train on all rows of ``features`` (N, C) that have a label in ``labels``
    ({id: label}); ``out`` names the head file the result will describe."""
    from .csvio import match_labels
    from .fewshot import cross_validate, encode_labels, fit_head

    if l2 <= 0:
        raise PastaError("the L2 regularisation strength must be positive")
    ids, features, values, unlabelled = match_labels(list(ids), features, labels)
    classes, codes = encode_labels(values)
    result = cross_validate(features, codes, classes, folds, seed, kind, l2)
    head = fit_head(features, codes, classes, kind, l2, seed, group_name=column, name=metrics_path(out).stem)
    result.update(
        {
            "classes": classes,
            "label_column": column,
            "feature_dim": int(features.shape[1]),
            "unlabelled_rows": len(unlabelled),
            "head_file": Path(out).name,
        }
    )
    meta = {
        "task": column,
        "training": {k: result[k] for k in ("n_cases", "class_counts", "folds", "seed", "l2")},
        "cv_accuracy": result["accuracy"],
        "cv_auc": result["auc"],
    }
    return TrainedHead(head, result, meta, unlabelled)


def write_head(trained: TrainedHead, out: str | Path, overwrite: bool = False) -> Path:
    """Write HEAD.pt and HEAD.json atomically; returns the path of HEAD.json."""
    from ..fileio.atomic import atomic_outputs
    from .heads import save_head

    report_path = metrics_path(out)
    with atomic_outputs(out, report_path, overwrite=overwrite) as (head_temp, json_temp):
        save_head(trained.head, head_temp, trained.meta)
        json_temp.write_text(json.dumps(no_nan(trained.result), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return report_path


def no_nan(value: object) -> object:
    """JSON has no NaN: an undefined metric (e.g. AUC of a one-class fold) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [no_nan(v) for v in value]
    return value
