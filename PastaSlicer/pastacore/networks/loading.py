"""Load PASTA weights into :class:`~pastacore.networks.unet.PastaUNet`.

Accepted sources:

* a weight file holding a flat state dict (``PASTA_final.pth``), or a dict with the weights
  under ``state_dict`` (the repo's finetuned classifiers) or ``network_weights`` (nnU-Net);
  names may carry ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) prefixes;
* an nnU-Net v2 result folder (``plans.json``, ``dataset.json``, ``fold_N/checkpoint_final.pth``
  or ``checkpoint_best.pth``), a ``fold_N`` folder or a checkpoint file inside one; the
  trainer must be one of PASTA's (``PASTATrainer_ft``, ``PASTATrainer_fewshot``, or the
  old name ``TotalLesionTrainer_ft``).

The architecture (base features, pooling count, classes, input channels, head) is read
from the tensor shapes. Files are read with ``torch.load(weights_only=True)``: nothing in
them is ever executed.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import PastaError
from .checkpoints import load_checkpoint
from .unet import ARCHITECTURE, PastaUNet, expected_layout

TRAINER_ALIASES = {
    "PASTATrainer_ft": "PASTATrainer_ft",
    "PASTATrainer_fewshot": "PASTATrainer_fewshot",
    "TotalLesionTrainer_ft": "PASTATrainer_ft",  # name of PASTATrainer_ft before the repo renamed it
}
CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth")
FIRST_CONV = "conv_blocks_context.0.blocks.0.conv.weight"
_PREFIXES = ("module.", "_orig_mod.")
_LIST_LIMIT = 5


@dataclass
class ModelInfo:
    """What a checkpoint holds and how it was loaded (all JSON-friendly)."""

    architecture: str = ARCHITECTURE
    source: str = ""
    container: str = ""  # flat | state_dict | network_weights | nnunet_v2
    base_features: int | None = None
    num_classes: int | None = None
    num_pool: int | None = None
    input_channels: int | None = None
    max_features: int | None = None
    num_head_outputs: int | None = None
    head_in_features: int | None = None  # what the file's head takes (PASTA's public code: 1024 at any width)
    feature_channels: int | None = None
    tensors_loaded: list = field(default_factory=list)
    tensors_missing: list = field(default_factory=list)
    tensors_unexpected: list = field(default_factory=list)
    tensors_mismatched: list = field(default_factory=list)  # "name: file shape vs network shape"
    tensors_skipped: list = field(default_factory=list)  # present and deliberately not loaded
    trainer: str | None = None
    trainer_recorded: str | None = None  # as written in the checkpoint, before aliasing
    fold: int | None = None
    checkpoint: str | None = None  # file name of the checkpoint read
    checkpoint_path: str | None = None  # full path of that file (None for an in-memory state dict)
    labels: dict | None = None
    patch_size: list | None = None
    spacing: list | None = None
    normalization: dict | None = None  # nnU-Net foreground_intensity_properties_per_channel
    normalization_schemes: list | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def architecture_kwargs(self) -> dict:
        return {
            "num_classes": self.num_classes,
            "base_features": self.base_features,
            "num_pool": self.num_pool,
            "input_channels": self.input_channels,
            "max_features": self.max_features,
            "num_head_outputs": self.num_head_outputs,
            "head_in_features": self.head_in_features,
        }


@dataclass
class LoadedModel:
    network: PastaUNet
    info: ModelInfo


# --- reading ---------------------------------------------------------------------------------
def read_weights(source: str | Path | dict) -> tuple:
    """``(state_dict, info)`` from a weight file, a state dict or an nnU-Net v2 result folder.

    ``info`` has the container kind and, for nnU-Net results, trainer, fold, labels, patch
    size, spacing and normalisation; architecture fields are filled by :func:`infer_architecture`.
    """
    info = ModelInfo()
    if isinstance(source, dict):
        info.source = "<state dict>"
        state, info.container, extra = _unwrap(source, "state dict")
        _take_nnunet_metadata(extra, info)
        if info.trainer_recorded is not None:
            _check_trainer(info, "the checkpoint")
        return state, info
    path = Path(source)
    info.source = str(path)
    if path.is_dir():
        checkpoint, result_dir = _checkpoint_in_folder(path, info)
    elif path.is_file():
        checkpoint = path
        result_dir = _result_dir_of(path)
        if result_dir is not None:
            info.fold = _fold_number(path.parent.name)
    else:
        raise PastaError(f"{path} does not exist")
    info.checkpoint = checkpoint.name
    info.checkpoint_path = str(checkpoint)
    state, info.container, extra = _unwrap(load_checkpoint(checkpoint), checkpoint.name)
    _take_nnunet_metadata(extra, info)
    if result_dir is not None:
        info.container = "nnunet_v2" if info.container == "network_weights" else info.container
        _take_folder_metadata(result_dir, info)
    if info.trainer_recorded is not None or result_dir is not None:
        _check_trainer(info, checkpoint.name)
    return state, info


def _unwrap(obj, name: str) -> tuple:
    """``(flat name->tensor dict, container kind, the rest of the dict)``."""
    import torch

    if not isinstance(obj, dict):
        raise PastaError(f"{name} does not hold a dict of weights (found {type(obj).__name__})")
    extra = {}
    container = "flat"
    for key in ("network_weights", "state_dict", "model_state_dict", "model"):
        if isinstance(obj.get(key), dict):
            container = key if key in ("network_weights", "state_dict") else "state_dict"
            extra = {k: v for k, v in obj.items() if k != key}
            obj = obj[key]
            break
    state = {}
    for key, value in obj.items():
        if not torch.is_tensor(value):
            continue
        clean = str(key)
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if clean.startswith(prefix):
                    clean, changed = clean[len(prefix) :], True
        state[clean] = value
    if not state:
        raise PastaError(f"{name} holds no tensors; it is not a weight file")
    return state, container, extra


def _checkpoint_in_folder(path: Path, info: ModelInfo) -> tuple:
    """The checkpoint file to read for a result folder or a ``fold_N`` folder."""
    if _fold_number(path.name) is not None and not (path / "plans.json").is_file():
        fold_dirs, result_dir = [path], (path.parent if (path.parent / "plans.json").is_file() else None)
    else:
        fold_dirs = sorted(
            (p for p in path.iterdir() if p.is_dir() and _fold_number(p.name) is not None),
            key=lambda p: (_fold_number(p.name) == "all", _fold_number(p.name) if _fold_number(p.name) != "all" else 0),
        )
        result_dir = path
        if not (path / "plans.json").is_file() and not fold_dirs:
            raise PastaError(
                f"{path} is a folder but not an nnU-Net result folder (no plans.json and no fold_N "
                "folders); give a weight file or the trainer's result folder"
            )
    for fold_dir in fold_dirs:
        for name in CHECKPOINT_NAMES:
            if (fold_dir / name).is_file():
                info.fold = _fold_number(fold_dir.name)
                return fold_dir / name, result_dir
    raise PastaError(f"no {' or '.join(CHECKPOINT_NAMES)} in any fold_N folder of {path}")


def _fold_number(name: str):
    match = re.fullmatch(r"fold_(\d+|all)", name)
    if not match:
        return None
    return "all" if match.group(1) == "all" else int(match.group(1))


def _result_dir_of(checkpoint: Path):
    parent = checkpoint.parent
    if _fold_number(parent.name) is not None and (parent.parent / "plans.json").is_file():
        return parent.parent
    return None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PastaError(f"cannot read {path.name} of the nnU-Net result: {str(exc).splitlines()[0][:120]}") from None


def _take_nnunet_metadata(extra: dict, info: ModelInfo) -> None:
    """Trainer name and (when the folder is missing) plans/labels nnU-Net v2 keeps in ``init_args``."""
    if isinstance(extra.get("trainer_name"), str):
        info.trainer_recorded = extra["trainer_name"]
    init_args = extra.get("init_args")
    if isinstance(init_args, dict):
        if isinstance(init_args.get("plans"), dict):
            _take_plans(init_args["plans"], info, init_args.get("configuration") or "3d_fullres")
        if isinstance(init_args.get("dataset_json"), dict):
            _take_dataset(init_args["dataset_json"], info)


def _take_folder_metadata(result_dir: Path, info: ModelInfo) -> None:
    plans_path = result_dir / "plans.json"
    if plans_path.is_file():
        _take_plans(_read_json(plans_path), info, "3d_fullres")
    dataset_path = result_dir / "dataset.json"
    if dataset_path.is_file():
        _take_dataset(_read_json(dataset_path), info)
    if info.trainer_recorded is None:  # folder names look like Trainer__Plans__configuration
        parts = result_dir.name.split("__")
        if len(parts) == 3:
            info.trainer_recorded = parts[0]


def _take_plans(plans: dict, info: ModelInfo, configuration: str) -> None:
    configs = plans.get("configurations")
    config = configs.get(configuration) if isinstance(configs, dict) else None
    if isinstance(config, dict):
        if isinstance(config.get("patch_size"), (list, tuple)):
            info.patch_size = [int(s) for s in config["patch_size"]]
        if isinstance(config.get("spacing"), (list, tuple)):
            info.spacing = [float(s) for s in config["spacing"]]
        if isinstance(config.get("normalization_schemes"), (list, tuple)):
            info.normalization_schemes = [str(s) for s in config["normalization_schemes"]]
    props = plans.get("foreground_intensity_properties_per_channel")
    if isinstance(props, dict) and props:
        info.normalization = {
            str(ch): {k: float(v) for k, v in stats.items() if isinstance(v, (int, float))}
            for ch, stats in props.items()
            if isinstance(stats, dict)
        }


def _take_dataset(dataset: dict, info: ModelInfo) -> None:
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or not labels:
        return
    if all(str(k).lstrip("-").isdigit() for k in labels) and all(isinstance(v, str) for v in labels.values()):
        labels = {v: int(k) for k, v in labels.items()}  # nnU-Net v1 style: value -> name
    out = {}
    for name, value in labels.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            out[str(name)] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
            out[str(name)] = list(value)  # region-based training: a region is a set of labels
    info.labels = out or None


def _check_trainer(info: ModelInfo, what: str) -> None:
    recorded = info.trainer_recorded
    if recorded is None:
        raise PastaError(f"{what} records no trainer_name; expected one of PASTA's trainers ({', '.join(TRAINER_ALIASES)})")
    if recorded not in TRAINER_ALIASES:
        raise PastaError(
            f"{what} was trained with '{recorded}', which is not a PASTA trainer (expected {', '.join(TRAINER_ALIASES)})"
        )
    info.trainer = TRAINER_ALIASES[recorded]


# --- architecture ----------------------------------------------------------------------------
def infer_architecture(state: dict, info: ModelInfo | None = None) -> ModelInfo:
    """Fill ``info``'s architecture fields from tensor shapes; PastaError if it is not this network."""
    info = info if info is not None else ModelInfo()
    first = state.get(FIRST_CONV)
    if first is None or first.dim() != 5:
        some = ", ".join(sorted(state)[:3])
        raise PastaError(
            f"not a PASTA/nnU-Net Generic_UNet checkpoint: no 5-D '{FIRST_CONV}' (it holds {len(state)} tensors, e.g. {some})"
        )
    info.base_features = int(first.shape[0])
    info.input_channels = int(first.shape[1])
    stages = {int(m.group(1)) for k in state if (m := re.fullmatch(r"conv_blocks_context\.(\d+)\.blocks\.0\.conv\.weight", k))}
    num_pool = 0
    while num_pool in stages:
        num_pool += 1
    info.num_pool = num_pool
    bottleneck = state.get(f"conv_blocks_context.{num_pool}.0.blocks.0.conv.weight")
    if bottleneck is not None:
        info.max_features = int(bottleneck.shape[0])
    else:  # encoder-only file: the widest stage bounds the cap from below
        widest = max(int(state[f"conv_blocks_context.{d}.blocks.0.conv.weight"].shape[0]) for d in range(num_pool))
        info.max_features = max(widest, 1024)
    seg = state.get("seg_outputs.0.weight")
    info.num_classes = int(seg.shape[0]) if seg is not None else None
    head = state.get("head.4.weight")
    info.num_head_outputs = int(head.shape[0]) if head is not None else None
    head_in = state.get("head.0.weight")
    info.head_in_features = int(head_in.shape[1]) if head_in is not None and head_in.dim() == 2 else None
    info.feature_channels = min(info.base_features * 2 ** (num_pool - 1), info.max_features)
    return info


