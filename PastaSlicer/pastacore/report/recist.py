"""RECIST 1.1 at baseline: which lesions are measurable, which are the target lesions, and the
sum of diameters (Eisenhauer et al., Eur J Cancer 2009; 45:228-247).

* **Measurable**: a lesion whose longest diameter in the axial plane is at least 10 mm on a CT
  with slices of 5 mm or thinner, at least twice the slice thickness otherwise. A lymph node
  is measured by its short axis: 15 mm or more is measurable, 10 to under 15 mm is
  pathological but not measurable (non-target), under 10 mm is normal (not a lesion).
* **Targets**: up to 5 measurable lesions in all and 2 per organ, the largest first (paired
  organs are one organ, as are all lymph nodes: the RECIST working group's reading), unless
  the reader chooses them. Among a model's candidates the more confident come first (in steps
  of 0.1), then the largest: a reader would not measure a doubtful finding as a target. A lesion touching the volume border may be cut, so it is not
  chosen automatically (a reader may still choose it).
* **Non-targets**: every other lesion (measurable ones not chosen, and non-measurable ones).
* **Sum of diameters**: long axes of the targets, short axes for lymph nodes.

Diameters are the report's RECIST long and short axes, measured in an acquisition slice; for a
CT whose slices are not axial the report says so (:func:`axial_note`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from ..geometry.grid import Grid
    from ..geometry.volume import Volume
    from .measure import LesionMeasurement
    from .model import LesionReport


MEASURABLE_MM = 10.0
THIN_SLICE_MM = 5.0
NODE_MEASURABLE_SHORT_MM = 15.0
NODE_PATHOLOGICAL_SHORT_MM = 10.0
MAX_TARGETS, MAX_PER_ORGAN = 5, 2
AXIAL_TOLERANCE_DEGREES = 30.0  # a gantry tilt up to this still gives axial slices
_EPS = 1e-6  # measurements exactly on a limit count as reaching it


@dataclass
class RecistLesion:
    number: int
    organ_group: str  # "lung", "liver", "lymph nodes", "unknown organ"
    is_node: bool
    diameter_mm: float  # long axis, or short axis for a lymph node (0.1 mm, as recorded)
    measurable: bool
    role: str  # "target", "non-target" or "" (a normal-sized lymph node: no lesion)
    reason: str  # one sentence: why measurable or not, why the role
    target_number: int = 0  # 1..5 for targets


@dataclass
class RecistBaseline:
    slice_thickness_mm: float
    minimum_long_axis_mm: float
    lesions: list  # RecistLesion, in report order
    chosen_by: str  # "automatic" or "reader"
    notes: list = field(default_factory=list)

    @property
    def targets(self) -> list:
        return sorted((r for r in self.lesions if r.role == "target"), key=lambda r: r.target_number)

    @property
    def non_targets(self) -> list:
        return [r for r in self.lesions if r.role == "non-target"]

    @property
    def sum_of_diameters_mm(self) -> float:
        return round(sum(r.diameter_mm for r in self.targets), 1)

    def to_dict(self) -> dict:
        return {
            "criteria": "RECIST 1.1",
            "slice_thickness_mm": round(self.slice_thickness_mm, 2),
            "minimum_long_axis_mm": round(self.minimum_long_axis_mm, 2),
            "chosen_by": self.chosen_by,
            "targets": [r.number for r in self.targets],
            "non_targets": [r.number for r in self.non_targets],
            "sum_of_diameters_mm": self.sum_of_diameters_mm,
            "notes": list(self.notes),
            "lesions": [asdict(r) for r in self.lesions],
        }


def minimum_long_axis(slice_thickness_mm: float) -> float:
    """10 mm on slices of 5 mm or thinner, twice the slice thickness on thicker ones."""
    return MEASURABLE_MM if slice_thickness_mm <= THIN_SLICE_MM + _EPS else 2.0 * slice_thickness_mm


def slice_thickness(image: Volume) -> float:
    """The slice thickness a reader would use: DICOM's SliceThickness when known, else the slice spacing."""
    value = (image.meta or {}).get("slice_thickness")
    try:
        if value and float(value) > 0:
            return float(value)
    except (TypeError, ValueError):
        pass
    return float(image.grid.spacing[2])


