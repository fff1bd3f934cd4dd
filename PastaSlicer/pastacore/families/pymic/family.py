"""The PyMIC family (MIS-FM's FMUNet and PCT-Net) behind the model-family interface:
``check_config``, ``forward``, ``verify`` and ``segmentation_model``.

A model is a PyMIC checkpoint (or a bare state dict) plus its config JSON
(:mod:`.config`). Every load here is strict (:func:`.checkpoint.load_strict`): a file that
does not fit the configured network is refused in one line, never run with random weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import PastaError
from ...inference.segmentation_model import SegmentationModel
from . import config as cfg
from .checkpoint import build_network, load_strict, read_pymic_file

if TYPE_CHECKING:
    import torch

# the inference patch of an FMUNet whose description names none: the MIS-FM demo's sliding window
FMUNET_PATCH = (64, 128, 128)


def check_config(config: dict) -> dict:
    """The validated config (PyMIC's defaults filled in); PastaError naming the field."""
    return cfg.check_config(config)


def hu_to_input(hu: np.ndarray, window: tuple | list) -> np.ndarray:
    """HU clipped to ``window`` and mapped linearly onto [-1, 1] (the lung VolF demo's
    [-1000, 1000] -> [-1, 1] by default), float32."""
    low, high = float(window[0]), float(window[1])
    out = np.clip(np.asarray(hu, dtype=np.float32), low, high)
    return ((out - low) * np.float32(2.0 / (high - low)) - 1.0).astype(np.float32)


def load_network(checkpoint: str | Path, config: dict) -> tuple:
    """``(network in evaluation mode, PymicFile)`` of ``checkpoint`` loaded strictly."""
    config = cfg.check_config(config)
    read = read_pymic_file(checkpoint)
    network = build_network(config)
    load_strict(network, read.state, Path(checkpoint).name, cfg.describe(config))
    return network.eval(), read


def _input(inputs: dict, config: dict) -> torch.Tensor:
    import torch

    x = inputs.get("x") if isinstance(inputs, dict) else None
    if not isinstance(x, torch.Tensor):
        raise PastaError('the input file must hold {"x": a float tensor (1, in_chns, D, H, W)}')
    if x.ndim != 5 or x.shape[1] != config["in_chns"]:
        raise PastaError(f"input x must be (B, {config['in_chns']}, D, H, W), got {tuple(x.shape)}")
    cfg.check_patch(config, x.shape[2:])
    return x.float()


def forward(checkpoint: Path, config: dict, inputs: dict, device: str) -> dict:
    """``pasta models forward``: ``{"logits": full-resolution logits}`` and, when the config has
    ``multiscale_pred``, ``"outputs"``: every output in PyMIC's order (full, 1/2, 1/4, 1/8).
    Evaluation mode (no dropout, BatchNorm's running statistics), fp32."""
    import torch

    from ... import deps

    config = cfg.check_config(config)
    x = _input(inputs, config)
    kind = deps.torch_device_info(device).kind
    network, _read = load_network(checkpoint, config)
    network = network.to(kind)
    with torch.no_grad():
        out = network(x.to(kind), deep_supervision=bool(config["multiscale_pred"]))
    if isinstance(out, list):
        outputs = [o.float().cpu() for o in out]
        return {"logits": outputs[0], "outputs": outputs}
    return {"logits": out.float().cpu()}


def verify(checkpoint: Path, config: dict) -> dict:
    """Load strictly; a JSON-ready summary of what the file holds."""
    config = cfg.check_config(config)
    network, read = load_network(checkpoint, config)
    summary = {
        "parameters": int(sum(p.numel() for p in network.parameters())),
        "tensors": len(read.state),
        "layout": "PyMIC checkpoint" if read.kind == "pymic" else "state dict",
        "net_type": config["net_type"],
        "network": cfg.describe(config),
        "class_num": config["class_num"],
    }
    if read.iteration is not None:
        summary["iteration"] = read.iteration
    if read.valid_pred is not None:
        summary["valid_pred"] = round(read.valid_pred, 6)
    return summary


@dataclass
class PymicSegmentationModel(SegmentationModel):
    """A PyMIC network run by PASTA's pipeline: CT on the 1 mm grid, HU window -> [-1, 1]."""

    hu_window: tuple = (-1000.0, 1000.0)

    def normalize(self, hu: np.ndarray) -> np.ndarray:
        return hu_to_input(hu, self.hu_window)


def inference_patch(config: dict, description: dict | None) -> tuple:
    """PCT-Net: exactly ``input_size``; FMUNet: the description's ``patch_size``, else the demo's."""
    exact, _ = cfg.patch_rule(config)
    if exact is not None:
        return exact
    patch = (description or {}).get("patch_size") or FMUNET_PATCH
    return cfg.check_patch(config, patch)


def segmentation_model(checkpoint: Path, config: dict, description: dict | None = None) -> SegmentationModel:
    """A :class:`PymicSegmentationModel`: the network loaded strictly, its labels from the
    description (model.json) or PASTA-Gen's convention (1 = organ, 2 = lesion)."""
    from ...inference.segmentation_model import described_labels, label_meaning
    from ...modelstore.store import sha256_of

    description = description or {}
    config = cfg.check_config(config)
    network, _read = load_network(checkpoint, config)
    labels = described_labels(description) if description.get("labels") else {1: "organ", 2: "lesion"}
    if max(labels) >= config["class_num"]:
        raise PastaError(
            f"the model's labels go up to {max(labels)} but the network has {config['class_num']} classes "
            f"(0..{config['class_num'] - 1})"
        )
    segments, organs, lesions = label_meaning(labels)
    checkpoint = Path(checkpoint)
    provenance = {
        "name": description.get("name", checkpoint.stem),
        "version": str(description.get("version", "")),
        "file": checkpoint.name,
        "source": checkpoint.name,
        "sha256": sha256_of(checkpoint),
        "family": cfg.FAMILY,
        "architecture": cfg.describe(config),
        "assumed": [] if description.get("labels") else ["labels"],
    }
    return PymicSegmentationModel(
        network,
        inference_patch(config, description),
        segments,
        organs,
        lesions,
        None,
        provenance,
        hu_window=tuple(config["hu_window"]),
    )
