"""Attributes + lesion type + seed -> a numeric, readable :class:`SynthesisPlan`.

All random choices of a lesion are drawn here from ``numpy.random.default_rng(seed)`` in a
fixed order, so a plan is reproducible and can be shown before anything is rendered. The
target HU is either absolute (fluid, stones, ground glass, bone, lung solid tissue, or a
requested CT value) or relative to a reference: the local organ mean for parenchymal
organs, the soft-tissue value of the wall for hollow organs (:func:`resolve_intensity`,
called once the organ around the lesion has been measured).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import PastaError
from . import schema as S

NON_CONTRAST_FACTOR = 0.6  # relative contrasts are weaker without contrast medium


@dataclass
class SynthesisPlan:
    lesion_type: str
    organ: str
    seed: int
    attributes: dict
    size_mm: list  # requested extents along x (L), y (P), z (S) in mm
    shape_mode: str = "ellipsoid"  # ellipsoid | lobulated | wall | protrusion
    lobes: list = field(default_factory=list)  # [[ox, oy, oz, radius]] in units of the half size
    deformation: float = 0.03  # surface displacement, fraction of the radius
    deformation_scale: float = 0.6  # correlation length of the displacement, fraction of the radius
    spicules: list = field(default_factory=list)  # [[dx, dy, dz, length]] (length in radii beyond the surface)
    wall_thickness_mm: float = 0.0
    hu_mode: str = "relative"  # relative | absolute
    hu_delta: float = 0.0  # relative: target = reference + delta
    hu_absolute: float | None = None  # absolute target mean
    reference_hu: float | None = None  # measured organ mean (or wall tissue value) once known
    target_mean_hu: float | None = None
    calibrate_mean: bool = True
    texture_sd_hu: float = 0.0
    texture_scale_mm: float = 4.0
    necrosis_fraction: float = 0.0  # inner fraction of the lesion depth that is necrotic
    necrosis_delta_hu: float = 0.0
    calcifications: list = field(default_factory=list)  # [[ux, uy, uz, radius_mm, delta_hu]]
    rim_width_mm: float = 0.0
    rim_delta_hu: float = 0.0
    solid_core_fraction: float = 0.0  # part-solid lung nodules: solid share of the depth
    solid_core_hu: float = 0.0
    edge_sigma_mm: float = 0.6
    clip_to_organ: bool = True
    placement: str = "parenchyma"  # parenchyma | surface | wall | lumen
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """A short human-readable summary, one fact per line."""
        size = " x ".join(f"{s:.0f}" for s in self.size_mm)
        lines = [
            f"{self.lesion_type} in the {self.organ}, seed {self.seed}",
            f"size {size} mm (x, y, z); shape {self.shape_mode}"
            + (f" with {len(self.lobes)} lobes" if len(self.lobes) > 1 else "")
            + f", surface deformation {100 * self.deformation:.0f} % of the radius"
            + (f", {len(self.spicules)} spicules" if self.spicules else "")
            + (f", wall {self.wall_thickness_mm:.1f} mm" if self.wall_thickness_mm else ""),
        ]
        if self.target_mean_hu is not None:
            lines.append(
                f"mean {self.target_mean_hu:.0f} HU ({self.hu_mode}"
                + (
                    f", {self.hu_delta:+.0f} HU from {self.reference_hu:.0f} HU"
                    if self.hu_mode == "relative" and self.reference_hu is not None
                    else ""
                )
                + ")"
            )
        elif self.hu_mode == "relative":
            lines.append(f"mean {self.hu_delta:+.0f} HU from the organ")
        else:
            lines.append(f"mean {self.hu_absolute:.0f} HU (absolute)")
        texture = (
            f"texture SD {self.texture_sd_hu:.0f} HU at {self.texture_scale_mm:.1f} mm"
            if self.texture_sd_hu
            else "homogeneous (organ noise only)"
        )
        lines.append(f"{texture}; edge blur {self.edge_sigma_mm:.1f} mm")
        if self.necrosis_fraction:
            lines.append(f"necrotic core {100 * self.necrosis_fraction:.0f} % of the depth, {self.necrosis_delta_hu:+.0f} HU")
        if self.calcifications:
            lines.append(f"{len(self.calcifications)} calcified foci")
        if self.rim_width_mm:
            lines.append(f"enhancing rim {self.rim_width_mm:.1f} mm, {self.rim_delta_hu:+.0f} HU")
        if self.solid_core_fraction:
            lines.append(f"solid core {100 * self.solid_core_fraction:.0f} % of the depth at {self.solid_core_hu:.0f} HU")
        lines.append(f"placement {self.placement}; {'clipped to' if self.clip_to_organ else 'may extend beyond'} the organ")
        lines += self.notes
        return "\n".join(lines)


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def rules(group: str) -> list:
    """The ordered rules of ``group`` ("shape", "edge", "intensity", "wall") from Resources/attributes.json."""
    return S.schema()["plan_rules"][group]


def _holds(when: dict, facts: dict) -> bool:
    for key, wanted in when.items():
        value = facts.get(key)
        options = wanted if isinstance(wanted, list) else [wanted]
        if isinstance(value, (list, tuple)):  # the lesion's shape words: any of them
            if not any(v in options for v in value):
                return False
        elif value not in options:
            return False
    return True


def apply_rule(group: str, facts: dict, plan: SynthesisPlan, rng: np.random.Generator, contrast: float = 1.0) -> dict:
    """Apply the first rule of ``group`` that holds for ``facts``: its draws (in order), then its
    fixed fields; returns the rule."""
    rule = next(r for r in rules(group) if _holds(r["when"], facts))
    if "lobes" in rule:
        _draw_lobes(rule["lobes"], plan, rng)
    for field_name, lo, hi, *scale in rule.get("draw", []):
        value = _u(rng, lo, hi) * (contrast if "contrast" in scale else 1.0)
        setattr(plan, field_name, value)
    if "draw_by_density" in rule:
        field_name, ranges = rule["draw_by_density"]
        drawn = {density: _u(rng, lo, hi) for density, (lo, hi) in ranges.items()}
        setattr(plan, field_name, drawn.get(facts.get("density"), drawn["other"]))
    for field_name, value in rule.get("set", {}).items():
        setattr(plan, field_name, value)
    return rule


def _draw_lobes(spec: dict, plan: SynthesisPlan, rng) -> None:
    for _ in range(int(rng.integers(*spec["count"]))):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        offset = direction * _u(rng, *spec["offset"])
        plan.lobes.append([round(float(v), 4) for v in offset] + [round(_u(rng, *spec["radius"]), 4)])


def make_plan(kind: S.LesionType, attributes: dict, seed: int, size_hint_mm: float | None = None) -> SynthesisPlan:
    """Draw the numeric plan. ``attributes`` are merged and checked (:func:`schema.merged_attributes`).

    ``size_hint_mm``: the extents to use when the attributes give no size (e.g. from a box). The
    type-specific numbers (shape, edge, intensity) come from the rule tables next to the lesion
    types (:func:`rules`); what is drawn, and in which order, fixes what a seed gives.
    """
    rng = np.random.default_rng(int(seed))
    a = attributes
    shapes = a.get(S.SHAPE, [])
    density = a.get(S.DENSITY)
    features = a.get(S.FEATURES, [])
    heterogeneous = a.get(S.VARIATIONS) == "heterogeneous"
    organ = kind.organ
    organ_info = S.schema()["organs"][organ]
    facts = {
        "kind": kind.kind,
        "organ": organ,
        "shape": shapes,
        "density": density,
        "surface": a.get(S.SURFACE),
        "hollow": kind.hollow,
    }

    # size: requested, else the box, else drawn from the type's range (mildly anisotropic)
    diameter = _u(rng, *kind.size_mm)
    aspect = rng.uniform(0.8, 1.2, 3)
    if S.SIZE in a:
        size = [float(v) for v in a[S.SIZE]]
    elif size_hint_mm is not None:
        size = [float(v) for v in size_hint_mm]
    else:
        size = [float(round(diameter * r, 1)) for r in aspect]
    plan = SynthesisPlan(kind.key, organ, int(seed), dict(a), size)

    # shape
    apply_rule("shape", facts, plan, rng)
    if "spiculated margins" in features:
        for _ in range(int(rng.integers(6, 13))):
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            plan.spicules.append([round(float(v), 4) for v in direction] + [round(_u(rng, 0.3, 0.7), 4)])
    cavity = a.get(S.CAVITY)
    if kind.hollow and kind.kind != "stone":
        if "wall thickening" in shapes or "luminal narrowing" in shapes or cavity == "wall thickening":
            plan.shape_mode = "wall"
            share = (0.4, 0.5) if "luminal narrowing" in shapes else (0.25, 0.4)
            plan.wall_thickness_mm = round(max(3.0, _u(rng, *share) * min(size)), 2)
            plan.placement = "wall"
        else:
            plan.shape_mode = "protrusion"
            plan.placement = "wall"
    elif kind.hollow and kind.kind == "stone":
        plan.placement = "lumen"
    elif cavity == "protruding from the organ":
        plan.placement = "surface"
    plan.clip_to_organ = a.get(S.RELATION) != "close relationship" and plan.placement != "surface"

    # edge and intensity
    apply_rule("edge", facts, plan, rng)
    factor = NON_CONTRAST_FACTOR if a.get(S.ENHANCEMENT) == "non-contrast CT" else 1.0
    tissue = organ_info.get("tissue_hu")
    if apply_rule("intensity", facts, plan, rng, contrast=factor).get("wall") and kind.hollow and tissue is not None:
        plan.reference_hu = float(tissue) * (0.85 if factor < 1 else 1.0)
        apply_rule("wall", facts, plan, rng)
        plan.notes.append("reference: soft-tissue value of the organ wall")
    if density == "ring enhancement":
        plan.rim_width_mm, plan.rim_delta_hu = _u(rng, 1.5, 3.0), _u(rng, 50, 80) * factor
    if S.HU in a:
        plan.hu_mode, plan.hu_absolute = "absolute", float(a[S.HU])
        plan.calibrate_mean = True

    if heterogeneous:
        sd = _u(rng, 15, 30) * (2.0 if density == "mixed-density" else 1.0) * (4.0 if organ == "bone" else 1.0)
        plan.texture_sd_hu, plan.texture_scale_mm = sd, _u(rng, 2.0, 5.0)
    if "decreased density areas" in features:
        plan.necrosis_fraction, plan.necrosis_delta_hu = _u(rng, 0.3, 0.55), -_u(rng, 25, 50) * factor
    if "increased density areas" in features:
        for _ in range(int(rng.integers(1, 5))):
            point = rng.uniform(-0.5, 0.5, 3)
            plan.calcifications.append(
                [round(float(v), 4) for v in point] + [round(_u(rng, 1.0, 2.5), 3), round(_u(rng, 150, 400), 1)]
            )
    return plan


def resolve_intensity(plan: SynthesisPlan, organ_mean_hu: float | None) -> SynthesisPlan:
    """Fix the target mean once the organ around the lesion is measured; checks the CT value."""
    density = plan.attributes.get(S.DENSITY)
    if plan.reference_hu is None and organ_mean_hu is not None:
        plan.reference_hu = round(float(organ_mean_hu), 1)
    reference = plan.reference_hu
    if plan.hu_mode == "absolute":
        plan.target_mean_hu = float(plan.hu_absolute)
        requested = S.HU in plan.attributes
        if (
            requested
            and reference is not None
            and plan.organ not in ("lung", "bone")
            and plan.lesion_type not in ("gallstone", "kidney_stone")
        ):
            gap = plan.target_mean_hu - reference
            wrong = (
                (density == "hypodense" and gap > -5)
                or (density == "hyperdense" and gap < 5)
                or (density == "isodense" and abs(gap) > 25)
            )
            if wrong:
                raise PastaError(
                    f"CT value {plan.target_mean_hu:g} HU is not {density} in this {plan.organ} (local mean "
                    f"{reference:.0f} HU); drop the density or the CT value"
                )
    else:
        if reference is None:
            raise PastaError("the organ around the lesion could not be measured; give a CT value or an organ mask")
        target = reference + plan.hu_delta
        if plan.lesion_type.endswith(("tumor", "cancer", "metastasis")):
            target = max(target, 10.0)  # solid tumours stay above water
        plan.target_mean_hu = round(float(target), 1)
    return plan
