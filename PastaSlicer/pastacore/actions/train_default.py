"""Train the built-in default model again: synthetic lung lesions in real chest CTs (the real
tumours excluded from training), scored on the real tumours; ``pasta train-default`` builds a
:class:`TrainDefaultOptions` and calls :func:`run`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError, option
from ..progress import reporter
from .result import ActionResult

if TYPE_CHECKING:
    from ..progress import Cancelled, Progress


@dataclass(frozen=True)
class TrainDefaultOptions:
    backgrounds: tuple[str, ...] = ("lung1", "lung2")  # sample cases used as backgrounds
    evaluate_on: tuple[str, ...] = ()  # sample cases whose real tumours are scored after training
    steps: int = 1500
    lesions: int = 80  # synthetic lesions per background
    patch: int = 96
    base_features: int = 8
    spatial_augmentation: float = 0.5  # share of patches randomly rotated and scaled
    elastic_mm: float = 0.0  # smooth random warp of the rotated and scaled patches
    pleura_mm: int = 0  # how far lesions against the wall may reach past the air-based lung mask
    hard_negative_steps: int = 0  # a second stage centred on the first stage's own false positives
    zone_mm: int | None = None  # no patch or lesion this close to a real tumour's box (None: half a patch + 10 mm)
    seed: int = 0

    def check(self) -> None:
        if not self.backgrounds:
            raise PastaError("give at least one background case")
        if self.zone_mm is not None and self.zone_mm < 0:
            raise PastaError(f"{option('zone_mm')} must be 0 or more, got {self.zone_mm}")


@dataclass
class TrainDefaultInputs:
    out: str | Path  # the model folder (weights, model.json, metrics)
    overwrite: bool = False  # replace the files of an earlier model there (other files are kept)


@dataclass
class TrainedDefault(ActionResult):
    folder: Path
    metrics: dict  # what the model card records, the evaluation included

    def to_dict(self) -> dict:
        return dict(self.metrics)


def run(
    options: TrainDefaultOptions,
    inputs: TrainDefaultInputs,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
) -> TrainedDefault:
    import platform
    import time

    import torch

    from ..fileio.atomic import atomic_directory, check_output_dir
    from ..training.default_card import MODEL_FILES, training_precision_name, write_default_model
    from ..training.default_model import default_zone_mm, evaluate, evaluate_tilings, load_background, train_default
    from ..training.recipe import require_monai
    from ..training.trainer import TrainSettings

    options.check()
    say = reporter(progress)
    require_monai()
    patch = (options.patch,) * 3
    settings = TrainSettings(
        base_features=options.base_features,
        num_pool=4,
        patch_size=patch,
        steps=options.steps,
        seed=options.seed,
        spatial_augmentation=options.spatial_augmentation,
        elastic_mm=options.elastic_mm,
    )
    started = time.perf_counter()
    check_output_dir(inputs.out, inputs.overwrite, MODEL_FILES)
    with atomic_directory(inputs.out, overwrite=inputs.overwrite, owned=MODEL_FILES) as folder:
        backgrounds = [load_background(n, patch, options.zone_mm) for n in options.backgrounds]
        trained = train_default(
            backgrounds,
            settings,
            options.lesions,
            lambda f, m: say(0.9 * f, m),
            pleura_mm=options.pleura_mm,
            hard_negative_steps=options.hard_negative_steps,
        )
        network, log, pool = trained.network, trained.log, trained.pool
        # score exactly what ships: the weights rounded to fp16, as stored
        network.load_state_dict({k: v.half().float() for k, v in network.state_dict().items()})
        scores, tilings = [], []
        for n in options.evaluate_on:
            bg = next((b for b in backgrounds if b.name == n), None) or load_background(n, patch)
            plain = evaluate(network, bg, patch)  # as `pasta segment` runs it, and with --tta
            scores += [dict(plain.__dict__, tta=False), dict(evaluate(network, bg, patch, tta=True).__dict__, tta=True)]
            tilings.append(evaluate_tilings(network, bg, patch, unshifted=plain))
        say(1.0, "saved")
        metrics = {
            "backgrounds": list(options.backgrounds),
            "synthetic_lesions": pool,
            "steps": options.steps,
            "patch": list(patch),
            "base_features": options.base_features,
            "seed": options.seed,
            "spatial_augmentation": options.spatial_augmentation,
            "elastic_mm": options.elastic_mm,
            "pleura_mm": options.pleura_mm,
            "zone_mm": default_zone_mm(options.patch) if options.zone_mm is None else options.zone_mm,
            "hard_negative_steps": options.hard_negative_steps,
            "mined_false_positive_ml": trained.mined_ml,
            "train_seconds": round(log.seconds + (trained.second_log.seconds if trained.second_log else 0)),
            "total_seconds": round(time.perf_counter() - started),
            "final_loss": float(sum(log.losses[-50:]) / 50),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "evaluation": scores,
            "trainer": "monai",
            "precision": training_precision_name(),
            "evaluation_tilings": tilings,
        }
        write_default_model(folder, network, metrics, reproduce_command(metrics, options))
    return TrainedDefault(Path(inputs.out), metrics)


def reproduce_command(metrics: dict, options: TrainDefaultOptions) -> str:
    """The command line that trains this model again (for its model card)."""
    from ..training.default_card import zone_is_set

    evaluate_on = options.evaluate_on if isinstance(options.evaluate_on, str) else ",".join(options.evaluate_on)
    return (
        f"pasta train-default --backgrounds {','.join(metrics['backgrounds'])} --steps {metrics['steps']} "
        f"--lesions {options.lesions} --patch {options.patch} --base-features {options.base_features} --seed {options.seed} "
        f"--spatial-augmentation {options.spatial_augmentation} --pleura-mm {metrics.get('pleura_mm', 0)}"
        + (f" --elastic-mm {metrics['elastic_mm']:g}" if metrics.get("elastic_mm") else "")
        + (f" --hard-negative-steps {metrics['hard_negative_steps']}" if metrics.get("hard_negative_steps") else "")
        + (f" --zone-mm {metrics['zone_mm']}" if zone_is_set(metrics) else "")
        + (f" --evaluate-on {evaluate_on}" if evaluate_on else "")
        + " --out DIR"
    )


OPTIONS, INPUTS = TrainDefaultOptions, TrainDefaultInputs
