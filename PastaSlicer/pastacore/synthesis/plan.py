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
    size_mm: list                      # requested extents along x (L), y (P), z (S) in mm
    shape_mode: str = "ellipsoid"      # ellipsoid | lobulated | wall | protrusion
    lobes: list = field(default_factory=list)        # [[ox, oy, oz, radius]] in units of the half size
    deformation: float = 0.03          # surface displacement, fraction of the radius
    deformation_scale: float = 0.6     # correlation length of the displacement, fraction of the radius
    spicules: list = field(default_factory=list)     # [[dx, dy, dz, length]] (length in radii beyond the surface)
    wall_thickness_mm: float = 0.0
    hu_mode: str = "relative"          # relative | absolute
    hu_delta: float = 0.0              # relative: target = reference + delta
    hu_absolute: float | None = None   # absolute target mean
    reference_hu: float | None = None  # measured organ mean (or wall tissue value) once known
    target_mean_hu: float | None = None
    calibrate_mean: bool = True
    texture_sd_hu: float = 0.0
    texture_scale_mm: float = 4.0
    necrosis_fraction: float = 0.0     # inner fraction of the lesion depth that is necrotic
    necrosis_delta_hu: float = 0.0
    calcifications: list = field(default_factory=list)  # [[ux, uy, uz, radius_mm, delta_hu]]
    rim_width_mm: float = 0.0
    rim_delta_hu: float = 0.0
    solid_core_fraction: float = 0.0   # part-solid lung nodules: solid share of the depth
    solid_core_hu: float = 0.0
    edge_sigma_mm: float = 0.6
    clip_to_organ: bool = True
    placement: str = "parenchyma"      # parenchyma | surface | wall | lumen
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """A short human-readable summary, one fact per line."""
        size = " x ".join(f"{s:.0f}" for s in self.size_mm)
        lines = [f"{self.lesion_type} in the {self.organ}, seed {self.seed}",
                 f"size {size} mm (x, y, z); shape {self.shape_mode}"
                 + (f" with {len(self.lobes)} lobes" if len(self.lobes) > 1 else "")
                 + f", surface deformation {100 * self.deformation:.0f} % of the radius"
                 + (f", {len(self.spicules)} spicules" if self.spicules else "")
                 + (f", wall {self.wall_thickness_mm:.1f} mm" if self.wall_thickness_mm else "")]
        if self.target_mean_hu is not None:
            lines.append(f"mean {self.target_mean_hu:.0f} HU ({self.hu_mode}"
                         + (f", {self.hu_delta:+.0f} HU from {self.reference_hu:.0f} HU" if self.hu_mode == "relative"
                            and self.reference_hu is not None else "") + ")")
        elif self.hu_mode == "relative":
            lines.append(f"mean {self.hu_delta:+.0f} HU from the organ")
        else:
            lines.append(f"mean {self.hu_absolute:.0f} HU (absolute)")
        texture = (f"texture SD {self.texture_sd_hu:.0f} HU at {self.texture_scale_mm:.1f} mm" if self.texture_sd_hu
                   else "homogeneous (organ noise only)")
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


