"""A small, reproducible training loop for PASTA-topology segmentation networks.

Cases are standardised CTs (1 mm, LPS) with a label map (0 background, 1 organ, 2 lesion).
Each step samples patches (most centred on a foreground voxel), applies random flips,
normalises with PASTA's SLF, and minimises cross-entropy + soft Dice. ``sample_patch`` lets
the caller make every patch itself (e.g. with a synthetic lesion pasted in), which is how
synthetic-lesion training works.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..io.normalize import pasta_slf


@dataclass
class TrainSettings:
    base_features: int = 8
    num_pool: int = 4
    num_classes: int = 3
    patch_size: tuple = (64, 64, 64)
    batch_size: int = 2
    steps: int = 300
    learning_rate: float = 2e-3
    foreground_fraction: float = 0.67
    lesion_fraction: float = 0.5      # of the foreground-centred patches, this share centres on a lesion
    seed: int = 0
    threads: int = 2
    intensity_augmentation: bool = True
    spatial_augmentation: float = 0.0  # share of patches rotated and scaled (anatomy varies between patients)
    elastic_mm: float = 0.0            # and, in those patches, smoothly warped by about this much (0: not warped)


@dataclass
class TrainLog:
    losses: list = field(default_factory=list)
    seconds: float = 0.0


def _sample_patch(image, labels, patch, rng, settings):
    shape = np.array(image.shape)
    size = np.array(patch)
    centre = None
    if rng.random() < settings.foreground_fraction:
        want = 2 if rng.random() < settings.lesion_fraction and (labels == 2).any() else 1
        candidates = np.argwhere(labels == want) if (labels == want).any() else np.argwhere(labels > 0)
        if len(candidates):
            centre = candidates[rng.integers(len(candidates))]
    if centre is None:
        centre = np.array([rng.integers(0, n) for n in shape])
    start = np.clip(centre - size // 2, 0, np.maximum(shape - size, 0))
    cut = tuple(slice(int(s), int(s + n)) for s, n in zip(start, size))
    img, lab = image[cut], labels[cut]
    pad = [(0, int(n - m)) for n, m in zip(size, img.shape)]
    if any(p[1] for p in pad):
        img = np.pad(img, pad, constant_values=-1024)
        lab = np.pad(lab, pad)
    return img, lab


def _rotate_scale(img, lab, rng, elastic_mm: float = 0.0):
    """The patch turned (up to 15 degrees about the body axis, 8 about the others) and scaled
    (0.8-1.25, slightly differently per axis) about its centre: trilinear for HU, nearest for
    labels, edges continued outwards. One real background then stands for bodies of other
    sizes and postures. ``elastic_mm`` adds a smooth random warp (displacements drawn with that
    standard deviation on a 5x5x5 lattice over the patch, interpolated between): lungs, hila and
    diaphragm of other shapes than the background's own."""
    import torch
    import torch.nn.functional as F

    angles = np.radians(rng.uniform(-1, 1, 3) * np.array([15.0, 8.0, 8.0]))
    matrix = np.eye(3)
    for axis, angle in enumerate(angles):  # rotations about (k, j, i) in turn
        c, s = np.cos(angle), np.sin(angle)
        a, b = [n for n in range(3) if n != axis]
        turn = np.eye(3)
        turn[a, a], turn[a, b], turn[b, a], turn[b, b] = c, -s, s, c
        matrix = turn @ matrix
    matrix = matrix @ np.diag(1.0 / (rng.uniform(0.8, 1.25) * rng.uniform(0.93, 1.07, 3)))
    # affine_grid works in (x, y, z) = (i, j, k) order
    theta = torch.zeros(1, 3, 4)
    theta[0, :, :3] = torch.from_numpy(matrix[::-1, ::-1].copy()).float()
    grid = F.affine_grid(theta, (1, 1) + img.shape, align_corners=False)
    if elastic_mm > 0:
        lattice = torch.from_numpy(rng.normal(0.0, elastic_mm, (1, 3, 5, 5, 5))).float()
        field = F.interpolate(lattice, size=img.shape, mode="trilinear", align_corners=True)[0]  # (3, D, H, W) mm
        to_grid = torch.tensor([2.0 / n for n in img.shape[::-1]])  # mm -> grid units along (i, j, k)
        grid = grid + field.permute(1, 2, 3, 0)[None] * to_grid
    moved = F.grid_sample(torch.from_numpy(np.ascontiguousarray(img, np.float32))[None, None], grid,
                          mode="bilinear", padding_mode="border", align_corners=False)
    labels = F.grid_sample(torch.from_numpy(np.ascontiguousarray(lab, np.float32))[None, None], grid,
                           mode="nearest", padding_mode="border", align_corners=False)
    return moved[0, 0].numpy(), labels[0, 0].numpy().round().astype(lab.dtype)


