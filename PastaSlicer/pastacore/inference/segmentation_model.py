"""A segmentation model ready to run: network, patch size, normalisation, label meaning.

Models come from the per-user store (by name), from a weight file or an nnU-Net v2 result
folder given directly, or from the extension's built-in default. The label meaning comes
from, in order: the model's ``dataset.json`` labels, the ``labels`` of its description
(``model.json`` / manifest, with terminology terms), else PASTA-Gen's convention
(1 = organ, 2 = lesion).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError, option
from ..preprocessing.normalize import nnunet_ct, pasta_slf
from ..terminology import segment_info, segment_info_for_name, term_for_label_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..modelstore.store import ModelStore


DEFAULT_PATCH = (128, 128, 128)


@dataclass
class SegmentationModel:
    network: object
    patch_size: tuple
    segments: dict  # label value -> SegmentInfo
    organ_values: tuple = (1,)
    lesion_values: tuple = (2,)
    normalization: dict | None = None  # nnU-Net CT statistics; None = PASTA's SLF
    provenance: dict = field(default_factory=dict)
    # A model family that runs its own pipeline instead of ours (standardise, sliding window, map
    # back): pipeline(volume, options, progress, is_cancelled) -> SegmentationResult
    pipeline: Callable | None = None

    def normalize(self, hu: np.ndarray) -> np.ndarray:
        return nnunet_ct(hu, self.normalization) if self.normalization else pasta_slf(hu)

    @property
    def organ(self) -> str | None:
        """The organ the model's lesions belong to ("lung" for "tumor@lung"), when it declares one."""
        organs = {
            info.term.split("@", 1)[1]
            for value, info in self.segments.items()
            if value in self.lesion_values and "@" in (info.term or "")
        }
        organs.discard("body")
        return organs.pop() if len(organs) == 1 else None


def _weights_in(folder: Path, description: dict | None = None) -> Path:
    """The segmentation weights of an installed model folder: an nnU-Net result folder, the
    file its description names under ``weights`` (a folder may also hold e.g. attribute
    heads), or its only weight file."""
    if (folder / "plans.json").is_file():
        return folder
    named = (description or {}).get("weights")
    if named:
        path = folder / str(named)
        if path.parent != folder or not path.is_file():
            raise PastaError(f"model folder {folder.name} has no weight file {named!r}, which its model.json names")
        return path
    from ..networks.checkpoints import weight_suffixes

    files = sorted(p for p in folder.iterdir() if p.name.lower().endswith(weight_suffixes()))
    if len(files) != 1:
        raise PastaError(
            f"model folder {folder.name} should hold one weight file (or name it under 'weights' in "
            f"model.json) or an nnU-Net result folder"
        )
    return files[0]


def _segments(labels_by_value: dict) -> tuple:
    """SegmentInfos and which values are organs or lesions, from {value: name or term}."""
    terms = {v: term_for_label_name(n) if "@" not in n else n for v, n in labels_by_value.items()}
    organ_hint = next((t for t in terms.values() if t and "@" not in t), None)
    segments, organs, lesions = {}, [], []
    for value, name in sorted(labels_by_value.items()):
        term = terms[value] or term_for_label_name(name, organ_hint)
        info = segment_info(term) if term else segment_info_for_name(name, organ_hint)
        segments[value] = info
        (lesions if term and "@" in term else organs).append(value)
    return segments, tuple(organs), tuple(lesions)


def label_meaning(labels_by_value: dict) -> tuple:
    """``(segments, organ values, lesion values)`` of a model's labels ({value: name or term});
    PASTA-Gen's bare convention {1: "organ", 2: "lesion"} is an unnamed organ and its lesions."""
    if labels_by_value == {1: "organ", 2: "lesion"}:
        return {1: segment_info_for_name("Organ"), 2: segment_info("lesion@body")}, (1,), (2,)
    return _segments(labels_by_value)


def described_labels(description: dict) -> dict:
    try:
        return {int(item["value"]): str(item["term"]) for item in description["labels"]}
    except (KeyError, TypeError, ValueError):
        raise PastaError(
            f"the labels in model.json of {description.get('name', 'the model')!r} are damaged "
            '(expected a list of {"value": N, "term": ...})'
        ) from None


