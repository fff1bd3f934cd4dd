"""Which lesions of a case are synthetic, and how they were made.

A synthetic case is a CT with a lesion inserted by lesion synthesis, plus the segments the source
CT had. Its synthetic lesion carries a small *record*: lesion type, attributes, seed and the
engine, so that the report marks the lesion as synthetic and says how it was made. Records
travel on the Slicer segment (the segment tag :data:`SYNTHETIC_TAG`, JSON, kept in a ``.mrb``)
and in a label map's JSON sidecar (``"labels": {"3": {"name": ..., "synthetic": {...}}}``, as
``pasta synth --labels`` writes it).
"""

from __future__ import annotations

import json

SYNTHETIC_TAG = "PASTA.Synthetic"  # segment tag: the synthesis record of a synthetic lesion
SUFFIX = " (synthetic)"  # added to a synthetic lesion's segment or label name
RECORD_KEYS = ("lesion_type", "lesion_name", "attributes", "seed", "engine", "generator")


def record_from_report(synthesis_report: dict) -> dict:
    """The record of a lesion from the synthesis's own report (``SynthesisResult.report``)."""
    return {
        "lesion_type": synthesis_report.get("lesion_type", ""),
        "lesion_name": synthesis_report.get("lesion_name", ""),
        "attributes": dict(synthesis_report.get("attributes") or {}),
        "seed": synthesis_report.get("seed"),
        "engine": synthesis_report.get("backend", ""),
        "generator": synthesis_report.get("generator", ""),
    }


def clean_record(data: object) -> dict | None:
    """A record as stored (tag text or a dict), with only its known keys; None when it is not one."""
    if isinstance(data, str):
        try:
            data = json.loads(data) if data.strip() else None
        except ValueError:
            return None
    if not isinstance(data, dict):
        return None
    return {key: data.get(key) for key in RECORD_KEYS if key in data}


def tag_value(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


def describe(record: dict) -> str:
    """One line for a reader: "synthetic: lung_tumor by the procedural engine, seed 12"."""
    parts = [f"synthetic: {record.get('lesion_type') or 'lesion'}"]
    if record.get("engine"):
        parts[0] += f" by the {record['engine']} engine"
    if record.get("seed") is not None:
        parts.append(f"seed {record['seed']}")
    attributes = {k: v for k, v in (record.get("attributes") or {}).items() if v not in (None, "", [])}
    if attributes:
        parts.append(
            "attributes "
            + "; ".join(f"{k}: {'/'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in attributes.items())
        )
    return ", ".join(parts)


def synthetic_name(name: str) -> str:
    return name if name.endswith(SUFFIX) else name + SUFFIX
