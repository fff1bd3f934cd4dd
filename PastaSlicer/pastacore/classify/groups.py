"""Output groups of a classification head: which logits form one softmax, and their option names.

PASTA's report head has 14 logits in five groups (shape 5, density 3, heterogeneity 2,
surface 2, invasion 2), each a separate softmax; the plain-CT detection head has one group
of 2 (tumour absent / present). The names live in ``Resources/report_attributes.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


RESOURCE = "report_attributes.json"

# Used when the resource file cannot be found (a bare wheel without data files).
_FALLBACK = {
    "report": [
        {"name": "shape", "options": ["round-like", "irregular", "wall thickening", "punctate/nodular", "other"]},
        {"name": "density", "options": ["hypodense", "isodense", "hyperdense"]},
        {"name": "heterogeneity", "options": ["homogeneous", "heterogeneous"]},
        {"name": "surface", "options": ["well-defined margin", "ill-defined margin"]},
        {
            "name": "invasion",
            "options": ["no close relationship with adjacent structures", "close relationship with adjacent structures"],
        },
    ],
    "presence": [{"name": "tumor", "options": ["absent", "present"]}],
}


@dataclass(frozen=True)
class OutputGroup:
    """One softmax over ``len(options)`` consecutive logits."""

    name: str
    options: tuple

    @property
    def size(self) -> int:
        return len(self.options)

    def to_dict(self) -> dict:
        return {"name": self.name, "options": list(self.options)}


def _groups_from(entries) -> tuple:
    groups = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("options"):
            raise PastaError("an output group needs a 'name' and a non-empty 'options' list")
        groups.append(OutputGroup(str(entry["name"]), tuple(str(o) for o in entry["options"])))
    return tuple(groups)


def _schema() -> dict:
    try:
        from ..resources import load_json

        data = load_json(RESOURCE)
        if isinstance(data, dict) and "report" in data and "presence" in data:
            return data
    except PastaError:
        pass
    return _FALLBACK


def report_groups() -> tuple:
    """The five report-attribute groups (5, 3, 2, 2, 2 options)."""
    return _groups_from(_schema()["report"])


def presence_groups() -> tuple:
    """The plain-CT tumour-presence group (absent, present)."""
    return _groups_from(_schema()["presence"])


def groups_from_dicts(entries: Iterable[dict]) -> tuple:
    return _groups_from(entries)


def default_groups(num_outputs: int) -> tuple:
    """Groups for a head with ``num_outputs`` logits and no recorded names."""
    report = report_groups()
    if num_outputs == sum(g.size for g in report):
        return report
    if num_outputs == 2:
        return presence_groups()
    return (OutputGroup("class", tuple(f"class {i}" for i in range(num_outputs))),)


def check_groups(groups: Sequence, num_outputs: int) -> tuple:
    groups = tuple(groups)
    total = sum(g.size for g in groups)
    if total != num_outputs:
        sizes = "+".join(str(g.size) for g in groups)
        raise PastaError(f"the head has {num_outputs} outputs but its groups ({sizes}) need {total}")
    return groups


def split_softmax(logits: np.ndarray, groups: Sequence) -> list:
    """``[(group, probabilities (B, size))]``: one softmax per group over its slice of ``logits`` (B, N)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1:
        logits = logits[None]
    check_groups(groups, logits.shape[1])
    out, start = [], 0
    for group in groups:
        part = logits[:, start : start + group.size]
        part = part - part.max(axis=1, keepdims=True)
        e = np.exp(part)
        out.append((group, e / e.sum(axis=1, keepdims=True)))
        start += group.size
    return out
