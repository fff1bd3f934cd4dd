"""Procedural rendering of one planned lesion into a copy of the volume.

Work happens in a crop around the lesion: the crop is resampled to 1 mm (skipped when it
already is a 1 mm axis-aligned grid), the lesion's shape, edge weight ``w`` and intensity
pattern are made there, and ``w`` and the pattern go back onto the source grid. On the
source grid the new value is ``orig + w * (target + pattern + noise - orig)``, where the
noise is the organ's own fine-scale residual (``orig`` minus its 1.5 mm Gaussian blur,
clipped to +-2.5 robust SD), so the lesion carries the scanner noise of its organ. Voxels
with ``w == 0`` (beyond about 2.5 edge widths of the mask) keep their exact input values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError
from ..geometry import Grid, Volume
from ..geometry.boxes import VoxelBox
from ..geometry.resample import LINEAR, NEAREST, resample
from ..geometry.standardize import standard_grid
from ..progress import reporter
from . import shapes
from .plan import SynthesisPlan, resolve_intensity

if TYPE_CHECKING:
    from ..progress import Progress


WEIGHT_FLOOR = 0.01


@dataclass
class Rendered:
    array: np.ndarray  # full output array (input dtype)
    lesion: np.ndarray  # full boolean lesion mask
    crop: VoxelBox  # where anything may have changed
    region: np.ndarray  # boolean, on the crop: voxels with w > 0
    stats: dict = field(default_factory=dict)


def crop_box(grid: Grid, center_lps: np.ndarray, half_mm: float) -> VoxelBox:
    """Voxel box of the source grid covering ``center +- half_mm`` (LPS axes), clipped."""
    center, half = np.asarray(center_lps, float), np.asarray(half_mm, float)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) * half + center
    ijk = grid.lps_to_index(corners)
    lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, np.array(grid.size_ijk))
    if np.any(hi <= lo):
        raise PastaError("the lesion lies outside the volume")
    return VoxelBox(tuple(int(v) for v in lo[::-1]), tuple(int(v) for v in hi[::-1]))


def sub_grid(grid: Grid, box: VoxelBox) -> Grid:
    origin = grid.index_to_lps(np.array(box.start[::-1], float))
    return Grid(box.shape, grid.spacing, tuple(origin), grid.direction)


def paste_values(
    volume: Volume, box: VoxelBox, new: np.ndarray, weight: np.ndarray, lesion: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(array, lesion mask, changed)``: a copy of ``volume``'s array with the box-sized ``new``
    values written where ``weight > 0`` inside ``box`` (rounded, and clipped to the type's range
    but not below -1024 HU, in an integer CT), the box-sized ``lesion`` as a full-size mask, and
    the box-sized mask of the voxels written."""
    out = volume.array.copy()
    changed = weight > 0
    view = out[box.slices]
    if np.issubdtype(out.dtype, np.integer):
        info = np.iinfo(out.dtype)
        view[changed] = np.clip(np.round(new[changed]), max(info.min, -1024), info.max).astype(out.dtype)
    else:
        view[changed] = new[changed].astype(out.dtype)
    full = np.zeros(volume.array.shape, bool)
    full[box.slices] = lesion
    return out, full, changed


def _is_1mm(grid: Grid) -> bool:
    return np.allclose(grid.spacing, 1.0, atol=1e-4) and np.allclose(grid.direction, np.eye(3), atol=1e-6)


def _points(grid: Grid, box: VoxelBox | None = None) -> np.ndarray:
    """LPS (x, y, z) of the voxels of an identity-direction grid (within ``box``), in ``ravel()`` order."""
    box = box or VoxelBox((0, 0, 0), grid.shape)
    ox, oy, oz = grid.origin
    sx, sy, sz = grid.spacing
    k, j, i = np.meshgrid(*(np.arange(a, b, dtype=np.float32) for a, b in zip(box.start, box.stop)), indexing="ij")
    return np.stack([ox + i.ravel() * sx, oy + j.ravel() * sy, oz + k.ravel() * sz], axis=1)


