"""Free-text lesion descriptions -> attributes.

"3 cm irregular hypodense liver lesion with ill-defined margins, heterogeneous" becomes
``{"size": [30, 30, 30], "shape": ["irregular"], "density": "hypodense",
"surface characteristics": "ill-defined", "density variations": "heterogeneous"}`` with the
lesion type ``liver_tumor``. Sizes take mm or cm ("3 cm", "25 x 20 x 30 mm"), CT values
HU ("40 HU", "-650 HU"). Words that are neither vocabulary nor filler are reported back in
``unknown`` so the user sees what was ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import PastaError
from . import schema as S

_SIZE = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)(?:\s*(mm|cm))?(?:\s*[x×*]\s*(\d+(?:\.\d+)?)(?:\s*(mm|cm))?)?"
    r"(?:\s*[x×*]\s*(\d+(?:\.\d+)?))?\s*(mm|cm)\b",
    re.I,
)
_HU = re.compile(r"(?<![\w.])([-−+]?\d+(?:\.\d+)?)\s*(?:hu|hounsfield(?:\s+units?)?)\b", re.I)
_KIND_WORDS = {
    "tumor": "tumor",
    "tumour": "tumor",
    "cancer": "tumor",
    "carcinoma": "tumor",
    "mass": "tumor",
    "neoplasm": "tumor",
    "nodule": "tumor",
    "lesion": "tumor",
    "metastasis": "metastasis",
    "metastases": "metastasis",
    "metastatic": "metastasis",
    "cyst": "cyst",
    "cysts": "cyst",
    "stone": "stone",
    "stones": "stone",
    "calculus": "stone",
    "calculi": "stone",
    "gallstone": "stone",
    "gallstones": "stone",
}


@dataclass
class ParsedText:
    attributes: dict = field(default_factory=dict)
    lesion_type: str | None = None
    organ: str | None = None
    unknown: list = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"{k}: {v}" for k, v in self.attributes.items()]
        if self.lesion_type:
            parts.insert(0, f"lesion type: {self.lesion_type}")
        if self.unknown:
            parts.append(f"not understood: {', '.join(self.unknown)}")
        return "; ".join(parts)


def _size_mm(match) -> list:
    unit_last = match.group(6).lower()
    numbers = [match.group(1), match.group(3), match.group(5)]
    units = [match.group(2), match.group(4), None]
    values = []
    for number, unit in zip(numbers, units):
        if number is None:
            continue
        factor = 10.0 if (unit or unit_last).lower() == "cm" else 1.0
        values.append(float(number) * factor)
    if len(values) == 2:
        values.append(min(values))
    return S.normalize_size(values)


def _lesion_type_for(organ: str | None, kind: str | None) -> str | None:
    if organ is None:
        return None
    candidates = [S.lesion_type(k) for k in S.lesion_types()]
    matching = [t for t in candidates if t.organ == organ]
    if kind in ("cyst", "stone"):
        exact = [t for t in matching if t.kind == kind]
        return exact[0].key if exact else None
    malignant = [t for t in matching if t.malignant]
    return malignant[0].key if malignant else None


def parse_text(text: str) -> ParsedText:
    """Attributes, lesion type (when an organ is named) and the words not understood."""
    if text is None:
        return ParsedText()
    if not isinstance(text, str):
        raise PastaError("the lesion description must be text")
    data = S.schema()
    result = ParsedText()
    rest = text.replace("−", "-")
    sizes = list(_SIZE.finditer(rest))
    if len(sizes) > 1:
        raise PastaError(f"the description gives {len(sizes)} sizes ({', '.join(m.group(0) for m in sizes)}); give one")
    if sizes:
        result.attributes[S.SIZE] = _size_mm(sizes[0])
        rest = rest[: sizes[0].start()] + " " + rest[sizes[0].end() :]
    values = list(_HU.finditer(rest))
    if len(values) > 1:
        raise PastaError(f"the description gives {len(values)} CT values ({', '.join(m.group(0) for m in values)}); give one")
    if values:
        result.attributes[S.HU] = S.normalize_hu(values[0].group(1).replace("+", "") + " HU")
        rest = rest[: values[0].start()] + " " + rest[values[0].end() :]

    words = S._simplify(rest).split()
    table = S.synonym_table()
    organ_words = {}
    for organ, info in data["organs"].items():
        for w in info["words"]:
            organ_words[S._simplify(w)] = organ
    longest = max(len(p.split()) for p in list(table) + list(organ_words))
    stop = set(data["stopwords"])
    organ = kind = None
    i = 0
    found = {}
    while i < len(words):
        matched = False
        for n in range(min(longest, len(words) - i), 0, -1):
            phrase = " ".join(words[i : i + n])
            if phrase in organ_words:
                organ = organ or organ_words[phrase]
                i += n
                matched = True
                break
            if phrase in table:
                key, value = table[phrase]
                found.setdefault(key, [])
                if value not in found[key]:
                    found[key].append(value)
                i += n
                matched = True
                break
        if matched:
            continue
        word = words[i]
        if word in _KIND_WORDS:
            if kind is None or kind == "tumor":
                kind = _KIND_WORDS[word]
        elif word.startswith("gallstone"):
            organ, kind = "gallbladder", "stone"
        elif word not in stop and word not in _KIND_WORDS and not word.isdigit():
            result.unknown.append(word)
        i += 1

    for key, vals in found.items():
        if data["attributes"][key].get("multiple"):
            result.attributes[key] = vals
        elif len(vals) > 1:
            raise PastaError(f"the description gives several values for {key}: {', '.join(vals)}; give one")
        else:
            result.attributes[key] = vals[0]
    # "stone"/"calculus" as a feature also names the lesion kind
    if "stone" in result.attributes.get(S.FEATURES, []):
        kind = "stone"
    result.organ = organ
    result.lesion_type = _lesion_type_for(organ, kind)
    if kind == "metastasis" and organ in (None, "bone"):
        result.lesion_type = "bone_metastasis"
    ordered = {k: result.attributes[k] for k in S.KEY_ORDER if k in result.attributes}
    result.attributes = ordered
    return result
