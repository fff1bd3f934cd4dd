"""The pieces every training run of the project is made of, from MONAI where MONAI has them.

* :func:`make_loss` — MONAI ``DiceCELoss`` (soft Dice over the foreground classes with batch
  Dice, plus cross-entropy over all classes), wrapped in ``DeepSupervisionLoss`` with
  nnU-Net's weights (1, 1/2, 1/4, ..., the coarsest level 0, normalised) when the network
  gives its deep-supervision outputs.
* :func:`make_augmentation` — a MONAI ``Compose``: ``RandAffined`` (rotation up to 15 degrees
  about the body axis and 8 about the others, scaling 0.8-1.2 per axis), ``RandFlipd`` on each
  axis, ``RandScaleIntensityd`` / ``RandShiftIntensityd`` / ``RandGaussianNoised`` in HU. When
  patches are also warped (``elastic_mm``), :class:`RandAffineWarpd` (ours) turns, scales and
  warps them in one resampling instead: 3x faster than MONAI's ``Rand3DElasticd`` and one
  interpolation instead of two (``Testing/Benchmarks/RESULTS.md``, ``benchmark_training.py``).
* :func:`make_optimizer` / :func:`make_schedule` — AdamW or nnU-Net's SGD (Nesterov, momentum
  0.99, weight decay 3e-5); nnU-Net's poly learning rate ``lr * (1 - step / steps) ** 0.9`` or a
  one-cycle schedule (the built-in model's recipe).
* :func:`training_precision` — bf16 autocast on CPUs with native bf16, bf16 or fp16 (with a
  gradient scaler) on CUDA, fp32 on Apple MPS and other CPUs.

Everything here works on dicts ``{"image": (1, D, H, W) HU, "label": (1, D, H, W)}`` as MONAI's
dictionary transforms do; normalisation (PASTA's SLF or nnU-Net's CT statistics) comes after
augmentation, in the model's own regime.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    import torch
    from monai.transforms import Compose


KEYS = ("image", "label")
ROTATION_DEGREES = (15.0, 8.0, 8.0)  # about the k (body), j and i axes
SCALE_RANGE = 0.2  # each axis scaled by 1 +- 0.2
HU_GAIN, HU_SHIFT, HU_NOISE = 0.1, 20.0, 15.0
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("poly", "onecycle")


def require_monai() -> None:
    """MONAI, or a one-line error saying how to install it."""
    try:
        import monai  # noqa: F401
    except ImportError:
        from ..deps import install_hint

        raise PastaError(f"training needs MONAI (the train group): {install_hint('train')}") from None


@contextlib.contextmanager
def plain_tensors() -> Iterator[None]:
    """MONAI transforms return plain tensors, not MetaTensors (no metadata to track here; faster)."""
    from monai.data import get_track_meta, set_track_meta

    before = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(before)


# --- loss --------------------------------------------------------------------------------------


def deep_supervision_weights(levels: int) -> list:
    """nnU-Net's weights: 1/2**i per level (full resolution first), the coarsest 0, summing to 1."""
    weights = [0.5**i for i in range(levels)]
    if levels > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def make_loss(
    deep_supervision_levels: int = 0,
    smooth: float = 1.0,
    include_background: bool = False,
    weights: tuple[float, float] = (1.0, 1.0),
) -> torch.nn.Module:
    """Dice + cross-entropy on logits (B, K, ...) against labels (B, 1, ...); with
    ``deep_supervision_levels`` > 1 it takes the list of outputs (full resolution first).
    ``weights``: of the Dice and the cross-entropy term (PyMIC's VolF: 0.5, 0.5 with the
    background class in the Dice)."""
    from monai.losses import DeepSupervisionLoss, DiceCELoss

    loss = DiceCELoss(
        to_onehot_y=True,
        softmax=True,
        include_background=include_background,
        batch=True,
        smooth_nr=smooth,
        smooth_dr=smooth,
        lambda_dice=weights[0],
        lambda_ce=weights[1],
    )
    if deep_supervision_levels > 1:
        return DeepSupervisionLoss(loss, weights=deep_supervision_weights(deep_supervision_levels))
    return loss


# --- augmentation ------------------------------------------------------------------------------


def _turn_and_scale(rng, elastic_mm: float, shape) -> tuple:
    """An affine grid (and, with ``elastic_mm``, a smooth warp on a 5x5x5 lattice) for one patch."""
    import torch
    import torch.nn.functional as F

    angles = np.radians(rng.uniform(-1, 1, 3) * np.array(ROTATION_DEGREES))
    matrix = np.eye(3)
    for axis, angle in enumerate(angles):  # rotations about (k, j, i) in turn
        c, s = np.cos(angle), np.sin(angle)
        a, b = [n for n in range(3) if n != axis]
        turn = np.eye(3)
        turn[a, a], turn[a, b], turn[b, a], turn[b, b] = c, -s, s, c
        matrix = turn @ matrix
    matrix = matrix @ np.diag(1.0 / (rng.uniform(0.8, 1.25) * rng.uniform(0.93, 1.07, 3)))
    theta = torch.zeros(1, 3, 4)
    theta[0, :, :3] = torch.from_numpy(matrix[::-1, ::-1].copy()).float()  # affine_grid works in (i, j, k)
    grid = F.affine_grid(theta, (1, 1) + tuple(shape), align_corners=False)
    if elastic_mm > 0:
        lattice = torch.from_numpy(rng.normal(0.0, elastic_mm, (1, 3, 5, 5, 5))).float()
        field = F.interpolate(lattice, size=tuple(shape), mode="trilinear", align_corners=True)[0]
        to_grid = torch.tensor([2.0 / n for n in tuple(shape)[::-1]])  # mm -> grid units along (i, j, k)
        grid = grid + field.permute(1, 2, 3, 0)[None] * to_grid
    return grid


