"""What training on synthetic lung lesions shares: the background scans (a sample CT on PASTA's
grid, its lungs, the zone kept away from its real tumour), the pool of synthetic lesions made in
them, and the geometry of patches (the built-in model's training, fine-tuning and the
attribute heads all use these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CancelledError
from ..fileio import read_volume
from ..geometry.standardize import standardize
from ..samples import sample_paths

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..geometry.grid import Grid
    from ..progress import Cancelled, Progress


@dataclass
class Background:
    name: str
    hu: np.ndarray  # 1 mm standardised CT
    lung: np.ndarray  # classical lung mask (bool)
    forbidden: np.ndarray  # bool: voxels no training patch may contain (around the real tumour)
    tumour: np.ndarray  # bool: the real tumour (for evaluation only)
    spacing: tuple = (1.0, 1.0, 1.0)
    grid: object = None
    centres: tuple | None = None  # (lung-surface points, lung points) for lesion-free patches
    slice_positions: np.ndarray | None = None  # the scan's own slices, as k indices of the 1 mm grid
    slice_mm: float = 1.0  # the scan's slice spacing (taken as its thickness)


@dataclass
class PooledLesion:
    background: int
    box: tuple  # slices of the changed region on the background
    image: np.ndarray  # HU inside the box with the lesion
    lesion: np.ndarray  # bool inside the box
    attributes: dict = field(default_factory=dict)


def default_zone_mm(patch_side: int) -> int:
    """The zone kept around a real tumour's box unless told otherwise: half a patch + 10 mm."""
    return int(patch_side) // 2 + 10


