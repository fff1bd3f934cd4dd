"""The folder a fine-tuning run writes: it works as ``--model`` everywhere and imports into the
model store (``pasta models import DIR``).

* ``model.pth`` — the network's state dict (fp32; PASTA's parameter names);
* ``model.json`` — name, task, architecture, labels (terms), patch size, normalisation, the
  weights' SHA256, the model it started from, the recipe;
* ``README.md`` — the model card: data used, recipe, validation before and after, limits;
* ``validation.json`` — per held-out case, before and after: Dice, HD95, surface Dice,
  lesions found / missed, false positives (count, mL);
* ``training.json`` — settings, loss per step, time and machine.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .cases import LabelledCase
    from .finetune import FinetuneResult, FinetuneSettings
    from .start_model import StartModel


MODEL_FILES = ("model.pth", "model.json", "README.md", "validation.json", "training.json")


def _labels(start) -> list:
    return [{"value": int(v), "term": str(t)} for v, t in sorted(start.labels.items())]


def model_description(
    name: str, start: StartModel, settings: FinetuneSettings, cases: Sequence[LabelledCase], sha256: str
) -> dict:
    description = {
        "name": name,
        "version": "finetuned",
        "task": "segmentation",
        "description": f"{start.provenance.get('name')} fine-tuned on {len(cases)} labelled case(s) with pasta finetune.",
        "architecture": _architecture(start),
        "input_spacing_mm": [1.0, 1.0, 1.0],
        "normalization": _normalization(start),
        "patch_size": [int(p) for p in start.patch_size],
        "labels": _labels(start),
        "weights": "model.pth",
        "files": [{"name": "model.pth", "sha256": sha256}],
        "license": "that of the start model's weights; fine-tuned by the user",
        "source": "pasta finetune",
        "base_model": start.provenance,
        "finetune": {"cases": [c.name for c in cases], **_recipe(settings)},
    }
    if start.normalization:
        description["normalization_stats"] = start.normalization
    if start.family:  # a model family's network: pasta segment resolves it through the family
        description["family"] = start.family
        description["config"] = start.config
        description["start"] = {
            "sha256": start.provenance.get("sha256"),
            "kind": start.provenance.get("kind"),
            "loaded": list(start.loaded),
            "skipped": list(start.skipped),
            "fresh": list(start.fresh),
        }
    return description


def _architecture(start) -> dict:
    net = start.network
    if start.family:
        return {"type": f"{start.family}:{start.config['net_type']}", "input_channels": 1, "num_classes": start.num_classes}
    return {
        "type": "pasta_generic_unet",
        "base_features": net.base_features,
        "num_pool": net.num_pool,
        "input_channels": 1,
        "num_classes": start.num_classes,
        "max_features": net.max_features,
    }


def _normalization(start) -> str:
    if start.family:
        low, high = start.config["hu_window"]
        return f"hu_window [{low:g}, {high:g}] -> [-1, 1]"
    return "nnunet_ct" if start.normalization else "pasta_slf"


def _network_text(start) -> str:
    """How the model card names the network and its input."""
    if start.family:
        from ..families.pymic.config import describe

        low, high = start.config["hu_window"]
        return f"HU clipped to [{low:g}, {high:g}] and mapped to [-1, 1]; {describe(start.config)} (PyMIC / MIS-FM)"
    net = start.network
    normalisation = "nnU-Net CT normalisation" if start.normalization else "PASTA's HU normalisation (SLF)"
    return f"{normalisation}; PASTA's network topology ({net.base_features} base features, {net.num_pool} poolings)"


def _recipe(settings) -> dict:
    from dataclasses import asdict

    return {k: v for k, v in asdict(settings).items() if k not in ("device", "threads")}


def _row(name: str, before: dict | None, after: dict) -> str:
    def cell(scores, key, digits=3):
        value = None if scores is None else scores.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}"

    def found(scores):
        return "n/a" if scores is None else f"{scores['found']} of {scores['lesions']}"

    def false(scores):
        return "n/a" if scores is None else f"{scores['false_positives']} ({scores['false_positive_ml']:.1f} mL)"

    return (
        f"| {name} | {cell(before, 'dice')} → {cell(after, 'dice')} | {cell(before, 'hd95_mm', 1)} → "
        f"{cell(after, 'hd95_mm', 1)} | {cell(before, 'surface_dice')} → {cell(after, 'surface_dice')} | "
        f"{found(before)} → {found(after)} | {false(before)} → {false(after)} |"
    )


def validation_table(rows: list) -> str:
    if not rows:
        return "No case was held out (give `--val-images/--val-labels` or `--folds K`): this model has not been validated.\n"
    lines = "\n".join(_row(r["case"] + (f" ({r['fold']})" if r.get("fold") else ""), r["before"], r["after"]) for r in rows)
    return (
        "Each held-out case segmented as `pasta segment` does by default, before (the start model) → after "
        "(this model). HD95 in mm; surface Dice at 2 mm; a lesion counts as found when the prediction "
        "overlaps it; false positives are predicted pieces touching no real lesion.\n\n"
        "| case | Dice | HD95 (mm) | surface Dice | lesions found | false positives |\n|---|---|---|---|---|---|\n" + lines + "\n"
    )


def model_card(
    description: dict,
    start: StartModel,
    settings: FinetuneSettings,
    cases: Sequence[LabelledCase],
    result: FinetuneResult,
    seconds: float,
    machine: str,
) -> str:
    data = "\n".join(f"| {c.name} | {c.lesion_ml:.1f} | {c.organ_source} |" for c in cases)
    folds = (
        f" The scores come from {result.folds}-fold cross-validation: each fold's model was trained from the "
        "start model on the other cases; this model was then trained on all of them."
        if result.folds
        else ""
    )
    synthetic = (
        f"{round(100 * settings.synthetic_fraction)} % of the patches with one of {result.synthetic_lesions} "
        "synthetic lesions pasted into the cases' organ (at least 10 mm from the real lesions)"
        if settings.synthetic_fraction > 0
        else "no synthetic lesions"
    )
    frozen = f", encoder fixed for the first {settings.freeze_encoder_steps} steps" if settings.freeze_encoder_steps else ""
    return f"""# {description["name"]}: fine-tuned from {start.provenance.get("name")}