def make_plan(kind: S.LesionType, attributes: dict, seed: int, size_hint_mm=None) -> SynthesisPlan:
    """Draw the numeric plan. ``attributes`` are merged and checked (:func:`schema.merged_attributes`).

    ``size_hint_mm``: the extents to use when the attributes give no size (e.g. from a box).
    """
    rng = np.random.default_rng(int(seed))
    a = attributes
    shapes = a.get(S.SHAPE, [])
    density = a.get(S.DENSITY)
    features = a.get(S.FEATURES, [])
    heterogeneous = a.get(S.VARIATIONS) == "heterogeneous"
    organ = kind.organ
    organ_info = S.schema()["organs"][organ]

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
    radius = min(size) / 2
    if kind.kind == "stone" or kind.kind == "cyst" or "cystic" in shapes:
        plan.deformation, plan.deformation_scale = _u(rng, 0.01, 0.03), 0.8
    elif "irregular" in shapes:
        plan.shape_mode = "lobulated"
        count = int(rng.integers(2, 5))
        for _ in range(count):
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            offset = direction * _u(rng, 0.2, 0.45)
            plan.lobes.append([round(float(v), 4) for v in offset] + [round(_u(rng, 0.55, 0.8), 4)])
        plan.deformation, plan.deformation_scale = _u(rng, 0.12, 0.2), 0.35
    elif "punctate/nodular" in shapes:
        plan.deformation, plan.deformation_scale = _u(rng, 0.04, 0.08), 0.5
    else:  # round-like and the rest
        plan.deformation, plan.deformation_scale = _u(rng, 0.02, 0.05), 0.7
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

    # edge
    if kind.kind == "stone":
        plan.edge_sigma_mm = _u(rng, 0.3, 0.5)
    elif a.get(S.SURFACE) == "ill-defined":
        plan.edge_sigma_mm = _u(rng, 1.6, 2.4)
    else:
        plan.edge_sigma_mm = _u(rng, 0.45, 0.8)

    # intensity
    factor = NON_CONTRAST_FACTOR if a.get(S.ENHANCEMENT) == "non-contrast CT" else 1.0
    tissue = organ_info.get("tissue_hu")
    if kind.kind == "stone":
        plan.hu_mode, plan.hu_absolute = "absolute", _u(rng, 400, 1100) if organ == "kidney" else _u(rng, 150, 600)
    elif density == "fluid-like" or (kind.kind == "cyst" and density in (None, "hypodense")):
        plan.hu_mode, plan.hu_absolute = "absolute", _u(rng, 3, 18)
    elif density == "ground-glass":
        plan.hu_mode, plan.hu_absolute = "absolute", _u(rng, -720, -520)
    elif density == "part-solid":
        plan.hu_mode, plan.hu_absolute = "absolute", _u(rng, -680, -540)
        plan.solid_core_fraction, plan.solid_core_hu = _u(rng, 0.3, 0.55), _u(rng, 20, 45)
        plan.calibrate_mean = False
    elif organ == "lung":
        hu = {"hyperdense": (150, 350)}.get(density, (20, 50))
        plan.hu_mode, plan.hu_absolute = "absolute", _u(rng, *hu)
    elif organ == "bone":
        hu = {"hypodense": (25, 60), "hyperdense": (500, 800), "mixed-density": (150, 300)}.get(density)
        if hu is None:
            plan.hu_delta = _u(rng, -15, 15)
        else:
            plan.hu_mode, plan.hu_absolute = "absolute", _u(rng, *hu)
    else:
        delta = {"hypodense": (-75, -35), "isodense": (-8, 8), "hyperdense": (20, 50), "mixed-density": (-35, -15),
                 "ring enhancement": (-60, -35)}.get(density, (-8, 8))
        plan.hu_delta = _u(rng, *delta) * factor
        if kind.hollow and tissue is not None:
            plan.reference_hu = float(tissue) * (0.85 if factor < 1 else 1.0)
            plan.hu_delta = {"hypodense": _u(rng, -20, -10), "hyperdense": _u(rng, 20, 40)}.get(density, _u(rng, -5, 5))
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
            plan.calcifications.append([round(float(v), 4) for v in point] + [round(_u(rng, 1.0, 2.5), 3),
                                                                             round(_u(rng, 150, 400), 1)])
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
        if requested and reference is not None and plan.organ not in ("lung", "bone") and plan.lesion_type not in (
                "gallstone", "kidney_stone"):
            gap = plan.target_mean_hu - reference
            wrong = ((density == "hypodense" and gap > -5) or (density == "hyperdense" and gap < 5)
                     or (density == "isodense" and abs(gap) > 25))
            if wrong:
                raise PastaError(
                    f"CT value {plan.target_mean_hu:g} HU is not {density} in this {plan.organ} (local mean "
                    f"{reference:.0f} HU); drop the density or the CT value")
    else:
        if reference is None:
            raise PastaError("the organ around the lesion could not be measured; give a CT value or an organ mask")
        target = reference + plan.hu_delta
        if plan.lesion_type.endswith(("tumor", "cancer", "metastasis")):
            target = max(target, 10.0)  # solid tumours stay above water
        plan.target_mean_hu = round(float(target), 1)
    return plan
