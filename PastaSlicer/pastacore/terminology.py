"""Segment names, colours and Slicer ``TerminologyEntry`` tags from ``Resources/terminology.json``.

A label is described by a *term*: an organ key (``"lung"``), or a lesion key with the
organ it lies in (``"tumor@lung"``). :func:`describe` turns a term into a
:class:`SegmentInfo` with a display name, an RGB colour and the 7-part terminology string
Slicer stores on each segment (context ~ category ~ type ~ type modifier ~ anatomic
context ~ region ~ region modifier; coded parts are ``scheme^value^meaning``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PastaError
from .resources import load_json


@dataclass(frozen=True)
class SegmentInfo:
    term: str
    name: str
    color: tuple
    terminology: str


def _code(triplet) -> str:
    return "^".join(triplet) if triplet else "^^"


def describe(term: str) -> SegmentInfo:
    """Name, colour and terminology tag of an organ (``"liver"``) or lesion (``"tumor@liver"``)."""
    data = load_json("terminology.json")
    lesion, _, organ = term.partition("@")
    if organ:
        if lesion not in data["lesions"]:
            raise PastaError(f"unknown lesion kind {lesion!r}; known: {', '.join(data['lesions'])}")
        if organ not in data["structures"]:
            raise PastaError(f"unknown organ {organ!r}; known: {', '.join(data['structures'])}")
        entry, region = data["lesions"][lesion], data["structures"][organ]
        name = f"{region['name']} {entry['name']}"
        category = data["categories"]["altered"]
        region_code = region["code"]
    else:
        if term not in data["structures"]:
            raise PastaError(f"unknown structure {term!r}; known: {', '.join(data['structures'])}")
        entry = data["structures"][term]
        name, category, region_code = entry["name"], data["categories"]["anatomy"], None
    tag = "~".join([
        data["context"], _code(category), _code(entry["code"]), "^^",
        data["anatomic_context"], _code(region_code), "^^",
    ])
    return SegmentInfo(term, name, tuple(entry["color"]), tag)


def parse_tag(tag: str) -> dict:
    """The coded parts of a ``TerminologyEntry`` tag, for tests and reports."""
    parts = tag.split("~")
    if len(parts) != 7:
        raise PastaError(f"a terminology tag has 7 '~'-separated parts, got {len(parts)}")
    keys = ("context", "category", "type", "type_modifier", "anatomic_context", "region", "region_modifier")
    return {k: (tuple(p.split("^")) if "^" in p else p) for k, p in zip(keys, parts)}


def organ_for_totalsegmentator(label: int, version: int = 2) -> str | None:
    """Our organ key for a TotalSegmentator label id (v1 or v2 numbering)."""
    key = f"ts_v{version}"
    for organ, entry in load_json("terminology.json")["structures"].items():
        if label in entry.get(key, []) and organ not in ("kidney",):
            return organ
    return None


_LESION_WORDS = {
    "tumor": "tumor", "tumour": "tumor", "cancer": "tumor", "mass": "tumor", "carcinoma": "tumor",
    "nodule": "nodule", "cyst": "cyst", "stone": "stone", "calculus": "stone", "metastasis": "metastasis",
    "lesion": "lesion",
}


def term_for_label_name(name: str, organ_hint: str | None = None) -> str | None:
    """Our term for a model's label name ("lung", "lung tumor", "kidney_cyst"...), or None.

    Lesion names become ``kind@organ``; the organ comes from the name itself, else from
    ``organ_hint`` (the model's organ label).
    """
    words = name.lower().replace("_", " ").replace("-", " ")
    structures = load_json("terminology.json")["structures"]
    organ = max((key for key in structures if key in words), key=len, default=None)
    kind = next((_LESION_WORDS[w] for w in words.split() if w in _LESION_WORDS), None)
    if kind:
        organ = organ or organ_hint
        return f"{kind}@{organ}" if organ else None
    return organ


def describe_label(name: str, organ_hint: str | None = None) -> SegmentInfo:
    """Segment info for a model label name; unknown names keep their own name."""
    term = term_for_label_name(name, organ_hint)
    if term:
        return describe(term)
    data = load_json("terminology.json")
    tag = "~".join([data["context"], _code(data["categories"]["anatomy"]), _code(data["categories"]["anatomy"]), "^^",
                    data["anatomic_context"], "^^", "^^"])
    return SegmentInfo("", name, (0.6, 0.6, 0.6), tag)
