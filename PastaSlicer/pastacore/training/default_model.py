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

from ..progress import reporter
from .backgrounds import (  # noqa: F401  (what the built-in model's training is made of)
    Background,
    PooledLesion,
    acquire_slices,
    default_zone_mm,
    load_background,
    lung_to_pleura,
    make_lesion_pool,
    overlap,
    scan_slices,
    wall_point,
)
from .trainer import TrainSettings, train

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import torch

    from ..progress import Progress


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
    progress: Progress | None = None,
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
    progress: Progress | None = None,
    pleura_mm: int = 0,
    hard_negative_steps: int = 0,
) -> DefaultTraining:
    """Train on synthetic lesions in ``backgrounds``.

    With ``hard_negative_steps``, a second stage follows: the trained model segments each
    background, and training goes on for that many steps (a quarter of the learning rate)
    with about 40 % of the lesion-free patches centred on its false positives there."""
    report = reporter(progress)
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
