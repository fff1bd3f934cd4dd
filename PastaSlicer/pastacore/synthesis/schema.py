"""The lesion attribute schema (``Resources/attributes.json``): lesion types, organs, vocabulary.

Attributes are a dict keyed by PASTA-Gen ``type.json`` names ("shape", "density",
"density variations", "CT value", "surface characteristics", ...). Values are canonical
vocabulary entries (``"hypodense"``, ``"ill-defined"``); "shape" and "specific features"
hold lists, "size" a list of three diameters in mm (x, y, z), "CT value" a number in HU.
:func:`normalize_attributes` accepts synonyms, aliases of the keys and PASTA-Gen report
phrases ("low density lesion,") and refuses anything else with the allowed values listed;
:func:`check_consistency` explains contradictions (a hyperdense cyst, ground glass in the
liver, wall thickening in a solid organ).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError
from ..resources import load_json

if TYPE_CHECKING:
    from collections.abc import Sequence


SIZE, HU = "size", "CT value"
SHAPE, DENSITY, VARIATIONS = "shape", "density", "density variations"
SURFACE, RELATION, FEATURES, CAVITY, ENHANCEMENT = (
    "surface characteristics",
    "relationship with adjacent organs",
    "specific features",
    "cavity",
    "enhancement status",
)
KEY_ORDER = (ENHANCEMENT, SHAPE, SIZE, DENSITY, VARIATIONS, HU, SURFACE, RELATION, FEATURES, CAVITY)


def schema() -> dict:
    return load_json("attributes.json")


@dataclass(frozen=True)
class LesionType:
    key: str
    name: str
    organ: str
    kind: str
    malignant: bool
    folder: str
    size_mm: tuple
    defaults: dict = field(default_factory=dict, compare=False)
    variants: dict = field(default_factory=dict, compare=False)

    @property
    def organ_info(self) -> dict:
        return schema()["organs"][self.organ]

    @property
    def hollow(self) -> bool:
        return bool(self.organ_info.get("hollow"))

    @property
    def term(self) -> str:
        """Terminology term of the lesion segment, e.g. ``"cyst@liver"``."""
        return f"{self.kind}@{self.organ}"

    @property
    def dataset_folder(self) -> str:
        """PASTA-Gen-30K folder ``{Organ}/{Lesion}``."""
        return f"{self.organ_info['folder']}/{self.folder}"


def lesion_types() -> list:
    """The 15 PASTA lesion type keys (malignant first)."""
    return list(schema()["lesion_types"])


def _simplify(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9/+]+", " ", str(text).lower()).split())


def lesion_type(key: str) -> LesionType:
    """A lesion type by key (``"liver_cyst"``), display name ("Liver cyst") or spaced key."""
    types = schema()["lesion_types"]
    wanted = _simplify(key).replace(" ", "_")
    for name, entry in types.items():
        if wanted in (name, _simplify(entry["name"]).replace(" ", "_")):
            return LesionType(
                name,
                entry["name"],
                entry["organ"],
                entry["kind"],
                bool(entry["malignant"]),
                entry["folder"],
                tuple(entry["size_mm"]),
                entry["defaults"],
                entry.get("variants", {}),
            )
    raise PastaError(f"unknown lesion type {key!r}; choose one of: {', '.join(types)}")


# -- vocabulary -------------------------------------------------------------------------------


def _key_lookup() -> dict:
    data = schema()
    lookup = {}
    for key, entry in list(data["attributes"].items()) + list(data["numeric"].items()):
        for name in [key] + entry.get("aliases", []):
            lookup[_simplify(name)] = key
    return lookup


def canonical_key(key: str) -> str:
    found = _key_lookup().get(_simplify(key))
    if found is None:
        allowed = list(schema()["attributes"]) + list(schema()["numeric"])
        raise PastaError(f"unknown attribute {key!r}; known attributes: {', '.join(allowed)}")
    return found


def synonym_table() -> dict:
    """{simplified phrase: (key, canonical value)} over the whole vocabulary."""
    table = {}
    for key, entry in schema()["attributes"].items():
        for value, info in entry["values"].items():
            for phrase in [value, info["report"]] + info["synonyms"]:
                table.setdefault(_simplify(phrase), (key, value))
    return table


def canonical_value(key: str, value: object) -> str:
    """The canonical vocabulary entry of ``key`` for ``value`` (synonyms and report phrases allowed)."""
    entry = schema()["attributes"][key]
    text = _simplify(str(value).strip().rstrip(","))
    candidates = [text, re.sub(r"\s*(lesion|lesions|margin|margins|mass)$", "", text)]
    for value_name, info in entry["values"].items():
        phrases = {_simplify(p) for p in [value_name, info["report"]] + info["synonyms"]}
        if any(c in phrases for c in candidates):
            return value_name
    raise PastaError(f"{key} {value!r} is not allowed; choose one of: {', '.join(entry['values'])}")


def report_phrase(key: str, value: str) -> str:
    return schema()["attributes"][key]["values"][value]["report"]


def _number(value, what):
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(hu|mm|cm)?\s*,?\s*", value.lower())
        if not match:
            raise PastaError(f"{what} must be a number, got {value!r}")
        number = float(match.group(1)) * (10.0 if match.group(2) == "cm" else 1.0)
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PastaError(f"{what} must be a number, got {value!r}") from None
    if number != number:
        raise PastaError(f"{what} must be a number, got {value!r}")
    return number


def normalize_size(value: str | float | Sequence[float]) -> list:
    """One diameter or three (x, y, z), in mm; "30 mm", "3 cm", "30x20x25" are accepted."""
    limits = schema()["numeric"][SIZE]
    if isinstance(value, str):
        text = value.lower().replace("pixel", "").strip().strip(",[] ")
        unit = 10.0 if text.endswith("cm") else 1.0
        parts = [p for p in re.split(r"[x×*,\s\[\]]+", re.sub(r"(mm|cm)", " ", text)) if p]
        numbers = [_number(p, "size") * unit for p in parts]
    elif isinstance(value, (int, float)):
        numbers = [float(value)]
    else:
        numbers = [_number(v, "size") for v in value]
    if len(numbers) == 1:
        numbers = numbers * 3
    if len(numbers) != 3:
        raise PastaError(f"size needs one diameter or three (x, y, z) in mm, got {value!r}")
    for n in numbers:
        if not limits["min"] <= n <= limits["max"]:
            raise PastaError(f"size {n:g} mm is out of range; lesions are {limits['min']} to {limits['max']} mm")
    return [round(float(n), 2) for n in numbers]


def normalize_hu(value: str | float) -> float:
    limits = schema()["numeric"][HU]
    text = value
    if isinstance(value, str):
        match = re.search(r"(-?\d+(?:\.\d+)?)\s*hu", value.lower()) or re.search(r"(-?\d+(?:\.\d+)?)", value)
        if not match:
            raise PastaError(f"CT value must be a number of HU, got {value!r}")
        text = match.group(1)
    hu = _number(text, "CT value")
    if not limits["min"] <= hu <= limits["max"]:
        raise PastaError(f"CT value {hu:g} HU is out of range ({limits['min']} to {limits['max']} HU)")
    return hu


def normalize_attributes(attributes: dict | None) -> dict:
    """Canonical keys and values; raises PastaError listing the allowed values."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise PastaError(f"attributes must be a mapping of attribute names to values, got {type(attributes).__name__}")
    data = schema()
    result = {}
    for raw_key, value in attributes.items():
        if raw_key in ("lesion location",):
            continue  # PASTA-Gen reports carry the organ id here; the organ comes from the lesion type
        key = canonical_key(raw_key)
        if value is None or (isinstance(value, str) and not value.strip(" ,")):
            if key in (FEATURES, SHAPE):
                result[key] = []
            continue
        if key == SIZE:
            result[key] = normalize_size(value)
        elif key == HU:
            result[key] = normalize_hu(value)
        elif data["attributes"][key].get("multiple"):
            items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v.strip()]
            values = []
            for item in items:
                canonical = canonical_value(key, item)
                if canonical not in values:
                    values.append(canonical)
            result[key] = values
        else:
            if isinstance(value, (list, tuple)):
                if len(value) != 1:
                    raise PastaError(f"{key} takes one value, got {len(value)}: {', '.join(map(str, value))}")
                value = value[0]
            result[key] = canonical_value(key, value)
    return result


