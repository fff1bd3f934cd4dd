"""Few-shot fine-tuning of a PASTA-topology network on a user's own labelled cases.

The recipe follows PASTA's fine-tuning trainers (nnU-Net v2 ``PASTATrainer_fewshot``):
SGD with Nesterov momentum 0.99, learning rate 1e-3 with nnU-Net's poly decay, Dice +
cross-entropy with deep supervision, patches of the model's own size with foreground
oversampling (a third centred on the lesions, a third on the organ, a third on other
tissue), rotation and scaling of a fifth of the patches, flips and HU augmentation, mixed
precision where the device has it. Options: AdamW, a share of patches with synthetic lesions
pasted into the user's own cases, an encoder kept fixed for the first steps.

Validation segments held-out cases as ``pasta segment`` does, before and after fine-tuning
(:mod:`.validation`), from ``--val`` cases or by k-fold cross-validation (each fold trained
from the start model on the other cases; the model written is then trained on all cases).
Every stage writes a checkpoint every N steps, and a run resumes where it stopped.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError, option
from ..progress import reporter
from .trainer import TrainLog, TrainSettings, time_one_step, train

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..progress import Cancelled, Progress
    from .cases import LabelledCase
    from .start_model import StartModel


EPOCH_STEPS = 250  # nnU-Net's iterations per epoch (--epochs N = N x 250 steps)
FEWSHOT_STEPS = 2000  # PASTATrainer_fewshot: 10 epochs of 200 iterations
CHECKPOINT_FOLDER = "checkpoint"
RUN_FILE = "run.json"


@dataclass
class FinetuneSettings:
    steps: int = FEWSHOT_STEPS
    batch_size: int = 2
    learning_rate: float = 1e-3
    optimizer: str = "sgd"
    schedule: str = "poly"
    deep_supervision: bool = True
    freeze_encoder_steps: int = 0
    synthetic_fraction: float = 0.0
    synthetic_lesions: int = 20  # synthetic lesions made per training case (when synthetic_fraction > 0)
    spatial_augmentation: float = 0.2
    patch: tuple | None = None  # training patch (None: the model's own; inference keeps the model's)
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    checkpoint_every: int = 50
    threads: int | None = None

    def check(self) -> None:
        if self.steps < 1:
            raise PastaError(f"{option('steps')} must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            raise PastaError(f"{option('batch_size')} must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise PastaError(f"{option('lr')} must be positive, got {self.learning_rate}")
        if not 0.0 <= self.synthetic_fraction <= 1.0:
            raise PastaError(f"{option('synthetic_fraction')} must be between 0 and 1, got {self.synthetic_fraction}")
        if self.freeze_encoder_steps < 0 or self.checkpoint_every < 0 or self.synthetic_lesions < 1:
            raise PastaError(
                f"{option('freeze_encoder_steps')} and {option('checkpoint_every')} must be 0 or more, "
                f"{option('synthetic_lesions')} 1 or more"
            )

    def train_settings(self, start: StartModel, device: str) -> TrainSettings:
        net = start.network
        patch = tuple(int(p) for p in (self.patch or start.patch_size))
        freeze = self.freeze_encoder_steps
        if start.family:  # a PyMIC network: its own patch rule; finetune_mode "decoder" keeps the encoder fixed
            from ..families.pymic.config import check_patch

            patch = check_patch(start.config, patch)
            if start.config.get("finetune_mode") == "decoder":
                freeze = self.steps
        elif len(patch) != 3 or any(p < net.divisor or p % net.divisor for p in patch):
            raise PastaError(
                f"patch size {'x'.join(map(str, patch))} does not fit this network: each side must be a "
                f"multiple of {net.divisor} ({net.num_pool} poolings)"
            )
        return TrainSettings(
            base_features=getattr(net, "base_features", 0),
            num_pool=getattr(net, "num_pool", 0),
            num_classes=start.num_classes,
            patch_size=patch,
            batch_size=self.batch_size,
            steps=self.steps,
            learning_rate=self.learning_rate,
            class_ratios=tuple(patch_ratios(start)),
            seed=self.seed,
            threads=self.threads,
            spatial_augmentation=self.spatial_augmentation,
            optimizer=self.optimizer,
            schedule=self.schedule,
            deep_supervision=self.deep_supervision,
            dice_smooth=1e-5,
            freeze_encoder_steps=freeze,
            device=device,
            amp=self.amp,
            checkpoint_every=self.checkpoint_every,
        )


def patch_ratios(start: StartModel) -> list:
    """Share of patches centred on each class: a third on lesions, a third on the organ (a half
    each without one), the rest on other tissue."""
    ratios = [0.0] * start.num_classes
    organs, lesions = list(start.organ_values), list(start.lesion_values)
    parts = [(lesions, 1 / 3), (organs, 1 / 3)] if organs else [(lesions, 1 / 2)]
    for values, share in parts:
        for v in values:
            ratios[v] = share / len(values)
    ratios[0] = 1.0 - sum(ratios)
    return ratios


@dataclass
class Stage:
    """One training run: on ``train`` cases, scored on ``held_out`` cases."""

    name: str
    train: list
    held_out: list


@dataclass
class FinetuneResult:
    network: object
    log: TrainLog
    synthetic_lesions: int = 0
    validation: list = field(default_factory=list)  # per held-out case: {"case", "before": {...}, "after": {...}, "fold"}
    folds: int = 0
    step_seconds: float | None = None
    device: str = "cpu"


class Checkpoints:
    """``<folder>/checkpoint/``: one resumable state per stage, the results of finished stages,
    and what the run is (so a resume with other settings or cases is refused)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder) / CHECKPOINT_FOLDER

    def exists(self) -> bool:
        return (self.folder / RUN_FILE).is_file()

    def describe(self) -> str:
        done = sorted(p.stem for p in self.folder.glob("*.json") if p.name != RUN_FILE)
        partial = sorted(p.stem for p in self.folder.glob("*.pt"))
        return ", ".join([f"{n} finished" for n in done] + [f"{n} under way" for n in partial]) or "nothing yet"

    def check_resume(self, out: Path, resume: bool, overwrite: bool) -> None:
        """Refuse an unfinished run's folder without ``resume`` or ``overwrite``, and ``resume``
        where there is nothing to resume (before any work)."""
        if self.exists() and not (resume or overwrite):
            raise PastaError(
                f"{out} holds the checkpoint of an unfinished run ({self.describe()}); pass {option('resume')} "
                f"to continue it or {option('overwrite')} to start again"
            )
        if resume and not self.exists():
            raise PastaError(f"nothing to resume: {out} holds no checkpoint of an earlier run")

    def start(self, run: dict, resume: bool) -> None:
        run = json.loads(json.dumps(run))  # as it is stored (tuples become lists)
        if resume:
            if not self.exists():
                raise PastaError(f"nothing to resume: {self.folder} holds no checkpoint of an earlier run")
            earlier = json.loads((self.folder / RUN_FILE).read_text(encoding="utf-8"))
            differ = sorted(k for k in set(run) | set(earlier) if run.get(k) != earlier.get(k))
            if differ:
                raise PastaError(
                    f"the checkpoint in {self.folder} is of a run with other {', '.join(differ)}; "
                    f"resume with the same command, or start again with {option('overwrite')}"
                )
            return
        self.clear()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_text(RUN_FILE, json.dumps(run, indent=2))

    def state(self, stage: str) -> dict | None:
        from ..networks.checkpoints import load_checkpoint

        path = self.folder / f"{stage}.pt"
        return load_checkpoint(path) if path.is_file() else None

    def saver(self, stage: str) -> Callable[[dict], None]:
        def save(state: dict) -> None:
            import torch

            from ..fileio.atomic import atomic_outputs

            with atomic_outputs(self.folder / f"{stage}.pt", overwrite=True) as temp:
                torch.save(state, temp)

        return save

    def finished(self, stage: str) -> dict | None:
        path = self.folder / f"{stage}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def finish(self, stage: str, results: list) -> None:
        self._write_text(f"{stage}.json", json.dumps(results, indent=2))
        (self.folder / f"{stage}.pt").unlink(missing_ok=True)

    def clear(self) -> None:
        import shutil

        if self.folder.is_dir():
            shutil.rmtree(self.folder)

    def _write_text(self, name: str, text: str) -> None:
        from ..fileio.atomic import atomic_outputs

        with atomic_outputs(self.folder / name, overwrite=True) as temp:
            temp.write_text(text, encoding="utf-8")


