"""Reading the released checkpoints' key layout into our networks, strictly.

A LesionDiffusion checkpoint is a Lightning file whose ``state_dict`` holds

* ``model.<name>``: the UNet's own parameters (LMNet, LINet);
* ``model_ema.<name without dots>``: the exponential moving average of each parameter
  (LitEma removes the dots, as buffer names cannot hold them), plus ``model_ema.decay`` and
  ``model_ema.num_updates``; sampling uses these;
* the schedule buffers (``betas``, ``alphas_cumprod``, ...);
* LINet: ``first_stage_model.*`` (its VQ); the VQ file: ``encoder.*``, ``decoder.*``,
  ``quantize.embedding.weight``, ``quant_conv.*``, ``post_quant_conv.*`` (and ``loss.*``,
  the training discriminator, not used).

Loading is strict: every parameter of the network built from the config must be present
with the same shape, and no parameter of that namespace may be left over (a config
narrower or wider than the file is an error, not a partial load). Files are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError
from ..networks.checkpoints import load_checkpoint

if TYPE_CHECKING:
    import numpy as np

    from .unet import DiffusionUNet
    from .vq import VQModel


EMA_PREFIX, MODEL_PREFIX, FIRST_STAGE_PREFIX = "model_ema.", "model.", "first_stage_model."
EMA_BOOKKEEPING = ("model_ema.decay", "model_ema.num_updates")
VQ_MODULES = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
WEIGHT_CHOICES = ("auto", "ema", "model")
_LIST = 5


@dataclass
class LoadReport:
    source: str
    weights: str  # "ema" or "model" (UNets); "vq" for the autoencoder
    prefix: str
    tensors: int
    ignored: dict = field(default_factory=dict)  # top-level prefix -> number of tensors not used

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "weights": self.weights,
            "prefix": self.prefix,
            "tensors": self.tensors,
            "ignored": self.ignored,
        }


def read_state(path: str | Path) -> dict:
    """The ``state_dict`` of a Lightning checkpoint (or a flat state dict), read safely."""
    path = Path(path)
    obj = load_checkpoint(path, metadata_globals=True)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state:
        raise PastaError(f"{path.name} holds no state dict of tensors")
    return state


def ema_name(name: str) -> str:
    return name.replace(".", "")


def _few(items) -> str:
    items = list(items)
    return ", ".join(items[:_LIST]) + (f" and {len(items) - _LIST} more" if len(items) > _LIST else "")


def _ignored(state: dict, used: set) -> dict:
    counts = {}
    for key in state:
        if key not in used:
            top = key.split(".", 1)[0] if "." in key else key
            counts[top] = counts.get(top, 0) + 1
    return counts


def _check_and_load(module, wanted: dict, what: str, source: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in wanted]
    if missing:
        raise PastaError(
            f"{source}: the {what} lacks {len(missing)} tensor(s) the config needs ({_few(missing)}); "
            f"is the config the one this checkpoint was trained with?"
        )
    mismatched = [
        f"{k} {tuple(wanted[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if tuple(wanted[k].shape) != tuple(v.shape)
    ]
    if mismatched:
        raise PastaError(
            f"{source}: {len(mismatched)} tensor(s) of the {what} have other shapes than the config builds "
            f"(file vs config: {_few(mismatched)}); the config does not match this checkpoint"
        )
    module.load_state_dict({k: wanted[k] for k in own}, strict=True)


def load_unet(unet: DiffusionUNet, state: dict, weights: str = "auto", source: str = "checkpoint") -> LoadReport:
    """Load ``model.*`` or the EMA ``model_ema.*`` weights into ``unet`` (see the module docstring).

    ``weights``: ``ema`` (require the EMA), ``model`` (the raw weights) or ``auto`` (the EMA
    when the file has one, as sampling uses)."""
    if weights not in WEIGHT_CHOICES:
        raise PastaError(f"unknown weights choice {weights!r}; choose one of: {', '.join(WEIGHT_CHOICES)}")
    names = list(unet.state_dict())
    mangled = {}
    for name in names:
        other = mangled.setdefault(ema_name(name), name)
        if other != name:
            raise PastaError(
                f"the EMA names of {other} and {name} collide once the dots are removed; this config's "
                f"EMA weights cannot be read unambiguously (use the raw model weights)"
            )
    has_ema = any(k.startswith(EMA_PREFIX) and k not in EMA_BOOKKEEPING for k in state)
    use_ema = weights == "ema" or (weights == "auto" and has_ema)
    if use_ema and not has_ema:
        raise PastaError(f"{source} holds no EMA weights (model_ema.*)")
    prefix = EMA_PREFIX if use_ema else MODEL_PREFIX
    if not any(k.startswith(prefix) for k in state):
        raise PastaError(f"{source} holds no diffusion UNet ({prefix}* keys); is it an LMNet or LINet checkpoint?")
    wanted, used = {}, set(EMA_BOOKKEEPING) if use_ema else set()
    for name in names:
        key = prefix + (ema_name(name) if use_ema else name)
        if key in state:
            wanted[name] = state[key]
            used.add(key)
    _check_and_load(unet, wanted, "EMA weights" if use_ema else "UNet weights", source)
    extra = [k for k in state if k.startswith(prefix) and k not in used]
    if extra:
        raise PastaError(
            f"{source}: {len(extra)} UNet tensor(s) in the file have no place in the network the config "
            f"builds ({_few(extra)}); the config does not match this checkpoint"
        )
    used |= {k for k in state if k.startswith(MODEL_PREFIX if use_ema else EMA_PREFIX)}
    return LoadReport(source, "ema" if use_ema else "model", prefix, len(wanted), _ignored(state, used))


def vq_prefix(state: dict) -> str | None:
    """Where a VQ sits in a state dict: ``first_stage_model.`` (LINet), ``""`` (VQ file) or None."""
    if any(k.startswith(FIRST_STAGE_PREFIX + VQ_MODULES[0]) for k in state):
        return FIRST_STAGE_PREFIX
    if any(k.startswith(VQ_MODULES[0]) for k in state):
        return ""
    return None


def load_vq(vq: VQModel, state: dict, source: str = "checkpoint", prefix: str | None = None) -> LoadReport:
    prefix = vq_prefix(state) if prefix is None else prefix
    if prefix is None:
        raise PastaError(f"{source} holds no VQ autoencoder (encoder.*, decoder.*, quantize.* keys)")
    own = set(vq.state_dict())
    wanted = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix) :].startswith(VQ_MODULES)}
    _check_and_load(vq, wanted, "VQ autoencoder", source)
    extra = [k for k in wanted if k not in own]
    if extra:
        raise PastaError(
            f"{source}: {len(extra)} VQ tensor(s) in the file have no place in the network the config "
            f"builds ({_few(extra)}); the config does not match this checkpoint"
        )
    used = {prefix + k for k in wanted}
    return LoadReport(source, "vq", prefix, len(wanted), _ignored(state, used))


def stored_alphas_cumprod(state: dict, timesteps: int) -> np.ndarray | None:
    """The checkpoint's ``alphas_cumprod`` buffer as float32 numpy (None when absent)."""
    value = state.get("alphas_cumprod")
    if value is None:
        return None
    array = value.detach().float().cpu().numpy()
    if array.shape != (timesteps,):
        raise PastaError(f"the checkpoint's noise schedule has {array.shape[0]} steps but the config says {timesteps}")
    return array
