"""The gCIS model family's interface (see :mod:`pastacore.families`): config, forward, verify and a
segmentation model that runs gCIS's own test.py pipeline, with a prompt for multi-path models."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import PastaError
from ...progress import reporter
from . import config as gcis_config
from .config import DIVISOR, PROMPT_DIM

if TYPE_CHECKING:
    import torch

    from ...inference.segmentation_model import SegmentationModel


def check_config(config: dict) -> dict:
    """The validated config, defaults filled in (:func:`.config.check_config`)."""
    return gcis_config.check_config(config)


def prompts(config: dict) -> list | None:
    """What a model's users may type: None for a single-path model (no prompt), else the known
    prompts of a multi-path model (any text works once CLIP's text tower is imported)."""
    if config.get("variant") != "ap":
        return None
    return [item["text"] for item in config.get("prompts") or [] if isinstance(item, dict) and "text" in item]


def forward(checkpoint: Path, config: dict, inputs: dict, device: str) -> dict:
    """``{"x": (B, in_channels, X, Y, Z)[, "prompt": (B or 1, 512)]}`` -> ``{"logits": (B,
    out_channels, X, Y, Z)}``, and for a multi-path model ``"pathways"``: the 7 one-based sub-path
    indexes of the first sample (decoder10, decoder5, decoder4, decoder3, decoder2, decoder1, out),
    with ``"pathways_per_sample"`` (B lists of 7) when B > 1."""
    import torch

    x = _input_images(inputs, config)
    prompt = _input_prompt(inputs, x.shape[0]) if config["variant"] == "ap" else None
    network = load(checkpoint, config)[0].to(device)
    with torch.inference_mode():
        if prompt is None:
            return {"logits": network(x.to(device)).float().cpu()}
        prompt = prompt.to(device)
        logits = network(x.to(device), prompt).float().cpu()
        pathways = network.pathways(prompt.expand(x.shape[0], -1)).cpu().tolist()
    result = {"logits": logits, "pathways": pathways[0]}
    if len(pathways) > 1:
        result["pathways_per_sample"] = pathways
    return result


def _input_images(inputs: dict, config: dict):
    import torch

    x = inputs.get("x")
    if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[1] != config["in_channels"]:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise PastaError(f"gCIS forward takes 'x' shaped (B, {config['in_channels']}, X, Y, Z), got {shape}")
    sides = tuple(x.shape[2:])
    if any(s % DIVISOR or s < 2 * DIVISOR for s in sides):
        raise PastaError(f"gCIS needs every side of 'x' to be a multiple of {DIVISOR} and at least {2 * DIVISOR}, got {sides}")
    return x.float()


def _input_prompt(inputs: dict, batch: int):
    import torch

    prompt = inputs.get("prompt")
    if not isinstance(prompt, torch.Tensor):
        raise PastaError(f"a multi-path gCIS model needs 'prompt': the ({batch}, {PROMPT_DIM}) text embeddings")
    prompt = prompt[None] if prompt.dim() == 1 else prompt
    if prompt.dim() != 2 or prompt.shape[1] != PROMPT_DIM or prompt.shape[0] not in (1, batch):
        raise PastaError(f"'prompt' must be ({batch}, {PROMPT_DIM}) or (1, {PROMPT_DIM}), got {tuple(prompt.shape)}")
    return prompt.float()


def load(checkpoint: Path, config: dict) -> tuple:
    """``(network in evaluation mode, summary)``; one-line PastaError when the file does not fit."""
    from .weights import load_network

    return load_network(checkpoint, config)


def verify(checkpoint: Path, config: dict) -> dict:
    """Load the file strictly into the configured network; the summary ``pasta models import``
    stores (parameters, layout, notes, and each known prompt's pathways for a multi-path model)."""
    import torch

    network, summary = load(checkpoint, config)
    prompts = config.get("prompts") or []
    if prompts:
        table = torch.tensor([item["embedding"] for item in prompts], dtype=torch.float32)
        chosen = network.pathways(table).tolist()
        summary["prompts"] = {item["text"]: paths for item, paths in zip(prompts, chosen)}
    return summary


def segmentation_model(checkpoint: Path, config: dict, description: dict) -> SegmentationModel:
    """A :class:`~pastacore.inference.segmentation_model.SegmentationModel` whose ``pipeline`` is
    gCIS's test.py (:mod:`.pipeline`); labels from the description (model.json), else the config's
    ``labels``; a multi-path model names label 1 after the prompt of each run."""
    from ...inference.segmentation_model import SegmentationModel, label_meaning
    from ...modelstore.store import sha256_of

    network, summary = load(checkpoint, config)
    labels = _labels(config, description)
    segments, organs, lesions = label_meaning(labels)
    name = description.get("name", Path(checkpoint).stem)
    provenance = {
        "name": name,
        "version": str(description.get("version", "")),
        "file": Path(checkpoint).name,
        "sha256": sha256_of(Path(checkpoint)),
        "family": "gcis",
        "variant": config["variant"],
        "layout": summary["layout"],
    }
    if config.get("path_selection"):
        provenance["path_selection"] = list(config["path_selection"])
    model = SegmentationModel(network, gcis_config.window(config), segments, organs, lesions, provenance=provenance)
    model.pipeline = GcisPipeline(network, config, labels, provenance)
    return model


def _labels(config: dict, description: dict) -> dict:
    described = {int(i["value"]): str(i["term"]) for i in description.get("labels") or [] if isinstance(i, dict)}
    if described:
        return described
    if config.get("labels"):
        return {int(v): t for v, t in config["labels"].items()}
    return {v: f"gCIS label {v}" for v in range(1, config["out_channels"])}


class GcisPipeline:
    """``pipeline(volume, options, progress, is_cancelled)`` -> SegmentationResult: test.py's
    pipeline on the CT as stored, the labels on its grid. A multi-path model needs
    ``options.prompt``; choices that gCIS's own pipeline does not have (a box, an organ mask, TTA,
    another overlap) are reported as ignored."""

    def __init__(self, network: torch.nn.Module, config: dict, labels: dict, provenance: dict) -> None:
        self.network, self.config, self.labels, self.provenance = network, config, labels, provenance

    def __call__(self, volume, options, progress=None, is_cancelled=None):
        import torch

        from ... import deps
        from ...fileio.readers import check_ct
        from ...inference.segment import SegmentationResult
        from .pipeline import segment_like_test_py

        started = time.perf_counter()
        check_ct(volume)
        prompt, labels, notes, provenance = None, dict(self.labels), [], dict(self.provenance)
        if self.config["variant"] == "ap":
            chosen = self._prompt(options.prompt)
            prompt = torch.tensor([chosen.embedding], dtype=torch.float32)
            pathways = self.network.pathways(prompt)[0].tolist()
            if chosen.term and self.config["out_channels"] == 2:
                labels = {1: chosen.term}
            elif self.config["out_channels"] == 2:
                labels = {1: chosen.text}
            provenance.update(prompt=chosen.text, prompt_source=chosen.source, pathways=pathways)
            notes.append(
                f"prompt {chosen.text!r} ({'known prompt' if chosen.source == 'known' else 'CLIP text tower'}): pathways {pathways}"
            )
        warnings = self._ignored(options)
        device = deps.torch_device_info(options.device).kind
        network = self.network.to(device)
        report = reporter(progress)
        report(0.02, "gCIS: resampling and windowing the CT")
        array, windows = segment_like_test_py(
            volume, network, self.config, prompt, device, lambda f, m="": report(0.05 + 0.9 * f, m), is_cancelled
        )
        report(1.0, "done")
        from ...inference.segmentation_model import label_meaning

        segments = label_meaning(labels)[0]
        notes.append(
            "gCIS's own pipeline (test.py): no reorientation, resampling, HU window, Gaussian sliding window, nearest zoom back"
        )
        return SegmentationResult(
            volume.with_array(array, is_label=True), segments, provenance, device, time.perf_counter() - started,
            windows, windows, notes, warnings,
        )  # fmt: skip

    def _prompt(self, text: str):
        from .prompts import resolve_prompt

        return resolve_prompt(text or "", self.config, f"model {self.provenance['name']!r}")

    def _ignored(self, options) -> list:
        ignored = [
            what
            for what, chosen in (
                ("a box", options.roi is not None),
                ("the organ choice", bool(options.organ)),
                ("test-time augmentation", options.tta),
                (f"overlap {options.overlap:g} (the model's infer_overlap {self.config['infer_overlap']:g} is used)",
                 abs(options.overlap - 0.5) > 1e-9 and abs(options.overlap - self.config["infer_overlap"]) > 1e-9),
                ("the smallest lesion size", options.min_lesion_mm3 > 0),
            )
            if chosen
        ]  # fmt: skip
        warnings = [f"gCIS runs its own pipeline on the whole CT; ignored: {', '.join(ignored)}"] if ignored else []
        if self.config["variant"] == "single" and options.prompt:
            warnings.append(f"prompt {options.prompt!r} ignored: {self.provenance['name']!r} is a single-task gCIS model")
        return warnings
