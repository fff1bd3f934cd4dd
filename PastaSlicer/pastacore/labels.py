"""The label-map convention, and which labels of a segmentation are lesions.

A segmentation whose labels nothing names (no ``.seg.nrrd`` segment names, no JSON sidecar as
``pasta segment`` writes) follows PASTA-Gen's convention: 1 = organ, 2 = lesion. So a lungs +
tumour map is one lesion (label 2) inside an organ (label 1), never "3 lesions, two of them the
lungs". :func:`choose_lesion_labels` says which labels are measured and, in words, why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import PastaError, option

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


ORGAN, LESION = 1, 2
CONVENTION = "PASTA-Gen's convention 1 = organ, 2 = lesion"


@dataclass
class LesionLabels:
    values: list  # label values measured as lesions
    organ_values: list  # label values known to be organs (from names or the convention)
    reason: str  # one sentence for the report: which labels, and how that was decided


def _listed(values) -> str:
    return ", ".join(str(v) for v in values)


def choose_lesion_labels(
    present: Iterable[int], names: dict | None = None, explicit: Sequence[int] | None = None, names_from: str = ""
) -> LesionLabels:
    """Lesion labels among ``present`` (the non-zero values of the map).

    ``explicit``: values the user chose (``--lesion-label``); ``names``: label value -> name
    from the file's segments or sidecar (``names_from`` says which, for the reason).
    """
    from .terminology import term_for_label_name

    present = sorted(int(v) for v in present)
    if explicit:
        values = [int(v) for v in explicit]
        absent = [v for v in values if v not in present]
        if absent:
            raise PastaError(
                f"label {_listed(absent)} is not present in the segmentation (labels present: {_listed(present) or 'none'})"
            )
        return LesionLabels(values, [], f"Lesions: label {_listed(values)}, as chosen by the user.")
    names = {int(k): v for k, v in (names or {}).items() if int(k) in present}
    if names:
        terms = {v: term_for_label_name(n) for v, n in names.items()}
        organs = [v for v, term in sorted(terms.items()) if term and "@" not in term]
        values = [v for v in present if v not in organs]
        if not values:
            raise PastaError(
                f"the segmentation holds no lesion label: {_named(names, organs)} "
                f"({names_from or 'label names'}); pass {option('lesion_label')} N to measure a label anyway"
            )
        reason = f"Lesions: label {_listed(values)}, from the label names in {names_from or 'the segmentation'}"
        reason += f"; label {_named(names, organs)} not measured (organ)." if organs else "."
        return LesionLabels(values, organs, reason)
    if LESION not in present:
        raise PastaError(
            f"the segmentation has no lesion label {LESION} (labels present: {_listed(present) or 'none'}); "
            f"nothing names its labels, so {CONVENTION} applies: pass {option('lesion_label')} N if label N "
            "holds the lesions"
        )
    organs = [ORGAN] if ORGAN in present else []
    others = [v for v in present if v not in (ORGAN, LESION)]
    reason = (
        f"Lesions: label {LESION}, by {CONVENTION} (nothing names the segmentation's labels)"
        + (f"; label {ORGAN} (organ) not measured" if organs else "")
        + (f"; label {_listed(others)} not measured (the convention gives it no meaning)" if others else "")
        + "."
    )
    return LesionLabels([LESION], organs, reason)


def _named(names: dict, values) -> str:
    return ", ".join(f"{v} ({names[v]})" for v in values)
