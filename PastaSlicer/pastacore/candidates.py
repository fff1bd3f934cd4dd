"""Lesion candidates: what a model proposed, how sure it was, and whether a person changed it.

A *candidate* is one connected piece (26-connectivity, as the report measures lesions) of a
lesion label of a model's segmentation, on the CT's own grid. Its record holds the model's
confidence in it, the mean and the maximum lesion probability over its voxels (softmax of the
network's logits, summed over the lesion labels), and a fingerprint (voxel count, centroid) by
which a lesion measured later is recognised:

* **proposed**: the lesion is the candidate as the model made it (same voxels count and centroid);
* **edited**: a person changed it (it holds the centroid of a candidate, or a candidate's
  centroid lies in it, but it is not that candidate any more); the confidence shown is the
  model's for the candidate before the edit;
* **confirmed**: a person confirmed it as it is (a Slicer segment tag, :data:`CONFIRMED_TAG`);
* **manual**: the segmentation records candidates but none is near: a person drew it;
* **unknown**: nothing records where the segmentation came from.

Records travel in ``pasta segment``'s JSON sidecar (``"candidates": {"2": [...]}``) and on the
Slicer segment they belong to (the segment tag :data:`CANDIDATES_TAG`, JSON), so they survive a
``.mrb``. The *reporting floor* (:class:`Floor`) says which lesions are too small or too unsure
to report; a model's ``model.json`` gives its default under ``reporting_floor``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .geometry.grid import Grid
    from .geometry.volume import Volume
    from .report.measure import LesionMeasurement


CANDIDATES_TAG = "PASTA.Candidates"  # segment tag: JSON list of candidate records of that segment
CONFIRMED_TAG = "PASTA.Confirmed"  # segment tag: JSON list of fingerprints a person confirmed
REJECTED_TAG = "PASTA.Rejected"  # segment tag: JSON list of fingerprints a person rejected (not a lesion)
SAME_CENTROID_MM = 0.5  # a lesion is a candidate when its voxel count and centroid (this close) agree
STATUSES = ("confirmed", "proposed", "edited", "manual", "unknown", "rejected")


@dataclass
class Candidate:
    voxels: int
    volume_ml: float
    centroid_lps_mm: list
    mean_probability: float
    max_probability: float

    def to_dict(self) -> dict:
        return {
            "voxels": int(self.voxels),
            "volume_ml": round(float(self.volume_ml), 4),
            "centroid_lps_mm": [round(float(c), 3) for c in self.centroid_lps_mm],
            "mean_probability": round(float(self.mean_probability), 4),
            "max_probability": round(float(self.max_probability), 4),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Candidate:
        try:
            return cls(
                int(data["voxels"]),
                float(data.get("volume_ml", 0.0)),
                [float(c) for c in data["centroid_lps_mm"]][:3],
                float(data["mean_probability"]),
                float(data["max_probability"]),
            )
        except (KeyError, TypeError, ValueError):
            raise PastaError(
                "a lesion candidate record is damaged (expected voxels, centroid_lps_mm, mean_probability, max_probability)"
            ) from None


@dataclass
class Floor:
    """What is too small or too unsure to report: lesions below any limit are listed apart."""

    min_long_axis_mm: float = 3.0
    min_volume_ml: float = 0.03
    min_confidence: float = 0.0  # mean lesion probability; applies to lesions a model proposed
    source: str = "default"  # where the values came from, for the report

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        parts = [f"long axis under {self.min_long_axis_mm:g} mm", f"volume under {self.min_volume_ml:g} mL"]
        if self.min_confidence > 0:
            parts.append(f"model confidence under {self.min_confidence:.2f}")
        return ", ".join(parts) + f" ({self.source})"

    def reasons(self, long_axis_mm: float, volume_ml: float, confidence: float | None) -> list:
        """Why a lesion is below the floor (empty when it is reported)."""
        out = []
        if long_axis_mm < self.min_long_axis_mm:
            out.append(f"long axis {long_axis_mm:.1f} mm < {self.min_long_axis_mm:g} mm")
        if volume_ml < self.min_volume_ml:
            out.append(f"volume {volume_ml:.3f} mL < {self.min_volume_ml:g} mL")
        if confidence is not None and confidence < self.min_confidence:
            out.append(f"confidence {confidence:.2f} < {self.min_confidence:.2f}")
        return out


DEFAULT_FLOOR = Floor()


def floor_from(description: dict | None, source: str) -> Floor | None:
    """The floor a model's description (``model.json`` or its provenance) declares, or None."""
    data = (description or {}).get("reporting_floor")
    if not isinstance(data, dict):
        return None
    try:
        return Floor(
            float(data.get("min_long_axis_mm", DEFAULT_FLOOR.min_long_axis_mm)),
            float(data.get("min_volume_ml", DEFAULT_FLOOR.min_volume_ml)),
            float(data.get("min_confidence", DEFAULT_FLOOR.min_confidence)),
            source,
        )
    except (TypeError, ValueError):
        raise PastaError(f"the reporting_floor of {source} is damaged (expected numbers)") from None


def choose_floor(explicit: dict | None = None, model: dict | None = None) -> Floor:
    """The floor that applies: values given by the user win over the model's, which win over the
    default; each value not given falls back to the next."""
    base = floor_from(model, f"model {(model or {}).get('name', '')}".strip()) or DEFAULT_FLOOR
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    if not explicit:
        return base
    for key, value in explicit.items():
        if not np.isfinite(float(value)) or float(value) < 0:
            raise PastaError(f"the reporting floor's {key.replace('_', ' ')} must be a number >= 0, got {value}")
    values = {**asdict(base), **{k: float(v) for k, v in explicit.items()}}
    values["source"] = "given by the user" + (f"; otherwise {base.source}" if len(explicit) < 3 else "")
    return Floor(**values)


