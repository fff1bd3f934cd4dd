"""What decides a case's result, in a few hashes: the inputs' content, the model, the parameters.

A case is redone when its fingerprint changes. Checking content means reading every input,
so a quick check comes first: the size and modification time of each input (a folder: of
every file in it) as recorded when its content was last hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..digests import sha256_of
from ..errors import PastaError


def digest(value: object) -> str:
    """SHA256 of a JSON value written canonically (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _files_of(path: Path) -> list:
    return sorted(p for p in path.rglob("*") if p.is_file())


def signature(path: str | Path) -> list:
    """``[size, mtime_ns]`` of a file; ``[files, total size, newest mtime_ns]`` of a folder."""
    path = Path(path)
    try:
        if path.is_dir():
            stats = [p.stat() for p in _files_of(path)]
            return [len(stats), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]
        stat = path.stat()
    except OSError as exc:
        raise PastaError(f"cannot read {path}: {exc.strerror or exc}") from None
    return [stat.st_size, stat.st_mtime_ns]


def content_hash(path: str | Path) -> str:
    """SHA256 of a file's bytes; of a folder, of its files' relative names and hashes."""
    path = Path(path)
    try:
        if path.is_dir():
            entries = [[p.relative_to(path).as_posix(), content_hash(p)] for p in _files_of(path)]
            return digest(entries)
        return sha256_of(path)
    except OSError as exc:
        raise PastaError(f"cannot read {path}: {exc.strerror or exc}") from None


def model_sha256(model: str | Path | None) -> str | None:
    """SHA256 of a segmentation model's weights (a file, or every file of a result folder);
    None for no model. Refuses, before any work, a model that cannot be found."""
    if model is None:
        return None
    from ..inference.segmentation_model import model_weights

    weights, _ = model_weights(model or None)
    weights = Path(weights)
    if weights.is_dir():  # an nnU-Net result folder: its checkpoints and plans, not its logs and predictions
        from ..networks.checkpoints import weight_suffixes

        files = [p for p in _files_of(weights) if p.name.lower().endswith(weight_suffixes() + (".json",))]
        return digest([[p.relative_to(weights).as_posix(), content_hash(p)] for p in files])
    return content_hash(weights)


def outputs_present(folder: str | Path, outputs: dict) -> bool:
    """Every recorded output (relative path -> size in bytes) is there with its size."""
    folder = Path(folder)
    if not outputs:
        return False
    for relative, size in outputs.items():
        try:
            if os.stat(folder / relative).st_size != int(size):
                return False
        except OSError:
            return False
    return True


def output_sizes(folder: str | Path) -> dict:
    """Relative POSIX path -> size of every file under ``folder`` (staging folders left out)."""
    from ..fileio.atomic import STAGING_PREFIX

    folder = Path(folder)
    sizes = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(STAGING_PREFIX)]
        for name in files:
            path = Path(root, name)
            sizes[path.relative_to(folder).as_posix()] = path.stat().st_size
    return dict(sorted(sizes.items()))