def start_labels(description: dict | None, organ: str | None) -> dict:
    """The labels a model fine-tuned from a start has: the start's own (its model.json), else
    {1: organ, 2: its tumour} for ``organ``, else PASTA-Gen's {1: organ, 2: lesion}."""
    if description and description.get("labels"):
        return described_labels(description)
    if organ:
        segment_info(organ)  # an organ the terminology knows, or a one-line error
        return {1: organ, 2: f"tumor@{organ}"}
    return {1: "organ", 2: "lesion"}


def _described_patch(description: dict):
    patch = description.get("patch_size")
    if patch is None:
        return None
    if not (isinstance(patch, list) and len(patch) == 3 and all(isinstance(p, int) and p > 0 for p in patch)):
        raise PastaError(
            f"the patch_size in model.json of {description.get('name', 'the model')!r} is damaged "
            f"(expected three positive whole numbers, got {str(patch)[:40]})"
        )
    return patch


def model_from_source(source: str | Path | dict, description: dict | None = None) -> SegmentationModel:
    from ..modelstore.store import sha256_of
    from ..networks.loading import load_for_segmentation

    loaded = load_for_segmentation(source)
    info, description = loaded.info, description or {}
    if info.labels:
        # nnU-Net v2 labels are name -> value (region-based models use lists of values)
        labels = {int(v): str(n) for n, v in info.labels.items() if isinstance(v, int) and int(v) != 0}
    elif description.get("labels"):
        labels = described_labels(description)
    else:
        labels = {1: "organ", 2: "lesion"}
    segments, organs, lesions = label_meaning(labels)
    patch = tuple(info.patch_size or _described_patch(description) or DEFAULT_PATCH)
    divisor = 2 ** (info.num_pool or 0)
    if any(p % divisor for p in patch):
        raise PastaError(f"patch size {patch} is not a multiple of {divisor}, which this network needs")
    normalization = None
    if info.normalization:
        from ..preprocessing.normalize import ct_statistics

        normalization = ct_statistics({"foreground_intensity_properties_per_channel": info.normalization})
    elif description.get("normalization_stats"):
        normalization = description["normalization_stats"]
    source = Path(source)
    checkpoint = Path(info.checkpoint_path) if info.checkpoint_path else source
    provenance = {
        "name": description.get("name", source.stem),
        "version": str(description.get("version", "")),
        "file": checkpoint.name,
        "source": source.name,
        "sha256": sha256_of(checkpoint) if checkpoint.is_file() else None,
        "trainer": info.trainer,
        "architecture": info.architecture_kwargs(),
        # PASTA's own width (64 features, 5 pools) comes with PASTA's own defaults; for other widths
        # nothing but a description says how the network was trained
        "assumed": []
        if (info.base_features, info.num_pool) == (64, 5)
        else [
            what
            for what, known in (
                ("patch size", info.patch_size or description.get("patch_size")),
                ("labels", info.labels or description.get("labels")),
            )
            if not known
        ],
    }
    if isinstance(description.get("reporting_floor"), dict):  # what its reports leave out (pastacore.candidates)
        provenance["reporting_floor"] = dict(description["reporting_floor"])
    return SegmentationModel(loaded.network, patch, segments, organs, lesions, normalization, provenance)


def model_weights(model: str | Path | None = None, store: ModelStore | None = None) -> tuple:
    """``(weight file or result folder, description or None)`` of an installed model's name, a
    path, or None for the built-in default segmentation model. A folder given by path that
    holds a ``model.json`` (what ``pasta train-default --out`` writes, or a copy of an installed
    model) is used with that description: its patch size, labels and named weights; so is the
    weight file that such a model.json names, given by its own path."""
    from ..modelstore.store import DESCRIPTION, ModelStore

    store = store if store is not None else ModelStore()
    if model is None or model == "":
        defaults = [m for m in store.list() if m.builtin and m.task == "segmentation"]
        if not defaults:
            raise PastaError(
                f"no default segmentation model is installed; import one in the PASTA hub or choose one with {option('model')}"
            )
        model = defaults[0].name
    path = Path(str(model))
    if path.is_dir() and (path / DESCRIPTION).is_file() and not (path / "plans.json").is_file():
        return _described_weights(path)
    if path.is_file() and (path.parent / DESCRIPTION).is_file():
        description = _read_description(path.parent)
        if description.get("weights") == path.name:  # the weights its folder's model.json describes
            return path, description
    if path.exists():
        return path, None
    return _described_weights(store.get(str(model)).path)