# --- making candidates ----------------------------------------------------------------------


def lesion_probability(logits: np.ndarray, lesion_channels: Sequence[int], slab: int = 16) -> np.ndarray:
    """Softmax probability of the lesion classes, ``logits`` (K, D, H, W) -> (D, H, W) float32,
    a few slices at a time (a whole softmax would need K copies of the volume)."""
    out = np.empty(logits.shape[1:], np.float32)
    channels = [int(c) for c in lesion_channels]
    for start in range(0, logits.shape[1], slab):
        block = logits[:, start : start + slab].astype(np.float32)
        block = np.exp(block - block.max(axis=0, keepdims=True))
        out[start : start + slab] = block[channels].sum(axis=0) / block.sum(axis=0)
    return out


def candidates_of(labels: Volume, probability: np.ndarray, lesion_values: Iterable[int]) -> dict:
    """``{label value: [Candidate]}``: each lesion piece of ``labels`` (a Volume) with the mean and
    maximum of ``probability`` (an array on the same grid) over it, largest first."""
    from scipy import ndimage

    spacing = labels.grid.spacing
    out = {}
    for value in lesion_values:
        pieces, count = ndimage.label(labels.array == value, structure=np.ones((3, 3, 3), bool))
        if not count:
            continue
        index = np.arange(1, count + 1)
        voxels = np.bincount(pieces.ravel(), minlength=count + 1)[1:]
        means = ndimage.mean(probability, pieces, index)
        maxima = ndimage.maximum(probability, pieces, index)
        centres = np.array(ndimage.center_of_mass(np.ones(pieces.shape, np.int8), pieces, index), float)
        lps = labels.grid.index_to_lps(centres[:, ::-1])
        records = [
            Candidate(int(n), float(n * np.prod(spacing) / 1000.0), list(c), float(a), float(b))
            for n, c, a, b in zip(voxels, np.atleast_2d(lps), means, maxima)
        ]
        out[int(value)] = sorted(records, key=lambda r: -r.voxels)
    return out


def candidates_to_json(candidates: dict) -> dict:
    return {str(value): [c.to_dict() for c in records] for value, records in sorted(candidates.items())}


def candidates_from_json(data: object) -> dict:
    """The inverse of :func:`candidates_to_json`; ``{}`` for anything that is not such a dict."""
    if not isinstance(data, dict):
        return {}
    return {int(k): [Candidate.from_dict(r) for r in v] for k, v in data.items() if str(k).isdigit() and isinstance(v, list)}


def tag_value(records: Iterable[Candidate | dict]) -> str:
    """A segment tag's text (one line of JSON; Slicer keeps tags in the .seg.nrrd header)."""
    return json.dumps([r.to_dict() if isinstance(r, Candidate) else r for r in records], separators=(",", ":"))


def from_tag(text: str) -> list:
    try:
        data = json.loads(text) if text else []
    except ValueError:
        return []
    return [Candidate.from_dict(r) for r in data] if isinstance(data, list) else []


# --- matching measured lesions ----------------------------------------------------------------


@dataclass
class Match:
    status: str  # one of STATUSES
    candidate: Candidate | None = None  # the model's record (confidence) it came from

    @property
    def confidence(self) -> float | None:
        return self.candidate.mean_probability if self.candidate is not None else None


def fingerprint(m: LesionMeasurement) -> dict:
    """What identifies a measured lesion (a LesionMeasurement) as it is now."""
    return {"voxels": int(m.voxel_count), "centroid_lps_mm": [round(float(c), 3) for c in m.centroid_lps_mm]}


def _same(m, record) -> bool:
    voxels = record.voxels if isinstance(record, Candidate) else int(record.get("voxels", -1))
    centre = record.centroid_lps_mm if isinstance(record, Candidate) else record.get("centroid_lps_mm", [np.inf] * 3)
    return voxels == m.voxel_count and float(np.linalg.norm(np.subtract(centre, m.centroid_lps_mm))) <= SAME_CENTROID_MM


def match(m: LesionMeasurement, records: list | None, confirmed: Sequence[dict] = (), grid: Grid | None = None) -> Match:
    """The status and model record of the measured lesion ``m`` among ``records`` (None: the
    segmentation records none, origin unknown). ``grid``: the CT's grid, to find which candidate
    centroids lie in the lesion's box."""
    if any(_same(m, f) for f in confirmed):
        found = match(m, records, (), grid)
        return Match("confirmed", found.candidate)
    if records is None:
        return Match("unknown")
    exact = [r for r in records if _same(m, r)]
    if exact:
        return Match("proposed", exact[0])
    near = _inside_box(m, records, grid)
    if near:
        return Match("edited", max(near, key=lambda r: r.voxels))
    return Match("manual")


def _inside_box(m, records, grid) -> list:
    """Records whose centroid lies in the lesion's box (one voxel wider), or whose box holds the
    lesion's centroid (within the record's equivalent radius)."""
    if not records:
        return []
    lo = np.asarray(m.bbox_ijk[0], float) - 1.0
    hi = np.asarray(m.bbox_ijk[1], float) + 1.0
    out = []
    for r in records:
        if grid is not None:
            ijk = grid.lps_to_index(np.asarray(r.centroid_lps_mm, float))
            if np.all(ijk >= lo) and np.all(ijk <= hi):
                out.append(r)
                continue
        radius = (3.0 * r.volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
        if np.linalg.norm(np.subtract(r.centroid_lps_mm, m.centroid_lps_mm)) <= radius:
            out.append(r)
    return out
