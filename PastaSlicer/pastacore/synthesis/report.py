"""Per-lesion reports: PASTA-Gen ``type.json`` and our own JSON.

``type.json`` (PASTA-Gen / LesionDiffusion): ``{organ id: [shape text, "", attributes,
[[organ bbox size xyz]], [[lesion bbox size xyz]]]}`` with the TotalSegmentator v1 organ id
as key, attribute values as report phrases ending in a comma, and sizes in 1 mm voxels.
"""

from __future__ import annotations

from .. import __version__
from . import schema as S


def _phrase(key, value) -> str:
    if isinstance(value, list):
        return "".join(S.report_phrase(key, v) + "," for v in value)
    return S.report_phrase(key, value) + ","


def type_json(plan, organ_id: int, organ_size_mm, lesion_size_mm, mean_hu: float) -> dict:
    a = plan.attributes
    lesion_voxels = [int(round(v)) for v in lesion_size_mm]
    organ_voxels = [int(round(v)) for v in organ_size_mm]
    attributes = {
        "enhancement status": _phrase(S.ENHANCEMENT, a.get(S.ENHANCEMENT, "enhanced CT")),
        "lesion location": str(organ_id),
        "shape": _phrase(S.SHAPE, a.get(S.SHAPE, [])),
        "size": f"[[{' '.join(map(str, lesion_voxels))}]] pixel,",
    }
    for key in (S.DENSITY, S.VARIATIONS):
        if key in a:
            attributes[key] = _phrase(key, a[key])
    attributes["CT value"] = f"Mean density of the lesion region is approximately {int(round(mean_hu))} HU,"
    for key in (S.SURFACE, S.RELATION):
        if key in a:
            attributes[key] = _phrase(key, a[key])
    attributes["specific features"] = _phrase(S.FEATURES, a.get(S.FEATURES, []))
    return {str(organ_id): [attributes["shape"], "", attributes, [[organ_voxels]], [[lesion_voxels]]]}


def lesion_report(plan, kind, measured: dict, geometry: dict, backend: str, unknown=(), stats=None, seconds=None) -> dict:
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