def _compare(state: dict, layout: dict, names=None) -> tuple:
    """``(loaded, missing, mismatched, unexpected)`` names for ``state`` against ``layout``."""
    wanted = layout if names is None else {n: layout[n] for n in names}
    loaded, missing, mismatched = [], [], []
    for name, shape in wanted.items():
        tensor = state.get(name)
        if tensor is None:
            missing.append(name)
        elif tuple(tensor.shape) != tuple(shape):
            mismatched.append(f"{name}: {tuple(tensor.shape)} in the file vs {tuple(shape)}")
        else:
            loaded.append(name)
    unexpected = sorted(n for n in state if n not in layout)
    return loaded, missing, mismatched, unexpected


def _names(items: list) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f" and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else "")


# --- public entry points ----------------------------------------------------------------------
def inspect_checkpoint(source: str | Path | dict) -> ModelInfo:
    """What a checkpoint holds, matched against the architecture its shapes imply; nothing is built or run."""
    state, info = read_weights(source)
    infer_architecture(state, info)
    layout = expected_layout(**{**info.architecture_kwargs(), "num_classes": info.num_classes or 1})
    if info.num_classes is None:
        layout = {n: s for n, s in layout.items() if not n.startswith("seg_outputs.")}
    (info.tensors_loaded, info.tensors_missing, info.tensors_mismatched, info.tensors_unexpected) = _compare(state, layout)
    return info


