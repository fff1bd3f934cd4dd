"""What ``pasta patches`` does, Qt-free: encoders from a config file, features and predictions of
image files, and their CSV tables at full precision.

* features CSV: ``id,f0,...,f{C-1}`` (what ``pasta train-classifier`` reads);
* predictions CSV: ``id,label,p_<class>...`` (the head's classes in its order).

Numbers are written as the shortest decimal that reads back to the very same double (Python's
``repr``): a float32 feature reads back bit for bit.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import PastaError
from .config import check_config
from .images import check_unique_ids, read_rgb

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ...classify.heads import Head
    from .encoder import PatchEncoder


def read_config(path: str | Path) -> dict:
    """The checked config in the JSON file ``path`` (see :mod:`.config`)."""
    path = Path(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PastaError(f"config {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PastaError(f"cannot read the config {path.name}: {str(exc).splitlines()[0][:120]}") from None
    if not isinstance(config, dict) or "family" not in config:
        raise PastaError(f'{path.name} is not a model config: a JSON object with a "family" field')
    return check_config(config)


def open_encoder(checkpoint: str | Path, config: dict, device: str = "cpu", precision: str = "fp32") -> PatchEncoder:
    """The encoder of ``checkpoint`` in the network ``config`` describes, ready for patches."""
    from .encoder import PatchEncoder
    from .weights import load_encoder

    return PatchEncoder(load_encoder(checkpoint, check_config(config)), device, precision)


def image_features(
    paths: Sequence[str | Path],
    encoder: PatchEncoder,
    batch_size: int = 16,
    progress: Callable[[float, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> tuple:
    """``(ids, features (N, C) float32)`` of the image files ``paths`` (ids: file names without extension)."""
    ids = check_unique_ids(paths)
    images = [read_rgb(p) for p in paths]
    return ids, encoder.features_of(images, batch_size, progress, cancelled)


def check_head_fits(head: Head, encoder: PatchEncoder) -> None:
    """Refuse a head trained on features of another size, or with several output groups."""
    if head.feature_dim != encoder.feature_dim:
        raise PastaError(
            f"the head '{head.name}' expects {head.feature_dim} features, the encoder gives {encoder.feature_dim}; "
            "use the head trained on this encoder's features"
        )
    if len(head.groups) != 1:
        raise PastaError(f"the head '{head.name}' has {len(head.groups)} output groups; patches need a one-group head")


def predict(head: Head, features: np.ndarray) -> tuple:
    """``(classes, labels, probabilities (N, K) float64)``: the head's classes, each row's most probable one."""
    probabilities = head.probabilities(features)[0][1]
    classes = tuple(head.groups[0].options)
    return classes, [classes[int(i)] for i in np.argmax(probabilities, axis=1)], probabilities


def _number(value) -> str:
    return repr(float(value))


def write_features_csv(path: str | Path, ids: Sequence[str], features: np.ndarray) -> None:
    """``id,f0,...`` with every value at full precision."""
    features = np.asarray(features)
    if features.ndim != 2 or len(ids) != len(features):
        raise PastaError(f"{len(ids)} ids for features of shape {features.shape}")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id"] + [f"f{n}" for n in range(features.shape[1])])
        for ident, row in zip(ids, features):
            writer.writerow([ident] + [_number(v) for v in row.tolist()])


def write_predictions_csv(
    path: str | Path, ids: Sequence[str], classes: Sequence[str], labels: Sequence[str], probabilities: np.ndarray
) -> None:
    """``id,label,p_<class>...`` with probabilities at full precision."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label"] + [f"p_{c}" for c in classes])
        for ident, label, row in zip(ids, labels, np.asarray(probabilities)):
            writer.writerow([ident, label] + [_number(v) for v in row.tolist()])
