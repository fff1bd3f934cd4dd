"""Reading gCIS checkpoints strictly into the configured network.

The public code saves ``{"epoch", "best_acc" (a numpy float64), "state_dict", "optimizer"?}``, with
``module.`` before every key when trained with DistributedDataParallel; test.py strips the prefix
and loads strictly. Files are read with ``torch.load(weights_only=True)`` and numpy's scalar
rebuilders allowed (:func:`pastacore.networks.checkpoints.load_checkpoint`).

Layouts: a *single-path* file (the released ``params.pth``: ``decoder10.layer.*``,
``decoder5.conv_block.*`` ... ``out.*``) and a *multi-path* file (``prompt_router`` per position,
``decoder10.layer_p<i>.*``, ``decoder5.conv_block_p<i>.*`` ... ``out_p<i>.*``). A multi-path file
becomes a single-path model through a ``path_selection`` (one one-based index per position), as
the public ``--ap_model/--path_selection`` does: the chosen sub-path of each position is renamed to
the single-path name and the rest (other sub-paths, the routers) is left out. Whatever does not
fit is refused in one line; nothing runs with weights the file does not hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import PastaError

if TYPE_CHECKING:
    import torch
from .config import AP_POSITIONS

# the public main.py's renaming: (multi-path sub-path stem, single-path name) per AP position
PATH_NAMES = (
    ("decoder10.layer_p", "decoder10.layer"),
    ("decoder5.conv_block_p", "decoder5.conv_block"),
    ("decoder4.conv_block_p", "decoder4.conv_block"),
    ("decoder3.conv_block_p", "decoder3.conv_block"),
    ("decoder2.conv_block_p", "decoder2.conv_block"),
    ("decoder1.conv_block_p", "decoder1.conv_block"),
    ("out_p", "out"),
)
_OUT_PATH = re.compile(r"^out_p(\d+)\.")


@dataclass(frozen=True)
class Layout:
    """What a gCIS state dict holds."""

    variant: str  # "single" or "ap"
    ap_num: int  # sub-paths per position (1 for a single-path file)
    has_encoder: bool  # swinViT.* present
    feature_size: int | None  # from the patch embedding, when present
    out_channels: int | None  # from the output head

    def describe(self) -> str:
        kind = "single-path" if self.variant == "single" else f"multi-path ({self.ap_num} paths per position)"
        size = f", feature_size {self.feature_size}" if self.feature_size else ""
        return f"gCIS {kind}{size}, {self.out_channels} output channels"


def read_state_dict(path: str | Path) -> tuple:
    """``(state dict, whether a module. prefix was stripped)`` of a gCIS checkpoint file."""
    from ...networks.checkpoints import load_checkpoint

    path = Path(path)
    stored = load_checkpoint(path)
    state = stored.get("state_dict", stored) if isinstance(stored, dict) else None
    if not isinstance(state, dict) or not state or not all(_is_tensor(v) for v in state.values()):
        keys = ", ".join(map(str, list(stored)[:4])) if isinstance(stored, dict) else type(stored).__name__
        raise PastaError(f"{path.name} is not a gCIS checkpoint: expected {{'state_dict': tensors}}, found {keys}")
    stripped = all(str(k).startswith("module.") for k in state)
    if stripped:
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, stripped


def _is_tensor(value) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def layout_of(state: dict, name: str = "the file") -> Layout:
    """The layout of a gCIS state dict; PastaError when it is neither gCIS layout."""
    paths = {int(m.group(1)) for m in map(_OUT_PATH.match, state) if m}
    if "out.conv.conv.weight" in state and not paths:
        variant, ap_num, head = "single", 1, state["out.conv.conv.weight"]
    elif paths and "prompt_router.weight" in state:
        variant, ap_num, head = "ap", max(paths) + 1, state.get("out_p0.conv.conv.weight")
    else:
        raise PastaError(
            f"{name} is not a gCIS checkpoint: it has neither the output head 'out' nor the sub-paths 'out_p0', 'out_p1'..."
        )
    embed = state.get("swinViT.patch_embed.proj.weight")
    return Layout(
        variant,
        ap_num,
        any(k.startswith("swinViT.") for k in state),
        int(embed.shape[0]) if embed is not None else None,
        int(head.shape[0]) if head is not None else None,
    )


def trim_to_path(state: dict, selection: list) -> dict:
    """A multi-path state dict cut to one sub-path per position (one-based ``selection`` in
    :data:`~.config.AP_POSITIONS` order): the chosen sub-paths under the single-path names; the
    other sub-paths and every ``prompt_router`` left out."""
    chosen = {f"{stem}{index - 1}.": f"{single}." for (stem, single), index in zip(PATH_NAMES, selection)}
    stems = tuple(stem for stem, _ in PATH_NAMES)
    trimmed = {}
    for key, value in state.items():
        prefix = next((p for p in chosen if key.startswith(p)), None)
        if prefix is not None:
            trimmed[chosen[prefix] + key[len(prefix) :]] = value
        elif not _is_path_or_router(key, stems):
            trimmed[key] = value
    return trimmed


def _is_path_or_router(key: str, stems: tuple) -> bool:
    if "prompt_router" in key.split("."):
        return True
    return any(key.startswith(stem) and key[len(stem) :].split(".", 1)[0].isdigit() for stem in stems)


def fitted_state(path: str | Path, config: dict) -> tuple:
    """``(state dict ready for the configured network, Layout of the file, notes)``: checks that the
    file's layout is the config's variant (or cuts it with ``path_selection``) and that it holds the
    encoder; one-line PastaError otherwise."""
    name = Path(path).name
    state, stripped = read_state_dict(path)
    layout = layout_of(state, name)
    notes = ["'module.' prefix stripped"] if stripped else []
    if not layout.has_encoder:
        raise PastaError(
            f"{name} lacks the Swin encoder weights (no swinViT.* tensors; a known problem of some released "
            f"gCIS task files, public issue 2): the public test.py would refuse it too; use a file that holds the encoder"
        )
    selection = config.get("path_selection")
    variant = config["variant"]
    if variant == "ap" and layout.variant == "single":
        raise PastaError(f"{name} is a single-path gCIS checkpoint (a task model); declare variant single for it")
    if variant == "single" and layout.variant == "ap" and not selection:
        raise PastaError(
            f"{name} is a multi-path gCIS checkpoint ({layout.ap_num} paths per position); declare variant ap, "
            f"or variant single with a path_selection of {len(AP_POSITIONS)} indexes to cut one path out"
        )
    if variant == "single" and layout.variant == "single" and selection:
        raise PastaError(f"{name} is already a single-path gCIS checkpoint; a path_selection applies to multi-path files only")
    if variant == "ap" and layout.ap_num != config["ap_num"]:
        raise PastaError(f"{name} has {layout.ap_num} paths per position, the config declares ap_num {config['ap_num']}")
    if selection:
        if max(selection) > layout.ap_num:
            raise PastaError(
                f"path_selection {selection} asks for path {max(selection)}, but {name} has {layout.ap_num} per position"
            )
        state = trim_to_path(state, selection)
        notes.append(f"cut from a multi-path checkpoint by path_selection {','.join(map(str, selection))}")
    return state, layout, notes


def load_strictly(network: torch.nn.Module, state: dict, name: str, config: dict) -> None:
    """``network.load_state_dict(state, strict=True)`` after comparing names and shapes, so a
    mismatch is one line that says what differs (and what the file looks like)."""
    expected = network.state_dict()
    # the Swin blocks' relative-position index is a constant of the window size, not a weight:
    # taken from the network when a file leaves it out
    state = {**{k: v for k, v in expected.items() if k.endswith("relative_position_index") and k not in state}, **state}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or reshaped:
        problems = []
        if missing:
            problems.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} not in the network (e.g. {unexpected[0]})")
        if reshaped:
            k = reshaped[0]
            problems.append(
                f"{len(reshaped)} of another shape (e.g. {k}: file {tuple(state[k].shape)}, network {tuple(expected[k].shape)})"
            )
        looks = _looks_like(state)
        raise PastaError(
            f"{name} does not fit the configured gCIS network (feature_size {config['feature_size']}, "
            f"out_channels {config['out_channels']}): {'; '.join(problems)}{looks}"
        )
    network.load_state_dict(state, strict=True)


def _looks_like(state: dict) -> str:
    embed, head = state.get("swinViT.patch_embed.proj.weight"), state.get("out.conv.conv.weight")
    facts = []
    if embed is not None:
        facts.append(f"feature_size {embed.shape[0]}, in_channels {embed.shape[1]}")
    if head is not None:
        facts.append(f"out_channels {head.shape[0]}")
    return f"; the file looks like {', '.join(facts)}" if facts else ""


def load_network(path: str | Path, config: dict) -> tuple:
    """``(network in evaluation mode with the file's weights, summary dict)`` for a checked config."""
    from .network import build_network

    state, layout, notes = fitted_state(path, config)
    network = build_network(config)
    load_strictly(network, state, Path(path).name, config)
    summary = {
        "parameters": int(sum(p.numel() for p in network.parameters())),
        "layout": layout.describe(),
        "variant": config["variant"],
        "file_variant": layout.variant,
        "ap_num": layout.ap_num,
        "feature_size": config["feature_size"],
        "out_channels": config["out_channels"],
        "tensors": len(state),
        "notes": notes,
    }
    if config.get("path_selection"):
        summary["path_selection"] = list(config["path_selection"])
    return network, summary