def require_fit(info: ModelInfo) -> None:
    """Refuse, in one line, weights that do not fit the PASTA network their shapes describe."""
    problems = []
    if info.tensors_missing:
        problems.append(f"{len(info.tensors_missing)} missing ({_names(info.tensors_missing)})")
    if info.tensors_mismatched:
        problems.append(f"{len(info.tensors_mismatched)} with the wrong shape ({_names(info.tensors_mismatched)})")
    if info.tensors_unexpected:
        problems.append(f"{len(info.tensors_unexpected)} unexpected ({_names(info.tensors_unexpected)})")
    if problems:
        raise PastaError(
            f"{_label(info)} does not fit the PASTA network it describes "
            f"(base {info.base_features}, {info.num_pool} pools, {info.num_classes} classes): " + "; ".join(problems)
        )


def load_for_segmentation(source: str | Path | dict, device: str = "cpu") -> LoadedModel:
    """The whole network with every tensor from the checkpoint (strict: names and shapes must match)."""
    state, info = read_weights(source)
    infer_architecture(state, info)
    if info.num_classes is None:
        raise PastaError(
            f"{_label(info)} has no segmentation outputs (seg_outputs.*); it can only be used as an encoder for features"
        )
    layout = expected_layout(**info.architecture_kwargs())
    (info.tensors_loaded, info.tensors_missing, info.tensors_mismatched, info.tensors_unexpected) = _compare(state, layout)
    require_fit(info)
    import torch

    with torch.device("meta"):  # every tensor is overwritten: skip allocating and initialising twice
        network = _build(info, "meta")
    network = network.to_empty(device=device)
    network.load_state_dict({n: state[n] for n in layout}, strict=True)
    network.eval()
    return LoadedModel(network, info)


