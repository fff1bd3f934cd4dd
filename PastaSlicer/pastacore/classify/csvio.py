"""Feature and label tables as CSV.

* features: header ``id,f0,f1,...,f{C-1}``, one row per organ or lesion;
* labels: header with ``id`` and a label column (``label``, or the only other column, or the
  one named with ``column``); empty labels are skipped.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError, option

if TYPE_CHECKING:
    from collections.abc import Sequence


def write_features_csv(path: str | Path, ids: Sequence[str], features: np.ndarray, digits: int | None = 7) -> None:
    """``id,f0,...``: one row of (N, C) ``features`` per id, each value to ``digits``
    significant digits of its float32 value (None: every digit of the value as given)."""
    features = np.asarray(features, np.float32) if digits is not None else np.asarray(features)
    if features.ndim != 2 or len(ids) != len(features):
        raise PastaError(f"{len(ids)} ids for features of shape {features.shape}")
    number = (lambda v: f"{float(v):.{digits}g}") if digits is not None else (lambda v: repr(float(v)))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id"] + [f"f{n}" for n in range(features.shape[1])])
        for ident, row in zip(ids, features):
            writer.writerow([ident] + [number(v) for v in row.tolist()])


def _rows(path, what: str) -> tuple:
    path = Path(path)
    if not path.is_file():
        raise PastaError(f"{what} {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [r for r in csv.reader(handle) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PastaError(f"cannot read {what} {path.name}: {str(exc).splitlines()[0][:120]}") from None
    if not rows:
        raise PastaError(f"{what} {path.name} is empty")
    return [c.strip() for c in rows[0]], rows[1:]


def read_features_csv(paths: str | Path | Sequence[str | Path]) -> tuple:
    """``(ids, features (N, C) float32)`` from one or more feature CSVs with the same columns."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    ids, blocks, width = [], [], None
    for path in paths:
        header, rows = _rows(path, "features file")
        name = Path(path).name
        if len(header) < 2 or header[0] != "id" or header[1:] != [f"f{n}" for n in range(len(header) - 1)]:
            raise PastaError(f"{name} is not a features file: its header must be id,f0,f1,... (as 'pasta features' writes)")
        if width is not None and len(header) - 1 != width:
            raise PastaError(
                f"{name} has {len(header) - 1} features per row, the other files {width}; use features from the same encoder"
            )
        width = len(header) - 1
        if not rows:
            raise PastaError(f"{name} holds no feature rows")
        block = np.empty((len(rows), width), np.float32)
        for n, row in enumerate(rows):
            if len(row) != width + 1:
                raise PastaError(f"{name} line {n + 2} has {len(row)} values, expected {width + 1}")
            try:
                block[n] = [float(v) for v in row[1:]]
            except ValueError:
                raise PastaError(f"{name} line {n + 2} holds a value that is not a number") from None
            ids.append(row[0].strip())
        if not np.all(np.isfinite(block)):
            raise PastaError(f"{name} holds NaN or infinite features")
        blocks.append(block)
    duplicates = sorted({i for i in ids if ids.count(i) > 1}) if len(ids) != len(set(ids)) else []
    if duplicates:
        raise PastaError(
            f"feature id {', '.join(duplicates[:5])} appears more than once; ids must be unique "
            f"(give each case its own {option('case')} name)"
        )
    return ids, np.concatenate(blocks, axis=0)


def read_labels_csv(path: str | Path, column: str | None = None) -> tuple:
    """``(column name, {id: label})`` from a labels CSV."""
    header, rows = _rows(path, "labels file")
    name = Path(path).name
    if "id" not in header:
        raise PastaError(f"{name} needs an 'id' column (the ids of the features file) and a label column")
    if column is None:
        others = [h for h in header if h != "id"]
        column = "label" if "label" in header else (others[0] if len(others) == 1 else None)
        if column is None:
            raise PastaError(f"{name} has several columns ({', '.join(others)}); choose one with {option('column')}")
    if column not in header:
        raise PastaError(f"{name} has no column '{column}' (columns: {', '.join(header)})")
    id_at, label_at = header.index("id"), header.index(column)
    labels = {}
    for n, row in enumerate(rows):
        if len(row) <= max(id_at, label_at):
            raise PastaError(f"{name} line {n + 2} has too few values")
        ident, value = row[id_at].strip(), row[label_at].strip()
        if not value or (value.lower() == "nan"):
            continue
        if ident in labels and labels[ident] != value:
            raise PastaError(f"{name}: id {ident} has two different labels")
        labels[ident] = value
    if not labels:
        raise PastaError(f"{name} holds no labels in column '{column}'")
    return column, labels


def match_labels(ids: Sequence[str], features: np.ndarray, labels: dict) -> tuple:
    """``(ids, features, label values, unlabelled ids)`` for the rows that have a label.

    A labelled id without features is an error (a typo would silently shrink the data).
    """
    known = set(ids)
    orphans = [i for i in labels if i not in known]
    if orphans:
        raise PastaError(
            f"{len(orphans)} labelled id(s) have no features: {', '.join(orphans[:5])}" + (" ..." if len(orphans) > 5 else "")
        )
    keep = [n for n, i in enumerate(ids) if i in labels]
    unlabelled = [i for i in ids if i not in labels]
    values = [labels[ids[n]] for n in keep]
    return [ids[n] for n in keep], np.asarray(features)[keep], values, unlabelled


def format_metric(summary: dict) -> str:
    mean, sd = summary.get("mean"), summary.get("sd")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean:.3f} ± {sd:.3f}"