def _shape_in_box(plan, grid1: Grid, center, size, grow=0.0, spicules=True) -> np.ndarray:
    """The calibrated shape on the whole 1 mm grid, evaluated only inside its own bounding box."""
    half = np.asarray(size, float) / 2 + grow + 1.0
    lo = np.floor(grid1.lps_to_index(np.asarray(center) - half)[::-1]).astype(int)
    hi = np.ceil(grid1.lps_to_index(np.asarray(center) + half)[::-1]).astype(int) + 1
    lo, hi = np.clip(lo, 0, grid1.shape), np.clip(hi, 0, grid1.shape)
    mask = np.zeros(grid1.shape, bool)
    if np.any(hi <= lo):
        return mask
    box = VoxelBox(tuple(lo), tuple(hi))
    points = _points(grid1, box)
    mask[box.slices] = shapes.calibrated_mask(plan, points, center, size, grow, spicules).reshape(box.shape)
    return mask


def _smooth_field(rng, shape, sigma_mm) -> np.ndarray:
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_mm)
    sd = float(noise.std())
    return noise / sd if sd > 0 else noise


def _inward_normal(organ1: np.ndarray, index) -> np.ndarray:
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(organ1.astype(np.float32), 2.0)
    k, j, i = (int(np.clip(v, 1, n - 2)) for v, n in zip(index, organ1.shape))
    gradient = np.array(
        [
            smooth[k, j, i + 1] - smooth[k, j, i - 1],
            smooth[k, j + 1, i] - smooth[k, j - 1, i],
            smooth[k + 1, j, i] - smooth[k - 1, j, i],
        ],
        float,
    )
    norm = np.linalg.norm(gradient)
    return gradient / norm if norm > 1e-6 else np.zeros(3)


def lesion_shape(
    plan: SynthesisPlan, grid1: Grid, organ1: np.ndarray | None, center_lps: np.ndarray, spicules: bool = True
) -> np.ndarray:
    """Hard lesion mask on the 1 mm crop grid (``spicules=False``: without the spicules)."""
    from scipy import ndimage

    size = np.asarray(plan.size_mm, float)
    center = np.asarray(center_lps, float)
    if plan.shape_mode in ("ellipsoid", "lobulated"):
        # a Gaussian edge pulls the 50 % contour in by about sigma^2 / radius: compensate
        grow = min(plan.edge_sigma_mm**2 / (size.min() / 2), plan.edge_sigma_mm)
        return _shape_in_box(plan, grid1, center, size, grow, spicules)
    elif plan.shape_mode == "wall":
        if organ1 is None:
            raise PastaError("wall thickening needs the organ mask")
        depth = ndimage.distance_transform_edt(organ1)
        region = _shape_in_box(plan, grid1, center, size)
        return region & organ1 & (depth <= plan.wall_thickness_mm)
    elif plan.shape_mode == "protrusion":
        if organ1 is None:
            raise PastaError("an intraluminal lesion needs the organ mask")
        index = np.round(grid1.lps_to_index(center)[::-1]).astype(int)
        shifted = center + _inward_normal(organ1, index) * 0.35 * size.min()
        return _shape_in_box(plan, grid1, shifted, size)
    raise PastaError(f"unknown shape mode {plan.shape_mode!r}")


