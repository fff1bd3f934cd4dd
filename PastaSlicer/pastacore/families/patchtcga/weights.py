"""Load a PatchTCGA checkpoint into the configured network: safely, and strictly.

``torch.load(weights_only=True)`` with a minimal allow-list: numpy's scalar/array rebuilders (as
every PASTA loader), ``argparse.Namespace`` (DINO's and MAE's ``args``, SimCLR's ``hparams``) and
pathlib's path classes (simclr-pytorch stores its run folder as a path in ``hparams.root``);
building either runs no code of the file's. The encoder found by :mod:`.layouts` must fill the
network exactly: every tensor present, none left over, every shape equal. Only batch-norm step
counters (absent from older files) and MAE's ``fc_norm`` (fresh unless a file brings one) may be
missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ...errors import PastaError
from ...networks.checkpoints import _first_line, _is_text, _is_zip, _numpy_safe_globals, _offender
from .config import describe, is_vit
from .layouts import Encoder, check_method, find_encoder
from .resnet import ResNetTrunk
from .vit import VisionTransformer


@dataclass
class LoadedEncoder:
    """The configured network holding a file's encoder weights (eval mode, on the CPU)."""

    network: nn.Module
    config: dict
    found: Encoder
    name: str
    meta: dict = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    def summary(self) -> dict:
        """JSON-ready: what was loaded, from where in the file, and what was left aside."""
        return {
            "parameters": int(self.parameters),
            "layout": self.found.layout,
            "encoder_source": self.found.source,
            "ignored": list(self.found.ignored),
            "method": self.config["method"],
            "arch": self.config["arch"],
            "feature_dim": int(self.network.feature_dim),
            "description": describe(self.config),
            **self.meta,
        }


def _safe_globals() -> list:
    import argparse
    import pathlib

    allowed = _numpy_safe_globals() + [argparse.Namespace, pathlib.PosixPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]
    allowed.append((pathlib.PureWindowsPath, "pathlib.WindowsPath"))  # a Windows path cannot be built here: keep it pure
    return allowed


def read_checkpoint(path: str | Path) -> object:
    """The object stored in ``path``, read with ``weights_only=True`` and the allow-list above."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise PastaError(f"{path} is not a file")
    if path.stat().st_size == 0 or _is_text(path):
        raise PastaError(f"cannot read {path.name}: it is empty or holds text, not weights")
    if path.name.lower().endswith(".safetensors"):
        from ...networks.checkpoints import load_checkpoint

        return load_checkpoint(path)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise PastaError(f"refusing {path.name}: it contains code or objects beyond tensors ({_offender(exc)})") from None
        raise PastaError(f"cannot read {path.name}: corrupt checkpoint ({_first_line(exc)})") from None
    except MemoryError:
        raise
    except Exception as exc:  # torch's unpickler raises KeyError, IndexError... on cut files
        raise PastaError(f"cannot read {path.name}: corrupt, truncated or not a checkpoint ({_first_line(exc)})") from None


def build_network(config: dict) -> nn.Module:
    """The configured network with fresh weights (see :mod:`.config`)."""
    if not is_vit(config):
        return ResNetTrunk(config["layers"], config["channels"])
    return VisionTransformer(
        config["img_size"],
        config["patch_size"],
        config["embed_dim"],
        config["depth"],
        config["num_heads"],
        config["mlp_ratio"],
        pool=config["pool"],
        interpolate=config["method"] == "dino",
    )


def _shape(tensor) -> str:
    return "x".join(str(int(s)) for s in tensor.shape) or "scalar"


def _may_be_missing(key: str) -> bool:
    return key.endswith("num_batches_tracked") or key.startswith("fc_norm.")


def _misfit(state: dict, expected: dict) -> list:
    """What keeps ``state`` from filling ``expected`` exactly, in words (empty: it fits)."""
    problems = []
    for key, want in expected.items():
        have = state.get(key)
        if have is not None and tuple(have.shape) != tuple(want.shape):
            hint = " (img_size / patch_size differ from the file's)" if key == "pos_embed" else ""
            problems.append(f"{key} is {_shape(have)} in the file, {_shape(want)} in the network{hint}")
    missing = [k for k in expected if k not in state and not _may_be_missing(k)]
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    extra = [k for k in state if k not in expected]
    if extra:
        problems.append(f"{len(extra)} unexpected tensor(s) ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})")
    return problems


def _sizes(config: dict) -> str:
    if is_vit(config):
        return ", ".join(f"{k} {config[k]}" for k in ("img_size", "patch_size", "embed_dim", "depth", "num_heads"))
    return f"layers {config['layers']}, channels {config['channels']}"


def load_weights(network: nn.Module, found: Encoder, config: dict, name: str) -> None:
    """Copy ``found.state`` into ``network`` strictly; one-line PastaError when it does not fit."""
    expected = network.state_dict()
    problems = _misfit(found.state, expected)
    if problems:
        raise PastaError(f"{name} does not fit the configured {config['arch']} ({_sizes(config)}): {'; '.join(problems[:3])}")
    state = {k: v for k, v in found.state.items()}
    for key, value in expected.items():
        state.setdefault(key, value)  # step counters; a fresh fc_norm
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise PastaError(f"{name} holds NaN or infinite weights ({bad[0]}); the file is damaged")
    network.load_state_dict(state, strict=True)


def load_encoder(path: str | Path, config: dict) -> LoadedEncoder:
    """The encoder of the checkpoint ``path`` in the network ``config`` describes (checked config)."""
    name = Path(path).name
    obj = read_checkpoint(path)
    found = find_encoder(obj, name)
    check_method(found, config["method"], name)
    network = build_network(config)
    load_weights(network, found, config, name)
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    meta = {}
    stored = obj.get("args", obj.get("hparams")) if isinstance(obj, dict) else None
    if stored is not None and hasattr(stored, "arch"):
        meta["stored_arch"] = str(stored.arch)  # for information: the config's sizes win
    return LoadedEncoder(network, config, found, name, meta)