def run_description(
    start: StartModel, settings: FinetuneSettings, cases: Sequence[LabelledCase], val_cases: Sequence[LabelledCase], folds: int
) -> dict:
    """What identifies a run (a resume must match it)."""
    return {
        "start model": start.provenance.get("sha256") or start.provenance.get("name"),
        "settings": asdict(settings),
        "cases": [c.name for c in cases],
        "validation cases": [c.name for c in val_cases],
        "folds": int(folds),
    }


def fold_stages(cases: Sequence[LabelledCase], folds: int) -> list:
    """k-fold stages (each case held out once; cases dealt round-robin), then the final one on all."""
    if folds:
        if folds < 2 or folds > len(cases):
            raise PastaError(f"{option('folds')} must be between 2 and the number of cases ({len(cases)}), got {folds}")
    stages = (
        [
            Stage(
                f"fold_{k}",
                [c for i, c in enumerate(cases) if i % folds != k],
                [c for i, c in enumerate(cases) if i % folds == k],
            )
            for k in range(folds)
        ]
        if folds
        else []
    )
    return stages + [Stage("final", list(cases), [])]


def _sampler(stage_cases, start, settings: FinetuneSettings, train_settings, progress, is_cancelled):
    from .cases import lesion_type_for, mixed_sampler, synthetic_pool, synthetic_sampler
    from .trainer import CaseSampler

    real = CaseSampler([(c.hu, c.targets) for c in stage_cases], train_settings)
    if settings.synthetic_fraction <= 0:
        return real, 0
    lesion_type = lesion_type_for(start.organ)
    pool = synthetic_pool(
        stage_cases, settings.synthetic_lesions, settings.seed, lesion_type, start.lesion_values[0], progress, is_cancelled
    )
    if not pool:
        raise PastaError("no synthetic lesion could be placed in the cases' organ")
    return mixed_sampler(
        real, synthetic_sampler(stage_cases, pool, train_settings.patch_size, start.lesion_values[0]), settings.synthetic_fraction
    ), len(pool)


