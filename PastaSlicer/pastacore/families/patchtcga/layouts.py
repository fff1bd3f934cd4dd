"""Which network inside a PatchTCGA checkpoint is the encoder, read from the file's own keys.

Each method's training code saves its own layout (top-level key -> prefix of the encoder):

=========  ======================================================  ======================================
method     the encoder (taken)                                     beside it (never taken)
=========  ======================================================  ======================================
simclr     ``state_dict`` -> ``convnet.*`` minus ``convnet.fc``    ``projection.*``, ``hparams``
moco       ``state_dict`` -> ``module.encoder_q.*`` minus ``fc``    ``module.encoder_k.*`` (momentum copy),
                                                                   ``module.queue``
byol       ``state_dict`` -> ``net_online.net.*``                  ``net_target.*``, projector, predictor,
                                                                   the 20-organ classifier
dino       ``teacher`` -> ``backbone.*``                           ``student`` (``module.backbone.*``),
                                                                   the DINO heads, ``args``
mae        ``model`` minus ``decoder_*``, ``mask_token``             ``args``
=========  ======================================================  ======================================

A bare state dict (a torchvision ResNet or a timm/DINO ViT, ``head``/``fc`` classifier dropped,
a ``module.`` prefix stripped) and a teacher-only DINO file load for any method of their network
kind. A file of another method's layout is refused in one line: several public loaders use
``strict=False`` and would silently run random weights. Works on dicts; imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import PastaError
from .config import METHOD_LABELS, RESNET_METHODS

VIT_MARKERS = ("cls_token", "pos_embed")
RESNET_MARKERS = ("conv1.weight", "layer1.0.conv1.weight")


@dataclass(frozen=True)
class Encoder:
    """The encoder's tensors found in a file: ``state`` under our network's names."""

    state: dict
    layout: str  # a method name, or "bare-resnet" / "bare-vit"
    source: str  # where in the file, e.g. "state_dict: module.encoder_q.*"
    ignored: tuple = ()  # what else the file holds, in words


def is_tensor_dict(value: object) -> bool:
    return isinstance(value, dict) and bool(value) and all(hasattr(v, "shape") and hasattr(v, "dtype") for v in value.values())


def _with_prefix(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _has_prefix(state: dict, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in state)


def _drop(state: dict, prefixes: tuple) -> dict:
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


def _kind(state: dict) -> str | None:
    if all(m in state for m in VIT_MARKERS):
        return "vit"
    if all(m in state for m in RESNET_MARKERS):
        return "resnet"
    return None


def _bare(state: dict, name: str, where: str) -> Encoder:
    if _kind(state) is None and all(k.startswith("module.") for k in state):
        state = _with_prefix(state, "module.")
        where += " (module.* stripped)"
    kind = _kind(state)
    if kind is None:
        keys = ", ".join(sorted(state)[:4])
        raise PastaError(
            f"{name} holds no PatchTCGA encoder: none of the five layouts nor a bare ResNet/ViT state dict (keys: {keys}, ...)"
        )
    if kind == "resnet":
        return Encoder(
            _drop(state, ("fc.",)), "bare-resnet", where, ("a classifier (fc.*)",) if _has_prefix(state, "fc.") else ()
        )
    return Encoder(_drop(state, ("head.",)), "bare-vit", where, ("a classifier (head.*)",) if _has_prefix(state, "head.") else ())


def _from_state_dict(state: dict, name: str, where: str) -> Encoder:
    """The encoder of a flat state dict, by its prefixes."""
    if _has_prefix(state, "convnet."):
        ignored = ("the projection head",) if _has_prefix(state, "projection.") else ()
        return Encoder(_drop(_with_prefix(state, "convnet."), ("fc.",)), "simclr", f"{where}: convnet.*", ignored)
    for prefix in ("module.encoder_q.", "encoder_q."):
        if _has_prefix(state, prefix):
            ignored = ("the momentum encoder (encoder_k)", "the queue") if _has_prefix(state, prefix.replace("_q", "_k")) else ()
            return Encoder(_drop(_with_prefix(state, prefix), ("fc.",)), "moco", f"{where}: {prefix}*", ignored)
    if _has_prefix(state, "net_online."):
        if not _has_prefix(state, "net_online.net."):
            raise PastaError(f"{name} is a BYOL file whose online network is not under net_online.net.*")
        ignored = ("the target network (net_target)", "projector, predictor and classifier")
        return Encoder(_with_prefix(state, "net_online.net."), "byol", f"{where}: net_online.net.*", ignored)
    if _has_prefix(state, "module.backbone."):
        raise PastaError(
            f"{name} holds a DINO student (module.backbone.*); DINO's encoder is the teacher: use its 'teacher' weights"
        )
    if _has_prefix(state, "backbone."):
        return Encoder(_with_prefix(state, "backbone."), "dino", f"{where}: backbone.*", ("the DINO head",))
    if _has_prefix(state, "decoder_") or "mask_token" in state:
        return Encoder(
            _drop(state, ("decoder_", "mask_token")), "mae", f"{where} minus decoder_*, mask_token", ("the MAE decoder",)
        )
    return _bare(state, name, where)


def find_encoder(obj: object, name: str) -> Encoder:
    """The encoder inside a loaded checkpoint ``obj`` (file ``name``), whatever its layout."""
    if not isinstance(obj, dict):
        raise PastaError(f"{name} does not hold a dict of weights")
    if "teacher" in obj:
        teacher = obj["teacher"]
        if not is_tensor_dict(teacher):
            raise PastaError(f"{name}: its 'teacher' entry is not a state dict")
        if all(k.startswith("module.") for k in teacher):  # a teacher wrapped for distributed training
            teacher = _with_prefix(teacher, "module.")
        found = _from_state_dict(teacher, name, "teacher")
        extra = ("the DINO student", "the DINO head") if "student" in obj else ("the DINO head",)
        layout = "dino" if found.layout in ("dino", "bare-vit") else found.layout
        return Encoder(found.state, layout, found.source, extra)
    if "student" in obj:
        raise PastaError(f"{name} holds only a DINO student; DINO's encoder is the teacher, which this file lacks")
    if "model" in obj and isinstance(obj["model"], dict):
        found = _from_state_dict(obj["model"], name, "model")
        return Encoder(found.state, "mae" if found.layout == "bare-vit" else found.layout, found.source, found.ignored)
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        return _from_state_dict(obj["state_dict"], name, "state_dict")
    if is_tensor_dict(obj):
        return _from_state_dict(obj, name, "the state dict")
    keys = ", ".join(sorted(map(str, obj))[:6])
    raise PastaError(f"{name} holds none of the PatchTCGA layouts (top-level keys: {keys})")


def check_method(found: Encoder, method: str, name: str) -> None:
    """Refuse, in one line, a file of another method's layout than the configured ``method``."""
    if found.layout == method:
        return
    if found.layout.startswith("bare-"):
        kind = "resnet" if method in RESNET_METHODS else "vit"
        if found.layout == f"bare-{kind}":
            return
        net = "a ResNet" if kind == "vit" else "a ViT"
        raise PastaError(
            f"{name} holds {net} state dict, but method '{method}' uses {'a ResNet' if kind == 'resnet' else 'a ViT'}"
        )
    raise PastaError(
        f"{name} is a {METHOD_LABELS[found.layout]} checkpoint ({found.source}), but the config's method is "
        f'\'{method}\' ({METHOD_LABELS[method]}); set "method": "{found.layout}" or choose the {METHOD_LABELS[method]} file'
    )
