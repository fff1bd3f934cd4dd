"""The network a fine-tuning run starts from: the built-in model, an installed model, a model
folder (``model.json`` + weights), a PASTA checkpoint (``PASTA_final.pth``) or an nnU-Net v2
result folder of PASTA's trainers.

As PASTA's own fine-tuning loader does, every tensor of the network must be in the file with
its shape, except the segmentation outputs (``seg_outputs.*``) when they do not fit the
labels being trained, and the classification head (``head.*``), which is never used: those
start fresh (He initialisation). The label meaning, patch size and normalisation come from
the model's description (``model.json``, or nnU-Net's plans and dataset.json); a bare
checkpoint gets PASTA-Gen's convention, 1 = organ and 2 = lesion (``organ`` names the organ).

A PyMIC (MIS-FM) network starts by PyMIC's rule instead (:func:`start_from`, :func:`load_family_start`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError

if TYPE_CHECKING:
    import torch

    from ..inference.segmentation_model import SegmentationModel
    from ..modelstore.store import ModelStore


PASTA_DEFAULT_PATCH = (128, 128, 128)


@dataclass
class StartModel:
    network: object  # PastaUNet with num_classes = max label + 1
    patch_size: tuple
    labels: dict  # value -> term or name ("lung", "tumor@lung")
    organ_values: tuple
    lesion_values: tuple
    normalization: dict | None  # nnU-Net CT statistics; None = PASTA's SLF
    head_loaded: bool  # the segmentation outputs came from the file (its predictions mean something)
    provenance: dict = field(default_factory=dict)  # name, version, file, sha256, kind
    skipped: list = field(default_factory=list)  # tensors in the file not used
    family: str = ""  # a model family's network (pastacore.families), "" for PASTA's own
    config: dict | None = None  # the family's network config (with class_num = the labels' count)
    loaded: list = field(default_factory=list)  # a family start: the network tensors taken from the file
    fresh: list = field(default_factory=list)  # a family start: the network tensors that start anew

    @property
    def num_classes(self) -> int:
        return max(self.labels) + 1

    @property
    def organ(self) -> str | None:
        """The organ of the model's lesions ("lung" for "tumor@lung" or "lung tumor"), if it declares one."""
        return self.segmentation_model().organ

    def segmentation_model(self, network: torch.nn.Module | None = None) -> SegmentationModel:
        """A :class:`~pastacore.inference.segmentation_model.SegmentationModel` of ``network`` (default: this
        start network) with these labels, patch size and normalisation."""
        from ..inference.segmentation_model import SegmentationModel, label_meaning

        segments, organs, lesions = label_meaning(dict(self.labels))
        if self.family:
            from ..families.pymic.family import PymicSegmentationModel

            return PymicSegmentationModel(
                network if network is not None else self.network,
                tuple(self.patch_size),
                segments,
                organs,
                lesions,
                None,
                dict(self.provenance),
                hu_window=tuple(self.config["hu_window"]),
            )
        return SegmentationModel(
            network if network is not None else self.network,
            tuple(self.patch_size),
            segments,
            organs,
            lesions,
            self.normalization,
            dict(self.provenance),
        )


def _labels(info, description: dict | None, organ: str | None) -> dict:
    from ..inference.segmentation_model import start_labels

    if info.labels:  # nnU-Net dataset.json: name -> value
        labels = {int(v): str(n) for n, v in info.labels.items() if isinstance(v, int) and int(v) != 0}
        if labels:
            return labels
    return start_labels(description, organ)


def _patch(info, description: dict | None) -> tuple:
    """The model's own patch size (nnU-Net plans, model.json), else PASTA's 128^3."""
    from ..inference.segmentation_model import _described_patch

    chosen = tuple(info.patch_size or _described_patch(description or {}) or PASTA_DEFAULT_PATCH)
    divisor = 2**info.num_pool
    if any(int(p) % divisor for p in chosen):
        raise PastaError(
            f"the model's patch size {'x'.join(map(str, chosen))} is not a multiple of {divisor}, which this network needs"
        )
    return tuple(int(p) for p in chosen)


def _family_start(weights: Path, description: dict, organ: str | None) -> StartModel:
    """A model folder of a model family (model.json with "family") as a start."""
    family = description.get("family")
    if family != "pymic":
        raise PastaError(f"fine-tuning starts from PASTA networks and PyMIC (MIS-FM) networks, not from {family} models")
    return load_family_start(weights, description=description, organ=organ)


