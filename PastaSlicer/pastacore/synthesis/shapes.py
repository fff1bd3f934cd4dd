"""Lesion shapes as implicit functions, evaluated on a 1 mm grid.

A shape lives in *normalised* coordinates ``u`` (the requested half size along each axis is
1). Its implicit function is negative inside: the smallest normalised distance to the lobe
centres minus the lobe radius, plus a smooth random displacement made of a few random
Fourier modes (continuous, so the same shape can be evaluated at any resolution), plus
thin tapered spicules. :func:`calibrated_mask` evaluates the shape once on a coarse grid,
measures its extents and then maps them exactly onto the requested size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .plan import SynthesisPlan


MODES = 12


def fourier_noise(seed: int, scale: float) -> Callable[[np.ndarray], np.ndarray]:
    """A smooth random function of ``u`` (N x 3) with unit standard deviation."""
    rng = np.random.default_rng([int(seed), 7])
    omega = (rng.normal(size=(MODES, 3)) / scale).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, MODES).astype(np.float32)
    weight = np.float32(np.sqrt(2.0 / MODES))

    def evaluate(u: np.ndarray) -> np.ndarray:
        total = np.zeros(u.shape[0], np.float32)
        for k in range(MODES):
            total += np.cos(u @ omega[k] + phase[k])
        return total * weight

    return evaluate


def implicit(plan: SynthesisPlan, u: np.ndarray, spicules: bool = True) -> np.ndarray:
    """Signed implicit value (< 0 inside) of the plan's shape at normalised points ``u`` (N x 3)."""
    u = u.astype(np.float32, copy=False)
    lobes = plan.lobes or [[0.0, 0.0, 0.0, 1.0]]
    value = None
    for ox, oy, oz, radius in lobes:
        d = u - np.array([ox, oy, oz], np.float32)
        level = np.sqrt(np.einsum("ij,ij->i", d, d)) / np.float32(radius)
        value = level if value is None else np.minimum(value, level)
    value -= 1.0
    if plan.deformation > 0:
        value += np.float32(plan.deformation) * fourier_noise(plan.seed, plan.deformation_scale)(u)
    for dx, dy, dz, length in plan.spicules if spicules else []:
        direction = np.array([dx, dy, dz], np.float32)
        t = u @ direction
        perpendicular = np.sqrt(np.maximum(np.einsum("ij,ij->i", u, u) - t * t, 0))
        reach = 1.0 + length
        width = np.float32(0.12) * np.clip(1 - t / reach, 0, 1)
        inside = (t > 0.5) & (t < reach) & (perpendicular < width)
        value = np.where(inside, np.minimum(value, -0.01), value)
    return value


def reach(plan: SynthesisPlan) -> float:
    """An upper bound of ``|u|`` inside the shape."""
    lobes = plan.lobes or [[0.0, 0.0, 0.0, 1.0]]
    extent = max(np.linalg.norm(l[:3]) + l[3] * (1 + 4 * plan.deformation) for l in lobes)
    spikes = max((1.0 + s[3] for s in plan.spicules), default=0.0)
    return float(max(extent, spikes) + 0.05)


_EXTENTS = {}


def _extents(plan, samples=56):
    key = (plan.seed, repr(plan.lobes), plan.deformation, plan.deformation_scale, repr(plan.spicules))
    if key not in _EXTENTS:
        if len(_EXTENTS) > 64:
            _EXTENTS.clear()
        _EXTENTS[key] = _measure_extents(plan, samples)
    return _EXTENTS[key]


def _measure_extents(plan, samples):
    span = reach(plan)
    step = 2 * span / samples
    axis = np.arange(-span, span + step / 2, step, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    inside = implicit(plan, grid) < 0
    if not inside.any():
        raise PastaError("the lesion shape came out empty; try another seed")
    points = grid[inside]
    return points.min(axis=0) - step / 2, points.max(axis=0) + step / 2


def calibrated_mask(
    plan: SynthesisPlan,
    points_mm: np.ndarray,
    center_mm: Sequence[float],
    size_mm: Sequence[float],
    grow_mm: float = 0.0,
    spicules: bool = True,
) -> np.ndarray:
    """Boolean mask at ``points_mm`` (N x 3, x y z) of the shape whose bounding box is exactly
    ``size_mm`` (+ ``2 * grow_mm``) centred on ``center_mm`` (``spicules=False``: the body only)."""
    lo, hi = _extents(plan)
    size = np.asarray(size_mm, np.float32) + 2 * np.float32(grow_mm)
    start = np.asarray(center_mm, np.float32) - size / 2
    u = lo + (points_mm.astype(np.float32) - start) / size * (hi - lo)
    return implicit(plan, u, spicules) < 0