def rotate_scale_warp(
    img: np.ndarray, lab: np.ndarray, rng: np.random.Generator, elastic_mm: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """The patch turned (up to 15 degrees about the body axis, 8 about the others), scaled
    (0.8-1.25, slightly differently per axis) and, with ``elastic_mm``, smoothly warped
    (displacements with that standard deviation on a 5x5x5 lattice), in one resampling:
    trilinear for HU, nearest for labels, edges continued outwards. ``rng`` needs ``uniform``
    and ``normal`` (a numpy Generator or RandomState)."""
    import torch
    import torch.nn.functional as F

    grid = _turn_and_scale(rng, elastic_mm, img.shape)
    moved = F.grid_sample(
        torch.as_tensor(np.ascontiguousarray(img, np.float32))[None, None],
        grid,
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    labels = F.grid_sample(
        torch.as_tensor(np.ascontiguousarray(lab, np.float32))[None, None],
        grid,
        mode="nearest",
        padding_mode="border",
        align_corners=False,
    )
    return moved[0, 0].numpy(), labels[0, 0].numpy().round().astype(np.asarray(lab).dtype)


@functools.cache
def _warp_transform():
    from monai.transforms import MapTransform, RandomizableTransform

    class RandAffineWarpd(RandomizableTransform, MapTransform):
        """MONAI dictionary transform: :func:`rotate_scale_warp` on ``image`` and ``label`` with
        probability ``prob`` (used when patches are warped; see the module's notes)."""

        def __init__(self, prob: float, elastic_mm: float):
            RandomizableTransform.__init__(self, prob)
            MapTransform.__init__(self, KEYS)
            self.elastic_mm = float(elastic_mm)

        def __call__(self, data):
            self.randomize(None)
            if not self._do_transform:
                return data
            out = dict(data)
            image = np.asarray(data["image"])[0]
            label = np.asarray(data["label"])[0]
            moved, labels = rotate_scale_warp(image, label, self.R, self.elastic_mm)
            out["image"], out["label"] = moved[None], labels[None]
            return out

    return RandAffineWarpd


def make_augmentation(
    patch_size: Sequence[int], spatial: float = 0.0, elastic_mm: float = 0.0, intensity: bool = True
) -> Compose:
    """The random transforms applied to every training patch (a MONAI ``Compose``)."""
    from monai.transforms import Compose, RandAffined, RandFlipd, RandGaussianNoised, RandScaleIntensityd, RandShiftIntensityd

    transforms = []
    if spatial > 0:
        if elastic_mm > 0:
            transforms.append(_warp_transform()(spatial, elastic_mm))
        else:
            transforms.append(
                RandAffined(
                    KEYS,
                    prob=spatial,
                    rotate_range=[math.radians(d) for d in ROTATION_DEGREES],
                    scale_range=[SCALE_RANGE] * 3,
                    mode=("bilinear", "nearest"),
                    padding_mode="border",
                    spatial_size=tuple(patch_size),
                    cache_grid=True,
                )
            )
    transforms += [RandFlipd(KEYS, prob=0.5, spatial_axis=axis) for axis in range(3)]
    if intensity:
        transforms += [
            RandScaleIntensityd("image", factors=HU_GAIN, prob=1.0),
            RandShiftIntensityd("image", offsets=HU_SHIFT, prob=1.0),
            RandGaussianNoised("image", prob=0.5, mean=0.0, std=HU_NOISE, sample_std=True),
        ]
    return Compose(transforms)


# --- optimisation ------------------------------------------------------------------------------


def make_optimizer(
    parameters: Iterable[torch.nn.Parameter], kind: str, learning_rate: float, weight_decay: float | None = None
) -> torch.optim.Optimizer:
    import torch

    if kind == "sgd":  # nnU-Net / PASTA's trainers
        return torch.optim.SGD(
            parameters,
            lr=learning_rate,
            momentum=0.99,
            nesterov=True,
            weight_decay=3e-5 if weight_decay is None else weight_decay,
        )
    if kind == "adamw":
        return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=1e-5 if weight_decay is None else weight_decay)
    raise PastaError(f"unknown optimizer {kind!r}; choose {' or '.join(OPTIMIZERS)}")


def make_schedule(
    optimizer: torch.optim.Optimizer, kind: str, steps: int, learning_rate: float
) -> torch.optim.lr_scheduler.LRScheduler:
    import torch

    if kind == "poly":  # nnU-Net: lr * (1 - step / steps) ** 0.9
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=steps, power=0.9)
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=max(steps, 2), pct_start=0.1)
    raise PastaError(f"unknown learning-rate schedule {kind!r}; choose {' or '.join(SCHEDULES)}")


def training_precision(device: str, amp: bool) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, whether a gradient scaler is needed)`` for training on ``device``."""
    import torch

    from ..inference.sliding_window import autocast_dtype

    if not amp or device == "mps":  # fp16 training on MPS without a scaler is not safe
        return None, False
    dtype = autocast_dtype(device, True)
    return dtype, dtype == torch.float16


def optimizer_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler, scaler: object | None
) -> None:
    """One update from ``loss``: clear the gradients, back-propagate (through the fp16 gradient
    scaler when there is one), step the optimizer, then the learning-rate schedule."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    schedule.step()


def checkpoint_due(done: int, every: int, steps: int) -> bool:
    """Whether a run that has done ``done`` of ``steps`` steps saves a checkpoint now (every
    ``every`` steps, 0: never; the last step's checkpoint is the result itself)."""
    return bool(every) and done % every == 0 and done < steps