def lesion_pattern(plan: SynthesisPlan, hard: np.ndarray, grid1: Grid, center_lps: np.ndarray) -> np.ndarray:
    """Zero-based intensity pattern (HU) on the 1 mm grid: texture, necrosis, rim, foci, solid core."""
    from scipy import ndimage

    rng = np.random.default_rng([plan.seed, 11])
    pattern = np.zeros(hard.shape, np.float32)
    if plan.texture_sd_hu > 0:
        pattern += np.float32(plan.texture_sd_hu) * _smooth_field(rng, hard.shape, plan.texture_scale_mm)
    if not (plan.necrosis_fraction or plan.rim_width_mm or plan.solid_core_fraction):
        depth, relative = None, None
    else:
        depth = ndimage.distance_transform_edt(hard).astype(np.float32)
        relative = depth / max(float(depth.max()), 1.0)
    if plan.necrosis_fraction and relative is not None:
        wobble = 0.15 * _smooth_field(rng, hard.shape, 3.0)
        core = ((relative + wobble) > 1 - plan.necrosis_fraction) & hard
        pattern += np.float32(plan.necrosis_delta_hu) * ndimage.gaussian_filter(core.astype(np.float32), 1.0)
    if plan.rim_width_mm and depth is not None:
        rim = hard & (depth <= plan.rim_width_mm)
        pattern += np.float32(plan.rim_delta_hu) * ndimage.gaussian_filter(rim.astype(np.float32), 0.7)
    if plan.solid_core_fraction and relative is not None:
        core = (relative > 1 - plan.solid_core_fraction) & hard
        pattern += np.float32(plan.solid_core_hu - plan.hu_absolute) * ndimage.gaussian_filter(core.astype(np.float32), 1.0)
    if plan.calcifications:
        half = np.asarray(plan.size_mm, float) / 2
        index_center = grid1.lps_to_index(np.asarray(center_lps, float))
        kk, jj, ii = np.ogrid[: hard.shape[0], : hard.shape[1], : hard.shape[2]]
        for ux, uy, uz, radius, delta in plan.calcifications:
            ci, cj, ck = index_center + np.array([ux, uy, uz]) * half  # 1 mm identity grid: mm = voxels
            r2 = (ii - ci) ** 2 + (jj - cj) ** 2 + (kk - ck) ** 2
            pattern += np.float32(delta) * np.exp(-r2 / (2 * radius**2)).astype(np.float32)
    return pattern


