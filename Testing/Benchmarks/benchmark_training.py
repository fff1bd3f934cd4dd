"""The training pieces: MONAI's against the project's former hand-written ones, and a step's cost.

Each row times one piece both ways in one run (median of ``--repeats`` after a warm-up) and,
where both compute the same thing, says how far apart their results are:

* loss: cross-entropy + batch soft Dice as the former loop wrote it, and MONAI's
  ``DiceCELoss`` configured alike (forward + backward on 2 x 3 x 64^3 logits);
* rotation and scaling of a 96^3 patch: the former ``grid_sample`` code and MONAI's
  ``RandAffined``; with a smooth warp: ours (one resampling) and MONAI's ``Rand3DElasticd``;
* patch sampling on ``lung1`` (1 mm, lungs and tumour labelled): the former sampler (voxel
  indices searched anew for every patch) and ``CacheDataset`` + ``RandCropByLabelClassesd``;
* one training step (forward + backward, batch 2) of the built-in model's network (8 base
  features, 4 poolings) with deep supervision, at 64^3 and 96^3.

    PYTHONPATH=PastaSlicer .venv/bin/python Testing/Benchmarks/benchmark_training.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import time

import numpy as np
from timing import median_seconds


def timed(function, repeats: int) -> float:
    return median_seconds(function, repeats, warm_up=True)


def former_loss(logits, labels):
    import torch.nn.functional as F

    probabilities = logits.softmax(1)
    onehot = F.one_hot(labels, logits.shape[1]).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)
    dice = (2 * (probabilities * onehot).sum(dims) + 1) / (probabilities.sum(dims) + onehot.sum(dims) + 1)
    return F.cross_entropy(logits, labels) + (1 - dice[1:]).mean()


def losses(repeats):
    import torch

    from pastacore.training.recipe import make_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 64, 64, 64, requires_grad=True)
    labels = torch.randint(0, 3, (2, 64, 64, 64))
    monai_loss = make_loss(0, smooth=1.0)
    difference = abs(float(former_loss(logits, labels)) - float(monai_loss(logits, labels[:, None].float())))
    return [
        ("loss, former (CE + batch soft Dice)", timed(lambda: former_loss(logits, labels).backward(), repeats), ""),
        (
            "loss, MONAI DiceCELoss",
            timed(lambda: monai_loss(logits, labels[:, None].float()).backward(), repeats),
            f"|difference| {difference:.1e}",
        ),
    ]


def spatial(repeats):
    from monai.transforms import Rand3DElasticd, RandAffined

    from pastacore.training.recipe import KEYS, ROTATION_DEGREES, plain_tensors, rotate_scale_warp

    rng = np.random.default_rng(0)
    image = rng.normal(0, 100, (96, 96, 96)).astype(np.float32)
    labels = (image > 100).astype(np.uint8)
    data = {"image": image[None], "label": labels[None]}
    radians = [math.radians(d) for d in ROTATION_DEGREES]
    turn_and_scale = {
        "prob": 1.0,
        "rotate_range": radians,
        "scale_range": [0.2] * 3,
        "mode": ("bilinear", "nearest"),
        "padding_mode": "border",
        "spatial_size": (96, 96, 96),
    }
    affine = RandAffined(KEYS, cache_grid=True, **turn_and_scale)
    # 3 mm on a 5x5x5 lattice over 96 mm is a field smoothed over ~19 mm: sigma 6-7 voxels, magnitude ~3
    elastic = Rand3DElasticd(KEYS, sigma_range=(6, 7), magnitude_range=(2, 4), **turn_and_scale)
    with plain_tensors():
        return [
            ("rotate + scale 96^3, former (grid_sample)", timed(lambda: rotate_scale_warp(image, labels, rng), repeats), ""),
            ("rotate + scale 96^3, MONAI RandAffined", timed(lambda: affine(data), repeats), "used"),
            (
                "rotate + scale + warp 96^3, ours (one resampling)",
                timed(lambda: rotate_scale_warp(image, labels, rng, 3.0), repeats),
                "used",
            ),
            ("rotate + scale + warp 96^3, MONAI Rand3DElasticd", timed(lambda: elastic(data), repeats), ""),
        ]


def former_sample(image, labels, patch, rng, foreground=0.67, lesion=0.5):
    shape, size = np.array(image.shape), np.array(patch)
    centre = None
    if rng.random() < foreground:
        want = 2 if rng.random() < lesion and (labels == 2).any() else 1
        candidates = np.argwhere(labels == want) if (labels == want).any() else np.argwhere(labels > 0)
        if len(candidates):
            centre = candidates[rng.integers(len(candidates))]
    if centre is None:
        centre = np.array([rng.integers(0, n) for n in shape])
    start = np.clip(centre - size // 2, 0, np.maximum(shape - size, 0))
    cut = tuple(slice(int(s), int(s + n)) for s, n in zip(start, size))
    return image[cut], labels[cut]


def sampling(repeats):
    from pastacore.anatomy.masks import lung_mask
    from pastacore.fileio import read_volume
    from pastacore.geometry.standardize import standardize
    from pastacore.samples import sample_paths
    from pastacore.training.recipe import plain_tensors
    from pastacore.training.trainer import CaseSampler, TrainSettings

    image_path, label_path = sample_paths("lung1")
    hu = standardize(read_volume(image_path), is_label=False).volume
    tumour = standardize(read_volume(label_path, is_label=True), is_label=True).volume.array > 0
    labels = lung_mask(hu.array, hu.grid.spacing).astype(np.uint8)
    labels[tumour] = 2
    hu = hu.array.astype(np.float32)
    rng = np.random.default_rng(0)
    patch = (96, 96, 96)
    with plain_tensors():
        started = time.perf_counter()
        sampler = CaseSampler([(hu, labels)], TrainSettings(patch_size=patch))
        build = time.perf_counter() - started
        return [
            (
                "patch sampling, former (indices searched per patch)",
                timed(lambda: former_sample(hu, labels, patch, rng), repeats),
                "",
            ),
            (
                "patch sampling, MONAI CacheDataset + RandCropByLabelClassesd",
                timed(lambda: sampler(rng), repeats),
                f"used; cache built once in {build:.1f} s",
            ),
        ]


def steps(repeats):
    from pastacore.training.finetune import FinetuneSettings
    from pastacore.training.start_model import load_start_model
    from pastacore.training.trainer import time_one_step

    start = load_start_model(None)
    rows = []
    for side in (64, 96):
        settings = FinetuneSettings(patch=(side,) * 3, threads=2).train_settings(start, "cpu")
        network = copy.deepcopy(start.network)
        seconds = statistics.median(time_one_step(network, settings) for _ in range(repeats))
        rows.append((f"training step, built-in network, batch 2 x {side}^3, deep supervision", seconds, "forward + backward"))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    print(f"{platform.machine()}, 2 threads, median of {args.repeats}")
    print("| piece | time (ms) | note |\n|---|---|---|")
    for part in (losses, spatial, sampling, steps):
        for name, seconds, note in part(args.repeats):
            print(f"| {name} | {1000 * seconds:.0f} | {note} |", flush=True)


if __name__ == "__main__":
    main()
