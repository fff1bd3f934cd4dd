"""Volumes in and out of a job folder, losslessly: ``<name>.npy`` (voxels) and ``<name>.json``
(grid, label flag and metadata)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError
from ..geometry.boxes import VoxelBox
from ..geometry.grid import Grid
from ..geometry.volume import Volume

if TYPE_CHECKING:
    from collections.abc import Sequence


def save_volume(volume: Volume, folder: str | Path, name: str) -> str:
    folder = Path(folder)
    np.save(folder / f"{name}.npy", np.ascontiguousarray(volume.array), allow_pickle=False)
    grid = volume.grid
    header = {
        "shape": list(grid.shape),
        "spacing": list(grid.spacing),
        "origin": list(grid.origin),
        "direction": np.asarray(grid.direction).tolist(),
        "is_label": bool(volume.is_label),
        "meta": _plain(volume.meta),
    }
    (folder / f"{name}.json").write_text(json.dumps(header), encoding="utf-8")
    return name


def load_volume(folder: str | Path, name: str) -> Volume:
    folder = Path(folder)
    try:
        header = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        array = np.load(folder / f"{name}.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PastaError(f"the job's volume {name!r} cannot be read ({exc})") from None
    grid = Grid(header["shape"], header["spacing"], header["origin"], np.array(header["direction"]))
    return Volume(array, grid, is_label=header["is_label"], meta=header.get("meta") or {})


def box_to_list(box: VoxelBox | None) -> list | None:
    return None if box is None else [list(box.start), list(box.stop)]


def box_from_list(value: Sequence[Sequence[int]] | None) -> VoxelBox | None:
    return None if not value else VoxelBox(tuple(int(v) for v in value[0]), tuple(int(v) for v in value[1]))


def _plain(meta: dict) -> dict:
    """The JSON-representable part of a volume's metadata (the rest is not needed by a job)."""
    out = {}
    for key, value in (meta or {}).items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


VOLUME_KEY, BOX_KEY = "$volume", "$box"  # how a Volume and a VoxelBox are named inside a job's JSON
IN_FOLDER_KEY = "$in_job_folder"  # a path inside the job folder (e.g. where a model folder is made)


def in_job_folder(relative: str) -> dict:
    """A path the job resolves inside its own folder (the front end does not know that folder)."""
    return {IN_FOLDER_KEY: str(relative)}


def encode_inputs(value: object, volumes: dict, name: str = "input") -> object:
    """``value`` (an action's inputs as a dict: Volumes, VoxelBoxes, lists, plain JSON) as JSON;
    each Volume goes into ``volumes`` under a name of its own, to be saved in the job folder."""
    from dataclasses import fields, is_dataclass

    if isinstance(value, Volume):
        key = f"{name}{len(volumes)}"
        volumes[key] = value
        return {VOLUME_KEY: key}
    if isinstance(value, VoxelBox):
        return {BOX_KEY: box_to_list(value)}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode_inputs(getattr(value, f.name), volumes, f.name) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): encode_inputs(v, volumes, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_inputs(v, volumes, name) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def decode_inputs(value: object, folder: str | Path) -> object:
    """The inverse of :func:`encode_inputs`: Volumes loaded from ``folder``."""
    if isinstance(value, dict):
        if set(value) == {VOLUME_KEY}:
            return load_volume(folder, value[VOLUME_KEY])
        if set(value) == {BOX_KEY}:
            return box_from_list(value[BOX_KEY])
        if set(value) == {IN_FOLDER_KEY}:
            return str(Path(folder) / value[IN_FOLDER_KEY])
        return {k: decode_inputs(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_inputs(v, folder) for v in value]
    return value