def label_mask(hard: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The lesion label: the 50 % contour of the edge weight, plus thin parts (spicules) of the
    hard shape that the blur keeps above 20 %."""
    return (weight >= 0.5) | (hard & (weight >= 0.2))


def _extent_1mm(mask: np.ndarray) -> np.ndarray:
    where = np.argwhere(mask)
    return (where.max(axis=0) - where.min(axis=0) + 1)[::-1].astype(float) if where.size else np.zeros(3)


def _shape_and_weight(plan: SynthesisPlan, grid1: Grid, organ1, center_lps):
    """Hard mask and edge weight on the 1 mm grid. For free-standing shapes the size is
    checked after the edge blur (before organ clipping) and corrected once per axis, since
    blurring rounds off small lobes and spicules."""
    from scipy import ndimage

    requested = np.asarray(plan.size_mm, float)
    size = requested.copy()
    for attempt in range(3):
        trial = plan if attempt == 0 else _with_size(plan, size)
        hard = lesion_shape(trial, grid1, organ1, center_lps)
        weight = ndimage.gaussian_filter(hard.astype(np.float32), plan.edge_sigma_mm)
        if plan.spicules and plan.shape_mode in ("ellipsoid", "lobulated"):
            # spicules are thin: blur them less than the body, or they fade away
            spikes = hard & ~lesion_shape(trial, grid1, organ1, center_lps, spicules=False)
            sharp = ndimage.gaussian_filter(spikes.astype(np.float32), min(plan.edge_sigma_mm, 0.6))
            weight = np.maximum(weight, np.minimum(sharp * 2.0, 1.0))
        if plan.shape_mode not in ("ellipsoid", "lobulated") or not label_mask(hard, weight).any():
            break
        measured = _extent_1mm(label_mask(hard, weight))
        error = measured / requested
        if np.all(np.abs(measured - requested) <= np.maximum(0.04 * requested, 1.0)) or attempt == 2:
            break
        size = size / np.clip(error, 0.5, 2.0)
    if plan.clip_to_organ and organ1 is not None:
        hard &= organ1
        weight *= organ1
    if not hard.any():
        raise PastaError("the lesion does not fit in the organ at this place; move the box or make it larger")
    weight[weight < WEIGHT_FLOOR] = 0
    return hard, weight


def _with_size(plan: SynthesisPlan, size) -> SynthesisPlan:
    from dataclasses import replace

    return replace(plan, size_mm=[float(v) for v in size])


def render(
    volume: Volume,
    organ: np.ndarray | None,
    plan: SynthesisPlan,
    center_lps: np.ndarray,
    progress: Progress | None = None,
) -> Rendered:
    """Insert the lesion; ``organ`` is a boolean mask on ``volume``'s grid (or None)."""
    from scipy import ndimage

    report = reporter(progress)
    grid = volume.grid
    size = np.asarray(plan.size_mm, float)
    margin = 3 * plan.edge_sigma_mm + 4.0
    half = size / 2 * (1 + 4 * plan.deformation if plan.shape_mode in ("wall", "protrusion") else 1.0)
    half = half + plan.edge_sigma_mm + margin
    box = crop_box(grid, center_lps, half)
    cgrid = sub_grid(grid, box)
    orig = volume.array[box.slices].astype(np.float32)
    organ_crop = organ[box.slices] if organ is not None else None

    direct = _is_1mm(cgrid)
    grid1 = cgrid if direct else standard_grid(cgrid, 1.0)
    if direct:
        organ1 = organ_crop
    elif organ_crop is not None:
        organ1 = resample(Volume(organ_crop.astype(np.uint8), cgrid, is_label=True), grid1, NEAREST).array > 0
    else:
        organ1 = None
    report(0.3, "shape")
    hard, weight1 = _shape_and_weight(plan, grid1, organ1, center_lps)
    report(0.5, "texture")
    pattern1 = lesion_pattern(plan, hard, grid1, center_lps)

    if direct:
        weight, pattern = weight1, pattern1
    else:
        weight = resample(Volume(weight1, grid1), cgrid, LINEAR, fill=0.0).array
        pattern = resample(Volume(pattern1, grid1), cgrid, LINEAR, fill=0.0).array
        weight[weight < WEIGHT_FLOOR] = 0
    report(0.7, "blend")

    if direct:
        lesion = label_mask(hard, weight)
    else:
        core = resample(Volume((hard & (weight1 >= 0.2)).astype(np.uint8), grid1, is_label=True), cgrid, NEAREST).array
        lesion = (weight >= 0.5) | ((core > 0) & (weight >= 0.2))
    if plan.clip_to_organ and organ_crop is not None:
        lesion &= organ_crop
    if not lesion.any():
        raise PastaError("the lesion is smaller than one voxel of this volume; make it larger")
    sigma = [1.5 / s for s in grid.spacing[::-1]]
    residual = orig - ndimage.gaussian_filter(orig, sigma)
    where = organ_crop if organ_crop is not None and organ_crop.sum() > 50 else weight > 0
    values = residual[where]
    noise_sd = float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else 0.0
    residual = np.clip(residual, -2.5 * noise_sd, 2.5 * noise_sd)
    organ_values = orig[organ_crop & ~lesion] if organ_crop is not None and (organ_crop & ~lesion).sum() > 50 else orig[lesion]
    organ_mean = float(np.median(organ_values))
    resolve_intensity(plan, organ_mean)
    target = np.float32(plan.target_mean_hu)

    def blend(level):
        return orig + weight * (level + pattern + residual - orig)

    new = blend(target)
    if plan.calibrate_mean:
        for _ in range(2):
            shift = (float(target) - float(new[lesion].mean())) / max(float(weight[lesion].mean()), 1e-3)
            pattern += np.float32(shift)
            new = blend(target)
    out, full, changed = paste_values(volume, box, new, weight, lesion)
    stats = {
        "organ_mean_hu": round(organ_mean, 1),
        "organ_noise_sd_hu": round(noise_sd, 1),
        "resampled": not direct,
        "crop_shape": list(box.shape),
    }
    report(0.9, "done")
    return Rendered(out, full, box, changed, stats)