def load_encoder(source: str | Path | dict, device: str = "cpu", strict: bool = True, with_head: bool = False) -> LoadedModel:
    """A network whose encoder (``conv_blocks_context.*``) comes from the checkpoint; the rest is skipped.

    Tensors outside the encoder (decoder, ``seg_outputs``, and ``head`` unless ``with_head``)
    are reported in ``info.tensors_skipped``; without ``with_head`` the network has no head.
    With ``with_head`` the checkpoint's classification head is loaded as well (it must be
    complete), so ``network.classify`` gives its outputs. With ``strict``, a missing or misshapen tensor of the stages
    used for features (all encoder stages but the bottleneck) is an error; the bottleneck
    is reported in ``tensors_missing`` when absent but does not stop the load.
    """
    state, info = read_weights(source)
    infer_architecture(state, info)
    info.num_classes = info.num_classes or 1
    layout = expected_layout(**info.architecture_kwargs())
    if with_head and info.num_head_outputs is None:
        raise PastaError(f"{_label(info)} has no classification head (head.*)")
    if with_head and info.head_in_features not in (None, info.feature_channels):
        raise PastaError(
            f"{_label(info)}'s classification head takes {info.head_in_features} features but its encoder "
            f"gives {info.feature_channels} (a reduced-width file written by PASTA's public code keeps the "
            f"full-width head): it can segment and give features, not classify"
        )
    encoder = [n for n in layout if n.startswith("conv_blocks_context.") or (with_head and n.startswith("head."))]
    (info.tensors_loaded, info.tensors_missing, info.tensors_mismatched, _) = _compare(state, layout, encoder)
    encoder_set = set(encoder)
    info.tensors_skipped = sorted(n for n in state if n in layout and n not in encoder_set)
    info.tensors_unexpected = sorted(n for n in state if n not in layout)
    bottleneck = f"conv_blocks_context.{info.num_pool}."
    needed = [n for n in info.tensors_missing + info.tensors_mismatched if not n.startswith(bottleneck)]
    if (strict or with_head) and needed:
        raise PastaError(
            f"{_label(info)} lacks encoder weights needed for features: {len(needed)} missing or misshapen ({_names(needed)})"
        )
    network = _build(info, device, head=with_head)
    network.load_state_dict({n: state[n] for n in info.tensors_loaded}, strict=False)
    network.eval()
    return LoadedModel(network, info)


def _build(info: ModelInfo, device, head: bool = True) -> PastaUNet:
    kwargs = info.architecture_kwargs()
    if not head:
        kwargs["num_head_outputs"] = kwargs["head_in_features"] = None
    network = PastaUNet(**kwargs)
    return network.to(device)


def _label(info: ModelInfo) -> str:
    return Path(info.source).name if info.source and info.source != "<state dict>" else "the checkpoint"
