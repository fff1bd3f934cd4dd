"""VolF pretraining of FMUNet or PCT-Net on a user's own CTs (``pasta pretrain --method volf``).

The recipe is the lung VolF demo's (PyMIC_examples ``seg_self_sup/lung``): VolF pairs
(:mod:`.volf`) from the CTs clipped to [-1000, 1000] -> [-1, 1], K = class_num - 1 fusion
classes, Dice + cross-entropy 0.5 / 0.5 over all classes with batch Dice (PyMIC's
``DiceLoss`` + ``CrossEntropyLoss``; here MONAI's ``DiceCELoss``, the same formula with
smoothing 1e-5) on the full-resolution output, Adam at 1e-3 with weight decay 1e-5, the
learning rate halved every 20 000 steps, batches of 2. Mixed precision on CUDA only (fp32 on
CPUs: see :func:`pretrain`).

Each step draws its samples from a ``random.Random`` seeded with ``(seed, step)`` and seeds
torch (dropout) from them too, so a run resumed from its checkpoint continues exactly as the
uninterrupted run would have; the next step's
batch is made in a background thread while the network trains on the current one.

The result is written as a folder: ``model.pt`` (a PyMIC checkpoint, PyMIC's tensor names;
it loads in PyMIC as ``ckpt_init_name``), ``config.json`` (the network's config, usable as
``--config`` / ``--start-config``), ``log.json`` (loss and foreground Dice per step, the
settings, the CTs, time) and, when asked for, ``examples/example_NNN.npz`` (``A``, ``B``,
``fused``, ``label``: the first training samples).
"""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import CancelledError, PastaError, option
from ...progress import reporter
from . import config as cfg
from .volf import VolfSettings, volf_sample

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from ...progress import Cancelled, Progress
    from ...training.finetune import Checkpoints


PRETRAIN_FILES = ("model.pt", "config.json", "log.json", "examples/*.npz")
STAGE = "volf"
CHECKPOINT_FORMAT = "pasta-volf-checkpoint"
DEMO_PATCH = (64, 128, 128)
DEMO_CLASSES = 5
VALID_WINDOW = 50  # valid_pred: the mean foreground Dice of the last this many steps


@dataclass
class PretrainSettings:
    steps: int = 1000
    patch: tuple | None = None  # None: PCT-Net's input_size, else the demo's 64x128x128
    batch_size: int = 2
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    lr_step: int = 20000
    lr_gamma: float = 0.5
    seed: int = 0
    save_examples: int = 0
    checkpoint_every: int = 100
    device: str = "auto"
    amp: bool = True
    volf: VolfSettings = field(default_factory=VolfSettings)

    def check(self, config: dict) -> tuple:
        """The patch to train on (checked against the network); PastaError for a bad setting."""
        if self.steps < 1:
            raise PastaError(f"{option('steps')} must be at least 1, got {self.steps}")
        if self.batch_size < 1 or self.save_examples < 0 or self.checkpoint_every < 0:
            raise PastaError(
                f"{option('batch_size')} must be at least 1, {option('save_examples')} and {option('checkpoint_every')} 0 or more"
            )
        if not self.learning_rate > 0:
            raise PastaError(f"the learning rate must be positive, got {self.learning_rate}")
        if config["class_num"] < 2:
            raise PastaError("VolF needs class_num of at least 2 (K = class_num - 1 fusion classes)")
        self.volf.check()
        exact, _ = cfg.patch_rule(config)
        return cfg.check_patch(config, self.patch or exact or DEMO_PATCH)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["patch"] = list(self.patch) if self.patch else None
        out.pop("device")
        return out


def default_config(net_type: str = "FMUNet") -> dict:
    """The lung demo's VolF network: 5 classes (K = 4), PyMIC's defaults otherwise."""
    base = {"family": cfg.FAMILY, "net_type": net_type, "class_num": DEMO_CLASSES, "in_chns": 1}
    if net_type == "PCTNet":
        base["input_size"] = list(DEMO_PATCH)
    return cfg.check_config(base)


