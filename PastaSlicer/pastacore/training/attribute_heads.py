"""Report-attribute heads learnt from synthetic lesions whose attributes are known.

PASTA's second stage trains heads for five report attributes on top of its encoder. Here the
lesions are made by our synthesis engine in real chest CT backgrounds, so every attribute is
known exactly; the encoder (e.g. the default model's) is frozen, its pooled features of each
lesion crop feed one linear head per attribute, and accuracy is measured on held-out lesions.
The five heads are stored as one :class:`~pastacore.classify.heads.Head` with five groups, so
the report panel and ``predict_lesion_attributes`` use it like PASTA's own head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..synthesis import schema as S

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
    features: np.ndarray                  # (N, C) encoder features
    targets: np.ndarray                   # (N, 5) option index per group
    sizes_mm: list = field(default_factory=list)


def _draw(rng):
    """Attributes with every group drawn uniformly; punctate lesions are small."""
    chosen = {attribute: options[int(rng.integers(len(options)))] for _g, attribute, options in LUNG_GROUPS}
    size = rng.uniform(5.0, 9.0) if chosen[S.SHAPE] == "punctate/nodular" else float(np.exp(rng.uniform(np.log(10), np.log(40))))
    attributes = dict(chosen)
    attributes[S.SHAPE] = [chosen[S.SHAPE]]
    attributes[S.SIZE] = [size * rng.uniform(0.85, 1.15) for _ in range(3)]
    return chosen, attributes, size


def _window(bg_hu, centre, size=CROP):
    """Slices of a ``size`` window centred on ``centre`` and the padding it needs."""
    box, pad = [], []
    for c, s, n in zip(centre, size, bg_hu.shape):
        start = int(c) - s // 2
        box.append(slice(max(start, 0), min(start + s, n)))
        pad.append((max(-start, 0), max(start + s - n, 0)))
    return tuple(box), pad


def lesion_input(bg_hu, image_box, image, lesion):
    """The encoder input for one synthetic lesion: PASTA's lesion crop (96^3 around the lesion's
    box, SLF-normalised, flipped front-to-back), built from the background and the changed region."""
    from ..io.normalize import pasta_slf

    hits = np.argwhere(lesion)
    centre = [(b.start + lo + b.start + hi) // 2 for b, lo, hi in zip(image_box, hits.min(0), hits.max(0))]
    box, pad = _window(bg_hu, centre)
    cut = bg_hu[box].copy()
    inter = [slice(max(w.start, b.start), min(w.stop, b.stop)) for w, b in zip(box, image_box)]
    local = tuple(slice(s.start - w.start, s.stop - w.start) for s, w in zip(inter, box))
    source = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(inter, image_box))
    cut[local] = image[source]
    crop = np.pad(pasta_slf(cut), pad, constant_values=0.0)
    return np.ascontiguousarray(crop[:, ::-1, :], dtype=np.float32)


def synthetic_attribute_set(backgrounds, network, count: int, seed: int, progress=None) -> AttributeSet:
    """``count`` synthetic lung lesions with uniformly drawn attributes, their encoder features and targets.

    Lesions with a close relationship are centred just inside the lung surface and are not
    clipped by it (they reach into the chest wall or mediastinum); the others are placed by
    the engine's rule and clipped to the lung."""
    import torch
    from scipy import ndimage

    from ..errors import PastaError
    from ..io.volume import Volume
    from ..synthesis import synthesize_lesion

    rng = np.random.default_rng(seed)
    depth = [ndimage.distance_transform_edt(bg.lung) for bg in backgrounds]
    network = network.float().eval()
    features, targets, sizes, batch = [], [], [], []

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
            band = bg.lung & ~bg.forbidden & (depth[b] >= 0.3 * size / 2) & (depth[b] <= 0.5 * size / 2 + 1)
            where = np.argwhere(band[::3, ::3, ::3]) * 3
            if not len(where):
                continue
            centre = bg.grid.index_to_lps(where[int(rng.integers(len(where)))][::-1].astype(float))
        volume = Volume(bg.hu, bg.grid)
        organ = volume.with_array((bg.lung & ~bg.forbidden).astype(np.uint8), is_label=True)
        try:
            result = synthesize_lesion(volume, organ_labels=organ, organ_names={1: "lung"}, lesion_type="lung_tumor",
                                       attributes=attributes, seed=int(rng.integers(2**31)), centre_lps=centre)
        except PastaError:
            continue
        box = result.changed_box.slices
        lesion = result.lesion[box]
        if not lesion.any():
            continue
        batch.append(lesion_input(bg.hu, box, result.image.array[box], lesion))
        targets.append([options.index(chosen[attribute]) for _g, attribute, options in LUNG_GROUPS])
        sizes.append(size)
        if len(batch) == 4:
            flush()
        if progress:
            progress(len(targets) / count, f"synthetic lesion {len(targets)}/{count}")
    if batch:
        flush()
    if not targets:
        raise PastaError("no synthetic lesion could be placed in the backgrounds")
    return AttributeSet(np.concatenate(features), np.asarray(targets, int), sizes)


def fit_attribute_heads(train: AttributeSet, l2: float = 1.0, seed: int = 0, name: str = "lung attributes"):
    """One linear head per group, combined into one :class:`Head` with five groups."""
    import torch

    from ..classify.fewshot import fit_head
    from ..classify.groups import OutputGroup
    from ..classify.heads import Head, build_module

    heads = [fit_head(train.features, train.targets[:, g], options, "linear", l2, seed)
             for g, (_group, _attribute, options) in enumerate(LUNG_GROUPS)]
    groups = tuple(OutputGroup(group, options) for group, _attribute, options in LUNG_GROUPS)
    module = build_module("linear", train.features.shape[1], sum(len(o) for _g, _a, o in LUNG_GROUPS))
    with torch.no_grad():
        module.head[0].weight.copy_(torch.cat([h.module.head[0].weight for h in heads]))
        module.head[0].bias.copy_(torch.cat([h.module.head[0].bias for h in heads]))
    module.eval()
    first = heads[0]  # every head normalised the same training features identically
    return Head(module, "linear", first.feature_dim, groups, first.mean, first.std, name)


def score_heads(head, test: AttributeSet, train: AttributeSet) -> dict:
    """Held-out accuracy per group, with the majority-class baseline of the training set."""
    scores = {}
    for g, (group, probabilities) in enumerate(head.probabilities(test.features)):
        truth = test.targets[:, g]
        majority = int(np.bincount(train.targets[:, g], minlength=group.size).argmax())
        scores[group.name] = {"accuracy": float((probabilities.argmax(1) == truth).mean()),
                              "majority_baseline": float((truth == majority).mean()),
                              "n_test": int(len(truth)), "options": list(group.options)}
    return scores
