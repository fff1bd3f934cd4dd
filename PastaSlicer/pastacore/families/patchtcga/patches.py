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

from ...errors import PastaError, option
from .config import FAMILY, check_config
from .images import check_unique_ids, image_id, read_rgb

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ...classify.heads import Head
    from ...modelstore.store import ModelStore
    from ...progress import Cancelled, Progress
    from .encoder import PatchEncoder


def read_config(path: str | Path) -> dict:
    """The checked PatchTCGA config in the JSON file ``path`` (see :mod:`.config`)."""
    from .. import read_model_config

    config = read_model_config(path)
    if config.get("family") != FAMILY:
        raise PastaError(f"{Path(path).name} is a '{config.get('family')}' model config; patches need a '{FAMILY}' one")
    return config


def installed_encoders(store: ModelStore | None = None) -> list:
    """The usable PatchTCGA encoders of the model store (``InstalledModel``), by name."""
    from ...modelstore.store import ModelStore

    store = store if store is not None else ModelStore()
    return [m for m in store.list() if not m.damaged and m.family == FAMILY]


def resolve_encoder(encoder: str | Path, config: str | Path | dict | None = None, store: ModelStore | None = None) -> tuple:
    """``(checkpoint, checked config)`` of a weight file (``config`` required: a JSON file or a dict)
    or of an encoder installed with ``pasta models import CKPT --config CFG.json`` (its stored config,
    unless ``config`` is given)."""
    from ...modelstore.store import DESCRIPTION, ModelStore

    given = None
    if config is not None:
        given = check_config(config) if isinstance(config, dict) else read_config(config)
    path = Path(str(encoder))
    if path.is_file():
        if given is None:
            raise PastaError(
                f"{path.name} needs its model config ({option('config')} CFG.json), or import it once with "
                f"'pasta models import CKPT {option('config')} CFG.json' and name the installed encoder"
            )
        return path, given
    if path.is_dir() or path.suffix.lower() in (".pth", ".pt", ".tar", ".ckpt", ".safetensors"):
        raise PastaError(f"encoder {path} is not a weight file")
    store = store if store is not None else ModelStore()
    model = store.get(str(encoder))
    description = json.loads((model.path / DESCRIPTION).read_text(encoding="utf-8"))
    if description.get("family") != FAMILY:
        raise PastaError(f"the installed model {model.name!r} is not a PatchTCGA encoder (family {description.get('family')!r})")
    return model.path / str(description["weights"]), given or check_config(description["config"])


def open_encoder(checkpoint: str | Path, config: dict, device: str = "cpu", precision: str = "fp32") -> PatchEncoder:
    """The encoder of ``checkpoint`` in the network ``config`` describes, ready for patches."""
    from .encoder import PatchEncoder
    from .weights import load_encoder

    return PatchEncoder(load_encoder(checkpoint, check_config(config)), device, precision)


def image_features(
    paths: Sequence[str | Path],
    encoder: PatchEncoder,
    batch_size: int = 16,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> tuple:
    """``(ids, features (N, C) float32)`` of the image files ``paths`` (ids: file names without extension)."""
    ids = check_unique_ids(paths)
    images = [read_rgb(p) for p in paths]
    return ids, encoder.features_of(images, batch_size, progress, cancelled)


IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def labelled_patches(folder: str | Path, labels_csv: str | Path | None = None) -> tuple:
    """``(image paths, {id: label}, label column)`` of the patches in ``folder``: labelled by
    ``labels_csv`` (``id,label``; ids = file names without extension), or else by the name of the
    sub-folder each image lies in (``folder/tumour/a.png`` -> tumour)."""
    from ...classify.csvio import read_labels_csv

    folder = Path(folder)
    if not folder.is_dir():
        raise PastaError(f"patch folder {folder} does not exist")
    if labels_csv:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        column, labels = read_labels_csv(labels_csv)
    else:
        paths = sorted(p for p in folder.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        column, labels = "label", {image_id(p): p.parent.name for p in paths}
        check_unique_ids(paths)
    if not paths:
        where = "" if labels_csv else " (one sub-folder of images per class)"
        raise PastaError(f"{folder} holds no patch images (.png, .tif, .jpg){where}")
    return paths, labels, column


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
    from ...classify.csvio import write_features_csv as write_csv

    write_csv(path, ids, features, digits=None)


def write_predictions_csv(
    path: str | Path, ids: Sequence[str], classes: Sequence[str], labels: Sequence[str], probabilities: np.ndarray
) -> None:
    """``id,label,p_<class>...`` with probabilities at full precision."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label"] + [f"p_{c}" for c in classes])
        for ident, label, row in zip(ids, labels, np.asarray(probabilities)):
            writer.writerow([ident, label] + [_number(v) for v in row.tolist()])