def merged_attributes(kind: LesionType, attributes: dict | None) -> dict:
    """The lesion type's defaults overridden by ``attributes`` (both normalised)."""
    merged = normalize_attributes(kind.defaults)
    user = normalize_attributes(attributes)
    if user.get(VARIATIONS) == "homogeneous" and FEATURES not in user:
        spots = ("decreased density areas", "increased density areas")
        merged[FEATURES] = [f for f in merged.get(FEATURES, []) if f not in spots]
    if (
        SHAPE in user
        and FEATURES not in user
        and "spiculated margins" in merged.get(FEATURES, [])
        and "round-like" in user[SHAPE]
    ):
        merged[FEATURES] = [f for f in merged[FEATURES] if f != "spiculated margins"]
    merged.update(user)
    # a requested density without a stated texture keeps the default texture unless it conflicts
    if DENSITY in user and user[DENSITY] == "mixed-density" and VARIATIONS not in user:
        merged[VARIATIONS] = "heterogeneous"
    if DENSITY in user and user[DENSITY] == "fluid-like" and VARIATIONS not in user:
        merged[VARIATIONS] = "homogeneous"
    return {k: merged[k] for k in KEY_ORDER if k in merged}


def check_consistency(kind: LesionType, attributes: dict) -> None:
    """Refuse contradictory requests with the reason (attributes already merged and normalised)."""
    organ = kind.organ
    organ_name = schema()["organs"][organ]["name"].lower()
    density = attributes.get(DENSITY)
    shapes = attributes.get(SHAPE, [])
    features = attributes.get(FEATURES, [])
    hu = attributes.get(HU)
    fluid = kind.kind == "cyst" or "cystic" in shapes
    if fluid and density in ("hyperdense", "ground-glass", "part-solid", "mixed-density"):
        raise PastaError(
            f"a {density} {'cyst' if kind.kind == 'cyst' else 'cystic lesion'} is contradictory: a cyst holds fluid "
            f"(about 0 to 20 HU), so it is darker than {organ_name} tissue; use density fluid-like or hypodense, "
            f"or choose a tumour type"
        )
    if fluid and hu is not None and not -50 <= hu <= 40:
        raise PastaError(f"CT value {hu:g} HU does not fit a cyst: cyst fluid measures about 0 to 20 HU")
    if fluid and "spiculated margins" in features:
        raise PastaError("a spiculated cyst is contradictory: cysts have smooth, well-defined walls")
    if kind.kind == "stone":
        if density in ("hypodense", "fluid-like", "ground-glass", "part-solid", "isodense", "ring enhancement"):
            raise PastaError(
                f"a {density} stone is contradictory: stones are calcified, hundreds of HU above "
                f"the surrounding tissue; use density hyperdense"
            )
        if hu is not None and hu < 100:
            raise PastaError(f"CT value {hu:g} HU does not fit a stone: stones measure about 200 to 1200 HU")
    if density in ("ground-glass", "part-solid") and organ != "lung":
        raise PastaError(f"{density} opacity exists only in the lung, not in the {organ_name}")
    hollow_shapes = [s for s in shapes if s in ("wall thickening", "luminal narrowing", "protrusion into the lumen")]
    cavity = attributes.get(CAVITY)
    if not kind.hollow and (hollow_shapes or cavity in ("within the lumen", "wall thickening")) and kind.kind != "stone":
        what = hollow_shapes[0] if hollow_shapes else f"cavity '{cavity}'"
        raise PastaError(
            f"{what} needs a hollow organ (gallbladder, stomach, esophagus, colon, urinary bladder); "
            f"the {organ_name} is a solid organ"
        )
    if kind.hollow and cavity in ("within the parenchyma", "protruding from the organ") and kind.kind != "stone":
        raise PastaError(
            f"cavity '{cavity}' needs a parenchymal organ; the {organ_name} is hollow (use within the lumen or wall thickening)"
        )
    variations = attributes.get(VARIATIONS)
    if variations == "homogeneous":
        if density == "mixed-density":
            raise PastaError("a homogeneous mixed-density lesion is contradictory: mixed density means heterogeneous")
        spots = [f for f in features if f in ("decreased density areas", "increased density areas")]
        if spots:
            raise PastaError(
                f"a homogeneous lesion cannot have {' and '.join(spots)}; "
                f"use density variations heterogeneous or drop the feature"
            )
    if "round-like" in shapes and "irregular" in shapes:
        raise PastaError("shape round-like and irregular together are contradictory; choose one")
    if SIZE in attributes:
        lo, hi = kind.size_mm
        if max(attributes[SIZE]) > 4 * hi:
            raise PastaError(
                f"size {max(attributes[SIZE]):g} mm is implausible for a {kind.name.lower()} (typical {lo} to {hi} mm)"
            )


def sample_attributes(kind: LesionType, seed: int) -> dict:
    """A consistent variation of the type's defaults, drawn from its ``variants`` (for diverse datasets)."""
    rng = np.random.default_rng([seed, 17])
    for _ in range(20):
        chosen = {key: options[int(rng.integers(len(options)))] for key, options in kind.variants.items()}
        try:
            check_consistency(kind, merged_attributes(kind, chosen))
        except PastaError:
            continue
        return chosen
    return {}
