"""Where the organ is: a label from any label map or segmentation (TotalSegmentator's output
included, v1 or v2 numbering, or its segment names), or the built-in classical body and lung
masks for chest CT."""

from __future__ import annotations

import numpy as np

from ..errors import PastaError
from ..geometry.volume import Volume
from ..terminology import organ_for_totalsegmentator, term_for_label_name

CLASSICAL = ("lungs", "body")
# The organ a model declares (its lesion labels' organ, e.g. "tumor@lung") -> the classical mask
# that finds it without a model. A model whose organ has one searches there by default.
CLASSICAL_FOR_ORGAN = {"lung": "lungs"}


def classical_search_region(organ: str | None) -> str | None:
    """The classical mask (``"lungs"``) a model of ``organ`` searches by default, or None (the body)."""
    return CLASSICAL_FOR_ORGAN.get(organ or "")


def classical_mask_standard(name: str, hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """The classical ``name`` mask ("lungs" or "body") of a CT already on the standard grid."""
    from .masks import body_mask, lung_mask

    if name not in CLASSICAL:
        raise PastaError(f"built-in organ masks are {', '.join(CLASSICAL)}; got {name!r}")
    body = body_mask(hu)
    return body if name == "body" else lung_mask(hu, spacing, body=body)


def organ_from_labels(
    labels: Volume, *, label: int | None = None, organ: str | None = None, totalsegmentator_version: int = 2
) -> Volume:
    """A binary organ mask (uint8) taken from ``labels``.

    ``label`` picks one value. ``organ`` ("lung", "liver", ...) picks, for a ``.seg.nrrd``
    with named segments, the segments whose names mean that organ (TotalSegmentator names
    such as ``lung_upper_lobe_left`` included), otherwise the TotalSegmentator ids of that
    organ in the given numbering. With neither, every non-zero voxel counts.
    """
    array = labels.array
    if label is not None:
        chosen = array == label
        if not chosen.any():
            raise PastaError(f"label {label} is not present in the organ mask")
    elif organ:
        segments = labels.meta.get("segments") or []
        wanted = organ.lower().rstrip("s")
        if segments:
            values = [
                s["label"]
                for s in segments
                if (term_for_label_name(s["name"]) or "").split("@")[-1].startswith(wanted)
                or wanted in s["name"].lower().replace("_", " ")
            ]
        else:
            values = [
                v
                for v in np.unique(array)
                if v and (organ_for_totalsegmentator(int(v), totalsegmentator_version) or "").endswith(wanted)
            ]
        chosen = np.isin(array, values) if values else np.zeros(array.shape, bool)
        if not chosen.any():
            raise PastaError(
                f"no {organ} found in the organ mask (TotalSegmentator v{totalsegmentator_version} ids or segment names)"
            )
    else:
        chosen = array > 0
        if not chosen.any():
            raise PastaError("the organ mask is empty; choose another segment or label")
    return labels.with_array(chosen.astype(np.uint8), is_label=True)


def classical_organ(volume: Volume, organ: str) -> Volume:
    """The built-in body or lung mask of a CT, on the CT's own grid."""
    from ..geometry.standardize import standardize

    if organ not in CLASSICAL:
        raise PastaError(f"built-in organ masks are {', '.join(CLASSICAL)}; got {organ!r}")
    std = standardize(volume, is_label=False)
    mask = classical_mask_standard(organ, std.volume.array, std.volume.grid.spacing)
    return std.to_source(std.volume.with_array(mask.astype(np.uint8), is_label=True))
