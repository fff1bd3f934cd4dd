"""From measured lesions to the rows a reader sees: each lesion's origin and confidence, the
reporting floor, the order (most confident first, then largest) and the lesion numbers.

Lesion numbers are given here, once: the report, its key images, the DICOM SEG segments and
the Slicer hub's table all use them, and a reader's choice of target lesions refers to them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..candidates import DEFAULT_FLOOR, Floor, Match, match

if TYPE_CHECKING:
    from ..geometry.grid import Grid
    from .model import LesionReport


_STATUS_WORDS = {
    "proposed": "proposed by the model",
    "edited": "edited by a person",
    "confirmed": "confirmed by a person",
    "manual": "drawn by a person",
    "rejected": "rejected by a person",
    "unknown": "origin unknown",
    "synthetic": "SYNTHETIC: inserted by lesion synthesis",
}


def status_text(status: str) -> str:
    return _STATUS_WORDS.get(status, status)


CONFIDENCE_STEP = 0.1  # confidences this close count as the same, so the larger lesion comes first


def confidence_band(lesion: LesionReport) -> int:
    """How sure the lesion is, in steps of :data:`CONFIDENCE_STEP` (10 = certain). A lesion a person
    drew or confirmed counts as certain; so, for ordering, does one of unknown origin (only its
    size orders it then)."""
    probability = getattr(lesion, "mean_probability", None)
    if getattr(lesion, "status", "unknown") in ("confirmed", "manual") or probability is None:
        probability = 1.0
    return int(probability / CONFIDENCE_STEP + 1e-9)


def _rank(lesion) -> tuple:
    """Most confident first (in steps of :data:`CONFIDENCE_STEP`), then largest."""
    return (-confidence_band(lesion), -lesion.measurement.volume_ml, lesion.measurement.index)


def assess(
    lesions: list,
    grid: Grid,
    candidates: dict | None = None,
    confirmed: dict | None = None,
    floor: Floor | None = None,
    model_labels: frozenset = frozenset(),
    rejected: dict | None = None,
) -> tuple:
    """``(reported, below_floor)``: ``lesions`` (LesionReport, measured) with status and
    confidence set, sorted and renumbered 1..N, and short records of those under ``floor``.

    ``candidates``: ``{label value: [Candidate]}`` as the segmentation recorded them, None when
    it records none (origin unknown). ``confirmed``: ``{label value: [fingerprint]}``.
    ``model_labels``: the label values the model made (its sidecar names them): a piece of one it
    recorded no candidates for (an organ label measured as a lesion) is the model's, not a
    person's drawing. ``rejected``: ``{label value: [fingerprint]}`` a person rejected: listed
    apart as not a lesion, whatever the floor."""
    from ..candidates import _same

    floor = floor or DEFAULT_FLOOR
    kept, below = [], []
    for lesion in lesions:
        m = lesion.measurement
        records = None if candidates is None else candidates.get(m.label, [])
        found = match(m, records, (confirmed or {}).get(m.label, ()), grid)
        if found.status == "manual" and m.label in model_labels and m.label not in (candidates or {}):
            found = Match("proposed")
        lesion.status = found.status
        if lesion.synthetic:  # made by synthesis, not found by a model or drawn by a person
            lesion.status, found.candidate = "synthetic", None
        if found.candidate is not None:
            lesion.mean_probability = found.candidate.mean_probability
            lesion.max_probability = found.candidate.max_probability
        unsure = lesion.mean_probability if lesion.status in ("proposed", "edited") else None
        reasons = [] if lesion.status == "confirmed" else floor.reasons(m.long_axis_mm, m.volume_ml, unsure)
        if any(_same(m, f) for f in (rejected or {}).get(m.label, ())):
            lesion.status, reasons = "rejected", ["rejected by a person: not a lesion"]
        if reasons:
            below.append(_below_record(lesion, reasons))
        else:
            kept.append(lesion)
    kept.sort(key=_rank)
    for number, lesion in enumerate(kept, start=1):
        lesion.measurement.index = number
    below.sort(key=lambda r: (-(r["mean_probability"] or 0.0), -r["volume_ml"]))
    return kept, below


def _below_record(lesion, reasons) -> dict:
    m = lesion.measurement
    return {
        "name": m.name,
        "label": m.label,
        "volume_ml": round(m.volume_ml, 4),
        "long_axis_mm": round(m.long_axis_mm, 2),
        "mean_probability": None if lesion.mean_probability is None else round(lesion.mean_probability, 4),
        "status": lesion.status,
        "centroid_ras_mm": [round(c, 2) for c in m.centroid_ras_mm],
        "reasons": reasons,
        "synthetic": bool(lesion.synthetic),
    }


def origin_sentence(models: list, lesions: list, recorded: bool) -> str:
    """Where the segmentation came from, in one sentence for the report's header."""
    segmenters = [m for m in models if m.role in ("segmentation", "")]
    counts = {}
    for lesion in lesions:
        counts[lesion.status] = counts.get(lesion.status, 0) + 1
    tally = ", ".join(f"{n} {status_text(s)}" for s, n in counts.items() if s != "unknown")
    if segmenters:
        text = "Segmentation made by " + "; ".join(m.describe() for m in segmenters)
        if not recorded:
            text += " (its candidates and their confidence were not recorded)"
        return text + (f": {tally}." if tally else ".")
    if recorded:
        return "Segmentation from a model that is not named" + (f": {tally}." if tally else ".")
    return (
        "Origin of the segmentation unknown: no model is recorded with it (drawn by hand, or made by another "
        "program), so no confidence is given."
    )