def _described_weights(folder: Path) -> tuple:
    """``(segmentation weights, description)`` of a model folder holding a ``model.json``."""
    description = _read_description(folder)
    return _weights_in(folder, description), description


def _read_description(folder: Path) -> dict:
    from ..fileio.jsonfile import read_json_object
    from ..modelstore.store import DESCRIPTION

    return read_json_object(folder / DESCRIPTION)


def resolve_segmentation_model(
    model: str | Path | SegmentationModel | None = None, store: ModelStore | None = None, config: str | Path | None = None
) -> SegmentationModel:
    """An installed model's name, a weight file / result folder, or None for the default.
    ``config``: a model family's config file for the weight file ``model`` (a model of another
    family than PASTA's that is not in the store)."""
    if isinstance(model, SegmentationModel):
        return model
    if config is not None:
        from ..families import read_model_config

        path = Path(str(model or ""))
        if not path.is_file():
            raise PastaError(f"{option('model_config')} needs the model's weight file as {option('model')}; {path} is no file")
        config_data = read_model_config(config)
        return family_segmentation_model(path, {"name": path.stem, "config": config_data, "family": config_data["family"]})
    weights, description = model_weights(model, store)
    if description is None:
        return model_from_source(weights)
    if description.get("task") not in ("segmentation", "unknown"):
        raise PastaError(
            f"model {description.get('name', str(model))!r} is a {description.get('task')} model, not a segmentation model"
        )
    if description.get("family"):
        return family_segmentation_model(Path(weights), description)
    return model_from_source(weights, description)


def family_segmentation_model(weights: Path, description: dict) -> SegmentationModel:
    """The segmentation model of a model family's weights, as its description (model.json) says."""
    from ..families import checked_config, family_named

    family = family_named(description["family"])
    name = description.get("name", weights.stem)
    if family.task != "segmentation":
        raise PastaError(f"model {name!r} is a {family.name} {family.task}, not a segmentation model")
    config = checked_config({**(description.get("config") or {}), "family": family.name}, f"the config of model {name!r}")
    return family.implementation().segmentation_model(weights, config, description)


def declared_organ(model: str | Path | SegmentationModel | None = None, store: ModelStore | None = None) -> str | None:
    """The organ a model's description declares for its lesions ("lung" for "tumor@lung"), read
    from its model.json without loading weights; None when it declares none or cannot be read."""
    try:
        _weights, description = model_weights(model, store)
    except PastaError:
        return None
    labels = {
        int(item["value"]): item["term"]
        for item in (description or {}).get("labels", [])
        if isinstance(item, dict) and "value" in item and "term" in item
    }
    organs = {term.split("@", 1)[1] for term in labels.values() if "@" in term} - {"body"}
    return organs.pop() if len(organs) == 1 else None


def declared_prompts(model: str | Path | SegmentationModel | None = None, store: ModelStore | None = None) -> list | None:
    """The prompts a model takes, read from its model.json without loading weights: None when it
    takes no text prompt, else its known prompts (possibly none: free text only). A model family
    whose models take prompts provides ``prompts(config) -> list | None`` (gCIS's multi-path models)."""
    from ..families import family_named

    try:
        _weights, description = model_weights(model, store)
    except PastaError:
        return None
    family = (description or {}).get("family")
    if not isinstance(family, str) or not isinstance(description.get("config"), dict):
        return None
    try:
        prompts = getattr(family_named(family).implementation(), "prompts", None)
    except PastaError:
        return None
    return prompts(description["config"]) if prompts is not None else None
