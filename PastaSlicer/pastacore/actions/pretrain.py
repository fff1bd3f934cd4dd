"""Pretrain: a segmentation network pretrained by self-supervision on a user's own CTs.

``pasta pretrain --method volf`` and the Slicer module's Pretrain action (in the task process)
build a :class:`PretrainOptions` and call :func:`run`. Method ``volf`` is MIS-FM's Volume
Fusion on FMUNet or PCT-Net (:mod:`pastacore.families.pymic.pretrain`):

1. the CTs are prepared as a cohort on the cohort engine (in this process, or on Dask workers
   with ``scheduler``), into ``OUT/prepared/``; a rerun skips what is prepared;
2. the network trains on VolF pairs drawn from them, checkpointing into ``OUT/checkpoint/``
   (``resume`` goes on from there);
3. ``OUT`` receives ``model.pt`` (a PyMIC checkpoint), ``config.json``, ``log.json`` and
   ``examples/*.npz``: a fine-tuning start (``pasta finetune --start OUT``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError, option
from ..progress import reporter
from .result import ActionResult

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..families.pymic.pretrain import PretrainSettings
    from ..progress import Cancelled, Progress


METHODS = ("volf",)
PRECISIONS = ("auto", "fp32")
PREPARED = "prepared"


@dataclass(frozen=True)
class PretrainOptions:
    """What the user chose for a pretraining run (every front end builds one)."""

    method: str = "volf"
    steps: int = 1000
    config: str = ""  # the network's config (JSON, family pymic); "" = the lung demo's FMUNet (5 classes)
    patch: tuple[int, ...] | None = None  # training patch; None: PCT-Net's input_size, else 64x128x128
    batch_size: int = 2
    learning_rate: float = 1e-3
    seed: int = 0
    save_examples: int = 0  # how many VolF samples to keep as examples/*.npz
    device: str = "auto"
    precision: str = "auto"  # auto (bf16/fp16 where the device has it) or fp32
    scheduler: str = "inline"  # where CTs are prepared: inline, local (Dask) or a scheduler's address
    workers: int | None = None
    checkpoint_every: int = 100

    def check(self) -> None:
        """Refuse values that cannot work, before any heavy work."""
        from ..deps import check_device

        if self.method not in METHODS:
            raise PastaError(f"{option('method')} must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.precision not in PRECISIONS:
            raise PastaError(f"{option('precision')} must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.scheduler not in ("inline", "local") and "://" not in self.scheduler:
            raise PastaError(
                f"{option('scheduler')} takes local, inline or an address such as tcp://host:8786, got {self.scheduler!r}"
            )
        if self.workers is not None and self.workers < 1:
            raise PastaError(f"{option('workers')} must be at least 1, got {self.workers}")
        if self.patch is not None and (len(self.patch) != 3 or min(self.patch) < 1):
            raise PastaError(f"{option('patch')} takes N or D,H,W voxels, got {self.patch}")
        check_device(self.device)
        self.settings().check(self.network_config())

    def network_config(self) -> dict:
        """The checked network config (the file ``config`` names, or the demo's)."""
        from ..families.pymic.config import FAMILY
        from ..families.pymic.pretrain import default_config

        if not self.config:
            return default_config()
        from ..families import read_model_config

        config = read_model_config(self.config)
        if config.get("family") != FAMILY:
            raise PastaError(
                f"VolF pretrains PyMIC networks: {option('config')} must name family {FAMILY!r}, not {config.get('family')!r}"
            )
        return config

    def settings(self) -> PretrainSettings:
        from ..families.pymic.pretrain import PretrainSettings

        return PretrainSettings(
            steps=self.steps,
            patch=tuple(self.patch) if self.patch else None,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seed,
            save_examples=self.save_examples,
            checkpoint_every=self.checkpoint_every,
            device=self.device,
            amp=self.precision == "auto",
        )


@dataclass
class PretrainInputs:
    images: list  # CT files, folders, globs or a cohort CSV
    out: str | Path  # the folder to write (also holds the prepared CTs and the checkpoint)
    resume: bool = False  # continue the unfinished run whose checkpoint ``out`` holds
    overwrite: bool = False  # replace an earlier result (and an unfinished run's checkpoint) in ``out``


@dataclass
class PretrainedNetwork(ActionResult):
    folder: Path  # the folder written
    log: dict  # its log.json

    def to_dict(self) -> dict:
        """The result a front end reads back (the per-step curves stay in log.json)."""
        summary = {k: v for k, v in self.log.items() if k not in ("loss", "foreground_dice")}
        return {**summary, "out": str(self.folder), "final_loss": self.log["loss"][-1]}


def check(options: PretrainOptions, inputs: PretrainInputs) -> Path:
    """Everything that can be refused before any work; returns the output folder. A folder
    holding an earlier result is refused without ``overwrite``, one holding an unfinished run's
    checkpoint without ``resume`` or ``overwrite``."""
    from ..families.pymic.pretrain import PRETRAIN_FILES
    from ..fileio.atomic import check_output_dir
    from ..training.finetune import Checkpoints

    options.check()
    if not inputs.images:
        raise PastaError("give the CTs to pretrain on")
    out = check_output_dir(inputs.out, inputs.overwrite or inputs.resume, PRETRAIN_FILES)
    checkpoints = Checkpoints(out)
    checkpoints.check_resume(out, inputs.resume, inputs.overwrite)
    return out


def run(
    options: PretrainOptions,
    inputs: PretrainInputs,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
    say: Callable[[str], None] | None = None,
) -> PretrainedNetwork:
    """Pretrain on ``inputs.images`` into the folder ``inputs.out`` (see the module notes)."""
    from ..families.pymic.prepare import prepare_cohort
    from ..families.pymic.pretrain import PRETRAIN_FILES, VolumeSource, pretrain, write_pretrain_folder
    from ..fileio.atomic import atomic_directory
    from ..training.finetune import Checkpoints
    from ..training.recipe import require_monai

    out = check(options, inputs)
    require_monai()
    config = options.network_config()
    settings = options.settings()
    report = reporter(progress)
    say = say or (lambda text: None)
    made = [f for f in (out, out / PREPARED) if not f.exists()]  # what a run with no usable CT takes back
    out.mkdir(exist_ok=True)
    volumes, summary = prepare_cohort(
        [str(i) for i in inputs.images],
        out / PREPARED,
        config["hu_window"],
        scheduler=options.scheduler,
        workers=options.workers,
        progress=lambda f, m="": report(0.1 * f, f"preparing: {m}"),
        is_cancelled=is_cancelled,
        notify=say,
    )
    for failure in summary["failed"]:
        say(f"{failure['case_id']}: left out ({failure['error']})")
    if not volumes:
        _take_back(made)
        raise PastaError("no CT could be prepared for pretraining; see the failures above")
    checkpoints = Checkpoints(out)
    run_key = {
        "method": options.method,
        "config": config,
        "settings": settings.to_dict(),
        "images": [v.parent.name for v in volumes],
    }
    checkpoints.start(run_key, inputs.resume)
    result = pretrain(
        volumes,
        config,
        settings,
        checkpoints=checkpoints,
        resume=inputs.resume,
        progress=lambda f, m="": report(0.1 + 0.88 * f, m),
        is_cancelled=is_cancelled,
    )
    with atomic_directory(out, overwrite=True, owned=PRETRAIN_FILES) as folder:
        log = write_pretrain_folder(folder, config, settings, result, VolumeSource(volumes, config["hu_window"]), summary)
    checkpoints.clear()
    report(1.0, "pretrained")
    return PretrainedNetwork(out, log)


def _take_back(made: list) -> None:
    """Remove the outermost folder this run created (``made`` lists them outermost first): nothing
    is left of a run that had no CT to train on. Folders that were there before are kept."""
    import shutil

    if made:
        shutil.rmtree(made[0], ignore_errors=True)


OPTIONS, INPUTS = PretrainOptions, PretrainInputs
