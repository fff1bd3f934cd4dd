"""The project's one training loop for PASTA-topology segmentation networks.

``pasta train-default`` (synthetic lesions in real backgrounds) and ``pasta finetune`` (a
user's own labelled cases) both train here, with the pieces of :mod:`.recipe` (MONAI's
Dice + cross-entropy, deep supervision, augmentation; SGD or AdamW with a poly or one-cycle
learning rate; mixed precision where the device has it).

Patches come from ``sample_patch(rng) -> (hu, labels)`` (e.g. with a synthetic lesion pasted
in), or from labelled volumes through :class:`CaseSampler` (MONAI ``CacheDataset`` +
``RandCropByLabelClassesd``: foreground oversampling as nnU-Net's). Each step draws its
patches and augmentations from a random generator seeded with ``(seed, step)``, so a run
resumed from a checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CancelledError, PastaError
from ..preprocessing.normalize import pasta_slf
from ..progress import reporter
from .recipe import (
    checkpoint_due,
    make_augmentation,
    make_loss,
    make_optimizer,
    make_schedule,
    optimizer_step,
    plain_tensors,
    require_monai,
    training_precision,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import torch

    from ..progress import Cancelled, Progress
    from .cases import LabelledCase


TISSUE_HU = -500.0  # background patches are centred on tissue (or a labelled voxel), not on air
MAX_CENTRES_PER_CLASS = 200_000
CHECKPOINT_FORMAT = "pasta-training-checkpoint"


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
    lesion_fraction: float = 0.5  # of the foreground-centred patches, this share centres on a lesion
    class_ratios: tuple | None = None  # explicit share of patches centred on each class (overrides the two above)
    seed: int = 0
    threads: int | None = 2  # torch threads (None: torch's default)
    intensity_augmentation: bool = True
    spatial_augmentation: float = 0.0  # share of patches rotated and scaled (anatomy varies between patients)
    elastic_mm: float = 0.0  # and, in those patches, smoothly warped by about this much (0: not warped)
    optimizer: str = "adamw"  # adamw | sgd (nnU-Net: SGD, Nesterov momentum 0.99)
    schedule: str = "onecycle"  # onecycle | poly (nnU-Net: lr * (1 - step / steps) ** 0.9)
    weight_decay: float | None = None  # None: 1e-5 for AdamW, 3e-5 for SGD
    deep_supervision: bool = False  # loss on every decoder level (nnU-Net's weights)
    dice_smooth: float = 1.0
    freeze_encoder_steps: int = 0  # the encoder (conv_blocks_context) stays fixed for this many steps
    device: str = "cpu"
    amp: bool = True
    checkpoint_every: int = 0  # steps between checkpoints (0: none)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["patch_size"] = list(self.patch_size)
        out["class_ratios"] = list(self.class_ratios) if self.class_ratios is not None else None
        return out


@dataclass
class TrainLog:
    losses: list = field(default_factory=list)
    seconds: float = 0.0
    resumed_at: int = 0  # the step a resumed run started from (0: from the beginning)


def class_ratios(settings: TrainSettings) -> list:
    """Share of patches centred on each class: background, organ, lesion (nnU-Net's foreground
    oversampling, with a share of the foreground patches on the lesions)."""
    if settings.class_ratios is not None:
        ratios = [float(r) for r in settings.class_ratios]
        if len(ratios) != settings.num_classes or min(ratios) < 0 or sum(ratios) <= 0:
            raise PastaError(f"class ratios {ratios} do not fit {settings.num_classes} classes")
        return ratios
    fg = settings.foreground_fraction
    if settings.num_classes == 3:
        return [1 - fg, fg * (1 - settings.lesion_fraction), fg * settings.lesion_fraction]
    return [1 - fg] + [fg / (settings.num_classes - 1)] * (settings.num_classes - 1)


class CaseSampler:
    """Patches of labelled volumes (hu, labels on one grid; labels 0..K-1).

    MONAI's ``CacheDataset`` keeps each case padded to at least a patch with the voxel indices
    of every class (``ClassesToIndicesd``; background only where there is tissue, at most
    200 000 per class, evenly thinned); ``RandCropByLabelClassesd`` then centres each patch on
    a voxel of a class drawn with :func:`class_ratios`.
    """

    def __init__(self, cases: Sequence[LabelledCase], settings: TrainSettings) -> None:
        from monai.data import CacheDataset
        from monai.transforms import ClassesToIndicesd, Compose, DeleteItemsd, RandCropByLabelClassesd, SpatialPadd

        if not cases:
            raise PastaError("no training cases")
        patch = tuple(int(p) for p in settings.patch_size)
        data = []
        for hu, labels in cases:
            if np.asarray(labels).max() >= settings.num_classes:
                raise PastaError(
                    f"a label map holds value {int(np.asarray(labels).max())}; the network has "
                    f"{settings.num_classes} classes (0..{settings.num_classes - 1})"
                )
            where = (np.asarray(hu) > TISSUE_HU) | (np.asarray(labels) > 0)
            data.append(
                {
                    "image": np.asarray(hu, np.float32)[None],
                    "label": np.asarray(labels, np.uint8)[None],
                    "where": where[None].astype(np.uint8),
                }
            )
        self.crop = RandCropByLabelClassesd(
            ("image", "label"),
            label_key="label",
            spatial_size=patch,
            ratios=class_ratios(settings),
            num_classes=settings.num_classes,
            indices_key="label_cls_indices",
            warn=False,
        )
        transform = Compose(
            [
                SpatialPadd("image", patch, value=-1024.0),
                SpatialPadd(("label", "where"), patch),
                ClassesToIndicesd(
                    "label",
                    num_classes=settings.num_classes,
                    image_key="where",
                    image_threshold=0.5,
                    max_samples_per_class=MAX_CENTRES_PER_CLASS,
                ),
                DeleteItemsd("where"),
                self.crop,
            ]
        )
        with plain_tensors():
            self.dataset = CacheDataset(data, transform=transform, copy_cache=False, num_workers=0, progress=False)

    def __call__(self, rng):
        case = int(rng.integers(len(self.dataset)))
        self.crop.set_random_state(seed=int(rng.integers(2**31)))
        (patch,) = self.dataset[case]
        return np.asarray(patch["image"])[0], np.asarray(patch["label"])[0]


def _set_encoder_frozen(network, frozen: bool) -> None:
    """PASTA's ``conv_blocks_context``, or what a family's network names as its encoder."""
    modules = network.encoder_modules() if hasattr(network, "encoder_modules") else [network.conv_blocks_context]
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(not frozen)


def supervision_levels(network: torch.nn.Module) -> int:
    """How many outputs the network gives with ``deep_supervision=True`` (full resolution first)."""
    return int(getattr(network, "deep_supervision_levels", 0) or network.num_pool)


def _batch(source, augment, rng, settings, normalize):
    images, targets = [], []
    for _ in range(settings.batch_size):
        hu, labels = source(rng)
        patch = augment({"image": np.asarray(hu, np.float32)[None], "label": np.asarray(labels)[None]})
        images.append(normalize(np.asarray(patch["image"], np.float32)[0]))
        targets.append(np.asarray(patch["label"])[0].round().astype(np.float32))
    return np.stack(images)[:, None], np.stack(targets)[:, None]


def train(
    cases: Sequence[LabelledCase],
    settings: TrainSettings,
    sample_patch: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]] | None = None,
    progress: Progress | None = None,
    network: torch.nn.Module | None = None,
    *,
    normalize: Callable[[np.ndarray], np.ndarray] | None = None,
    resume: dict | None = None,
    save_checkpoint: Callable[[dict], None] | None = None,
    is_cancelled: Cancelled | None = None,
) -> tuple[torch.nn.Module, TrainLog]:
    """Train ``network`` (a new one of the settings' size when None) and return (network, TrainLog).

    ``cases``: (hu array, label array) pairs on 1 mm grids, sampled by :class:`CaseSampler`;
    ``sample_patch(rng)`` may instead make each patch (hu, labels) of the patch size itself.
    ``normalize`` maps HU to the network's input (default PASTA's SLF). ``resume``: a checkpoint
    made by this function (network, optimiser, schedule, step); ``save_checkpoint(dict)`` is
    called every ``settings.checkpoint_every`` steps. ``is_cancelled()`` is polled every step.
    """
    require_monai()
    import torch

    from ..networks.unet import PastaUNet

    if settings.steps < 1:
        raise PastaError(f"the number of steps must be at least 1, got {settings.steps}")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    device = settings.device
    if network is None:
        network = PastaUNet(num_classes=settings.num_classes, base_features=settings.base_features, num_pool=settings.num_pool)
    network = network.to(device).to(memory_format=torch.channels_last_3d)
    normalize = normalize or pasta_slf
    dtype, scaled = training_precision(device, settings.amp)
    optimizer = make_optimizer(network.parameters(), settings.optimizer, settings.learning_rate, settings.weight_decay)
    schedule = make_schedule(optimizer, settings.schedule, settings.steps, settings.learning_rate)
    scaler = torch.amp.GradScaler(device.split(":")[0]) if scaled else None
    levels = supervision_levels(network) if settings.deep_supervision else 0
    loss_function = make_loss(levels, settings.dice_smooth)
    log, start = TrainLog(), 0
    if resume is not None:
        start = _restore(resume, network, optimizer, schedule, scaler, log)
    began = time.perf_counter() - log.seconds
    run_started = time.perf_counter()
    report = reporter(progress)
    with plain_tensors():
        source = sample_patch if sample_patch is not None else CaseSampler(cases, settings)
        augment = make_augmentation(
            settings.patch_size, settings.spatial_augmentation, settings.elastic_mm, settings.intensity_augmentation
        )
        network.train()
        for step in range(start, settings.steps):
            if is_cancelled is not None and is_cancelled():
                raise CancelledError()
            _set_encoder_frozen(network, step < settings.freeze_encoder_steps)
            rng = np.random.default_rng([settings.seed, step])
            augment.set_random_state(seed=int(rng.integers(2**31)))
            images, targets = _batch(source, augment, rng, settings, normalize)
            x = torch.from_numpy(images).to(device).contiguous(memory_format=torch.channels_last_3d)
            y = torch.from_numpy(targets).to(device)
            with torch.autocast(device.split(":")[0], dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                outputs = network(x, deep_supervision=bool(levels))
            outputs = [o.float() for o in outputs] if levels else outputs.float()
            loss = loss_function(outputs, y)
            optimizer_step(loss, optimizer, schedule, scaler)
            log.losses.append(float(loss.detach()))
            log.seconds = time.perf_counter() - began
            done = step + 1
            if save_checkpoint is not None and checkpoint_due(done, settings.checkpoint_every, settings.steps):
                save_checkpoint(checkpoint_state(network, optimizer, schedule, scaler, done, log, settings))
            report(
                done / settings.steps,
                f"step {done}/{settings.steps} loss {np.mean(log.losses[-20:]):.3f}"
                + _remaining(time.perf_counter() - run_started, done - start, settings.steps - done),
            )
    _set_encoder_frozen(network, False)
    network.eval()
    return network, log


def _remaining(seconds: float, steps_run: int, steps_left: int) -> str:
    """ ", about N min left" from this run's pace so far ("" under a minute)."""
    if steps_run < 1 or steps_left < 1:
        return ""
    minutes = seconds / steps_run * steps_left / 60
    return f", about {minutes:.0f} min left" if minutes >= 1 else ""