def _train_stage(stage: Stage, start, settings: FinetuneSettings, train_settings, checkpoints, report, is_cancelled):
    """``(network, TrainLog, synthetic lesions made)`` of one stage, resumed from its checkpoint if any."""
    sampler, pooled = _sampler(stage.train, start, settings, train_settings, lambda f, m="": report(0.1 * f, m), is_cancelled)
    state = checkpoints.state(stage.name) if checkpoints is not None else None
    network, log = train(
        [],
        train_settings,
        sample_patch=sampler,
        network=copy.deepcopy(start.network),
        normalize=start.segmentation_model().normalize,
        resume=state,
        save_checkpoint=checkpoints.saver(stage.name) if checkpoints is not None else None,
        is_cancelled=is_cancelled,
        progress=lambda f, m="": report(0.1 + 0.6 * f, f"{stage.name}: {m}"),
    )
    return network, log, pooled


def _validate(held_out, start, network, before: dict, device, fold, report, is_cancelled) -> list:
    """Before (the start model, once per case) and after (``network``) scores of ``held_out``."""
    from .validation import validate_case

    rows = []
    for n, case in enumerate(held_out):
        if case.name not in before:
            before[case.name] = (
                validate_case(start.segmentation_model(), case, device, is_cancelled=is_cancelled) if start.head_loaded else None
            )
        after = validate_case(start.segmentation_model(network), case, device, is_cancelled=is_cancelled)
        rows.append({"case": case.name, "fold": fold, "before": before[case.name], "after": after})
        report(0.7 + 0.3 * (n + 1) / len(held_out), f"validated {case.name}")
    return rows


def finetune(
    cases: Sequence[LabelledCase],
    start: StartModel,
    settings: FinetuneSettings,
    *,
    val_cases: Sequence[LabelledCase] = (),
    folds: int = 0,
    checkpoints: Checkpoints | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
    say: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """Fine-tune ``start`` (a :class:`~.start_model.StartModel`) on ``cases``; validate on
    ``val_cases`` and/or by ``folds``-fold cross-validation, before and after."""
    from .. import deps

    settings.check()
    if not cases:
        raise PastaError("give at least one labelled case to fine-tune on")
    device = deps.torch_device_info(settings.device).kind
    report = reporter(progress)
    say = say or (lambda text: None)
    stages = fold_stages(cases, folds)
    if checkpoints is not None:
        checkpoints.start(run_description(start, settings, cases, val_cases, folds), resume)
    train_settings = settings.train_settings(start, device)
    step_seconds = time_one_step(copy.deepcopy(start.network), train_settings)
    estimate = (
        f"one training step takes about {step_seconds:.1f} s on {device.upper()}: {len(stages)} run(s) of "
        f"{settings.steps} steps, about {_duration(step_seconds * settings.steps * len(stages))} of training"
        + (" plus validation" if folds or val_cases else "")
    )
    say(estimate)
    report(0.0, estimate)
    before, fold_rows, span = {}, [], 1.0 / len(stages)
    for index, stage in enumerate(stages[:-1]):
        stage_report = lambda f, m="", b=index * span: report(b + span * f, m)
        rows = checkpoints.finished(stage.name) if checkpoints is not None else None
        if rows is None:
            network, _log, _pooled = _train_stage(stage, start, settings, train_settings, checkpoints, stage_report, is_cancelled)
            rows = _validate(stage.held_out, start, network, before, device, stage.name, stage_report, is_cancelled)
            if checkpoints is not None:
                checkpoints.finish(stage.name, rows)
        else:
            say(f"{stage.name}: finished in the earlier run; its scores are kept")
        for row in rows:
            before.setdefault(row["case"], row["before"])
        fold_rows += rows
    final_report = lambda f, m="": report((len(stages) - 1) * span + span * f, m)
    network, log, pooled = _train_stage(stages[-1], start, settings, train_settings, checkpoints, final_report, is_cancelled)
    rows = _validate(val_cases, start, network, before, device, None, final_report, is_cancelled)
    report(1.0, "fine-tuned")
    return FinetuneResult(network, log, pooled, fold_rows + rows, folds, step_seconds, device)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def mean_losses(losses: list, window: int = 20) -> dict:
    """First and last mean training loss (a run that learnt lowers it)."""
    if not losses:
        return {"first": None, "last": None}
    n = min(window, max(len(losses) // 2, 1))
    return {"first": round(float(np.mean(losses[:n])), 4), "last": round(float(np.mean(losses[-n:])), 4)}
