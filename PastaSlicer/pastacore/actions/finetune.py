"""Fine-tune: a segmentation model trained further on the user's own labelled cases (few-shot).

``pasta finetune`` and the Segment module's Fine-tune section (through the task process) build
a :class:`FinetuneOptions` and call :func:`run`, which reads the cases, trains, validates and
writes the model folder (``model.json`` + weights) that works as ``--model`` and imports into
the model store.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError, option
from ..progress import reporter
from .result import ActionResult

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..geometry.volume import Volume
    from ..progress import Cancelled, Progress
    from ..training.finetune import FinetuneSettings
    from ..training.start_model import StartModel

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
MAX_NAME = 100


@dataclass(frozen=True)
class FinetuneOptions:
    """What the user chose for a fine-tuning run (every front end builds one)."""

    model: str = ""  # start model: installed name, weight file, model folder or nnU-Net result folder; "" = built-in
    start: str = ""  # instead: a PyMIC / MIS-FM start (a PyMIC checkpoint, a pasta pretrain folder; families.pymic.start)
    start_config: str = ""  # the start checkpoint's network config (JSON, family pymic)
    name: str = ""  # the new model's name ("" = the output folder's name)
    steps: int | None = None  # training steps (None: PASTA's few-shot 2000, or epochs x 250)
    epochs: int | None = None  # nnU-Net epochs of 250 steps each
    batch_size: int = 2
    learning_rate: float | None = None  # None: 1e-3 for SGD, 3e-4 for AdamW
    optimizer: str = "sgd"  # sgd or adamw
    patch: tuple[int, ...] | None = None  # training patch (None: the model's own)
    deep_supervision: bool = True
    freeze_encoder_steps: int = 0
    synthetic_fraction: float = 0.0  # share of patches with a synthetic lesion pasted into the cases' organ
    synthetic_lesions: int = 20  # synthetic lesions made per case
    lesion_labels: tuple[int, ...] | None = None  # the lesions' values in the label maps (None: 2)
    organ_labels: tuple[int, ...] | None = None  # the organ's values in the label maps
    organ_source: str = "auto"  # auto, labels, classical, model or none
    organ: str = ""  # the organ of a start checkpoint that names none
    folds: int = 0  # k-fold cross-validation over the training cases (0: none)
    device: str = "auto"
    amp: bool = True  # mixed precision where the device has it
    seed: int = 0
    checkpoint_every: int = 50  # steps between checkpoints (0: none)

    def settings(self) -> FinetuneSettings:
        """The trainer's settings (checked)."""
        from ..training.finetune import EPOCH_STEPS, FEWSHOT_STEPS, FinetuneSettings

        if self.epochs is not None and self.epochs < 1:
            raise PastaError(f"{option('epochs')} must be at least 1, got {self.epochs}")
        if self.steps is not None and self.epochs is not None:
            raise PastaError(f"give {option('steps')} or {option('epochs')}, not both")
        steps = self.steps if self.steps is not None else self.epochs * EPOCH_STEPS if self.epochs is not None else FEWSHOT_STEPS
        settings = FinetuneSettings(
            steps=steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate if self.learning_rate is not None else (1e-3 if self.optimizer == "sgd" else 3e-4),
            optimizer=self.optimizer,
            deep_supervision=self.deep_supervision,
            freeze_encoder_steps=self.freeze_encoder_steps,
            synthetic_fraction=self.synthetic_fraction,
            synthetic_lesions=self.synthetic_lesions,
            patch=self.patch,
            seed=self.seed,
            device=self.device,
            amp=self.amp,
            checkpoint_every=self.checkpoint_every,
        )
        settings.check()
        return settings

    def check_start(self) -> None:
        """Refuse a start that cannot be, before any work (reads configs, not weights)."""
        if self.start_config and not self.start:
            raise PastaError(f"{option('start_config')} describes the checkpoint given with {option('start')}")
        if self.start and self.model:
            raise PastaError(f"start from {option('model')} or from {option('start')}, not both")
        if self.start:
            from ..families.pymic.start import resolve_start

            resolve_start(self.start, self.start_config or None)

    def start_model(self) -> StartModel:
        """The network training starts from (loaded)."""
        if self.start:
            from ..training.start_model import start_from

            return start_from(self.start, self.start_config or None, organ=self.organ or None)
        from ..training.start_model import load_start_model

        return load_start_model(self.model or None, organ=self.organ or None)

    def case_options(self) -> dict:
        """How label maps are read (load_case's keyword arguments)."""
        return {"lesion_labels": self.lesion_labels, "organ_labels": self.organ_labels, "organ_source": self.organ_source}


@dataclass
class FinetuneCase:
    image: str | Path | Volume  # a CT: path or Volume
    labels: str | Path | Volume  # its label map
    name: str = ""  # shown in validation results (default: the image's file name)