def checkpoint_state(
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    step: int,
    log: TrainLog,
    settings: TrainSettings,
) -> dict:
    """Everything a run needs to go on from ``step`` (tensors, numbers and strings only, so it
    loads with ``torch.load(weights_only=True)``)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "step": int(step),
        "settings": settings.to_dict(),
        "network": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "losses": [float(v) for v in log.losses],
        "seconds": float(log.seconds),
    }


def _restore(state: dict, network, optimizer, schedule, scaler, log: TrainLog) -> int:
    if state.get("format") != CHECKPOINT_FORMAT:
        raise PastaError("the checkpoint was not written by this training loop")
    network.load_state_dict(state["network"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    log.losses = list(state.get("losses", []))
    log.seconds = float(state.get("seconds", 0.0))
    log.resumed_at = int(state["step"])
    return int(state["step"])


def time_one_step(network: torch.nn.Module, settings: TrainSettings) -> float:
    """Seconds for one forward and backward pass of a batch on ``settings.device`` (nothing is
    learnt: the gradients are dropped), for an estimate before a long run."""
    import torch

    dtype, _ = training_precision(settings.device, settings.amp)
    levels = supervision_levels(network) if settings.deep_supervision else 0
    loss_function = make_loss(levels, settings.dice_smooth)
    x = torch.zeros((settings.batch_size, 1) + tuple(settings.patch_size), device=settings.device)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.zeros((settings.batch_size, 1) + tuple(settings.patch_size), device=settings.device)
    network = network.to(settings.device).to(memory_format=torch.channels_last_3d)
    network.train()
    started = time.perf_counter()
    with torch.autocast(settings.device.split(":")[0], dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        outputs = network(x, deep_supervision=bool(levels))
    outputs = [o.float() for o in outputs] if levels else outputs.float()
    loss_function(outputs, y).backward()
    if settings.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    network.zero_grad(set_to_none=True)
    return seconds
