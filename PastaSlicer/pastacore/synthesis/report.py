"""Per-lesion reports: PASTA-Gen ``type.json`` (layout, writer and reader in
:mod:`pastacore.type_json`) and our own JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import __version__
from ..type_json import TypeEntry, hu_text, size_text, type_dict, voxels
from . import schema as S

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .plan import SynthesisPlan
    from .schema import LesionType


def _phrase(key, value) -> str:
    if isinstance(value, list):
        return "".join(S.report_phrase(key, v) + "," for v in value)
    return S.report_phrase(key, value) + ","


def type_entry(
    plan: SynthesisPlan, organ_id: int, organ_size_mm: Sequence[float], lesion_size_mm: Sequence[float], mean_hu: float
) -> TypeEntry:
    """The planned lesion as a ``type.json`` entry (attribute values as report phrases)."""
    a = plan.attributes
    lesion_voxels = voxels(lesion_size_mm)
    attributes = {
        "enhancement status": _phrase(S.ENHANCEMENT, a.get(S.ENHANCEMENT, "enhanced CT")),
        "lesion location": str(organ_id),
        "shape": _phrase(S.SHAPE, a.get(S.SHAPE, [])),
        "size": size_text(lesion_voxels),
    }
    for key in (S.DENSITY, S.VARIATIONS):
        if key in a:
            attributes[key] = _phrase(key, a[key])
    attributes["CT value"] = hu_text(mean_hu)
    for key in (S.SURFACE, S.RELATION):
        if key in a:
            attributes[key] = _phrase(key, a[key])
    attributes["specific features"] = _phrase(S.FEATURES, a.get(S.FEATURES, []))
    return TypeEntry(organ_id, lesion_voxels, voxels(organ_size_mm), attributes)


def type_json(
    plan: SynthesisPlan, organ_id: int, organ_size_mm: Sequence[float], lesion_size_mm: Sequence[float], mean_hu: float
) -> dict:
    """The ``type.json`` content of the planned lesion (layout: :mod:`pastacore.type_json`)."""
    return type_dict([type_entry(plan, organ_id, organ_size_mm, lesion_size_mm, mean_hu)])


def lesion_report(
    plan: SynthesisPlan,
    kind: LesionType,
    measured: dict,
    geometry: dict,
    backend: str,
    unknown: Sequence[str] = (),
    stats: dict | None = None,
    seconds: float | None = None,
) -> dict:
    return {
        "generator": f"pastacore {__version__} lesion synthesis",
        "backend": backend,
        "research_use_only": True,
        "lesion_type": kind.key,
        "lesion_name": kind.name,
        "organ": kind.organ,
        "seed": plan.seed,
        "attributes": plan.attributes,
        "not_understood": list(unknown),
        "plan": plan.to_dict(),
        "plan_text": plan.describe().splitlines(),
        "requested": {"size_mm": plan.size_mm, "mean_hu": plan.target_mean_hu},
        "measured": measured,
        "geometry": geometry,
        "render": stats or {},
        "seconds": None if seconds is None else round(seconds, 3),
    }