@dataclass
class FinetuneInputs:
    cases: list  # FinetuneCase: trained on
    out: str | Path  # the model folder to write (also holds the checkpoint while training)
    val_cases: list = field(default_factory=list)  # FinetuneCase: held out, scored before and after
    resume: bool = False  # continue the unfinished run whose checkpoint ``out`` holds
    overwrite: bool = False  # replace an earlier model's files (and an unfinished run's checkpoint) in ``out``
    keep_checkpoint: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> FinetuneInputs:
        """From a job's JSON: its cases as dicts."""
        data = dict(data)
        for key in ("cases", "val_cases"):
            data[key] = [case if isinstance(case, FinetuneCase) else FinetuneCase(**case) for case in data.get(key) or []]
        return cls(**data)


@dataclass
class FinetunedModel(ActionResult):
    folder: Path  # the model folder written
    name: str
    description: dict  # its model.json
    result: object  # training.finetune.FinetuneResult
    seconds: float
    steps: int

    def to_dict(self) -> dict:
        return {
            "folder": str(self.folder),
            "name": self.name,
            "validation": self.result.validation,
            "training_loss": self.description["training_loss"],
            "steps": self.steps,
        }


def model_name(options: FinetuneOptions, out: str | Path) -> str:
    """The new model's name: the options' name, else the output folder's."""
    name = options.name or re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(out).resolve().name).strip("-.") or "finetuned"
    if not re.fullmatch(NAME_PATTERN, name) or len(name) > MAX_NAME:
        raise PastaError(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (at most {MAX_NAME})")
    return name


def check(options: FinetuneOptions, inputs: FinetuneInputs) -> tuple:
    """Everything that can be refused before any work: ``(settings, checkpoints, name)``."""
    from ..fileio.atomic import check_folder_apart, check_output_dir
    from ..training.finetune import Checkpoints
    from ..training.model_folder import MODEL_FILES

    settings = options.settings()
    options.check_start()
    if not inputs.cases:
        raise PastaError("give at least one labelled case")
    if options.folds and not 2 <= options.folds <= len(inputs.cases):
        raise PastaError(
            f"{option('folds')} must be between 2 and the number of training cases ({len(inputs.cases)}), got {options.folds}"
        )
    for case in list(inputs.cases) + list(inputs.val_cases):
        for path in (case.image, case.labels):
            if isinstance(path, (str, Path)) and not Path(path).exists():
                raise PastaError(f"{path} does not exist")
    out = check_output_dir(inputs.out, inputs.overwrite, MODEL_FILES)
    folders = [
        Path(p) for c in list(inputs.cases) + list(inputs.val_cases) for p in (c.image, c.labels) if isinstance(p, (str, Path))
    ]
    check_folder_apart(out, [p for p in folders if p.is_dir()])
    name = model_name(options, out)
    checkpoints = Checkpoints(out)
    checkpoints.check_resume(out, inputs.resume, inputs.overwrite)
    return settings, checkpoints, name


def run(
    options: FinetuneOptions,
    inputs: FinetuneInputs,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
    say: Callable[[str], None] | None = None,
) -> FinetunedModel:
    """Read the cases, fine-tune the start model, validate, and write the model folder."""
    from .. import deps
    from ..fileio import as_volume
    from ..fileio.atomic import atomic_directory
    from ..training.cases import load_case
    from ..training.finetune import finetune
    from ..training.model_folder import MODEL_FILES, write_model_folder
    from ..training.recipe import require_monai

    started = time.perf_counter()
    report = reporter(progress)
    settings, checkpoints, name = check(options, inputs)
    require_monai()
    deps.torch_device_info(settings.device)  # an unavailable device is refused before any work
    start = options.start_model()
    settings.train_settings(start, "cpu")  # a patch that does not fit the network is refused before any work

    def labelled(case: FinetuneCase):
        name_of = case.name or (Path(str(case.image)).name if isinstance(case.image, (str, Path)) else "case")
        image, labels = as_volume(case.image), as_volume(case.labels, is_label=True)
        return load_case(image, labels, start, name=name_of, **options.case_options())

    report(0.0, "reading the cases")
    cases = [labelled(c) for c in inputs.cases]
    val_cases = [labelled(c) for c in inputs.val_cases]
    report(0.02, "cases read")
    out = Path(inputs.out)
    out.mkdir(exist_ok=True)
    result = finetune(
        cases,
        start,
        settings,
        val_cases=val_cases,
        folds=options.folds,
        checkpoints=checkpoints,
        resume=inputs.resume,
        progress=lambda f, m="": report(0.02 + 0.96 * f, m),
        is_cancelled=is_cancelled,
        say=say,
    )
    with atomic_directory(out, overwrite=inputs.overwrite, owned=MODEL_FILES) as folder:
        description = write_model_folder(folder, name, start, settings, cases, result, time.perf_counter() - started)
    if not inputs.keep_checkpoint:
        checkpoints.clear()
    report(1.0, f"model {name} written")
    return FinetunedModel(out, name, description, result, time.perf_counter() - started, settings.steps)


def write(
    made: FinetunedModel,
    options: FinetuneOptions,
    store: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Install the model folder into the model store (``store``: its root, None = the user's)."""
    from ..modelstore.store import ModelStore

    installed = ModelStore(store or None).import_file(made.folder, name=made.name, overwrite=overwrite)
    if progress is not None:
        progress(1.0, f"model {installed.name} added")
    return {"model": installed.name, "path": str(installed.path)}


OPTIONS, INPUTS = FinetuneOptions, FinetuneInputs
