"""The built-in default model: lung lesions learnt from synthetic lesions only.

PASTA's thesis is that synthetic lesions teach a network to find real ones. Here the
backgrounds are real chest CTs (the pyradiomics ``lung1``/``lung2`` scans) and every lesion
the network sees is made by our synthesis engine. The real tumours of those scans are never
training targets and never inside a training patch: a zone around each (its box + half a
patch + 10 mm by default, or ``zone_mm``) is excluded from patch sampling and from lesion placement.

Labels follow PASTA-Gen: 1 = lung (the classical lung mask), 2 = lesion.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CancelledError
from ..fileio import read_volume
from ..geometry.standardize import standardize
from ..samples import sample_paths
from .trainer import TrainSettings, train

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import torch

    from ..geometry.grid import Grid


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
    progress: Callable[[float, str], None] | None = None,
    wall_fraction: float = 0.4,
    pleura_mm: int = 0,
    lesion_type: str = "lung_tumor",
    is_cancelled: Callable[[], bool] | None = None,
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
    from ..synthesis.dataset import sample_attributes

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


def _patch_start(bg, centre, patch, rng):
    shape = np.array(bg.hu.shape)
    for _ in range(50):
        shift = rng.integers(-np.array(patch) // 3, np.array(patch) // 3 + 1) if centre is not None else 0
        c = (centre + shift) if centre is not None else np.array([rng.integers(0, n) for n in shape])
        start = np.clip(c - np.array(patch) // 2, 0, np.maximum(shape - patch, 0))
        window = tuple(slice(int(s), int(s + p)) for s, p in zip(start, patch))
        if not bg.forbidden[window].any():
            return window
    return None


def _negative_centres(bg):
    """Where lesion-free patches are centred: the lung surface (chest wall, mediastinum and
    diaphragm, where false positives arise) and the lungs, sampled on a 4 mm lattice."""
    from scipy import ndimage

    if bg.centres is None:
        surface = bg.lung & ~ndimage.binary_erosion(bg.lung, iterations=4)
        bg.centres = (np.argwhere(surface[::4, ::4, ::4]) * 4, np.argwhere(bg.lung[::4, ::4, ::4]) * 4)
    return bg.centres


def training_sampler(
    backgrounds: Sequence[Background],
    pool: Sequence[PooledLesion],
    patch: Sequence[int],
    lesion_probability: float = 0.6,
    mined: Sequence[np.ndarray] | None = None,
) -> Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]:
    """``make_patch(rng)`` -> (hu patch, label patch) with a pooled synthetic lesion or none.

    Lesion-free patches are hard negatives half of the time (centred on the lung surface),
    otherwise centred in the lungs or anywhere outside the excluded zones. ``mined`` (one
    array of voxel indices per background, see :func:`mine_false_positives`): half of
    the time they stand in for both kinds of centre above, so about 40 % of the lesion-free
    patches are centred on what a trained model took for lesions there."""

    def make_patch(rng):
        while True:
            if pool and rng.random() < lesion_probability:
                item = pool[int(rng.integers(len(pool)))]
                bg = backgrounds[item.background]
                centre = np.array([int((s.start + s.stop) // 2) for s in item.box])
            else:
                item = None
                b = int(rng.integers(len(backgrounds)))
                bg = backgrounds[b]
                surface, lung = _negative_centres(bg)
                if mined is not None and len(mined[b]) and rng.random() < 0.5:
                    surface = lung = mined[b]
                pick = rng.random()
                points = surface if pick < 0.5 else lung if pick < 0.85 else None
                centre = points[int(rng.integers(len(points)))] if points is not None else None
            window = _patch_start(bg, centre, patch, rng)
            if window is None:
                continue
            hu = bg.hu[window].copy()
            labels = bg.lung[window].astype(np.uint8)
            meet = overlap(window, item.box) if item is not None else None
            if meet is not None:
                local, source = meet
                hu[local] = item.image[source]
                labels[local][item.lesion[source]] = 2
            return hu, labels

    return make_patch


@dataclass
class Evaluation:
    case: str
    dice: float
    detected: bool
    false_positive_ml: float
    predicted_ml: float
    tumour_ml: float


# Where the sliding-window tiles fall is arbitrary (they start at the corner of the region's
# bounding box); shifting them by a few voxels moves a small model's Dice by several points.
# Scores are also given over these shifts of the grid (voxels along k, j, i).
TILE_OFFSETS = ((0, 0, 0), (8, 8, 8), (16, 16, 16), (24, 0, 12), (0, 24, 24), (12, 12, 0))


def _lesions(network, hu, grid, lung, patch, tta=False, progress=None) -> np.ndarray:
    """Where ``network`` finds lesions, run as the product runs it with the lung mask as organ."""
    from ..geometry.volume import Volume
    from ..inference.segment import segment_volume
    from ..inference.segmentation_model import SegmentationModel
    from ..terminology import segment_info

    model = SegmentationModel(network, tuple(patch), {1: segment_info("lung"), 2: segment_info("tumor@lung")}, (1,), (2,))
    volume = Volume(hu, grid)
    result = segment_volume(
        volume,
        model,
        organ_mask=volume.with_array(lung.astype(np.uint8), is_label=True),
        min_lesion_mm3=100.0,
        tta=tta,
        progress=progress,
    )
    return result.labels.array == 2


def evaluate(
    network: torch.nn.Module,
    bg: Background,
    patch: tuple[int, int, int] = (96, 96, 96),
    tta: bool = False,
    progress: Callable[[float, str], None] | None = None,
    offset: tuple[int, int, int] = (0, 0, 0),
) -> Evaluation:
    """Score the model as the product uses it: ``segment_volume`` restricted to the lungs (+20 mm),
    lesions kept as ``segment_volume`` keeps them (within 10 mm of the lungs and partly in them),
    pieces of at least 100 mm^3 (``tta``: averaged over the 8 mirrorings). Dice with the real tumour, whether it was found (any
    overlap), and the false-positive lesion volume (mL). ``offset`` drops that many voxels at the
    start of each axis first, which moves the sliding-window tiles over the anatomy."""
    from ..anatomy.masks import pieces_touching

    cut = tuple(slice(int(o), None) for o in offset)
    hu, lung, tumour = bg.hu[cut], bg.lung[cut], bg.tumour[cut]
    corner = bg.grid.index_to_lps(np.array([offset[::-1]], float))[0]  # (i, j, k) of the first voxel kept
    grid = replace(bg.grid, shape=hu.shape, origin=tuple(float(c) for c in corner))
    lesion = _lesions(network, hu, grid, lung, patch, tta, progress)
    found = pieces_touching(lesion, tumour)
    false_positive = lesion & ~found
    dice = 2 * (lesion & tumour).sum() / max(lesion.sum() + tumour.sum(), 1)
    voxel_ml = float(np.prod(bg.spacing)) / 1000
    return Evaluation(
        bg.name,
        float(dice),
        bool(found.any()),
        float(false_positive.sum() * voxel_ml),
        float(lesion.sum() * voxel_ml),
        float(tumour.sum() * voxel_ml),
    )


def evaluate_tilings(
    network: torch.nn.Module, bg: Background, patch: tuple[int, int, int] = (96, 96, 96), unshifted: Evaluation | None = None
) -> dict:
    """:func:`evaluate` at each of :data:`TILE_OFFSETS`: Dice mean, range and per offset,
    detections, false positives (mL) per offset. ``unshifted``: the plain score already made,
    used for offset (0, 0, 0) instead of running it again."""
    runs = [unshifted if unshifted is not None and not any(o) else evaluate(network, bg, patch, offset=o) for o in TILE_OFFSETS]
    dice = [round(r.dice, 3) for r in runs]
    return {
        "case": bg.name,
        "offsets": [list(o) for o in TILE_OFFSETS],
        "dice": dice,
        "dice_mean": round(float(np.mean(dice)), 3),
        "dice_min": min(dice),
        "dice_max": max(dice),
        "detected": sum(r.detected for r in runs),
        "false_positive_ml": [round(r.false_positive_ml, 1) for r in runs],
    }


MINE_STEP_MM = 2  # false positives are mined on this lattice (each point stands for MINE_STEP_MM^3 mm^3)


def mine_false_positives(
    network: torch.nn.Module, bg: Background, patch: tuple[int, int, int] = (96, 96, 96), step: int = MINE_STEP_MM
) -> np.ndarray:
    """Voxel indices (on a ``step`` mm lattice) of what ``network`` labels lesion in a
    background outside the excluded zone around its real tumour, run as the product runs it
    (see :func:`evaluate`). The backgrounds hold no other lesion, so every such voxel is a
    false positive: the hila, the heart border, a diaphragm dome."""
    wrong = _lesions(network, bg.hu, bg.grid, bg.lung, patch) & ~bg.forbidden
    return np.argwhere(wrong[::step, ::step, ::step]) * step


@dataclass
class DefaultTraining:
    network: object
    log: object
    pool: int
    mined_ml: list = field(default_factory=list)  # false positives found per background before the second stage
    second_log: object = None


def train_default(
    backgrounds: Sequence[Background],
    settings: TrainSettings,
    lesions_per_background: int = 80,
    progress: Callable[[float, str], None] | None = None,
    pleura_mm: int = 0,
    hard_negative_steps: int = 0,
) -> DefaultTraining:
    """Train on synthetic lesions in ``backgrounds``.

    With ``hard_negative_steps``, a second stage follows: the trained model segments each
    background, and training goes on for that many steps (a quarter of the learning rate)
    with about 40 % of the lesion-free patches centred on its false positives there."""
    report = progress or (lambda f, m="": None)
    total = settings.steps + hard_negative_steps
    first = 0.25 + 0.75 * settings.steps / total
    pool = make_lesion_pool(
        backgrounds, lesions_per_background, settings.seed, lambda f, m: report(0.25 * f, m), pleura_mm=pleura_mm
    )
    sampler = training_sampler(backgrounds, pool, settings.patch_size)
    network, log = train([], settings, sample_patch=sampler, progress=lambda f, m: report(0.25 + (first - 0.25) * f, m))
    outcome = DefaultTraining(network, log, len(pool))
    if hard_negative_steps > 0:
        report(first, "finding false positives in the backgrounds")
        mined = [mine_false_positives(network, bg, settings.patch_size) for bg in backgrounds]
        outcome.mined_ml = [round(len(m) * MINE_STEP_MM**3 / 1000, 1) for m in mined]
        network.train()
        stage = replace(settings, steps=hard_negative_steps, learning_rate=settings.learning_rate / 4, seed=settings.seed + 1)
        sampler = training_sampler(backgrounds, pool, settings.patch_size, mined=mined)
        network, outcome.second_log = train(
            [],
            stage,
            sample_patch=sampler,
            network=network,
            progress=lambda f, m: report(first + (1 - first) * f, "hard negatives: " + m),
        )
    return outcome
