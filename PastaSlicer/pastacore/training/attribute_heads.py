"""Report-attribute heads learnt from synthetic lesions whose attributes are known.

PASTA's second stage trains heads for five report attributes on top of its encoder. Here the
lesions are made by our synthesis engine in real chest CT backgrounds, so every attribute is
known exactly; the encoder (e.g. the default model's) is frozen, its pooled features of each
lesion crop feed one linear head per attribute, and accuracy is measured on held-out lesions.
The five heads are stored as one :class:`~pastacore.classify.heads.Head` with five groups, so
the report panel and ``predict_lesion_attributes`` use it like PASTA's own head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..synthesis import schema as S
from .backgrounds import wall_point

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from ..classify.heads import Head
    from ..progress import Progress
    from .backgrounds import Background


# (report group, synthesis attribute, options) for lung lesions
LUNG_GROUPS = (
    ("shape", S.SHAPE, ("round-like", "irregular", "punctate/nodular")),
    ("density", S.DENSITY, ("isodense", "part-solid", "ground-glass")),
    ("heterogeneity", S.VARIATIONS, ("homogeneous", "heterogeneous")),
    ("surface", S.SURFACE, ("well-defined", "ill-defined")),
    ("invasion", S.RELATION, ("no close relationship", "close relationship")),
)
CROP = (96, 96, 96)


@dataclass
class AttributeSet:
    features: np.ndarray  # (N, C) encoder features
    targets: np.ndarray  # (N, 5) option index per group


def _draw(rng):
    """Attributes with every group drawn uniformly; punctate lesions are small."""
    chosen = {attribute: options[int(rng.integers(len(options)))] for _g, attribute, options in LUNG_GROUPS}
    size = rng.uniform(5.0, 9.0) if chosen[S.SHAPE] == "punctate/nodular" else float(np.exp(rng.uniform(np.log(10), np.log(40))))
    attributes = dict(chosen)
    attributes[S.SHAPE] = [chosen[S.SHAPE]]
    attributes[S.SIZE] = [size * rng.uniform(0.85, 1.15) for _ in range(3)]
    return chosen, attributes, size


def lesion_input(bg_hu: np.ndarray, image_box: tuple[slice, slice, slice], image: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """The encoder input for one synthetic lesion: PASTA's lesion crop (96^3 around the lesion's
    box, SLF-normalised, flipped front-to-back as :class:`~pastacore.classify.features.CropItem`
    does), cut from the background with the changed region ``image`` pasted at ``image_box``."""
    from ..preprocessing.crops import lesion_crop
    from ..preprocessing.normalize import pasta_slf

    # half a crop around the changed region holds the whole crop (or reaches the volume's edge)
    sub = tuple(slice(max(b.start - h, 0), min(b.stop + h, n)) for b, h, n in zip(image_box, np.array(CROP) // 2, bg_hu.shape))
    local = tuple(slice(b.start - u.start, b.stop - u.start) for b, u in zip(image_box, sub))
    cut = bg_hu[sub].copy()
    cut[local] = image
    mask = np.zeros(cut.shape, bool)
    mask[local] = lesion
    crop = lesion_crop(pasta_slf(cut), mask, CROP, pad_value=0.0).array
    return np.ascontiguousarray(crop[:, ::-1, :], dtype=np.float32)


def synthetic_attribute_set(
    backgrounds: Sequence[Background],
    network: torch.nn.Module,
    count: int,
    seed: int,
    progress: Progress | None = None,
) -> AttributeSet:
    """``count`` synthetic lung lesions with uniformly drawn attributes, their encoder features and targets.

    Lesions with a close relationship are centred just inside the lung surface and are not
    clipped by it (they reach into the chest wall or mediastinum); the others are placed by
    the engine's rule and clipped to the lung."""
    import torch
    from scipy import ndimage

    from ..errors import PastaError
    from ..geometry.volume import Volume
    from ..synthesis import synthesize_lesion

    rng = np.random.default_rng(seed)
    depth = [ndimage.distance_transform_edt(bg.lung) for bg in backgrounds]
    allowed = [bg.lung & ~bg.forbidden for bg in backgrounds]
    volumes = [Volume(bg.hu, bg.grid) for bg in backgrounds]
    organs = [v.with_array(a.astype(np.uint8), is_label=True) for v, a in zip(volumes, allowed)]
    network = network.float().eval()
    features, targets, batch = [], [], []

    def flush():
        with torch.inference_mode():
            features.append(network.encode_features(torch.from_numpy(np.stack(batch)[:, None])).float().numpy())
        batch.clear()

    attempts = 0
    while len(targets) < count and attempts < 3 * count:
        attempts += 1
        b = int(rng.integers(len(backgrounds)))
        bg = backgrounds[b]
        chosen, attributes, size = _draw(rng)
        centre = None
        if chosen[S.RELATION] == "close relationship":
            point = wall_point(depth[b], allowed[b], size / 2, rng)
            if point is None:
                continue
            centre = bg.grid.index_to_lps(point[::-1].astype(float))
        try:
            result = synthesize_lesion(
                volumes[b],
                organ_labels=organs[b],
                organ_names={1: "lung"},
                lesion_type="lung_tumor",
                attributes=attributes,
                seed=int(rng.integers(2**31)),
                centre_lps=centre,
            )
        except PastaError:
            continue
        box = result.changed_box.slices
        lesion = result.lesion[box]
        if not lesion.any():
            continue
        batch.append(lesion_input(bg.hu, box, result.image.array[box], lesion))
        targets.append([options.index(chosen[attribute]) for _g, attribute, options in LUNG_GROUPS])
        if len(batch) == 4:
            flush()
        if progress:
            progress(len(targets) / count, f"synthetic lesion {len(targets)}/{count}")
    if batch:
        flush()
    if not targets:
        raise PastaError("no synthetic lesion could be placed in the backgrounds")
    return AttributeSet(np.concatenate(features), np.asarray(targets, int))


def fit_attribute_heads(train: AttributeSet, l2: float = 1.0, seed: int = 0, name: str = "lung attributes") -> Head:
    """One linear head per group, combined into one :class:`Head` with five groups."""
    import torch

    from ..classify.fewshot import fit_head
    from ..classify.groups import OutputGroup
    from ..classify.heads import Head, build_module

    heads = [
        fit_head(train.features, train.targets[:, g], options, "linear", l2, seed)
        for g, (_group, _attribute, options) in enumerate(LUNG_GROUPS)
    ]
    groups = tuple(OutputGroup(group, options) for group, _attribute, options in LUNG_GROUPS)
    module = build_module("linear", train.features.shape[1], sum(len(o) for _g, _a, o in LUNG_GROUPS))
    with torch.no_grad():
        module.head[0].weight.copy_(torch.cat([h.module.head[0].weight for h in heads]))
        module.head[0].bias.copy_(torch.cat([h.module.head[0].bias for h in heads]))
    module.eval()
    first = heads[0]  # every head normalised the same training features identically
    return Head(module, "linear", first.feature_dim, groups, first.mean, first.std, name)


def score_heads(head: Head, test: AttributeSet, train: AttributeSet) -> dict:
    """Held-out accuracy per group, with the majority-class baseline of the training set."""
    scores = {}
    for g, (group, probabilities) in enumerate(head.probabilities(test.features)):
        truth = test.targets[:, g]
        majority = int(np.bincount(train.targets[:, g], minlength=group.size).argmax())
        scores[group.name] = {
            "accuracy": float((probabilities.argmax(1) == truth).mean()),
            "majority_baseline": float((truth == majority).mean()),
            "n_test": int(len(truth)),
            "options": list(group.options),
        }
    return scores
