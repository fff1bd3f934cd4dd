"""Classification heads on PASTA features: load, apply, save.

Two kinds, both stored under PASTA's names so one loader reads them:

* ``mlp``: PASTA's head, Linear(C, 512) -> LeakyReLU -> Linear(512, 256) -> LeakyReLU ->
  Linear(256, N), tensors ``head.0.*``, ``head.2.*``, ``head.4.*``;
* ``linear``: logistic regression, Linear(C, N), tensors ``head.0.*``.

Sources: any PASTA-format checkpoint holding ``head.*`` (``PASTA_final.pth`` carries the
stage-II report head, 14 logits), or a head file written by :func:`save_head`::

    {"state_dict": {"head.0.weight": ..., "feature_mean": (C,), "feature_std": (C,)},
     "pasta_head": {"format_version": 1, "kind": ..., "feature_dim": C, "groups": [...], ...}}

which ``torch.load(weights_only=True)`` reads (tensors, strings, numbers, lists, dicts only).
Features are standardised with ``feature_mean``/``feature_std`` before the head (PASTA's
own heads: none). Each output group is a softmax (see :mod:`.groups`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError
from .groups import check_groups, default_groups, groups_from_dicts, split_softmax

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch


HEAD_FORMAT = "pasta_head"
FORMAT_VERSION = 1
KINDS = ("linear", "mlp")
NEGATIVE_SLOPE = 1e-2
MLP_HIDDEN = (512, 256)


def build_module(kind: str, feature_dim: int, num_outputs: int) -> torch.nn.Module:
    """The torch module of a head; its state dict names are ``head.{0,2,4}.*`` (``head.0.*`` for linear)."""
    from torch import nn

    if kind == "linear":
        layers = [nn.Linear(feature_dim, num_outputs)]
    elif kind == "mlp":
        h1, h2 = MLP_HIDDEN
        layers = [
            nn.Linear(feature_dim, h1),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Linear(h1, h2),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Linear(h2, num_outputs),
        ]
    else:
        raise PastaError(f"unknown head kind '{kind}'; choose {' or '.join(KINDS)}")
    module = nn.Module()
    module.head = nn.Sequential(*layers)
    return module


@dataclass
class Head:
    """A head ready to use: ``logits(features)`` and ``predict(features)``."""

    module: object  # torch module with ``.head``
    kind: str
    feature_dim: int
    groups: tuple
    mean: np.ndarray
    std: np.ndarray
    name: str = "head"
    meta: dict = field(default_factory=dict)

    @property
    def num_outputs(self) -> int:
        return sum(g.size for g in self.groups)

    def _input(self, features) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.feature_dim:
            raise PastaError(
                f"the head '{self.name}' expects {self.feature_dim} features per row, "
                f"got shape {tuple(x.shape)}; were the features made with the same encoder?"
            )
        return (x - self.mean) / self.std

    def logits(self, features: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(self._input(features))
        with torch.inference_mode():
            return self.module.head(x).double().numpy()

    def probabilities(self, features: np.ndarray) -> list:
        """``[(group, (B, size) probabilities)]``, one softmax per group."""
        return split_softmax(self.logits(features), self.groups)

    def predict(self, features: np.ndarray) -> list:
        """One dict per row: group name -> :class:`~pastacore.report.model.AttributeValue`."""
        from ..report.model import AttributeValue

        per_group = self.probabilities(features)
        rows = []
        for b in range(per_group[0][1].shape[0]):
            row = {}
            for group, p in per_group:
                probs = {option: float(p[b, n]) for n, option in enumerate(group.options)}
                row[group.name] = AttributeValue(group.options[int(np.argmax(p[b]))], probs, self.name)
            rows.append(row)
        return rows

    def state_dict(self) -> dict:
        import torch

        state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        state["feature_mean"] = torch.from_numpy(np.asarray(self.mean, np.float32).copy())
        state["feature_std"] = torch.from_numpy(np.asarray(self.std, np.float32).copy())
        return state


def _kind_of(state: dict) -> str:
    if "head.4.weight" in state and "head.2.weight" in state:
        return "mlp"
    if "head.0.weight" in state and "head.2.weight" not in state:
        return "linear"
    raise PastaError("incomplete classification head: expected head.0/2/4.* (PASTA MLP) or head.0.* (linear)")


def head_from_state(state: dict, groups: Sequence | None = None, name: str = "head", meta: dict | None = None) -> Head:
    """A :class:`Head` from ``head.*`` tensors (and optional ``feature_mean``/``feature_std``)."""
    heads = {k: v for k, v in state.items() if k.startswith("head.")}
    if not heads:
        raise PastaError(f"{name} holds no classification head (no head.* tensors)")
    kind = _kind_of(heads)
    first, last = heads["head.0.weight"], heads["head.4.weight" if kind == "mlp" else "head.0.weight"]
    if first.dim() != 2 or last.dim() != 2:
        raise PastaError(f"{name}: head weights must be 2-D (Linear layers)")
    feature_dim, num_outputs = int(first.shape[1]), int(last.shape[0])
    groups = check_groups(groups if groups is not None else default_groups(num_outputs), num_outputs)
    module = build_module(kind, feature_dim, num_outputs)
    expected = module.state_dict()
    wrong = [
        f"{k}: {tuple(heads[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in heads and tuple(heads[k].shape) != tuple(v.shape)
    ]
    missing = [k for k in expected if k not in heads]
    if wrong or missing:
        raise PastaError(
            f"{name}: the head tensors do not fit a {kind} head ({'; '.join(wrong + [m + ' missing' for m in missing])[:300]})"
        )
    module.load_state_dict({k: heads[k].float() for k in expected})
    module.eval()
    mean = state.get("feature_mean")
    std = state.get("feature_std")
    mean = np.zeros(feature_dim, np.float32) if mean is None else mean.float().numpy().reshape(-1)
    std = np.ones(feature_dim, np.float32) if std is None else std.float().numpy().reshape(-1)
    if mean.shape != (feature_dim,) or std.shape != (feature_dim,) or not np.all(std > 0):
        raise PastaError(f"{name}: feature_mean/feature_std must hold {feature_dim} values (std > 0)")
    return Head(module, kind, feature_dim, groups, mean, std, name, dict(meta or {}))


def load_head(source: str | Path | dict, groups: Sequence | None = None) -> Head:
    """A head from a file written by :func:`save_head`, a PASTA-format checkpoint, or a dict.

    ``groups`` overrides the output groups (default: those recorded in the file, else the
    report attributes for 14 outputs, tumour presence for 2).
    """
    from ..networks.checkpoints import load_checkpoint
    from ..networks.loading import read_weights

    if isinstance(source, dict):
        obj, name = source, "the head"
    else:
        path = Path(source)
        obj, name = load_checkpoint(path), path.name
    if not isinstance(obj, dict):
        raise PastaError(f"{name} does not hold a dict of weights")
    meta = obj.get(HEAD_FORMAT)
    if isinstance(meta, dict):
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise PastaError(f"{name} was written by a newer PASTA (head format {meta.get('format_version')})")
        state = obj.get("state_dict")
        if not isinstance(state, dict):
            raise PastaError(f"{name} is a PASTA head file without its state_dict")
        if groups is None and meta.get("groups"):
            groups = groups_from_dicts(meta["groups"])
        head = head_from_state(state, groups, name, meta)
        if meta.get("kind") not in (None, head.kind):
            raise PastaError(f"{name} says it is a {meta.get('kind')} head but holds a {head.kind} head")
        return head
    state, _info = read_weights(obj)  # flat, state_dict or network_weights; prefixes stripped
    return head_from_state(state, groups, name, {"source": "pasta-checkpoint"})


def save_head(head: Head, path: str | Path, extra_meta: dict | None = None) -> None:
    """Write ``head`` to ``path`` (see the module docstring for the layout)."""
    import torch

    from .. import __version__

    meta = {
        "format_version": FORMAT_VERSION,
        "kind": head.kind,
        "feature_dim": int(head.feature_dim),
        "groups": [g.to_dict() for g in head.groups],
        "software_version": __version__,
    }
    meta.update(extra_meta or {})
    torch.save({"state_dict": head.state_dict(), HEAD_FORMAT: meta}, str(path))
