"""PyMIC checkpoints: reading them safely, loading them strictly or as a fine-tuning start,
and writing them so PyMIC itself can load ours.

PyMIC's agent saves ``{"iteration", "valid_pred", "model_state_dict", "optimizer_state_dict"}``
(no ``module.`` prefix; ``valid_pred`` is a numpy scalar in the released files). Files are read
with ``torch.load(weights_only=True)`` and numpy's scalar/dtype rebuilders allowed
(:func:`pastacore.networks.checkpoints.load_checkpoint`), never by plain unpickling. A bare
state dict (what a ``pasta finetune`` model folder holds) is read too.

Two ways to load, as PyMIC has them:

* **strict** (``pasta models forward``/``verify``, segmentation): every tensor of the network
  must be in the file with its shape, and nothing else may be; a file that does not fit the
  configured network is refused in one line;
* **start** (PyMIC ``ckpt_init_mode`` 0): a tensor is taken iff the network has one of that
  name and shape; the rest of the network starts anew. We refuse a start that would leave
  anything but the class-dependent output convolutions new (FMUNet 8 tensors, PCT-Net 16),
  where PyMIC would silently train from random weights. ``weights_load_mode`` "encoder"
  (FMUNet) takes ``project`` and ``encoder`` tensors only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import PastaError

if TYPE_CHECKING:
    import torch

PYMIC_KEYS = ("iteration", "valid_pred", "model_state_dict", "optimizer_state_dict")
OUTPUT_CONV = {"FMUNet": re.compile(r"^out_layers\.\d+\.2\."), "PCTNet": re.compile(r"\.out_conv\d\.conv\.2\.")}
ENCODER_PREFIXES = ("project.", "encoder.")


@dataclass
class PymicFile:
    """What a checkpoint holds: the state dict and PyMIC's bookkeeping (when it is PyMIC's)."""

    state: dict
    kind: str  # "pymic" or "state dict"
    iteration: int | None = None
    valid_pred: float | None = None
    extra: list = field(default_factory=list)  # other top-level keys


def read_pymic_file(path: str | Path) -> PymicFile:
    """The state dict of a PyMIC checkpoint (or a bare state dict), read without running code."""
    import torch

    from ...networks.checkpoints import load_checkpoint

    path = Path(path)
    content = load_checkpoint(path)
    if isinstance(content, dict) and "model_state_dict" in content:
        state, kind = content["model_state_dict"], "pymic"
    elif isinstance(content, dict) and content and all(isinstance(v, torch.Tensor) for v in content.values()):
        state, kind = content, "state dict"
    else:
        keys = ", ".join(map(str, list(content)[:6])) if isinstance(content, dict) else type(content).__name__
        raise PastaError(
            f"{path.name} is not a PyMIC checkpoint: it has no model_state_dict (it holds {keys or 'nothing'}) "
            "and is not a plain state dict"
        )
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PastaError(f"{path.name}: its model_state_dict is not a dict of tensors")
    if state and all(str(k).startswith("module.") for k in state):  # saved from a DataParallel wrapper
        state = {str(k)[len("module.") :]: v for k, v in state.items()}
    iteration = content.get("iteration") if kind == "pymic" else None
    valid = content.get("valid_pred") if kind == "pymic" else None
    extra = [str(k) for k in content if k not in PYMIC_KEYS] if kind == "pymic" else []
    return PymicFile(
        dict(state),
        kind,
        int(iteration) if isinstance(iteration, (int, float)) or hasattr(iteration, "item") else None,
        float(valid) if valid is not None and _is_number(valid) else None,
        extra,
    )


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def build_network(config: dict) -> torch.nn.Module:
    """FMUNet or PCT-Net of a checked config (:func:`~.config.check_config`), in evaluation mode."""
    if config["net_type"] == "FMUNet":
        from .fmunet import FMUNet

        network = FMUNet(config)
    else:
        from .pctnet import PCTNet

        network = PCTNet(config)
    return network.eval()


def _shape(t) -> str:
    return "x".join(map(str, tuple(t.shape))) or "scalar"


def layout_problems(network: torch.nn.Module, state: dict) -> tuple:
    """``(missing names, unexpected names, [(name, file shape, network shape)])``."""
    expected = network.state_dict()
    missing = [n for n in expected if n not in state]
    unexpected = [n for n in state if n not in expected]
    differ = [
        (n, _shape(state[n]), _shape(t)) for n, t in expected.items() if n in state and tuple(state[n].shape) != tuple(t.shape)
    ]
    return missing, unexpected, differ


def load_strict(network: torch.nn.Module, state: dict, what: str, describe: str) -> None:
    """Every tensor of ``network`` from ``state`` (same names and shapes, nothing left over);
    a one-line PastaError naming the first differences otherwise."""
    import torch

    missing, unexpected, differ = layout_problems(network, state)
    if missing or unexpected or differ:
        parts = []
        if differ:
            name, theirs, ours = differ[0]
            parts.append(f"{len(differ)} tensor(s) differ in shape (e.g. {name}: file {theirs}, network {ours})")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:2])})")
        if unexpected:
            parts.append(f"{len(unexpected)} not in the network (e.g. {', '.join(unexpected[:2])})")
        raise PastaError(f"{what} does not fit the configured {describe}: {'; '.join(parts)}")
    with torch.no_grad():
        network.load_state_dict({k: v for k, v in state.items()}, strict=True)


def class_dependent(config: dict, name: str) -> bool:
    """Whether ``name`` is one of the output convolutions whose shape follows ``class_num``."""
    return bool(OUTPUT_CONV[config["net_type"]].search(name))


@dataclass
class StartLoad:
    loaded: list  # network tensors taken from the file
    skipped: list  # file tensors not taken (no such name, or another shape)
    fresh: list  # network tensors that start anew


def load_start(network: torch.nn.Module, state: dict, config: dict, what: str) -> StartLoad:
    """PyMIC's ``ckpt_init_mode`` 0 (see the module notes); refuses a start that would leave
    more than the class-dependent output convolutions new."""
    import torch

    expected = network.state_dict()
    wanted = expected
    if config.get("weights_load_mode") == "encoder":
        wanted = {k: v for k, v in expected.items() if k.startswith(ENCODER_PREFIXES)}
    taken = {k: v for k, v in state.items() if k in wanted and tuple(v.shape) == tuple(wanted[k].shape)}
    fresh = [k for k in expected if k not in taken]
    required = [k for k in wanted if k not in taken and not class_dependent(config, k)]
    if required:
        other = next((k for k in required if k in state), None)
        example = f"{other}: file {_shape(state[other])}, network {_shape(expected[other])}" if other else required[0]
        raise PastaError(
            f"{what} does not fit the configured {config['net_type']}: {len(required)} of its tensors besides the output "
            f"convolutions would start from random weights (e.g. {example}); give the config the file was trained with"
        )
    with torch.no_grad():
        network.load_state_dict({k: v.to(expected[k].dtype) for k, v in taken.items()}, strict=False)
    return StartLoad(sorted(taken), sorted(k for k in state if k not in taken), fresh)


def pymic_checkpoint(network_state: dict, optimizer_state: dict | None, iteration: int, valid_pred: float) -> dict:
    """A checkpoint in PyMIC's layout (what its agent saves and loads as ``ckpt_init_name``).
    ``valid_pred`` is a plain float (not a numpy scalar), so any torch loads it with ``weights_only``."""
    return {
        "iteration": int(iteration),
        "valid_pred": float(valid_pred),
        "model_state_dict": {k: v.detach().cpu().contiguous() for k, v in network_state.items()},
        "optimizer_state_dict": optimizer_state if optimizer_state is not None else {},
    }