class VolumeSource:
    """The prepared CTs (int16 HU, memory-mapped) and the mapping of a crop onto [-1, 1]."""

    def __init__(self, paths: Sequence[Path], hu_window: Sequence[float]) -> None:
        if not paths:
            raise PastaError("no CT could be prepared for pretraining; see the failures above")
        self.volumes = [np.load(p, mmap_mode="r") for p in paths]
        self.names = [Path(p).parent.name for p in paths]
        low, high = float(hu_window[0]), float(hu_window[1])
        self.scale, self.low = 2.0 / (high - low), low

    def to_input(self, hu: np.ndarray) -> np.ndarray:
        return ((np.asarray(hu, np.float32) - self.low) * self.scale - 1.0).astype(np.float32)


def make_batch(source: VolumeSource, patch: tuple, classes: int, settings: PretrainSettings, step: int) -> list:
    """The VolF samples of training step ``step`` (deterministic in the seed and the step)."""
    rng = random.Random(f"volf:{settings.seed}:{step}")
    samples = []
    for _ in range(settings.batch_size):
        volume = source.volumes[rng.randrange(len(source.volumes))]
        samples.append(volf_sample(volume, patch, classes, settings.volf, rng, to_input=source.to_input))
    return samples


def volf_loss() -> torch.nn.Module:
    """PyMIC's 0.5 Dice + 0.5 cross-entropy over all classes (batch Dice, smoothing 1e-5)."""
    from ...training.recipe import make_loss

    return make_loss(0, smooth=1e-5, include_background=True, weights=(0.5, 0.5))


def foreground_dice(logits: torch.Tensor, labels: torch.Tensor, classes: int) -> float:
    """PyMIC's training Dice: per class over the batch (smoothing 1e-5), mean over classes 1..K."""
    import torch

    predicted = logits.argmax(1)
    target = labels[:, 0].long()
    scores = []
    for c in range(1, classes):
        p, g = predicted == c, target == c
        scores.append((2.0 * (p & g).sum() + 1e-5) / (p.sum() + g.sum() + 1e-5))
    return float(torch.stack(scores).mean())


@dataclass
class PretrainResult:
    network: object
    optimizer_state: dict
    losses: list
    dice: list
    seconds: float
    resumed_at: int
    device: str
    patch: tuple

    @property
    def valid_pred(self) -> float:
        recent = self.dice[-VALID_WINDOW:]
        return float(np.mean(recent)) if recent else 0.0


def _state(network, optimizer, schedule, step, losses, dice, seconds) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "step": int(step),
        "network": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "losses": [float(v) for v in losses],
        "dice": [float(v) for v in dice],
        "seconds": float(seconds),
    }


def _restore(state: dict, network, optimizer, schedule) -> tuple:
    if state.get("format") != CHECKPOINT_FORMAT:
        raise PastaError(
            f"the checkpoint in this folder was not written by VolF pretraining; start again with {option('overwrite')}"
        )
    network.load_state_dict(state["network"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return int(state["step"]), list(state["losses"]), list(state["dice"]), float(state["seconds"])


def _tensors(samples: list, device: str) -> tuple:
    import torch

    x = torch.from_numpy(np.stack([s.fused for s in samples])[:, None]).to(device)
    y = torch.from_numpy(np.stack([s.labels for s in samples])[:, None].astype(np.float32)).to(device)
    return x, y


def pretrain(
    volumes: Sequence[Path],
    config: dict,
    settings: PretrainSettings,
    *,
    checkpoints: Checkpoints | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
) -> PretrainResult:
    """VolF pretraining of the network of ``config`` on the prepared ``volumes`` (``volume.npy``
    files of :mod:`.prepare`); returns the trained network and its log."""
    import torch

    from ... import deps
    from ...training.recipe import checkpoint_due, optimizer_step, require_monai, training_precision
    from .checkpoint import build_network

    require_monai()
    config = cfg.check_config(config)
    patch = settings.check(config)
    device = deps.torch_device_info(settings.device).kind
    report = reporter(progress)
    source = VolumeSource(volumes, config["hu_window"])
    classes = int(config["class_num"])
    torch.manual_seed(settings.seed)
    network = build_network(config).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=settings.lr_step, gamma=settings.lr_gamma)
    loss_function = volf_loss()
    # bf16 autocast on a CPU made VolF steps nondeterministic here and, with the next batch made in a
    # background thread, occasionally NaN (torch 2.13, oneDNN): mixed precision on CUDA only.
    dtype, scaled = training_precision(device, settings.amp) if device.startswith("cuda") else (None, False)
    scaler = torch.amp.GradScaler(device.split(":")[0]) if scaled else None
    start, losses, dice, seconds = 0, [], [], 0.0
    state = checkpoints.state(STAGE) if checkpoints is not None and resume else None
    if state is not None:
        start, losses, dice, seconds = _restore(state, network, optimizer, schedule)
    began, run_started = time.perf_counter() - seconds, time.perf_counter()
    network.train()
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(make_batch, source, patch, classes, settings, start)
        for step in range(start, settings.steps):
            if is_cancelled is not None and is_cancelled():
                raise CancelledError("cancelled; the last checkpoint is kept and the run resumes from it")
            samples = upcoming.result()
            if step + 1 < settings.steps:
                upcoming = pool.submit(make_batch, source, patch, classes, settings, step + 1)
            x, y = _tensors(samples, device)
            torch.manual_seed(_step_seed(settings.seed, step))  # dropout: the same draws in a resumed run
            with torch.autocast(device.split(":")[0], dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                logits = network(x)
            logits = logits.float()
            loss = loss_function(logits, y)
            if not torch.isfinite(loss):
                raise PastaError(f"the VolF loss is not finite at step {step + 1}; lower the learning rate ({option('lr')})")
            optimizer_step(loss, optimizer, schedule, scaler)
            losses.append(float(loss.detach()))
            dice.append(foreground_dice(logits.detach(), y, classes))
            done = step + 1
            if checkpoints is not None and checkpoint_due(done, settings.checkpoint_every, settings.steps):
                checkpoints.saver(STAGE)(_state(network, optimizer, schedule, done, losses, dice, time.perf_counter() - began))
            report(
                done / settings.steps,
                _message(done, settings.steps, losses, dice, time.perf_counter() - run_started, done - start),
            )
    network.eval()
    return PretrainResult(network, optimizer.state_dict(), losses, dice, time.perf_counter() - began, start, device, tuple(patch))


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(step)]).generate_state(1)[0])


