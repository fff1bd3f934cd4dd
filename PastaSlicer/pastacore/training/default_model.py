"""The built-in default model: lung lesions learnt from synthetic lesions only.

PASTA's thesis is that synthetic lesions teach a network to find real ones. Here the
backgrounds are real chest CTs (the pyradiomics ``lung1``/``lung2`` scans) and every lesion
the network sees is made by our synthesis engine. The real tumours of those scans are never
training targets and never inside a training patch: a zone around each (its box + half a
patch + 10 mm) is excluded from patch sampling and from lesion placement.

Labels follow PASTA-Gen: 1 = lung (the classical lung mask), 2 = lesion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io import read_volume
from ..io.standardize import standardize
from ..samples import sample_paths
from .trainer import TrainSettings, train


@dataclass
class Background:
    name: str
    hu: np.ndarray             # 1 mm standardised CT
    lung: np.ndarray           # classical lung mask (bool)
    forbidden: np.ndarray      # bool: voxels no training patch may contain (around the real tumour)
    tumour: np.ndarray         # bool: the real tumour (for evaluation only)
    spacing: tuple = (1.0, 1.0, 1.0)
    grid: object = None


@dataclass
class PooledLesion:
    background: int
    box: tuple                 # slices of the changed region on the background
    image: np.ndarray          # HU inside the box with the lesion
    lesion: np.ndarray         # bool inside the box
    attributes: dict = field(default_factory=dict)


def load_background(case: str, patch=(96, 96, 96)) -> Background:
    from ..inference.regions import lung_mask

    image_path, label_path = sample_paths(case)
    hu_std = standardize(read_volume(image_path), is_label=False).volume
    tumour = standardize(read_volume(label_path, is_label=True), is_label=True).volume.array > 0
    lung = lung_mask(hu_std.array, hu_std.grid.spacing)
    forbidden = np.zeros(tumour.shape, bool)
    hits = np.argwhere(tumour)
    lo = np.maximum(hits.min(0) - np.array(patch) // 2 - 10, 0)
    hi = hits.max(0) + np.array(patch) // 2 + 11
    forbidden[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return Background(case, hu_std.array.astype(np.float32), lung, forbidden, tumour, hu_std.grid.spacing, hu_std.grid)


def make_lesion_pool(backgrounds, per_background: int, seed: int, progress=None) -> list:
    """Synthesise lung lesions (5-60 mm, varied attributes) away from the real tumours."""
    from ..io.volume import Volume
    from ..synthesis import synthesize_lesion
    from ..synthesis import schema as S
    from ..synthesis.dataset import sample_attributes

    kind = S.lesion_type("lung_tumor") if hasattr(S, "lesion_type") else None
    rng = np.random.default_rng(seed)
    pool = []
    total = len(backgrounds) * per_background
    for b, bg in enumerate(backgrounds):
        allowed = bg.lung & ~bg.forbidden
        volume = Volume(bg.hu, bg.grid)
        organ = volume.with_array(allowed.astype(np.uint8), is_label=True)
        for n in range(per_background):
            lesion_seed = int(rng.integers(2**31))
            attributes = dict(sample_attributes(kind, lesion_seed)) if kind is not None else {}
            size = float(np.exp(rng.uniform(np.log(6.0), np.log(60.0))))
            attributes[S.SIZE] = [size * rng.uniform(0.8, 1.2) for _ in range(3)]
            try:
                result = synthesize_lesion(volume, organ_labels=organ, organ_names={1: "lung"}, lesion_type="lung_tumor",
                                           attributes=attributes, seed=lesion_seed)
            except Exception:  # a placement that did not fit: draw another lesion
                continue
            box = result.changed_box.slices
            lesion = result.lesion[box]
            if not lesion.any() or (bg.forbidden[box] & lesion).any():
                continue
            pool.append(PooledLesion(b, box, result.image.array[box].astype(np.float32), lesion, attributes))
            if progress:
                progress(len(pool) / total, f"synthetic lesion {len(pool)}/{total}")
    return pool


def _patch_start(bg, centre, patch, rng):
    shape = np.array(bg.hu.shape)
    for _ in range(50):
        jitter = rng.integers(-np.array(patch) // 3, np.array(patch) // 3 + 1) if centre is not None else 0
        c = (centre + jitter) if centre is not None else np.array([rng.integers(0, n) for n in shape])
        start = np.clip(c - np.array(patch) // 2, 0, np.maximum(shape - patch, 0))
        window = tuple(slice(int(s), int(s + p)) for s, p in zip(start, patch))
        if not bg.forbidden[window].any():
            return window
    return None


def training_sampler(backgrounds, pool, patch, lesion_probability=0.6):
    """``make_patch(rng)`` -> (hu patch, label patch) with a pooled synthetic lesion or none."""

    def make_patch(rng):
        while True:
            if pool and rng.random() < lesion_probability:
                item = pool[int(rng.integers(len(pool)))]
                bg = backgrounds[item.background]
                centre = np.array([int((s.start + s.stop) // 2) for s in item.box])
            else:
                item = None
                bg = backgrounds[int(rng.integers(len(backgrounds)))]
                lung_points = np.argwhere(bg.lung[::4, ::4, ::4]) * 4
                centre = lung_points[int(rng.integers(len(lung_points)))] if rng.random() < 0.7 else None
            window = _patch_start(bg, centre, patch, rng)
            if window is None:
                continue
            hu = bg.hu[window].copy()
            labels = bg.lung[window].astype(np.uint8)
            if item is not None:
                inter = [slice(max(w.start, b.start), min(w.stop, b.stop)) for w, b in zip(window, item.box)]
                if all(s.stop > s.start for s in inter):
                    local = tuple(slice(s.start - w.start, s.stop - w.start) for s, w in zip(inter, window))
                    source = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(inter, item.box))
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


def evaluate(network, bg: Background, patch=(96, 96, 96), progress=None) -> Evaluation:
    """Score the model as the product uses it: ``segment_volume`` restricted to the lungs (+20 mm),
    lesions within 5 mm of the lungs and of at least 100 mm^3. Dice with the real tumour,
    whether it was found (any overlap), and the false-positive lesion volume (mL)."""
    from scipy import ndimage

    from ..inference.models import SegmentationModel
    from ..inference.segment import segment_volume
    from ..io.volume import Volume
    from ..terminology import describe

    model = SegmentationModel(network, tuple(patch), {1: describe("lung"), 2: describe("tumor@lung")}, (1,), (2,))
    volume = Volume(bg.hu, bg.grid)
    result = segment_volume(volume, model, organ_mask=volume.with_array(bg.lung.astype(np.uint8), is_label=True),
                            min_lesion_mm3=100.0, progress=progress)
    lesion = result.labels.array == 2
    pieces, _ = ndimage.label(lesion)
    touching = set(np.unique(pieces[bg.tumour])) - {0}
    false_positive = lesion & ~np.isin(pieces, list(touching)) if touching else lesion
    dice = 2 * (lesion & bg.tumour).sum() / max(lesion.sum() + bg.tumour.sum(), 1)
    voxel_ml = float(np.prod(bg.spacing)) / 1000
    return Evaluation(bg.name, float(dice), bool(touching), float(false_positive.sum() * voxel_ml),
                      float(lesion.sum() * voxel_ml), float(bg.tumour.sum() * voxel_ml))


def train_default(backgrounds, settings: TrainSettings, lesions_per_background: int = 40, progress=None):
    """Train on synthetic lesions in ``backgrounds``; returns (network, log, pool size)."""
    report = progress or (lambda f, m="": None)
    pool = make_lesion_pool(backgrounds, lesions_per_background, settings.seed,
                            lambda f, m: report(0.25 * f, m))
    sampler = training_sampler(backgrounds, pool, settings.patch_size)
    network, log = train([], settings, sample_patch=sampler, progress=lambda f, m: report(0.25 + 0.75 * f, m))
    return network, log, len(pool)
