"""Per-lesion measurements a radiologist can check, with pyradiomics' definitions where one exists.

A *lesion* is one connected component (26-connectivity) of a lesion label, or a whole label
when ``split_components=False``. All lengths are in mm in patient space (the grid's spacing and
direction are taken into account; distances do not depend on the direction matrix).

Definitions (pyradiomics 3.x names in brackets):

* ``volume_ml``: number of voxels x voxel volume / 1000 [``shape_VoxelVolume``, in mL not mm3].
* ``max_diameter_3d_mm``: the largest distance between two vertices of the marching-cubes
  surface of the mask [``shape_Maximum3DDiameter``]. For a binary mask every marching-cubes
  vertex is the midpoint of an edge joining an inside and an outside voxel centre, so the
  vertex set is computed directly (no mesh is built) and the largest distance is found on its
  convex hull. This is the same number pyradiomics reports.
* ``long_axis_mm`` (RECIST 1.1 longest diameter): the largest distance between surface
  vertices lying in one acquisition slice (k), maximised over slices; ``axis_slice`` is that
  slice (axial for axial CT). This is pyradiomics' ``shape_Maximum2DDiameterSlice`` restricted
  to real slices: pyradiomics also groups the vertices lying half-way between two slices, which
  are no image a reader measures on (on lung1 that gives 16.63 mm against our 16.45 mm; on
  lung2 both give 55.80 mm).
* ``short_axis_mm``: in the same slice, the longest chord of the lesion perpendicular to the
  long axis (the longest run of lesion pixels along lines perpendicular to it, sampled every
  quarter pixel; pixel edges bound the run, as for the long axis). No pyradiomics equivalent.
* ``principal_axes_mm``: 4 * sqrt(eigenvalue) of the covariance (divided by N) of the voxel
  centre coordinates, largest first [``shape_MajorAxisLength``, ``MinorAxisLength``,
  ``LeastAxisLength``].
* ``mean_hu``, ``std_hu`` (population SD), ``min_hu``, ``max_hu``, ``median_hu`` over the
  lesion's voxels [``firstorder_Mean``, ``StandardDeviation``, ``Minimum``, ``Maximum``,
  ``Median``], without resampling or resegmentation.
* ``centroid_*``: mean voxel-centre position, in LPS and RAS mm.
* ``organ``: the organ label holding most of the lesion's voxels; when none overlaps, the
  organ most present within 10 mm of the lesion (``organ_relation`` = "adjacent");
  ``side`` is taken from the organ's name when it says left/right, else from the centroid
  relative to the body's midline in that slice (patient left = LPS +x).
* ``slice_range``: first and last slice (k) holding lesion voxels; ``touches_border``: the
  lesion reaches the edge of the volume, so it may be cut and the measurements too small.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError, option
from ..geometry.volume import Volume

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..geometry.boxes import VoxelBox
    from ..progress import Progress


ADJACENT_MM = 10.0
MAX_LESIONS = 200  # a report with more is a noisy or inverted mask, and would take hours of key images


@dataclass
class LesionMeasurement:
    index: int  # 1-based lesion number in the report
    label: int  # label value in the segmentation
    component: int  # 1-based component number within the label (0: whole label)
    name: str
    voxel_count: int
    volume_ml: float
    max_diameter_3d_mm: float
    long_axis_mm: float
    short_axis_mm: float
    axis_slice: int  # slice (k) of the long and short axes
    long_axis_ijk: list  # two end points, continuous (i, j, k) indices
    short_axis_ijk: list
    principal_axes_mm: list  # major, minor, least
    mean_hu: float
    std_hu: float
    min_hu: float
    max_hu: float
    median_hu: float
    centroid_ijk: list
    centroid_lps_mm: list
    centroid_ras_mm: list
    slice_range: list  # [first k, last k]
    bbox_ijk: list  # [[i0, j0, k0], [i1, j1, k1]] inclusive
    touches_border: bool
    organ: str = ""
    organ_label: int = 0
    organ_relation: str = ""  # "inside", "adjacent" or "" (no organ mask / none near)
    organ_overlap: float = 0.0  # fraction of lesion voxels inside that organ
    side: str = ""  # "left", "right", "midline" or ""
    flags: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# --- geometry helpers ---------------------------------------------------------------------


def surface_vertices(mask: np.ndarray) -> np.ndarray:
    """Marching-cubes vertices of a binary ``mask[k, j, i]`` as continuous (i, j, k) indices.

    Each vertex is the midpoint between an inside voxel and a 6-neighbour outside it
    (outside the array counts as outside), which is where marching cubes puts the vertices
    of a binary image.
    """
    padded = np.pad(mask.astype(bool), 1)
    points = []
    for axis in range(3):
        diff = np.diff(padded, axis=axis)  # True where an edge along ``axis`` crosses the surface
        k, j, i = np.nonzero(diff)
        kji = np.stack([k, j, i], axis=1).astype(float) - 1.0
        kji[:, axis] += 0.5
        points.append(kji[:, ::-1])
    return np.concatenate(points, axis=0)


def _farthest_pair(points: np.ndarray) -> tuple:
    """(distance, index a, index b) of the two points farthest apart."""
    if len(points) < 2:
        return 0.0, 0, 0
    candidates = np.arange(len(points))
    if len(points) > 64:
        try:
            from scipy.spatial import ConvexHull

            candidates = ConvexHull(points).vertices
        except Exception:  # flat or degenerate sets: Qhull refuses them, use every point
            candidates = np.arange(len(points))
    sub = points[candidates]
    best, pair = -1.0, (0, 0)
    step = max(1, 4_000_000 // max(len(sub), 1))
    for start in range(0, len(sub), step):
        block = sub[start : start + step]
        d2 = ((block[:, None, :] - sub[None, :, :]) ** 2).sum(-1)
        flat = int(np.argmax(d2))
        a, b = divmod(flat, len(sub))
        if d2[a, b] > best:
            best, pair = float(d2[a, b]), (start + a, b)
    return float(np.sqrt(best)), int(candidates[pair[0]]), int(candidates[pair[1]])


def _short_axis(slice_mask: np.ndarray, spacing_ij, p0, p1) -> tuple:
    """Longest chord of ``slice_mask[j, i]`` perpendicular to the segment p0-p1 (pixel i, j).

    Returns (length mm, end a (i, j), end b (i, j)).
    """
    si, sj = spacing_ij
    scale = np.array([si, sj])
    u = (np.asarray(p1) - np.asarray(p0)) * scale
    norm = np.linalg.norm(u)
    if norm == 0:
        return 0.0, list(p0), list(p0)
    u /= norm
    v = np.array([-u[1], u[0]])
    j, i = np.nonzero(slice_mask)
    mm = np.stack([i, j], axis=1) * scale
    s, t = mm @ u, mm @ v
    pixel = min(si, sj)
    step = pixel / 4.0
    s_values = np.arange(s.min() - pixel, s.max() + pixel + step, step)
    t_values = np.arange(t.min() - pixel, t.max() + pixel + step, step)
    # Sample the mask (nearest pixel) on the rotated lattice: rows = lines perpendicular to u.
    xy = s_values[:, None, None] * u + t_values[None, :, None] * v
    ii = np.rint(xy[..., 0] / si).astype(int)
    jj = np.rint(xy[..., 1] / sj).astype(int)
    valid = (ii >= 0) & (jj >= 0) & (ii < slice_mask.shape[1]) & (jj < slice_mask.shape[0])
    inside = np.zeros(ii.shape, bool)
    inside[valid] = slice_mask[jj[valid], ii[valid]]
    best = (0.0, 0, 0, 0)
    for row in range(inside.shape[0]):
        line = inside[row]
        if not line.any():
            continue
        edges = np.diff(np.concatenate([[0], line.view(np.int8), [0]]))
        starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
        lengths = ends - starts
        r = int(np.argmax(lengths))
        if lengths[r] * step > best[0]:
            best = (lengths[r] * step, row, starts[r], ends[r])
    length, row, a, b = best
    if length == 0:
        return 0.0, list(p0), list(p0)
    ends = [s_values[row] * u + (t_values[a] - step / 2) * v, s_values[row] * u + (t_values[b - 1] + step / 2) * v]
    return float(length), list(ends[0] / scale), list(ends[1] / scale)


def _axes_in_slices(mask: np.ndarray, spacing) -> tuple:
    """Longest in-slice diameter over all slices k of ``mask[k, j, i]`` (pyradiomics 2D slice diameter)."""
    si, sj, _ = spacing
    padded = np.pad(mask.astype(bool), ((0, 0), (1, 1), (1, 1)))
    best = (-1.0, 0, None, None)
    for k in range(mask.shape[0]):
        plane = padded[k]
        if not plane.any():
            continue
        pts = []
        for axis in (0, 1):  # axis 0 = j, axis 1 = i of the plane
            j, i = np.nonzero(np.diff(plane, axis=axis))
            ji = np.stack([j, i], axis=1).astype(float) - 1.0
            ji[:, axis] += 0.5
            pts.append(ji[:, ::-1])
        pts = np.concatenate(pts)
        length, a, b = _farthest_pair(pts * np.array([si, sj]))
        if length > best[0] + 1e-9:
            best = (length, k, pts[a], pts[b])
    length, k, a, b = best
    short, sa, sb = _short_axis(mask[k], (si, sj), a, b)
    return length, k, a, b, short, sa, sb


def _principal_axes(kji: np.ndarray, spacing) -> list:
    coords = kji[:, ::-1] * np.asarray(spacing)[None, :]
    coords = coords - coords.mean(axis=0)
    cov = coords.T @ coords / len(coords)
    eig = np.sort(np.clip(np.linalg.eigvalsh(cov), 0, None))[::-1]
    return [float(4.0 * np.sqrt(e)) for e in eig]


def _side_from_name(name: str) -> str:
    words = name.lower().replace("_", " ").split()
    return "left" if "left" in words else "right" if "right" in words else ""


def _midline_side(image: Volume, k: int, centroid_lps) -> str:
    """Side of the body midline (mean LPS x of voxels above -500 HU in slice k)."""
    plane = image.array[k]
    j, i = np.nonzero(plane > -500)
    if len(i) < 50:
        return ""
    step = max(1, len(i) // 20000)
    ijk = np.stack([i[::step], j[::step], np.full(len(i[::step]), k)], axis=1)
    midline_x = float(image.grid.index_to_lps(ijk)[:, 0].mean())
    offset = centroid_lps[0] - midline_x  # LPS +x points to the patient's left
    if abs(offset) < 10.0:
        return "midline"
    return "left" if offset > 0 else "right"


def _organ_of(component: np.ndarray, box, organs: Volume, names: dict, spacing) -> tuple:
    """(label, relation, fraction) of the organ holding (or, failing that, touching) the lesion."""
    sub = organs.array[box]
    values, counts = np.unique(sub[component], return_counts=True)
    keep = values != 0
    if keep.any():
        values, counts = values[keep], counts[keep]
        best = int(np.argmax(counts))
        return int(values[best]), "inside", float(counts[best] / component.sum())
    # nothing overlaps: look in a 10 mm shell around the lesion
    from scipy import ndimage

    margin = [int(np.ceil(ADJACENT_MM / s)) for s in (spacing[2], spacing[1], spacing[0])]
    grown = tuple(slice(max(0, b.start - m), min(n, b.stop + m)) for b, m, n in zip(box, margin, organs.array.shape))
    local = np.zeros(tuple(g.stop - g.start for g in grown), bool)
    local[tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown))] = component
    distance = ndimage.distance_transform_edt(~local, sampling=(spacing[2], spacing[1], spacing[0]))
    near = organs.array[grown][distance <= ADJACENT_MM]
    near = near[near != 0]
    if near.size:
        values, counts = np.unique(near, return_counts=True)
        return int(values[np.argmax(counts)]), "adjacent", 0.0
    return 0, "", 0.0


# --- the measurement ----------------------------------------------------------------------


LABEL_BOXES = "label_boxes"  # a label map's meta: {label value: VoxelBox that holds all of it}, when known


def lesion_components(
    labels: np.ndarray, label: int, split: bool = True, limit: int | None = None, within: VoxelBox | None = None
) -> list:
    """(component number, bounding slices, mask within the box) of one label, largest first.

    More than ``limit`` components are refused before any is measured. ``within``: a box known to
    hold the whole label (e.g. a Slicer segment's extent): nothing outside it is read."""
    from scipy import ndimage

    from ..geometry.boxes import VoxelBox

    base = within.start if within is not None else (0, 0, 0)
    binary = labels[within.slices] == label if within is not None else labels == label
    around = VoxelBox.from_mask(binary)  # label the lesions' box only: a CT is mostly not lesion
    if around is None:
        return []
    offset = tuple(a + b for a, b in zip(around.start, base))
    binary = binary[around.slices]
    if not split:
        inner = ndimage.find_objects(binary.astype(np.uint8))[0]
        return [(0, _shifted(inner, offset), binary[inner])]
    components, count = ndimage.label(binary, structure=np.ones((3, 3, 3), bool))
    if limit is not None and count > limit:
        raise PastaError(
            f"label {label} has {count} separate pieces; a report measures at most {MAX_LESIONS} lesions "
            "(a noisy or inverted mask?): clean the segmentation, or measure each label as one lesion "
            f"with {option('whole_labels')}"
        )
    boxes = ndimage.find_objects(components)
    out = [(n + 1, _shifted(box, offset), components[box] == n + 1) for n, box in enumerate(boxes)]
    out.sort(key=lambda item: -int(item[2].sum()))
    return [(number, box, mask) for number, (_, box, mask) in enumerate(out, start=1)]


def _shifted(box: tuple, offset: Sequence[int]) -> tuple:
    """``box`` (slices of a cropped array) in the whole array's indices."""
    return tuple(slice(s.start + o, s.stop + o) for s, o in zip(box, offset))


def labels_present(array: np.ndarray, values: Sequence[int] | None = None, boxes: dict | None = None) -> list:
    """The non-zero values of a label array; with ``values``, those of them that it holds (a
    comparison per value, inside its box when ``boxes`` knows it: far quicker than sorting a
    CT-sized array)."""
    if values is not None:
        boxes = boxes or {}
        return [int(v) for v in sorted(set(values)) if v != 0 and np.any(array[_slices(boxes.get(v))] == v)]
    return [int(v) for v in np.unique(array) if v != 0]


def _slices(box) -> tuple:
    return box.slices if box is not None else (slice(None),) * 3


def _cached(cache: dict | None, label: int, box: tuple, mask: np.ndarray, measure: Callable[[], LesionMeasurement]):
    """``measure()``, or the measurement of the same voxels made before (``cache``: a dict kept by
    the caller while the CT is unchanged): an edit then costs the measurement of what it changed."""
    if cache is None:
        return measure()
    import hashlib

    key = (label, tuple((b.start, b.stop) for b in box), hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest())
    if key not in cache:
        cache[key] = measure()
    return cache[key]


def measure_component(
    image: Volume,
    box: tuple[slice, slice, slice],
    mask: np.ndarray,
    *,
    index: int = 1,
    label: int = 1,
    component: int = 1,
    name: str = "lesion",
    organs: Volume | None = None,
    organ_names: dict | None = None,
) -> LesionMeasurement:
    """Measure one lesion given as ``mask`` inside the bounding ``box`` (k, j, i slices) of ``image``."""
    grid = image.grid
    spacing = grid.spacing
    offset = np.array([box[2].start, box[1].start, box[0].start], float)  # (i, j, k)
    kji = np.argwhere(mask)
    count = len(kji)
    values = image.array[box][mask].astype(np.float64)

    vertices = surface_vertices(mask)
    max3d, _, _ = _farthest_pair(vertices * np.asarray(spacing))
    long_axis, k_local, a, b, short_axis, sa, sb = _axes_in_slices(mask, spacing)
    k_axis = k_local + box[0].start

    def ijk(point2d):
        return [float(point2d[0] + offset[0]), float(point2d[1] + offset[1]), float(k_axis)]

    centroid_ijk = kji[:, ::-1].mean(axis=0) + offset
    centroid_lps = grid.index_to_lps(centroid_ijk)
    centroid_ras = centroid_lps * np.array([-1.0, -1.0, 1.0])
    lo = [int(box[2].start), int(box[1].start), int(box[0].start)]
    hi = [int(box[2].stop - 1), int(box[1].stop - 1), int(box[0].stop - 1)]
    size = grid.size_ijk
    border = any(lo[a_] == 0 or hi[a_] == size[a_] - 1 for a_ in range(3))

    result = LesionMeasurement(
        index=index,
        label=int(label),
        component=int(component),
        name=name,
        voxel_count=int(count),
        volume_ml=float(count * np.prod(spacing) / 1000.0),
        max_diameter_3d_mm=float(max3d),
        long_axis_mm=float(long_axis),
        short_axis_mm=float(short_axis),
        axis_slice=int(k_axis),
        long_axis_ijk=[ijk(a), ijk(b)],
        short_axis_ijk=[ijk(sa), ijk(sb)],
        principal_axes_mm=_principal_axes(kji, spacing),
        mean_hu=float(values.mean()),
        std_hu=float(values.std()),
        min_hu=float(values.min()),
        max_hu=float(values.max()),
        median_hu=float(np.median(values)),
        centroid_ijk=[float(c) for c in centroid_ijk],
        centroid_lps_mm=[float(c) for c in centroid_lps],
        centroid_ras_mm=[float(c) for c in centroid_ras],
        slice_range=[lo[2], hi[2]],
        bbox_ijk=[lo, hi],
        touches_border=bool(border),
    )
    if border:
        result.flags.append("touches the volume border: the lesion may be cut and its size underestimated")
    if organs is not None:
        organ_label, relation, fraction = _organ_of(mask, box, organs, organ_names or {}, spacing)
        if organ_label:
            result.organ = (organ_names or {}).get(organ_label, f"label {organ_label}")
            result.organ_label, result.organ_relation, result.organ_overlap = organ_label, relation, fraction
    result.side = _side_from_name(result.organ) or _midline_side(image, int(round(centroid_ijk[2])), centroid_lps)
    return result


def measure_lesions(
    image: Volume,
    labels: Volume,
    *,
    lesion_labels: Sequence[int] | None = None,
    label_names: dict | None = None,
    organs: Volume | None = None,
    organ_names: dict | None = None,
    split_components: bool = True,
    progress: Progress | None = None,
    cache: dict | None = None,
) -> list:
    """Measure every lesion of ``labels`` (on ``image``'s grid); see the module docstring.

    ``lesion_labels``: label values to measure (default: every non-zero value). Raises
    :class:`PastaError` for an empty mask, a mask on another grid or an absent label. ``cache``:
    measurements of unchanged lesions are reused from it (see :func:`_cached`); the label map's
    meta may say where each label lies (:data:`LABEL_BOXES`).
    """
    image.check_matches(labels, "segmentation")
    if organs is not None:
        image.check_matches(organs, "organ mask")
    boxes = labels.meta.get(LABEL_BOXES) or {}
    present = labels_present(labels.array, lesion_labels, boxes)
    if not present and (lesion_labels is None or not labels_present(labels.array)):
        raise PastaError("the segmentation is empty: no lesion to measure")
    if lesion_labels is None:
        wanted = present
    else:
        wanted = [int(v) for v in lesion_labels]
        absent = [v for v in wanted if v not in present]
        if absent:
            present = labels_present(labels.array)
            raise PastaError(
                f"label {', '.join(map(str, absent))} is not present in the segmentation "
                f"(labels present: {', '.join(map(str, present))})"
            )
    if len(wanted) > MAX_LESIONS:
        raise PastaError(f"{len(wanted)} lesion labels; a report measures at most {MAX_LESIONS} lesions")
    label_names = label_names or {}
    lesions = []
    for number, label in enumerate(wanted):
        base = label_names.get(label, f"lesion label {label}")
        parts = lesion_components(labels.array, label, split_components, MAX_LESIONS - len(lesions), boxes.get(label))
        for component, box, mask in parts:
            name = base if len(parts) == 1 else f"{base} {component}"
            measured = _cached(
                cache,
                label,
                box,
                mask,
                lambda box=box, mask=mask, label=label: measure_component(
                    image, box, mask, label=label, organs=organs, organ_names=organ_names
                ),
            )
            lesions.append(replace(measured, index=len(lesions) + 1, component=component, name=name, flags=list(measured.flags)))
        if progress:
            progress((number + 1) / len(wanted), f"label {label}")
    return lesions
