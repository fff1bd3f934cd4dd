"""Build a LesionDiffusion network from its config and fill it from its checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError
from .config import INPAINT, DiffusionSpec, VQSpec, load_config
from .schedule import DDIMSchedule, ddim_schedule, linear_alphas_cumprod
from .unet import DiffusionUNet
from .vq import VQModel
from .weights import LoadReport, load_unet, load_vq, read_state, stored_alphas_cumprod, vq_prefix

if TYPE_CHECKING:
    import torch


@dataclass
class DiffusionNetwork:
    """LMNet or LINet, ready to sample (on the CPU until moved)."""

    spec: DiffusionSpec
    unet: DiffusionUNet
    alphas_cumprod: np.ndarray
    vq: VQModel | None = None
    reports: list = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.spec.kind

    def schedule(self, steps: int, eta: float) -> DDIMSchedule:
        return ddim_schedule(self.alphas_cumprod, steps, eta, fp16=self.spec.fp16_schedule)

    def to(self, device: str | torch.device) -> DiffusionNetwork:
        self.unet.to(device)
        if self.vq is not None:
            self.vq.to(device)
        return self


@dataclass
class VQNetwork:
    spec: VQSpec
    vq: VQModel
    reports: list = field(default_factory=list)


def _source(path) -> str:
    return Path(path).name


def load_network(
    checkpoint: str | Path,
    config: str | Path | dict,
    weights: str = "auto",
    vq_checkpoint: str | Path | None = None,
    with_vq: bool = True,
) -> DiffusionNetwork | VQNetwork:
    """A :class:`DiffusionNetwork` (LMNet, LINet) or :class:`VQNetwork` from a checkpoint and its config.

    LINet's VQ comes from its own ``first_stage_model.*`` tensors when the file has them (the
    public code loads the LINet file last, so those win), else from ``vq_checkpoint``;
    ``with_vq=False`` skips it (sampling and denoising work on latents)."""
    spec = load_config(config)
    state = read_state(checkpoint)
    if isinstance(spec, VQSpec):
        vq = VQModel(spec).eval()
        return VQNetwork(spec, vq, [load_vq(vq, state, _source(checkpoint))])
    unet = DiffusionUNet(spec.unet).eval()
    reports: list[LoadReport] = [load_unet(unet, state, weights, _source(checkpoint))]
    stored = stored_alphas_cumprod(state, spec.timesteps)
    abar = stored if stored is not None else linear_alphas_cumprod(spec.timesteps, spec.linear_start, spec.linear_end)
    vq = None
    if spec.kind == INPAINT and with_vq:
        vq = VQModel(spec.first_stage).eval()
        if vq_prefix(state) == "first_stage_model.":
            reports.append(load_vq(vq, state, _source(checkpoint), "first_stage_model."))
        elif vq_checkpoint is not None:
            reports.append(load_vq(vq, read_state(vq_checkpoint), _source(vq_checkpoint)))
        else:
            raise PastaError(
                f"{_source(checkpoint)} holds no VQ autoencoder (first_stage_model.*); give the VQ checkpoint (VQ.ckpt) as well"
            )
    return DiffusionNetwork(spec, unet, abar, vq, reports)