def axial_note(grid: Grid) -> str:
    """A sentence when the acquisition slices are not axial (empty when they are)."""
    normal = np.asarray(grid.direction, float)[:, 2]
    tilt = float(np.degrees(np.arccos(min(1.0, abs(normal[2]) / np.linalg.norm(normal)))))
    if tilt <= AXIAL_TOLERANCE_DEGREES:
        return ""
    return (
        f"The CT's slices are {tilt:.0f} degrees from axial: the long and short axes were measured in the "
        "acquisition slices, not in the axial plane RECIST 1.1 asks for; re-measure on an axial reconstruction."
    )


_NODE = re.compile(r"\blymph|\bnodes?\b", re.IGNORECASE)


def is_lymph_node(*names) -> bool:
    """Whether a lesion is a lymph node, from its name, term or organ ("lymph node", "node@..."),
    never from "nodule"."""
    return any(name and _NODE.search(name.replace("_", " ")) for name in names)


def organ_group(organ: str, node: bool) -> str:
    """The organ a lesion counts for: left and right of a paired organ are one, all lymph nodes one."""
    if node:
        return "lymph nodes"
    words = [
        w
        for w in re.split(r"[\s_]+", (organ or "").lower())
        if w not in ("left", "right", "upper", "lower", "middle", "lobe", "of", "the")
    ]
    return " ".join(words) or "unknown organ"


def classify(number: int, m: LesionMeasurement, term: str, thickness_mm: float) -> RecistLesion:
    """Measurability and the diameter that counts, for one lesion (a LesionMeasurement)."""
    node = is_lymph_node(m.name, term, m.organ)
    group = organ_group(m.organ, node)
    if node:
        short = round(m.short_axis_mm, 1)
        judged = functools.partial(RecistLesion, number, group, True, short)
        if short + _EPS >= NODE_MEASURABLE_SHORT_MM:
            return judged(True, "", f"lymph node, short axis {short:.1f} mm >= {NODE_MEASURABLE_SHORT_MM:g} mm: measurable")
        if short + _EPS >= NODE_PATHOLOGICAL_SHORT_MM:
            return judged(
                False,
                "non-target",
                f"lymph node, short axis {short:.1f} mm: pathological but not measurable "
                f"({NODE_PATHOLOGICAL_SHORT_MM:g} to under {NODE_MEASURABLE_SHORT_MM:g} mm)",
            )
        return judged(
            False, "", f"lymph node, short axis {short:.1f} mm < {NODE_PATHOLOGICAL_SHORT_MM:g} mm: normal size, not a lesion"
        )
    limit = minimum_long_axis(thickness_mm)
    long_axis = round(m.long_axis_mm, 1)
    rule = (
        f"{limit:g} mm on {thickness_mm:g} mm slices"
        if limit == MEASURABLE_MM
        else f"twice the {thickness_mm:g} mm slice thickness"
    )
    judged = functools.partial(RecistLesion, number, group, False, long_axis)
    if long_axis + _EPS >= limit:
        return judged(True, "", f"long axis {long_axis:.1f} mm >= {limit:g} mm ({rule}): measurable")
    return judged(False, "non-target", f"long axis {long_axis:.1f} mm < {limit:g} mm ({rule}): not measurable")


def _check_choice(lesions: dict, chosen: list) -> None:
    if len(set(chosen)) != len(chosen):
        raise PastaError("a target lesion is listed twice")
    unknown = [n for n in chosen if n not in lesions]
    if unknown:
        raise PastaError(
            f"there is no lesion {', '.join(map(str, unknown))} in the report (lesions 1 to {max(lesions) if lesions else 0})"
        )
    if len(chosen) > MAX_TARGETS:
        raise PastaError(f"RECIST 1.1 allows at most {MAX_TARGETS} target lesions; {len(chosen)} were chosen")
    not_measurable = [n for n in chosen if not lesions[n].measurable]
    if not_measurable:
        n = not_measurable[0]
        raise PastaError(f"lesion {n} cannot be a target lesion: {lesions[n].reason}")
    groups = {}
    for n in chosen:
        groups.setdefault(lesions[n].organ_group, []).append(n)
    crowded = {g: ns for g, ns in groups.items() if len(ns) > MAX_PER_ORGAN}
    if crowded:
        group, ns = next(iter(crowded.items()))
        raise PastaError(
            f"RECIST 1.1 allows at most {MAX_PER_ORGAN} target lesions per organ; lesions "
            f"{', '.join(map(str, ns))} are all in the {group}"
        )


