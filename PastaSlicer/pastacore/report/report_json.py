"""``report.json`` (our fixed schema) and PASTA-Gen's ``type.json``.

``report.json`` keys: ``schema``, ``disclaimer``, ``software``, ``created``, ``case``,
``models``, ``time_point`` ("baseline" or "follow-up"), ``origin`` (which model made the
segmentation, or that it is unknown), ``notes``, ``lesion_labels``, ``floor`` (the reporting
floor applied), ``recist`` (RECIST 1.1: targets, sum of diameters...), ``comparison`` (follow-up
reports: the response, see :mod:`.followup`), ``lesions[]`` and ``below_floor[]`` (pieces too
small or unsure to report). Every lesion has at least ``volume_ml``, ``max_diameter_3d_mm``,
``long_axis_mm``, ``short_axis_mm``, ``mean_hu``, ``std_hu``, ``min_hu``, ``max_hu``,
``centroid_ras_mm``, ``organ`` and ``attributes`` (name -> ``{"value", "probabilities",
"source"}``), then ``status`` (proposed, edited, confirmed, manual, unknown),
``mean_probability`` and ``max_probability`` (the model's confidence; null when none),
``recist`` (role, measurable, diameter_mm, reason...) and ``tracking_uid``, followed by the
other measurements.

``type.json``: one entry per lesion in PASTA-Gen's layout (:mod:`pastacore.type_json`), sizes
in voxels of PASTA's 1 mm standard grid (LPS axes; see ``pastacore.geometry.standardize``). The organ
box size is the lesion's own: a report does not measure the organ.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import numpy as np

from .formats import ReportFormat, register

if TYPE_CHECKING:
    from pathlib import Path

    from ..geometry.grid import Grid
    from .model import CaseReport, LesionReport


REPORT_SCHEMA = "pasta-report/2"
FIXED_KEYS = (
    "volume_ml",
    "max_diameter_3d_mm",
    "long_axis_mm",
    "short_axis_mm",
    "mean_hu",
    "std_hu",
    "min_hu",
    "max_hu",
    "centroid_ras_mm",
    "organ",
    "attributes",
)


def _clean(value):
    """JSON-safe values: rounded floats, no NaN, plain ints and lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if not math.isfinite(value) else round(value, 4)
    return value


def lesion_dict(lesion: LesionReport) -> dict:
    m = lesion.measurement.to_dict()
    fixed = {key: m.get(key) for key in FIXED_KEYS if key not in ("attributes",)}
    fixed["attributes"] = {
        name: {"value": a.value, "probabilities": a.probabilities, "source": a.source} for name, a in lesion.attributes.items()
    }
    review = {
        "status": lesion.status,
        "mean_probability": lesion.mean_probability,
        "max_probability": lesion.max_probability,
        "recist": dict(lesion.recist),
        "tracking_uid": lesion.tracking_uid,
    }
    if lesion.baseline_number:
        review["baseline_number"] = lesion.baseline_number
    review["synthetic"] = bool(lesion.synthetic)
    if lesion.synthetic:
        review["synthesis"] = dict(lesion.synthetic)
    extra = {key: value for key, value in m.items() if key not in fixed}
    out = {"number": lesion.number, "term": lesion.term, **fixed, **review, **extra}
    return _clean(out)


def report_dict(report: CaseReport) -> dict:
    full = report.to_dict()
    return _clean(
        {
            "schema": REPORT_SCHEMA,
            "disclaimer": report.disclaimer,
            "software": full["software"],
            "created": report.created,
            "case": full["case"],
            "models": full["models"],
            "time_point": report.time_point,
            "origin": report.origin,
            "notes": list(report.notes),
            "lesion_labels": dict(report.lesion_labels),
            "floor": dict(report.floor),
            "recist": dict(report.recist),
            "comparison": dict(report.comparison),
            "lesions": [lesion_dict(lesion) for lesion in report.lesions],
            "below_floor": list(report.below_floor),
        }
    )


def write_report_json(report: CaseReport, path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report_dict(report), handle, indent=2, ensure_ascii=False)
        handle.write("\n")


# --- PASTA-Gen type.json ------------------------------------------------------------------

_TEXTS = {  # our attribute values -> PASTA-Gen's vocabulary (pipeline/description.json)
    "density": (("hypo", "low density lesion,"), ("iso", "isodense lesion,"), ("hyper", "high density lesion,")),
    "heterogeneity": (("hetero", "heterogeneous,"), ("homo", "homogeneous,")),
    "surface": (("ill", "ill-defined margin,"), ("well", "well-defined margin,")),
    "invasion": (
        ("no close", "no close relationship with surrounding organs,"),
        ("close", "close relationship with adjacent organs,"),
    ),
}


def _attribute_text(name: str, attributes: dict) -> str:
    attribute = attributes.get(name)
    if attribute is None or not attribute.value:
        return ""
    value = attribute.value.strip().lower()
    if name == "shape":
        return value.replace("punctate, nodular", "punctate/nodular").rstrip(",") + ","
    for key, text in _TEXTS.get(name, ()):
        if value.startswith(key):
            return text
    return value.rstrip(",") + ","


def _organ_id(organ: str, side: str) -> int:
    from ..resources import load_json
    from ..terminology import term_for_label_name

    structures = load_json("terminology.json")["structures"]
    key = term_for_label_name(organ) if organ else None
    if not key or "@" in key:
        return 0
    for candidate in (f"{side} {key}", key):
        ids = structures.get(candidate, {}).get("ts_v1")
        if ids:
            if candidate == "lung" and side == "right":
                return ids[2]  # right upper lobe (13, 14 are the left lobes)
            return ids[0]
    return 0


def type_entries(report: CaseReport, grid: Grid) -> list:
    """The lesions of ``report`` measured on ``grid`` as ``type.json`` entries (sizes in voxels of
    PASTA's 1 mm standard grid, along L, P, S)."""
    from ..geometry.standardize import standard_grid
    from ..type_json import TypeEntry, hu_text, size_text

    standard = standard_grid(grid)
    entries = []
    for lesion in report.lesions:
        m = lesion.measurement
        lo, hi = np.asarray(m.bbox_ijk[0], float), np.asarray(m.bbox_ijk[1], float)
        extent = np.abs(grid.direction) @ ((hi - lo + 1) * np.asarray(grid.spacing))  # mm along L, P, S
        size = tuple(int(v) for v in np.maximum(1, np.rint(extent / np.asarray(standard.spacing))))
        organ_id = _organ_id(m.organ, m.side)
        attrs = lesion.attributes
        entries.append(
            TypeEntry(
                organ_id,
                size,
                attributes={
                    "enhancement status": "",
                    "lesion location": str(organ_id),
                    "shape": _attribute_text("shape", attrs),
                    "size": size_text(size),
                    "density": _attribute_text("density", attrs),
                    "density variations": _attribute_text("heterogeneity", attrs),
                    "CT value": hu_text(m.mean_hu),
                    "surface characteristics": _attribute_text("surface", attrs),
                    "relationship with adjacent organs": _attribute_text("invasion", attrs),
                    "specific features": "",
                },
            )
        )
    return entries


def write_type_json(report: CaseReport, grid: Grid, path: str | Path) -> None:
    from ..type_json import write_type_json as write

    write(type_entries(report, grid), path)


def _write_json(context, names) -> None:
    write_report_json(context.report, context.folder / "report.json")
    write_type_json(context.report, context.image.grid, context.folder / "type.json")


register(
    ReportFormat("json", "JSON", "report.json and type.json", ("report.json", "type.json"), _write_json, order=30, listed=10)
)
