"""PASTA-Gen ``type.json``: its one layout, one writer and one reader.

The layout of PASTA-Gen-30K and LesionDiffusion (``pipeline/preprocess.py`` writes it, and reads
the lesion size back from ``value[3][1]``)::

    {"<organ id>": ["<shape text>", "", {attribute texts},
                    [[[organ box size x y z]], [[lesion box size x y z]]]]}

* key: the TotalSegmentator v1 id of the lesion's organ (``"0"`` when unknown); a second lesion
  in the same organ gets ``"<id>_2"`` and so on (the published files never show two);
* attribute texts (:data:`ATTRIBUTE_KEYS`) are report phrases ending in a comma;
* sizes are in voxels of PASTA's 1 mm standard grid (x, y, z). When the organ is not known
  its box size is the lesion's own.

Synthesis (:mod:`pastacore.synthesis.report`) and reports (:mod:`pastacore.report.report_json`)
both make :class:`TypeEntry` values and write them here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


ATTRIBUTE_KEYS = (
    "enhancement status",
    "lesion location",
    "shape",
    "size",
    "density",
    "density variations",
    "CT value",
    "surface characteristics",
    "relationship with adjacent organs",
    "specific features",
)


@dataclass
class TypeEntry:
    """One lesion of a ``type.json``."""

    organ_id: int
    lesion_size: tuple  # voxels of the 1 mm grid, x y z
    organ_size: tuple = ()  # voxels of the 1 mm grid, x y z; () when unknown: the lesion's
    attributes: dict = field(default_factory=dict)  # ATTRIBUTE_KEYS -> text

    @property
    def shape(self) -> str:
        return self.attributes.get("shape", "")

    def value(self) -> list:
        """The entry's ``type.json`` value (4 elements)."""
        organ = self.organ_size or self.lesion_size
        return [self.shape, "", dict(self.attributes), [[[int(v) for v in organ]], [[int(v) for v in self.lesion_size]]]]


def voxels(size_mm: Sequence[float]) -> tuple:
    """A size in mm as whole voxels of the 1 mm grid (at least one)."""
    return tuple(max(1, int(round(float(v)))) for v in size_mm)


def size_text(size: Sequence[int]) -> str:
    return "[[" + " ".join(str(int(v)) for v in size) + "]] pixel,"


def hu_text(mean_hu: float) -> str:
    return f"Mean density of the lesion region is approximately {int(round(mean_hu))} HU,"


def type_dict(entries: Iterable[TypeEntry]) -> dict:
    """The ``type.json`` content of ``entries`` (keys made unique as the module says)."""
    out = {}
    for entry in entries:
        base = key = str(int(entry.organ_id))
        n = 1
        while key in out:
            n += 1
            key = f"{base}_{n}"
        out[key] = entry.value()
    return out


def write_type_json(entries: Iterable[TypeEntry], path: str | Path) -> Path:
    """Write ``entries`` (:class:`TypeEntry` list) as a ``type.json`` file at ``path``."""
    path = Path(path)
    path.write_text(json.dumps(type_dict(entries)) + "\n", encoding="utf-8")
    return path


def is_type_json(data: object) -> bool:
    """True when ``data`` (parsed JSON) has the ``type.json`` layout."""
    return (
        isinstance(data, dict)
        and bool(data)
        and all(
            str(k).split("_")[0].isdigit() and isinstance(v, list) and len(v) >= 3 and isinstance(v[2], dict)
            for k, v in data.items()
        )
    )


def entries_of(data: dict, what: str = "the type.json") -> list:
    """The :class:`TypeEntry` list of parsed ``type.json`` content. Files of an earlier layout of
    ours (organ and lesion sizes as elements 4 and 5) are read too."""
    if not is_type_json(data):
        raise PastaError(f'{what} is not a PASTA-Gen type.json ({{organ id: [shape, "", attributes, sizes]}})')
    entries = []
    for key, value in data.items():
        organ, lesion = (), ()
        try:
            if len(value) == 4:
                organ, lesion = value[3][0][0], value[3][1][0]
            elif len(value) == 5:
                organ, lesion = value[3][0][0], value[4][0][0]
        except (IndexError, TypeError):
            pass
        if len(lesion) != 3 or len(organ) != 3:
            raise PastaError(f"{what}: the entry {key} has no organ and lesion sizes (three numbers each)")
        entries.append(
            TypeEntry(
                int(str(key).split("_")[0]),
                tuple(int(v) for v in lesion),
                tuple(int(v) for v in organ),
                {str(k): v for k, v in value[2].items()},
            )
        )
    return entries


def read_type_json(path: str | Path) -> list:
    """The :class:`TypeEntry` list of a ``type.json`` file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PastaError(f"cannot read {path.name}: {exc}") from None
    return entries_of(data, path.name)