def _message(done: int, total: int, losses: list, dice: list, seconds: float, run: int) -> str:
    left = seconds / max(run, 1) * (total - done) / 60
    tail = f", about {left:.0f} min left" if left >= 1 else ""
    return f"step {done}/{total} loss {np.mean(losses[-20:]):.3f} Dice {np.mean(dice[-20:]):.3f}{tail}"


def save_examples(folder: Path, source: VolumeSource, patch: tuple, classes: int, settings: PretrainSettings) -> int:
    """The first ``settings.save_examples`` training samples as ``examples/example_NNN.npz``."""
    count, step = settings.save_examples, 0
    if count < 1:
        return 0
    (folder / "examples").mkdir(parents=True, exist_ok=True)
    written = 0
    while written < count:
        for sample in make_batch(source, patch, classes, settings, step):
            if written == count:
                break
            np.savez_compressed(
                folder / "examples" / f"example_{written:03d}.npz",
                A=sample.a,
                B=sample.b,
                fused=sample.fused,
                label=sample.labels,
                K=np.int64(classes - 1),
            )
            written += 1
        step += 1
    return written


def write_pretrain_folder(
    folder: Path,
    config: dict,
    settings: PretrainSettings,
    result: PretrainResult,
    source: VolumeSource,
    summary: dict,
) -> dict:
    """``model.pt``, ``config.json``, ``log.json`` and the examples into ``folder`` (a staging
    folder); returns log.json's content."""
    import torch

    from .checkpoint import pymic_checkpoint

    folder = Path(folder)
    checkpoint = pymic_checkpoint(result.network.state_dict(), result.optimizer_state, settings.steps, result.valid_pred)
    torch.save(checkpoint, folder / "model.pt")
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    examples = save_examples(folder, source, result.patch, int(config["class_num"]), settings)
    log = {
        "method": "volf",
        "loss": [round(v, 6) for v in result.losses],
        "foreground_dice": [round(v, 5) for v in result.dice],
        "valid_pred": round(result.valid_pred, 5),
        "settings": {**settings.to_dict(), "patch": list(result.patch)},
        "network": cfg.describe(config),
        "images": source.names,
        "failed": summary.get("failed", []),
        "examples": examples,
        "device": result.device,
        "seconds": round(result.seconds, 1),
        "resumed_at_step": result.resumed_at,
    }
    (folder / "log.json").write_text(json.dumps(log, indent=2), encoding="utf-8")
    return log
