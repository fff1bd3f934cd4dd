"""DDIM sampling for LMNet (mask) and LINet (inpainting), as the public samplers do it.

One step (Song et al., DDIM, eq. 12), with eps = the network's prediction at x_t:

    pred_x0 = (x_t - sqrt(1 - a_t) * eps) / sqrt(a_t)
    x_prev  = sqrt(a_prev) * pred_x0 + sqrt(1 - a_prev - sigma_t^2) * eps + sigma_t * z

with z ~ N(0, 1) drawn at every step (the last one included). The mask sampler feeds
``cat(x_t, cond)`` (LMNet's seg, target and box channels). The inpainting sampler sets
``x_t = x_t * mask + (1 - mask) * x0`` before every step (the clean known latent outside the
mask, not a noised one), feeds ``cat(x_t, mask)``, uses the first ``channels`` outputs as eps
(the extra output, a mask logit, is not used) and returns ``cat(x * mask + (1 - mask) * x0, mask)``.
``x_inter`` holds x_T and the sample after the steps whose reversed index is a multiple of
``log_every`` or the first one, as the public samplers log them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..errors import CancelledError
from .config import INPAINT, MASK
from .precision import autocast
from .schedule import DDIMSchedule

if TYPE_CHECKING:
    from ..progress import Cancelled, Progress
    from .unet import DiffusionUNet


def ddim_step(
    x: torch.Tensor, eps: torch.Tensor, a_t: float, a_prev: float, sigma_t: float, sqrt_one_minus_at: float, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_prev, pred_x0) of one DDIM step; the scalars become float32 as in the public sampler."""
    f32 = dict(dtype=torch.float32, device=x.device)
    a_t, a_prev = torch.tensor(a_t, **f32), torch.tensor(a_prev, **f32)
    sigma_t, sqrt_one_minus_at = torch.tensor(sigma_t, **f32), torch.tensor(sqrt_one_minus_at, **f32)
    eps = eps.float()
    pred_x0 = (x - sqrt_one_minus_at * eps) / a_t.sqrt()
    direction = (1.0 - a_prev - sigma_t**2).sqrt() * eps
    return a_prev.sqrt() * pred_x0 + direction + sigma_t * noise, pred_x0


@dataclass
class SampleResult:
    samples: torch.Tensor
    x_inter: list


class NoiseSource:
    """Per-step noise: given tensors (steps, *shape) or draws from a seeded CPU generator."""

    def __init__(self, shape: tuple[int, ...], seed: int | None = None, noise: torch.Tensor | None = None) -> None:
        self.shape, self.noise = tuple(shape), noise
        self.generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None

    def initial(self) -> torch.Tensor:
        return torch.randn(self.shape, generator=self.generator)

    def step(self, i: int) -> torch.Tensor:
        if self.noise is not None:
            return self.noise[i].float()
        return torch.randn(self.shape, generator=self.generator)


def sample(
    unet: DiffusionUNet,
    kind: str,
    schedule: DDIMSchedule,
    x_T: torch.Tensor,
    context: torch.Tensor,
    cond: torch.Tensor | None = None,
    x0: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    noise: NoiseSource | None = None,
    channels: int | None = None,
    precision: str = "fp32",
    log_every: int = 100,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
) -> SampleResult:
    """Run DDIM from ``x_T``; ``cond`` for MASK, ``x0`` + ``mask`` for INPAINT (all on one device)."""
    device = x_T.device
    noise = noise or NoiseSource(x_T.shape)
    x = x_T.float()
    x_inter = [x.detach().cpu()]
    total = len(schedule)
    if kind == INPAINT:
        x0, mask = x0.float(), mask.float()
    for i in range(total):
        if is_cancelled is not None and is_cancelled():
            raise CancelledError()
        if kind == INPAINT:
            x = x * mask + (1.0 - mask) * x0
            model_input = torch.cat([x, mask], dim=1)
        elif kind == MASK:
            model_input = torch.cat([x, cond.float()], dim=1) if cond is not None else x
        else:
            raise ValueError(kind)
        t = torch.full((x.shape[0],), int(schedule.timesteps[i]), dtype=torch.long, device=device)
        with torch.inference_mode(), autocast(device, precision):
            eps = unet(model_input, t, context)
        eps = eps[:, : (channels or x.shape[1])]
        x, _ = ddim_step(
            x,
            eps,
            float(schedule.alphas[i]),
            float(schedule.alphas_prev[i]),
            float(schedule.sigmas[i]),
            float(schedule.sqrt_one_minus_alphas[i]),
            noise.step(i).to(device),
        )
        index = total - i - 1
        if index % log_every == 0 or index == total - 1:
            x_inter.append(x.detach().cpu())
        if progress is not None:
            progress((i + 1) / total, f"DDIM step {i + 1}/{total}")
    if kind == INPAINT:
        x = torch.cat([x * mask + (1.0 - mask) * x0, mask], dim=1)
    return SampleResult(x, x_inter)