def load_background(case: str, patch: tuple[int, int, int] = (96, 96, 96), zone_mm: int | None = None) -> Background:
    """A sample case as a training background. No training patch may contain a voxel within
    ``zone_mm`` of its real tumour's bounding box (default: half a patch + 10 mm, so a patch
    stays at least that far away; 10 keeps patches off the tumour while still showing the
    anatomy around it, such as lung1's hila next to its perihilar nodule)."""
    from ..anatomy.masks import lung_mask

    image_path, label_path = sample_paths(case)
    native = read_volume(image_path)
    hu_std = standardize(native, is_label=False).volume
    tumour = standardize(read_volume(label_path, is_label=True), is_label=True).volume.array > 0
    lung = lung_mask(hu_std.array, hu_std.grid.spacing)
    forbidden = np.zeros(tumour.shape, bool)
    hits = np.argwhere(tumour)
    margin = np.array([default_zone_mm(p) for p in patch]) if zone_mm is None else np.full(3, int(zone_mm))
    if np.any(margin < 0):
        raise ValueError("the zone around a real tumour cannot be negative")
    lo = np.maximum(hits.min(0) - margin, 0)
    hi = hits.max(0) + margin + 1
    forbidden[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    positions, slice_mm = scan_slices(native.grid, hu_std.grid)
    return Background(
        case,
        hu_std.array.astype(np.float32),
        lung,
        forbidden,
        tumour,
        hu_std.grid.spacing,
        hu_std.grid,
        slice_positions=positions,
        slice_mm=slice_mm,
    )


def scan_slices(native_grid: Grid, standard_grid: Grid) -> tuple:
    """``(k indices of the scan's own slices on the 1 mm grid, slice spacing in mm)``; the
    positions are None for scans of 1.5 mm slices or thinner (nothing to imitate)."""
    slices = np.array([[0.0, 0.0, float(n)] for n in range(native_grid.shape[0])])
    positions = np.sort(standard_grid.lps_to_index(native_grid.index_to_lps(slices))[:, 2])
    slice_mm = float(native_grid.spacing[2])
    return (positions if slice_mm > 1.5 else None), slice_mm


def acquire_slices(values: np.ndarray, k0: int, positions: np.ndarray, thickness: float) -> np.ndarray:
    """``values`` (a region starting at k index ``k0`` of a 1 mm grid) as a scanner with slices
    at ``positions`` (k indices) and ``thickness`` (mm) records it, linearly interpolated back
    to 1 mm, as standardisation does with the real scan. A lesion rendered at 1 mm and put
    through this looks like the scan's own structures along z (no sharper edges, no finer
    noise), so the network cannot tell synthetic from real by the slice direction."""
    ks = np.arange(k0, k0 + values.shape[0], dtype=float)
    near = positions[(positions > ks[0] - thickness) & (positions < ks[-1] + thickness)]
    if len(near) < 2:
        return values
    profile = (np.abs(ks[None, :] - near[:, None]) <= thickness / 2).astype(np.float32)
    profile /= np.maximum(profile.sum(axis=1, keepdims=True), 1.0)
    samples = np.tensordot(profile, values.astype(np.float32), axes=(1, 0))  # (slices, J, I)
    upper = np.clip(np.searchsorted(near, ks), 1, len(near) - 1)
    t = np.clip((ks - near[upper - 1]) / (near[upper] - near[upper - 1]), 0.0, 1.0)[:, None, None]
    return ((1 - t) * samples[upper - 1] + t * samples[upper]).astype(np.float32)


def wall_point(depth: np.ndarray, allowed: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray | None:
    """A voxel 0.3-0.6 lesion radii inside the lung surface: a lesion centred there abuts the
    chest wall, mediastinum or diaphragm, as many real tumours do (None if there is none)."""
    band = allowed & (depth >= 0.3 * radius) & (depth <= max(0.6 * radius, 0.3 * radius + 2))
    where = np.argwhere(band[::3, ::3, ::3]) * 3
    return where[int(rng.integers(len(where)))] if len(where) else None


def lung_to_pleura(lung: np.ndarray, reach_mm: int) -> np.ndarray:
    """The lung mask grown by ``reach_mm`` (1 mm grid): the partial-volume rim between the
    -400 HU air boundary and the chest wall, mediastinum or diaphragm. A lesion clipped to the
    air mask alone keeps that rim as a dark line between it and the wall, which no real
    wall-abutting tumour has."""
    from scipy import ndimage

    if reach_mm <= 0:
        return lung.copy()
    return ndimage.binary_dilation(lung, ndimage.generate_binary_structure(3, 1), iterations=int(reach_mm))


def make_lesion_pool(
    backgrounds: Sequence[Background],
    per_background: int,
    seed: int,
    progress: Progress | None = None,
    wall_fraction: float = 0.4,
    pleura_mm: int = 0,
    lesion_type: str = "lung_tumor",
    is_cancelled: Cancelled | None = None,
) -> list:
    """Synthesise lesions (6-70 mm, varied attributes; lung tumours unless ``lesion_type``, each
    background's ``lung`` being then that type's organ) away from the real tumours.

    ``wall_fraction`` of them are placed against the lung surface (clipped by it, as a mass
    abutting the pleura is), the rest deep in the parenchyma. ``pleura_mm`` is how far past the
    air-based lung mask a lesion may reach (0: clipped at the air boundary; see
    :func:`lung_to_pleura`). A lesion whose changed region touches the zone around a real tumour
    is drawn again."""
    from scipy import ndimage

    from ..geometry.volume import Volume
    from ..synthesis import schema as S
    from ..synthesis import synthesize_lesion
    from ..synthesis.schema import sample_attributes

    kind = S.lesion_type(lesion_type)
    rng = np.random.default_rng(seed)
    pool = []
    total = len(backgrounds) * per_background
    for b, bg in enumerate(backgrounds):
        volume = Volume(bg.hu, bg.grid)
        reach = lung_to_pleura(bg.lung, pleura_mm)
        organ = volume.with_array(reach.astype(np.uint8), is_label=True)
        allowed = bg.lung & ~bg.forbidden
        depth = ndimage.distance_transform_edt(bg.lung)
        made = attempts = 0
        while made < per_background and attempts < 4 * per_background:
            attempts += 1
            if is_cancelled is not None and is_cancelled():
                raise CancelledError()
            lesion_seed = int(rng.integers(2**31))
            attributes = dict(sample_attributes(kind, lesion_seed))
            at_wall = rng.random() < wall_fraction
            size = float(np.exp(rng.uniform(np.log(15.0 if at_wall else 6.0), np.log(70.0))))
            attributes[S.SIZE] = [size * rng.uniform(0.8, 1.2) for _ in range(3)]
            point = wall_point(depth, allowed, size / 2, rng) if at_wall else None
            centre = None if point is None else bg.grid.index_to_lps(point[::-1].astype(float))
            try:
                result = synthesize_lesion(
                    volume,
                    organ_labels=organ,
                    organ_names={1: kind.organ},
                    lesion_type=lesion_type,
                    attributes=attributes,
                    seed=lesion_seed,
                    centre_lps=centre,
                )
            except Exception:  # a placement that did not fit: draw another lesion
                continue
            changed = result.changed_box.slices
            if bg.slice_positions is not None:  # the lesion as the scan's slices would record it
                blur = int(np.ceil(bg.slice_mm))
                z = slice(max(changed[0].start - blur, 0), min(changed[0].stop + blur, bg.hu.shape[0]))
                changed = (z,) + tuple(changed[1:])
                difference = result.image.array[changed] - bg.hu[changed]
                image = bg.hu[changed] + acquire_slices(difference, z.start, bg.slice_positions, bg.slice_mm)
                lesion = (
                    acquire_slices(result.lesion[changed].astype(np.float32), z.start, bg.slice_positions, bg.slice_mm) >= 0.5
                )
                lesion &= reach[changed]
            else:
                image, lesion = result.image.array[changed], result.lesion[changed]
            if lesion.sum() < 20 or bg.forbidden[changed].any():
                continue
            attributes["placement"] = "wall" if point is not None else "parenchyma"
            pool.append(PooledLesion(b, changed, image.astype(np.float32), lesion, attributes))
            made += 1
            if progress:
                progress(len(pool) / total, f"synthetic lesion {len(pool)}/{total}")
    return pool


def overlap(window: tuple[slice, ...], box: tuple[slice, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Where two regions (tuples of slices in one array) meet: ``(in window, in box)`` slices,
    or None when they do not. Used to paste a pooled lesion (``box``) into a patch (``window``)."""
    inter = [slice(max(w.start, b.start), min(w.stop, b.stop)) for w, b in zip(window, box)]
    if not all(s.stop > s.start for s in inter):
        return None
    return (
        tuple(slice(s.start - w.start, s.stop - w.start) for s, w in zip(inter, window)),
        tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(inter, box)),
    )