def _augment(img, lab, rng, intensity=True, spatial=0.0, elastic_mm=0.0):
    """Random flips along each axis; with ``intensity``, a random HU gain (0.9-1.1), offset
    (+-20 HU) and noise (0-15 HU) around soft tissue, as between scanners and kernels; then
    PASTA's SLF normalisation. A share ``spatial`` of patches is first rotated and scaled
    (and warped by ``elastic_mm``)."""
    if spatial and rng.random() < spatial:
        img, lab = _rotate_scale(img, lab, rng, elastic_mm)
    for axis in range(3):
        if rng.random() < 0.5:
            img, lab = np.flip(img, axis), np.flip(lab, axis)
    if intensity:
        img = (img.astype(np.float32) - 40.0) * rng.uniform(0.9, 1.1) + 40.0 + rng.uniform(-20, 20)
        if rng.random() < 0.5:
            img = img + rng.normal(0.0, rng.uniform(0, 15), img.shape).astype(np.float32)
    return pasta_slf(img), np.ascontiguousarray(lab)


def train(cases, settings: TrainSettings, sample_patch=None, progress=None, network=None):
    """Train a new network on ``cases`` (list of (hu array, label array) on 1 mm grids).

    ``sample_patch(rng)`` may instead produce each training patch (hu, labels) of
    ``settings.patch_size`` itself (e.g. with a freshly inserted synthetic lesion).
    ``network`` continues training that network (a second stage) instead of a new one.
    Returns (network, TrainLog).
    """
    import torch
    import torch.nn.functional as F

    from ..models.unet import PastaUNet

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    if network is None:
        network = PastaUNet(num_classes=settings.num_classes, base_features=settings.base_features,
                            num_pool=settings.num_pool)
    from ..inference.sliding_window import autocast_dtype

    network = network.to(memory_format=torch.channels_last_3d)  # faster convolutions on CPU
    dtype = autocast_dtype("cpu", True)
    optimiser = torch.optim.AdamW(network.parameters(), lr=settings.learning_rate, weight_decay=1e-5)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=settings.learning_rate, total_steps=settings.steps,
                                                   pct_start=0.1)
    log, started = TrainLog(), time.perf_counter()
    network.train()
    for step in range(settings.steps):
        images, targets = [], []
        for _ in range(settings.batch_size):
            if sample_patch is not None:
                img, lab = sample_patch(rng)
            else:
                hu, labels = cases[int(rng.integers(len(cases)))]
                img, lab = _sample_patch(hu, labels, settings.patch_size, rng, settings)
            img, lab = _augment(img, lab, rng, settings.intensity_augmentation,
                                settings.spatial_augmentation, settings.elastic_mm)
            images.append(img)
            targets.append(lab)
        x = torch.from_numpy(np.stack(images)[:, None]).contiguous(memory_format=torch.channels_last_3d)
        y = torch.from_numpy(np.stack(targets).astype(np.int64))
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = network(x).float()
        probabilities = logits.softmax(1)
        onehot = F.one_hot(y, settings.num_classes).permute(0, 4, 1, 2, 3).float()
        dims = (0, 2, 3, 4)
        dice = (2 * (probabilities * onehot).sum(dims) + 1) / (probabilities.sum(dims) + onehot.sum(dims) + 1)
        loss = F.cross_entropy(logits, y) + (1 - dice[1:]).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        log.losses.append(float(loss.detach()))
        if progress:
            progress((step + 1) / settings.steps, f"step {step + 1}/{settings.steps} loss {np.mean(log.losses[-20:]):.3f}")
    log.seconds = time.perf_counter() - started
    network.eval()
    return network, log
