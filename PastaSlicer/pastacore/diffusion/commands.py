"""``pasta models forward|sample ... --config``: LesionDiffusion networks on tensors, to compare
implementations. Inputs and outputs are ``torch.save`` dicts of tensors, read with
``weights_only=True``.

forward (LMNet, LINet): IN ``x_t`` (B, C, D, H, W), ``t`` (B,), ``context`` (B, N, dim),
``cond`` (B, C', D, H, W): the channels concatenated to ``x_t`` (LMNet's seg, target and box;
LINet's latent mask) -> OUT ``eps``: the UNet's output on ``cat(x_t, cond)`` (apply_model; by
default with the raw ``model.*`` weights, as apply_model outside ``ema_scope``; sampling
defaults to the EMA weights, as the public sampling runs inside it).
forward (VQ): IN ``x`` (B, 1, D, H, W) -> OUT ``quant``, ``indices`` (B, d, h, w), ``decoded``.
sample: IN ``x_T``, ``context``, ``ddim_steps``, ``eta``, then ``cond`` (LMNet) or ``x0`` and
``mask`` (LINet latents), optionally ``noise`` (steps, *x_T.shape) used as the per-step noise
-> OUT ``samples`` (LINet: the latent and the mask, as the public sampler returns them) and
``x_inter`` (x_T and the logged intermediate samples, stacked).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import PastaError
from ..fileio.atomic import atomic_outputs, check_output_path
from ..networks.checkpoints import load_checkpoint
from .config import INPAINT, MASK
from .networks import DiffusionNetwork, VQNetwork, load_network
from .precision import autocast, resolve_device, resolve_precision
from .sampler import NoiseSource, sample

if TYPE_CHECKING:
    from ..progress import Progress


def _read_inputs(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise PastaError(f"input {path} does not exist")
    data = load_checkpoint(path)
    if not isinstance(data, dict):
        raise PastaError(f"{path.name} must hold a dict of tensors")
    return data


def _tensor(data: dict, key: str, where: str, ndim: int | None = None, required: bool = True):
    value = data.get(key)
    if value is None:
        if required:
            raise PastaError(f"{where} lacks '{key}'")
        return None
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value)
    if ndim is not None and value.ndim != ndim:
        raise PastaError(f"{where}: '{key}' has shape {tuple(value.shape)}; expected {ndim} dimensions")
    if not (value.dtype.is_floating_point or key in ("t", "ddim_steps")):
        value = value.float()
    return value


def _check_spatial(net: DiffusionNetwork, x, where):
    factor = 2 ** (len(net.spec.unet.channel_mult) - 1)
    if any(n % factor for n in x.shape[2:]):
        raise PastaError(f"{where}: spatial size {tuple(x.shape[2:])} must be divisible by {factor}")


def _context(net: DiffusionNetwork, data, where, batch):
    context = _tensor(data, "context", where, 3, required=not net.spec.unet.skip_context)
    if context is not None and (context.shape[0] != batch or context.shape[2] != net.spec.unet.context_dim):
        raise PastaError(f"{where}: 'context' must be (B={batch}, N, {net.spec.unet.context_dim}), got {tuple(context.shape)}")
    return context


def _cond(net: DiffusionNetwork, data, where, like, key="cond"):
    need = net.spec.cond_channels
    cond = _tensor(data, key, where, 5, required=need > 0)
    if cond is not None and (cond.shape[1] != need or cond.shape[0] != like.shape[0] or cond.shape[2:] != like.shape[2:]):
        raise PastaError(f"{where}: '{key}' must be (B, {need}, {', '.join(map(str, like.shape[2:]))}), got {tuple(cond.shape)}")
    return cond


def forward(
    checkpoint: str | Path,
    inputs: str | Path,
    output: str | Path,
    config: str | Path,
    weights: str = "model",
    device: str = "auto",
    precision: str = "auto",
    overwrite: bool = False,
) -> dict:
    check_output_path(output, overwrite)
    data = _read_inputs(inputs)
    net = load_network(checkpoint, config, weights, with_vq=False)
    dev = resolve_device(device)
    where = Path(inputs).name
    if isinstance(net, VQNetwork):
        x = _tensor(data, "x", where, 5)
        if x.shape[1] != net.spec.in_channels or any(n % net.spec.factor for n in x.shape[2:]):
            raise PastaError(
                f"{where}: 'x' must be (B, {net.spec.in_channels}, D, H, W) with D, H, W divisible by {net.spec.factor}"
            )
        net.vq.to(dev)
        with torch.inference_mode(), autocast(dev, resolve_precision(precision, dev, False)):
            quant, indices, decoded = net.vq(x.to(dev))
        result = {"quant": quant.float().cpu(), "indices": indices.cpu(), "decoded": decoded.float().cpu()}
    else:
        x = _tensor(data, "x_t", where, 5)
        t = _tensor(data, "t", where, 1).long()
        if t.shape[0] != x.shape[0] or x.shape[1] != net.spec.channels:
            raise PastaError(f"{where}: 'x_t' must be (B, {net.spec.channels}, D, H, W) and 't' (B,)")
        _check_spatial(net, x, where)
        context, cond = _context(net, data, where, x.shape[0]), _cond(net, data, where, x)
        model_input = torch.cat([x, cond], dim=1) if cond is not None else x
        net.unet.to(dev)
        with torch.inference_mode(), autocast(dev, resolve_precision(precision, dev, net.spec.unet.use_fp16)):
            eps = net.unet(model_input.to(dev), t.to(dev), None if context is None else context.to(dev))
        result = {"eps": eps.float().cpu()}
    _write(result, output, overwrite)
    return result


def sample_command(
    checkpoint: str | Path,
    inputs: str | Path,
    output: str | Path,
    config: str | Path,
    weights: str = "auto",
    device: str = "auto",
    precision: str = "auto",
    overwrite: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict:
    check_output_path(output, overwrite)
    data = _read_inputs(inputs)
    net = load_network(checkpoint, config, weights, with_vq=False)
    where = Path(inputs).name
    if not isinstance(net, DiffusionNetwork):
        raise PastaError("sampling needs an LMNet or LINet checkpoint and config, not the VQ")
    x_T = _tensor(data, "x_T", where, 5)
    if x_T.shape[1] != net.spec.channels:
        raise PastaError(f"{where}: 'x_T' must have {net.spec.channels} channel(s)")
    _check_spatial(net, x_T, where)
    steps = int(_tensor(data, "ddim_steps", where).reshape(-1)[0])
    eta = float(_tensor(data, "eta", where).reshape(-1)[0])
    schedule = net.schedule(steps, eta)
    context = _context(net, data, where, x_T.shape[0])
    noise = _tensor(data, "noise", where, required=False)
    if noise is not None and tuple(noise.shape) != (len(schedule),) + tuple(x_T.shape):
        raise PastaError(
            f"{where}: 'noise' must be (steps={len(schedule)}, {', '.join(map(str, x_T.shape))}), got {tuple(noise.shape)}"
        )
    dev = resolve_device(device)
    net.unet.to(dev)
    kwargs = {}
    if net.kind == MASK:
        cond = _cond(net, data, where, x_T)
        kwargs["cond"] = None if cond is None else cond.to(dev)
    elif net.kind == INPAINT:
        x0, mask = _tensor(data, "x0", where, 5), _tensor(data, "mask", where, 5)
        if x0.shape != x_T.shape or mask.shape != (x_T.shape[0], net.spec.cond_channels) + tuple(x_T.shape[2:]):
            raise PastaError(
                f"{where}: 'x0' must be shaped like 'x_T' and 'mask' (B, {net.spec.cond_channels}, "
                f"{', '.join(map(str, x_T.shape[2:]))})"
            )
        kwargs.update(x0=x0.to(dev), mask=mask.to(dev), channels=net.spec.channels)
    result = sample(
        net.unet,
        net.kind,
        schedule,
        x_T.to(dev),
        None if context is None else context.to(dev),
        noise=NoiseSource(x_T.shape, seed, noise),
        precision=resolve_precision(precision, dev, net.spec.unet.use_fp16),
        progress=progress,
        **kwargs,
    )
    out = {"samples": result.samples.float().cpu(), "x_inter": torch.stack(result.x_inter)}
    _write(out, output, overwrite)
    return out


def _write(result: dict, output, overwrite: bool) -> None:
    with atomic_outputs(output, overwrite=overwrite) as temp:
        torch.save(result, temp)