**Research use only. Not for diagnosis.**

- **What it does:** segments {", ".join(f"{v} = {t}" for v, t in sorted(start.labels.items()))} in CT, on
  PASTA's 1 mm grid with {_network_text(start)},
  patch {"x".join(map(str, start.patch_size))}.
- **Started from:** {start.provenance.get("name")} ({start.provenance.get("kind")}, {start.provenance.get("file")},
  SHA256 {str(start.provenance.get("sha256"))[:12]}...){"" if start.head_loaded else "; its segmentation outputs did not fit these labels and started fresh"}.
- **Data:** {len(cases)} labelled case(s):

| case | lesion volume (mL) | organ target from |
|---|---|---|
{data}

- **Training:** {settings.steps} steps of batch {settings.batch_size}, {settings.optimizer.upper()}
  {"(Nesterov, momentum 0.99) " if settings.optimizer == "sgd" else ""}at learning rate {settings.learning_rate:g} with
  {"poly decay" if settings.schedule == "poly" else "a one-cycle schedule"}, Dice + cross-entropy
  {"with deep supervision " if settings.deep_supervision else ""}(MONAI), patches centred a third on lesions, a
  third on the organ, a third on other tissue; {round(100 * settings.spatial_augmentation)} % rotated and scaled,
  flips, HU gain/offset/noise; {synthetic}{frozen}; seed {settings.seed}. {seconds:.0f} s on {machine}
  ({result.device.upper()}). Final training loss {description["training_loss"]["last"]} (first steps
  {description["training_loss"]["first"]}). Weights fp32 (SHA256 {description["files"][0]["sha256"][:12]}...).

## Validation
{validation_table(result.validation)}{folds}

## Limits
Fine-tuned on {len(cases)} case(s): it knows what they show and little else; scores on so few held-out cases
vary widely with the seed and the cases chosen. Check its output on every scan.
"""


def write_model_folder(
    folder: Path,
    name: str,
    start: StartModel,
    settings: FinetuneSettings,
    cases: Sequence[LabelledCase],
    result: FinetuneResult,
    seconds: float,
) -> dict:
    """Write the model files into ``folder`` (a staging folder); returns model.json's content."""
    import torch

    from ..modelstore.store import sha256_of
    from .finetune import mean_losses

    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in result.network.state_dict().items()}
    if start.family:  # PyMIC's checkpoint layout, so PyMIC loads the fine-tuned network too
        from ..families.pymic.checkpoint import pymic_checkpoint

        torch.save(pymic_checkpoint(state, None, settings.steps, _mean_dice(result.validation)), folder / "model.pth")
    else:
        torch.save({k: v.float() for k, v in state.items()}, folder / "model.pth")
    description = model_description(name, start, settings, cases, sha256_of(folder / "model.pth"))
    description["training_loss"] = mean_losses(result.log.losses)
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads"
    (folder / "model.json").write_text(json.dumps(description, indent=2, default=str), encoding="utf-8")
    (folder / "validation.json").write_text(
        json.dumps({"cases": result.validation, "folds": result.folds, "summary": _summaries(result.validation)}, indent=2),
        encoding="utf-8",
    )
    (folder / "training.json").write_text(
        json.dumps(
            {
                "settings": _recipe(settings),
                "device": result.device,
                "machine": machine,
                "seconds": round(seconds, 1),
                "step_seconds_estimate": result.step_seconds,
                "synthetic_lesions": result.synthetic_lesions,
                "resumed_at_step": result.log.resumed_at,
                "losses": [round(v, 5) for v in result.log.losses],
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    (folder / "README.md").write_text(model_card(description, start, settings, cases, result, seconds, machine), encoding="utf-8")
    return description


def _mean_dice(rows: list) -> float:
    """The mean held-out Dice after fine-tuning (PyMIC's ``valid_pred``), 0 without held-out cases."""
    scores = [r["after"]["dice"] for r in rows if r.get("after") and r["after"].get("dice") is not None]
    return float(sum(scores) / len(scores)) if scores else 0.0


def _summaries(rows: list) -> dict:
    from .validation import summarise

    out = {}
    for when in ("before", "after"):
        scored = [r[when] for r in rows if r.get(when)]
        out[when] = summarise(scored) if scored else None
    return out