def load_start_model(model: str | Path | None = None, store: ModelStore | None = None, organ: str | None = None) -> StartModel:
    """The network to fine-tune (``model``: an installed name, a file or folder, None = built-in)."""
    import torch

    from ..inference.segmentation_model import model_weights
    from ..modelstore.store import sha256_of
    from ..networks.loading import infer_architecture, read_weights
    from ..networks.unet import PastaUNet
    from ..preprocessing.normalize import ct_statistics

    weights, description = model_weights(model, store)
    if description is not None and description.get("family"):
        return _family_start(Path(str(weights)), description, organ)
    if description is not None and description.get("task") not in (None, "segmentation", "unknown", "features"):
        raise PastaError(
            f"model {description.get('name', str(model))!r} is a {description.get('task')} model; "
            "fine-tuning starts from a segmentation network or a PASTA checkpoint"
        )
    state, info = read_weights(weights)
    infer_architecture(state, info)
    if info.input_channels != 1:
        raise PastaError(f"the network takes {info.input_channels} input channels; fine-tuning on CT needs one")
    labels = _labels(info, description, organ)
    num_classes = max(labels) + 1
    network = PastaUNet(
        num_classes=num_classes, base_features=info.base_features, num_pool=info.num_pool, max_features=info.max_features
    )
    layout = {name: tuple(t.shape) for name, t in network.state_dict().items()}
    heads = [n for n in layout if n.startswith("seg_outputs.")]
    body = [n for n in layout if n not in heads]
    problems = [n for n in body if n not in state or tuple(state[n].shape) != layout[n]]
    if problems:
        raise PastaError(
            f"{Path(str(weights)).name} lacks {len(problems)} tensor(s) of the network it describes "
            f"(e.g. {', '.join(problems[:3])}); fine-tuning needs the whole encoder and decoder"
        )
    head_loaded = all(n in state and tuple(state[n].shape) == layout[n] for n in heads)
    used = body + (heads if head_loaded else [])
    with torch.no_grad():
        network.load_state_dict({n: state[n].float() for n in used}, strict=False)
    checkpoint = Path(info.checkpoint_path) if info.checkpoint_path else Path(str(weights))
    normalization = None
    if info.normalization:
        normalization = ct_statistics({"foreground_intensity_properties_per_channel": info.normalization})
    elif description and description.get("normalization_stats"):
        normalization = dict(description["normalization_stats"])
    provenance = {
        "name": (description or {}).get("name") or checkpoint.stem,
        "version": str((description or {}).get("version", "")),
        "file": checkpoint.name,
        "sha256": sha256_of(checkpoint) if checkpoint.is_file() else None,
        "kind": "nnunet_v2" if info.container == "nnunet_v2" else ("model folder" if description else info.container),
        "trainer": info.trainer,
    }
    start = StartModel(
        network,
        _patch(info, description),
        labels,
        (),
        (),
        normalization,
        head_loaded,
        provenance,
        skipped=sorted(n for n in state if n not in set(used)),
    )
    from ..inference.segmentation_model import label_meaning

    _segments, start.organ_values, start.lesion_values = label_meaning(dict(labels))
    if not start.lesion_values:
        raise PastaError(
            f"the labels of {provenance['name']} ({', '.join(map(str, labels.values()))}) name no lesion; "
            "fine-tuning teaches lesions"
        )
    network.eval()
    return start


# --- a PyMIC (MIS-FM) network as the start ----------------------------------------------------------
# Its tensors load by PyMIC's rule (same name and shape; families.pymic.checkpoint.load_start): the
# class-dependent output convolutions start anew when the class count differs, and which tensors
# were taken, skipped and new is recorded (model.json's "start").


def load_family_start(
    weights: str | Path,
    config: dict | None = None,
    description: dict | None = None,
    organ: str | None = None,
    kind: str = "model folder",
) -> StartModel:
    """The :class:`StartModel` of a PyMIC network's weights (``config``: its network config; None:
    the one ``description``, a fine-tuned model's model.json, holds)."""
    from ..families.pymic import config as cfg
    from ..families.pymic.checkpoint import build_network, class_dependent, load_start, read_pymic_file
    from ..families.pymic.family import inference_patch
    from ..families.pymic.start import pymic_config
    from ..inference.segmentation_model import label_meaning, start_labels
    from ..modelstore.store import sha256_of

    weights = Path(weights)
    if config is None:
        config = pymic_config((description or {}).get("config") or {}, "the model's config")
    labels = start_labels(description, organ)
    trained = cfg.with_classes(config, max(labels) + 1)
    read = read_pymic_file(weights)
    network = build_network(trained)
    loaded = load_start(network, read.state, trained, weights.name)
    head_loaded = not any(class_dependent(trained, name) for name in loaded.fresh)
    provenance = {
        "name": (description or {}).get("name") or (weights.parent.name if kind == "pasta pretrain folder" else weights.stem),
        "version": str((description or {}).get("version", "")),
        "file": weights.name,
        "sha256": sha256_of(weights),
        "kind": kind,
        "family": cfg.FAMILY,
        "network": cfg.describe(config),
    }
    _segments, organs, lesions = label_meaning(dict(labels))
    if not lesions:
        raise PastaError(f"the labels of {provenance['name']} ({', '.join(map(str, labels.values()))}) name no lesion")
    return StartModel(
        network.eval(),
        inference_patch(trained, description),
        labels,
        organs,
        lesions,
        None,
        head_loaded,
        provenance,
        skipped=loaded.skipped,
        family=cfg.FAMILY,
        config=trained,
        loaded=loaded.loaded,
        fresh=loaded.fresh,
    )


def start_from(path: str | Path, start_config: str | Path | None = None, organ: str | None = None) -> StartModel:
    """``pasta finetune --start PATH [--start-config CFG.json]``: a PyMIC checkpoint with its config,
    a ``pasta pretrain`` folder or a model folder fine-tuned from one."""
    from ..families.pymic.start import resolve_start

    weights, config, description, kind = resolve_start(path, start_config)
    return load_family_start(weights, config, description, organ, kind)