def choose_targets(
    recist_lesions: list,
    chosen: Sequence[int] | None = None,
    border: Collection[int] = (),
    bands: dict[int, int] | None = None,
    synthetic: Collection[int] = (),
) -> str:
    """Give each lesion its role in place; returns "reader" or "automatic".

    ``chosen``: lesion numbers the reader picked (validated against RECIST's limits); else the
    largest measurable lesions, at most 2 per organ and 5 in all, never one in ``border``;
    among a model's candidates the most confident come first (``bands``: lesion number ->
    confidence step, :func:`.assess.confidence_band`), so a large but unsure finding does not
    displace a sure one. A ``synthetic`` lesion (inserted by lesion synthesis) is never chosen
    automatically; a reader may still choose it."""
    by_number = {r.number: r for r in recist_lesions}
    bands = bands or {}
    if chosen:
        chosen = [int(n) for n in chosen]
        _check_choice(by_number, chosen)
        order, how = chosen, "reader"
    else:
        ranked = sorted(
            (r for r in recist_lesions if r.measurable and r.number not in border and r.number not in synthetic),
            key=lambda r: (-bands.get(r.number, 0), -r.diameter_mm, r.number),
        )
        order, counts = [], {}
        for r in ranked:
            if len(order) < MAX_TARGETS and counts.get(r.organ_group, 0) < MAX_PER_ORGAN:
                order.append(r.number)
                counts[r.organ_group] = counts.get(r.organ_group, 0) + 1
        how = "automatic"
    for target_number, n in enumerate(order, start=1):
        r = by_number[n]
        r.role, r.target_number = "target", target_number
        r.reason += "; target lesion " + (
            "chosen by the reader"
            if how == "reader"
            else f"{target_number} (largest measurable in the {r.organ_group}"
            + (", among the most confident)" if len(set(bands.values())) > 1 else ")")
        )
    for r in recist_lesions:
        if r.role == "" and r.measurable:
            r.role = "non-target"
            r.reason += (
                "; not chosen by the reader"
                if how == "reader"
                else "; synthetic lesion: not chosen automatically"
                if r.number in synthetic
                else "; touches the volume border (may be cut)"
                if r.number in border
                else f"; not a target ({MAX_PER_ORGAN} per organ, {MAX_TARGETS} in all)"
            )
    return how


def baseline(lesions: Sequence[LesionReport], image: Volume, chosen: Sequence[int] | None = None) -> RecistBaseline:
    """RECIST 1.1 baseline of a report's lesions (LesionReport list, numbered) on ``image``."""
    thickness = slice_thickness(image)
    classified = [classify(lesion.number, lesion.measurement, lesion.term, thickness) for lesion in lesions]
    from .assess import confidence_band

    border = {lesion.number for lesion in lesions if lesion.measurement.touches_border}
    synthetic = {lesion.number for lesion in lesions if getattr(lesion, "synthetic", None)}
    bands = {lesion.number: confidence_band(lesion) for lesion in lesions}
    how = choose_targets(classified, chosen, border, bands, synthetic)
    notes = []
    note = axial_note(image.grid)
    if note:
        notes.append(note)
    if thickness > THIN_SLICE_MM + _EPS:
        notes.append(
            f"Slices are {thickness:g} mm thick (over {THIN_SLICE_MM:g} mm): lesions need a long axis of "
            f"{minimum_long_axis(thickness):g} mm to be measurable."
        )
    return RecistBaseline(thickness, minimum_long_axis(thickness), classified, how, notes)
