"""``synthesize_lesion``: one lesion of a chosen type and description into a copy of a CT.

Steps: read the attributes (free text or a mapping, merged over the type's defaults and
checked), pick the organ from the organ labels, check the box, draw the plan from the seed,
place the lesion (in the box, in the organ), render it with the chosen backend, measure it
and write the reports. The input volume is never modified.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CancelledError, PastaError, option
from ..fileio import check_ct
from ..geometry import Volume
from ..geometry.boxes import VoxelBox
from ..progress import reporter
from ..type_json import is_type_json
from . import schema as S
from .backends import get_backend
from .inbox import fit_in_box, keep_in_box
from .measure import extents_mm, lesion_stats
from .plan import SynthesisPlan, make_plan
from .report import lesion_report, type_json
from .text import parse_text

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..progress import Cancelled, Progress


@dataclass
class SynthesisResult:
    image: Volume  # the input with the lesion (a new volume)
    labels: Volume  # PASTA-Gen labels: organ 1, lesion 2
    segments: dict  # {label value: SegmentInfo}
    plan: SynthesisPlan
    report: dict  # our JSON report
    type_json: dict  # PASTA-Gen type.json
    organ: Volume | None = None
    changed_box: VoxelBox | None = None
    not_understood: list = field(default_factory=list)

    @property
    def lesion(self) -> np.ndarray:
        return self.labels.array == 2


# -- attributes -------------------------------------------------------------------------------


def read_attributes(attributes: str | dict | None, lesion_type: str | None) -> tuple[str | None, dict, list]:
    """(lesion type key, merged attributes, words not understood) from text or a mapping."""
    unknown = []
    user = {}
    parsed_type = parsed_organ = None
    if isinstance(attributes, str):
        parsed = parse_text(attributes)
        user, unknown, parsed_type, parsed_organ = parsed.attributes, parsed.unknown, parsed.lesion_type, parsed.organ
    elif isinstance(attributes, dict):
        if len(attributes) == 1 and is_type_json(attributes):
            attributes = next(iter(attributes.values()))[2]  # a PASTA-Gen type.json
        user = dict(attributes)
    elif attributes is not None:
        raise PastaError("attributes must be a description (text) or a mapping of attribute names to values")
    if lesion_type:
        kind = S.lesion_type(lesion_type)
        if parsed_organ and parsed_organ != kind.organ:
            raise PastaError(
                f"the description names the {parsed_organ} but the lesion type {kind.key} is in the "
                f"{kind.organ}; change one of them"
            )
    elif parsed_type:
        kind = S.lesion_type(parsed_type)
    else:
        raise PastaError(f"no lesion type given; choose one of: {', '.join(S.lesion_types())}")
    merged = S.merged_attributes(kind, user)
    S.check_consistency(kind, merged)
    return kind, merged, unknown


# -- organ ------------------------------------------------------------------------------------


def _name_matches(name: str, organ: str) -> bool:
    words = f" {S._simplify(name.replace('_', ' '))} "
    return any(f" {S._simplify(w)} " in words for w in S.schema()["organs"][organ]["words"])


def select_organ(
    volume: Volume,
    organ_labels: Volume | None,
    organ_names: dict | None,
    organ_label: int | None,
    kind: S.LesionType,
    box: VoxelBox | None,
) -> tuple[np.ndarray | None, int]:
    """(boolean organ mask on the volume grid or None, TotalSegmentator v1 id for type.json)."""
    info = S.schema()["organs"][kind.organ]
    default_id = info["ts_v1"][0]
    if organ_labels is None:
        return None, default_id
    if isinstance(organ_labels, np.ndarray):
        organ_labels = volume.with_array(organ_labels, is_label=True)
    volume.check_matches(organ_labels, "organ mask")
    labels = organ_labels.array
    if np.issubdtype(labels.dtype, np.integer) and labels.dtype.itemsize <= 2 and labels.min() >= 0:
        present = [int(v) for v in np.flatnonzero(np.bincount(labels.ravel())) if v != 0]
    else:
        present = [int(v) for v in np.unique(labels) if v != 0]
    if not present:
        raise PastaError("the organ mask is empty")
    if organ_label is not None:
        wanted = [int(v) for v in np.atleast_1d(organ_label)]
        missing = [v for v in wanted if v not in present]
        if missing:
            raise PastaError(f"organ label {missing[0]} is not in the organ mask (it holds {', '.join(map(str, present[:20]))})")
    elif organ_names:
        wanted = [int(v) for v, name in organ_names.items() if int(v) in present and _name_matches(str(name), kind.organ)]
        if not wanted:
            if len(present) == 1:
                wanted = present
            else:
                names = ", ".join(str(n) for n in organ_names.values())
                raise PastaError(
                    f"none of the organ segments ({names}) is the {kind.organ} that a "
                    f"{kind.name.lower()} needs; add or rename the {kind.organ} segment"
                )
    elif len(present) == 1:
        value = present[0]
        other = [k for k, o in S.schema()["organs"].items() if value in o["ts_v1"] and k != kind.organ]
        if value != 1 and value not in info["ts_v1"] and other:
            raise PastaError(
                f"the organ mask holds only label {value} (the {other[0]} in TotalSegmentator v1 numbering), "
                f"not the {kind.organ}; give the {kind.organ} or choose it with {option('organ_label')}"
            )
        wanted = present
    elif set(present) & set(info["ts_v1"]) and max(present) <= 104:
        wanted = sorted(set(present) & set(info["ts_v1"]))  # a TotalSegmentator v1 map
    elif box is not None:
        inside = labels[box.slices]
        counts = np.bincount(inside[inside > 0].ravel()) if (inside > 0).any() else None
        if counts is None:
            raise PastaError(f"the box does not overlap any organ of the mask; move it into the {kind.organ}")
        wanted = [int(np.argmax(counts))]
    else:
        raise PastaError(
            f"the organ mask holds several labels ({', '.join(map(str, present[:20]))}); say which one is "
            f"the {kind.organ} ({option('organ_label')})"
        )
    mask = labels == wanted[0] if len(wanted) == 1 else np.isin(labels, wanted)
    check_organ_air(volume, mask, kind, wanted)
    ts_ids = [v for v in wanted if v in info["ts_v1"]]
    return mask, (ts_ids[0] if ts_ids and organ_names is None else default_id)


AIR_ORGAN_HU = -500.0  # an organ region whose median is below this is air-filled: a lung


def check_organ_air(volume: Volume, mask: np.ndarray, kind: S.LesionType, labels: list) -> None:
    """Refuse an organ region that cannot be the lesion type's organ by what it holds: a lung
    lesion outside air-filled tissue, or a lesion of a solid organ in the lungs' air."""
    if not mask.any():
        return
    median = float(np.median(volume.array[mask][:: max(1, int(mask.sum()) // 200000)]))
    air = median < AIR_ORGAN_HU
    if air != (kind.organ == "lung") and not (air and kind.hollow):  # a bowel's lumen may hold gas
        which = f"label {', '.join(map(str, labels))}" if labels else "the organ"
        holds = (
            f"air-filled tissue (median {median:.0f} HU), a lung" if air else f"solid tissue (median {median:.0f} HU), not a lung"
        )
        raise PastaError(
            f"the organ mask's {which} holds {holds}; a {kind.name.lower()} belongs in the {kind.organ}: "
            f"choose the {kind.organ}'s label ({option('organ_label')}) or another lesion type"
        )


def auto_organ(volume: Volume, kind: S.LesionType) -> np.ndarray | None:
    """An organ mask found without a model (the lungs), or None."""
    if kind.organ == "lung":
        from ..anatomy.masks import lung_mask

        return lung_mask(volume.array, volume.grid.spacing)
    return None


# -- box and placement ------------------------------------------------------------------------


def check_box(box: VoxelBox, volume: Volume) -> VoxelBox:
    shape = np.array(volume.array.shape)
    start, stop = np.array(box.start), np.array(box.stop)
    if np.any(stop <= 0) or np.any(start >= shape) or np.any(stop <= start):
        raise PastaError(f"the box lies outside the volume ({volume.grid.describe()}); draw it over the organ")
    start, stop = np.clip(start, 0, shape), np.clip(stop, 0, shape)
    return VoxelBox(tuple(int(v) for v in start), tuple(int(v) for v in stop))


def place(
    plan: SynthesisPlan,
    organ: np.ndarray | None,
    volume: Volume,
    box: VoxelBox | None,
    kind: S.LesionType,
    centre_range: tuple | None = None,
) -> np.ndarray:
    """LPS centre of the lesion: in the box and the organ, as deep as the placement rule wants.
    ``centre_range``: (low, high) i, j, k indices where the centre keeps the lesion and its edge in
    the box (:func:`.inbox.fit_in_box`); the centre is chosen there where the organ allows."""
    from scipy import ndimage

    grid = volume.grid
    radius = min(plan.size_mm) / 2
    if organ is None:
        centre_index = (np.array(box.start) + np.array(box.stop) - 1) / 2.0
        return grid.index_to_lps(centre_index[::-1])
    spacing = np.array(grid.spacing[::-1])
    if box is not None:
        grow = np.ceil((radius + 3) / spacing).astype(int)
        lo = np.maximum(np.array(box.start) - grow, 0)
        hi = np.minimum(np.array(box.stop) + grow, organ.shape)
        stride = max(1, int(np.ceil((np.prod(hi - lo) / 3e5) ** (1 / 3))))
    else:
        where = np.argwhere(organ)
        if where.size == 0:
            raise PastaError(f"the {kind.organ} mask is empty")
        lo, hi = where.min(axis=0), where.max(axis=0) + 1
        stride = max(1, int(np.ceil((np.prod(hi - lo) / 1e6) ** (1 / 3))))
    sub = organ[lo[0] : hi[0] : stride, lo[1] : hi[1] : stride, lo[2] : hi[2] : stride]
    if not sub.any():
        raise PastaError(f"the box does not overlap the {kind.organ}; move it into the organ")
    if box is not None:  # the organ may go on beyond the crop: no padding
        depth = ndimage.distance_transform_edt(sub, sampling=spacing * stride)
    else:
        depth = ndimage.distance_transform_edt(np.pad(sub, 1), sampling=spacing * stride)[1:-1, 1:-1, 1:-1]
    candidates = sub.copy()
    index = np.argwhere(np.ones(sub.shape, bool)).reshape(sub.shape + (3,)) * stride + lo
    if box is not None:
        inside = np.all((index >= np.array(box.start)) & (index < np.array(box.stop)), axis=-1)
        candidates &= inside
        if not candidates.any():
            raise PastaError(f"the box does not overlap the {kind.organ}; move it into the organ")
        if centre_range is not None:
            low, high = (np.asarray(v, float)[::-1] for v in centre_range)
            keeps = np.all((index >= low - 1e-6) & (index <= high + 1e-6), axis=-1)
            if (candidates & keeps).any():
                candidates &= keeps
        centre = (np.array(box.start) + np.array(box.stop) - 1) / 2.0
        distance = np.linalg.norm((index - centre) * spacing, axis=-1)
    else:
        distance = np.zeros(sub.shape)
    rng = np.random.default_rng([plan.seed, 5])
    edge = 1.5 * float(spacing.max() * stride)
    if plan.placement == "wall":
        score = -np.abs(depth - edge / 2) - 0.05 * distance
        good = candidates & (depth <= edge)
    elif plan.placement == "surface":
        score = -np.abs(depth - 0.3 * radius) - 0.05 * distance
        good = candidates & (np.abs(depth - 0.3 * radius) <= max(edge, 0.15 * radius))
    else:  # parenchyma, lumen: as deep as the radius needs
        want = radius + plan.edge_sigma_mm if plan.clip_to_organ else radius * 0.6
        score = np.minimum(depth, want) - 0.05 * distance
        good = candidates & (depth >= min(want, 0.8 * float(depth[candidates].max())))
    if box is not None or not good.any():
        flat = np.where(candidates, score, -np.inf)
        pick = np.unravel_index(int(np.argmax(flat)), flat.shape)
    else:
        options = np.argwhere(good)
        pick = tuple(options[int(rng.integers(len(options)))])
    chosen = index[pick].astype(float)[::-1]
    if centre_range is not None:
        chosen = np.clip(chosen, *centre_range)
    return grid.index_to_lps(chosen)


# -- main entry -------------------------------------------------------------------------------


def synthesize_lesion(
    volume: Volume,
    organ_labels: Volume | None = None,
    organ_names: dict | None = None,
    roi_box: VoxelBox | None = None,
    lesion_type: str | None = None,
    attributes: str | dict | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
    organ_label: int | None = None,
    backend: str = "procedural",
    centre_lps: Sequence[float] | None = None,
    backend_options: dict | None = None,
) -> SynthesisResult:
    """Insert one lesion; returns a :class:`SynthesisResult` (the input is not modified).

    ``organ_labels``: label Volume on ``volume``'s grid (or None); ``organ_names``: {value: name}
    used to find the lesion type's organ among the labels; ``organ_label``: the value(s) to
    use instead. ``roi_box``: where the lesion goes (a VoxelBox) or None for a random place in
    the organ. ``attributes``: free text, a mapping, or a PASTA-Gen type.json mapping.
    ``centre_lps``: the lesion's centre (LPS, mm; e.g. a point the user placed) instead of the
    placement rule; the lesion is still clipped to the organ where its type wants that.
    ``backend``: a name from :func:`~pastacore.synthesis.backends.backend_names` (or a
    Backend); ``backend_options``: its options (e.g. ``{"steps": 50, "allow_slow": True}``).
    """
    from ..terminology import segment_info

    started = time.perf_counter()
    report = reporter(progress)
    cancelled = is_cancelled or (lambda: False)
    engine = get_backend(backend, **(backend_options or {}))
    check_ct(volume, "the CT volume")
    kind, merged, unknown = read_attributes(attributes, lesion_type)
    report(0.05, "attributes")
    box = check_box(roi_box, volume) if roi_box is not None else None
    organ, organ_id = select_organ(volume, organ_labels, organ_names, organ_label, kind, box)
    if organ is None and kind.hollow and kind.kind != "stone":
        raise PastaError(
            f"a {kind.name.lower()} grows in the wall of the {kind.organ}: give the {kind.organ} segmentation (organ mask)"
        )
    if organ is None and organ_labels is None:
        organ = auto_organ(volume, kind)  # the lungs are found without a model, box or not
        if organ is None and box is None:
            raise PastaError(
                f"without a box, a {kind.name.lower()} needs the {kind.organ} segmentation (organ mask) to find a place for it"
            )
    size_hint = None
    if box is not None and organ is not None and not organ[box.slices].any():
        raise PastaError(f"the box does not overlap the {kind.organ}; move it into the organ")
    if box is not None:
        extent = volume.grid.extent_mm(box)
        if min(extent) < 3.0:
            raise PastaError(f"the box ({' x '.join(f'{e:.1f}' for e in extent)} mm) is too small; lesions are at least 3 mm")
        if S.SIZE in merged:
            slack = max(volume.grid.spacing)
            if any(s > e + slack for s, e in zip(merged[S.SIZE], extent)):
                raise PastaError(
                    f"the box ({' x '.join(f'{e:.0f}' for e in extent)} mm) is too small for the requested size "
                    f"({' x '.join(f'{s:.0f}' for s in merged[S.SIZE])} mm); enlarge the box or ask for a smaller lesion"
                )
        else:
            size_hint = [round(e, 1) for e in extent]  # the box, less the lesion's edge (fit_in_box)
    plan = make_plan(kind, merged, seed, size_hint)
    centre_range = None
    if box is not None:
        centre_range = fit_in_box(plan, box, volume.grid, engine.reach_mm(plan), S.SIZE in merged)
    if organ is None and plan.clip_to_organ:
        plan.clip_to_organ = False
        plan.notes.append("no organ mask: the lesion is not clipped to an organ")
    if cancelled():
        raise CancelledError()
    if centre_lps is not None:
        center = np.asarray(centre_lps, float).reshape(-1)
        if center.shape != (3,) or not np.all(np.isfinite(center)):
            raise PastaError("the lesion centre must be three numbers (LPS, mm)")
        index = volume.grid.lps_to_index(center)
        if not np.all((index > -0.5) & (index < np.array(volume.array.shape[::-1]) - 0.5)):
            raise PastaError(f"the lesion centre {list(np.round(center, 1))} (LPS mm) lies outside the volume")
    else:
        center = place(plan, organ, volume, box, kind, centre_range)
    report(0.15, "placed")
    rendered = engine.render(
        volume, organ, plan, center, lambda f, m="": report(0.15 + 0.75 * f, m), box=box, is_cancelled=cancelled
    )
    if cancelled():
        raise CancelledError()
    if box is not None:
        cut = keep_in_box(volume, rendered, box)
        if cut:
            plan.notes.append(f"kept inside the box: {cut} voxel(s) of the lesion's edge beyond the box were left unchanged")

    grid = volume.grid
    from .render import sub_grid

    crop = rendered.crop
    measured = lesion_stats(rendered.array[crop.slices], rendered.lesion[crop.slices], sub_grid(grid, crop))
    organ_size = extents_mm(organ, grid) if organ is not None else measured["size_mm"]
    label_array = np.zeros(volume.array.shape, np.uint8)
    if organ is not None:
        label_array[organ] = 1
    label_array[rendered.lesion] = 2
    image = volume.with_array(rendered.array, is_label=False)
    labels = Volume(label_array, grid, is_label=True, meta={})
    segments = {2: segment_info(kind.term)}
    if organ is not None:
        segments = {1: segment_info(kind.organ), 2: segments[2]}
    ras = (grid.ijk_to_ras() @ np.append(grid.lps_to_index(center), 1.0))[:3]
    geometry = {
        "center_ras": [round(float(v), 2) for v in ras],
        "box_ijk": None if box is None else [list(box.start[::-1]), [v - 1 for v in box.stop[::-1]]],
        "changed_region_ijk": [list(rendered.crop.start[::-1]), [v - 1 for v in rendered.crop.stop[::-1]]],
    }
    seconds = time.perf_counter() - started
    our = lesion_report(plan, kind, measured, geometry, engine.name, unknown, rendered.stats, seconds)
    pasta = type_json(plan, organ_id, organ_size, measured["size_mm"], measured["mean_hu"])
    report(1.0, "done")
    return SynthesisResult(
        image,
        labels,
        segments,
        plan,
        our,
        pasta,
        None if organ is None else Volume(organ.astype(np.uint8), grid, is_label=True),
        rendered.crop,
        unknown,
    )
