"""Noise schedule and DDIM step parameters, with the public code's numerics.

* betas = linspace(sqrt(start), sqrt(end), T)^2 in float64; alphas_cumprod = cumprod(1 - betas)
  in float64, stored as float32 (the checkpoint's buffer is used when it has one). LINet's
  public inference converts the whole model to float16 after loading, which also rounds
  this buffer: ``fp16_schedule`` reproduces that.
* DDIM "uniform" timesteps: c = T // S, steps = range(0, T, c) + 1 (so there can be a few
  more than S when S does not divide T).
* alpha_t = abar[steps], alpha_prev = [abar[0]] + abar[steps[:-1]],
  sigma_t = eta * sqrt((1 - alpha_prev) / (1 - alpha_t) * (1 - alpha_t / alpha_prev)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PastaError


def linear_alphas_cumprod(timesteps: int, start: float, end: float) -> np.ndarray:
    betas = np.linspace(start**0.5, end**0.5, timesteps, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas).astype(np.float32)


def ddim_timesteps(steps: int, timesteps: int) -> np.ndarray:
    if not 1 <= int(steps) <= timesteps // 2:
        raise PastaError(f"the number of DDIM steps must be between 1 and {timesteps // 2}, got {steps}")
    stride = timesteps // int(steps)
    ts = np.arange(0, timesteps, stride) + 1
    if ts[-1] >= timesteps:  # the public sampler would index past its schedule too
        raise PastaError(
            f"{steps} DDIM steps do not fit the {timesteps}-step schedule (the last step would be "
            f"{ts[-1]}); choose another number, e.g. 50, 100 or 200"
        )
    return ts


@dataclass(frozen=True)
class DDIMSchedule:
    """Per-step parameters, in the order the sampler visits them (noisiest first)."""

    timesteps: np.ndarray  # model timestep of each step
    alphas: np.ndarray  # alpha-bar at the step (float32 values)
    alphas_prev: np.ndarray  # alpha-bar of the next, less noisy step
    sigmas: np.ndarray
    sqrt_one_minus_alphas: np.ndarray

    def __len__(self):
        return len(self.timesteps)


def ddim_schedule(alphas_cumprod: np.ndarray, steps: int, eta: float, fp16: bool = False) -> DDIMSchedule:
    """The DDIM parameters of ``steps`` steps over the float32 ``alphas_cumprod``."""
    abar = np.asarray(alphas_cumprod, dtype=np.float32)
    if fp16:
        abar = abar.astype(np.float16).astype(np.float32)
    if not np.isfinite(eta) or eta < 0:
        raise PastaError(f"eta must be a non-negative number, got {eta}")
    ts = ddim_timesteps(steps, len(abar))
    alphas = abar[ts].astype(np.float64)
    alphas_prev = np.concatenate([abar[:1], abar[ts[:-1]]]).astype(np.float64)
    sigmas = eta * np.sqrt((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev))
    sqrt_one_minus = np.sqrt(1.0 - abar[ts])  # float32 arithmetic, as the public sampler
    order = slice(None, None, -1)
    return DDIMSchedule(ts[order], alphas[order], alphas_prev[order], sigmas[order], sqrt_one_minus[order])
