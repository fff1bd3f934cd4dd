"""Segment names, colours and Slicer ``TerminologyEntry`` tags from ``Resources/terminology.json``.

A label is described by a *term*: an organ key (``"lung"``), or a lesion key with the
organ it lies in (``"tumor@lung"``). :func:`describe` turns a term into a
:class:`SegmentInfo` with a display name, an RGB colour and the 7-part terminology string
Slicer stores on each segment (context ~ category ~ type ~ type modifier ~ anatomic
context ~ region ~ region modifier; coded parts are ``scheme^value^meaning``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import PastaError
from .resources import load_json

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class SegmentInfo:
    term: str
    name: str
    color: tuple
    terminology: str


def _code(triplet) -> str:
    return "^".join(triplet) if triplet else "^^"


def segment_info(term: str) -> SegmentInfo:
    """Name, colour and terminology tag of an organ (``"liver"``) or lesion (``"tumor@liver"``).

    An organ is the tag's type (left/right as its type modifier); a lesion's type is the lesion
    kind and its organ the anatomic region (left/right as the region modifier), as DICOM does.
    """
    data = load_json("terminology.json")
    lesion, _, organ = term.partition("@")
    if organ:
        if lesion not in data["lesions"]:
            raise PastaError(f"unknown lesion kind {lesion!r}; known: {', '.join(data['lesions'])}")
        if organ not in data["structures"]:
            raise PastaError(f"unknown organ {organ!r}; known: {', '.join(data['structures'])}")
        entry, region = data["lesions"][lesion], data["structures"][organ]
        name = f"{region['name']} {entry['name']}"
        coded = [data["categories"]["altered"], entry["code"], None, region["code"], _modifier(data, region)]
    else:
        if term not in data["structures"]:
            raise PastaError(f"unknown structure {term!r}; known: {', '.join(data['structures'])}")
        entry = data["structures"][term]
        name = entry["name"]
        coded = [data["categories"][entry.get("category", "anatomy")], entry["code"], _modifier(data, entry), None, None]
    category, kind, kind_modifier, region_code, region_modifier = coded
    tag = "~".join(
        [
            data["context"],
            _code(category),
            _code(kind),
            _code(kind_modifier),
            data["anatomic_context"],
            _code(region_code),
            _code(region_modifier),
        ]
    )
    return SegmentInfo(term, name, tuple(entry["color"]), tag)


def _modifier(data: dict, entry: dict):
    return data["modifiers"][entry["modifier"]] if entry.get("modifier") else None


# -- Slicer's terminology contexts, written from terminology.json ---------------------------------

SCHEMA = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/"


def _coded(triplet, **extra) -> dict:
    scheme, value, meaning = triplet
    return {"CodingSchemeDesignator": scheme, "CodeValue": value, "CodeMeaning": meaning, **extra}


def _rgb(color) -> list:
    return [int(round(255 * c)) for c in color]


def slicer_contexts() -> tuple:
    """(segmentation terminology, anatomic context) in Slicer's ``.term.json`` format.

    Every code :func:`describe` writes is in them: organs (with their left/right modifiers)
    as types of their category, lesion kinds as types of "Morphologically Altered Structure"
    (shown with an anatomic region), organs again as anatomic regions.
    """
    data = load_json("terminology.json")
    modifiers = data["modifiers"]
    by_code = {}  # one type per organ code; left and right become its modifiers
    for key, entry in data["structures"].items():
        item = by_code.setdefault((entry.get("category", "anatomy"), tuple(entry["code"])), {"entry": None, "sides": []})
        if entry.get("modifier"):
            item["sides"].append(entry["modifier"])
        else:
            item["entry"] = (key, entry)

    def organ_type(code, item, anatomic=False):
        key, entry = item["entry"] or (None, None)
        fields = (
            {}
            if anatomic
            else {
                "recommendedDisplayRGBValue": _rgb(entry["color"] if entry else (0.7, 0.6, 0.6)),
                "3dSlicerLabel": key or code[2].lower(),
            }
        )
        if item["sides"]:
            fields["Modifier"] = [
                _coded(
                    modifiers[side],
                    **({} if anatomic else {"recommendedDisplayRGBValue": _rgb(data["structures"][f"{side} {key}"]["color"])}),
                )
                for side in sorted(item["sides"])
            ]
        return _coded(code, **fields)

    categories = []
    for category in sorted({c for c, _ in by_code}):
        types = [organ_type(code, item) for (c, code), item in by_code.items() if c == category]
        categories.append(_coded(data["categories"][category], showAnatomy=False, Type=types))
    lesions = [
        _coded(e["code"], recommendedDisplayRGBValue=_rgb(e["color"]), **{"3dSlicerLabel": k}) for k, e in data["lesions"].items()
    ]
    categories.append(_coded(data["categories"]["altered"], showAnatomy=True, Type=lesions))
    terminology = {
        "SegmentationCategoryTypeContextName": data["context"],
        "@schema": SCHEMA + "segment-context-schema.json#",
        "SegmentationCodes": {"Category": categories},
    }
    regions = [organ_type(code, item, anatomic=True) for (c, code), item in by_code.items()]
    anatomy = {
        "AnatomicContextName": data["anatomic_context"],
        "@schema": SCHEMA + "anatomic-context-schema.json#",
        "AnatomicCodes": {"AnatomicRegion": regions},
    }
    return terminology, anatomy


def write_slicer_contexts(folder: str | Path) -> list:
    """Write the two contexts as ``.term.json`` files into ``folder``; returns their paths."""
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    terminology, anatomy = slicer_contexts()
    paths = []
    for name, content in (
        ("SegmentationCategoryTypeModifier-PASTA.term.json", terminology),
        ("AnatomicRegionAndModifier-PASTA.term.json", anatomy),
    ):
        path = folder / name
        text = json.dumps(content, indent=1)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            temp = path.with_name(path.name + ".part")
            temp.write_text(text, encoding="utf-8")
            temp.replace(path)
        paths.append(path)
    return paths


def register_slicer_contexts(terminologies_logic: object, folder: str | Path) -> list:
    """Load PASTA's contexts into a ``vtkSlicerTerminologiesModuleLogic`` (the desktop app's or a
    headless one), so the terminology widget resolves every segment PASTA makes."""
    loaded = []
    for path in write_slicer_contexts(folder):
        if not terminologies_logic.LoadContextFromFile(str(path)):
            raise PastaError(f"Slicer could not load the terminology file {path.name}")
        loaded.append(path)
    return loaded


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
    "tumor": "tumor",
    "tumour": "tumor",
    "cancer": "tumor",
    "mass": "tumor",
    "carcinoma": "tumor",
    "nodule": "nodule",
    "cyst": "cyst",
    "stone": "stone",
    "calculus": "stone",
    "metastasis": "metastasis",
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


def segment_info_for_name(name: str, organ_hint: str | None = None) -> SegmentInfo:
    """Segment info for a model label name; unknown names keep their own name."""
    term = term_for_label_name(name, organ_hint)
    if term:
        return segment_info(term)
    data = load_json("terminology.json")
    tag = "~".join(
        [
            data["context"],
            _code(data["categories"]["anatomy"]),
            _code(data["categories"]["anatomy"]),
            "^^",
            data["anatomic_context"],
            "^^",
            "^^",
        ]
    )
    return SegmentInfo("", name, (0.6, 0.6, 0.6), tag)


def segments_to_dict(segments: dict) -> dict:
    """``{value: SegmentInfo}`` as JSON-ready ``{"value": {term, name, color, terminology}}``."""
    return {
        str(value): {"term": info.term, "name": info.name, "color": list(info.color), "terminology": info.terminology}
        for value, info in sorted(segments.items())
    }


def segments_from_dict(data: dict) -> dict:
    """The inverse of :func:`segments_to_dict`."""
    return {
        int(value): SegmentInfo(item.get("term", ""), item["name"], tuple(item["color"]), item.get("terminology", ""))
        for value, item in data.items()
    }


def is_lesion(name: str, tag: str = "") -> bool:
    """Whether a segment is a lesion: by its terminology category when it has a tag PASTA knows
    ("Morphologically Altered Structure" vs an organ's), else by its name ("Lung tumor" yes,
    "Lung" no, an unknown name no)."""
    categories = load_json("terminology.json")["categories"]
    parts = tag.split("~") if tag else []
    if len(parts) == 7 and "^" in parts[1]:
        code = parts[1].split("^")[1]
        if code == categories["altered"][1]:
            return True
        if code in (categories["anatomy"][1], categories["tissue"][1]):
            return False
    term = term_for_label_name(name or "")
    return bool(term and "@" in term)
