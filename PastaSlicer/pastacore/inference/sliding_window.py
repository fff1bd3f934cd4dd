"""Sliding-window inference with Gaussian blending, only where it matters.

The image is cut into overlapping patches (nnU-Net's tiling: evenly spaced starts with a
step of ``(1 - overlap) * patch``); each patch's logits are weighted by a Gaussian centred
on the patch and accumulated. Patches whose region mask is empty (air outside the body, or
outside the organ box) are not run at all, and only the bounding box of the region is
allocated, so memory follows the region rather than the scan.

Structured as MONAI's sliding-window inference is: one tiling-and-blending utility
(:func:`blend_tiles`) runs a predictor callable; the device and mixed precision
(:class:`on_device`), mirroring test-time augmentation (:func:`mirrored`) and the GPU
out-of-memory fallback (:func:`with_oom_fallback`) wrap that callable.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..errors import CancelledError, PastaError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import torch

    from ..progress import Cancelled, Progress


@dataclass
class WindowSettings:
    patch_size: tuple = (128, 128, 128)
    overlap: float = 0.5
    batch_size: int = 2
    mirror_axes: tuple = ()  # e.g. (0, 1, 2) for 8-fold mirroring
    device: str = "cpu"
    amp: bool = True  # bf16 on CPUs that support it, fp16 on CUDA


def gaussian_weights(patch_size: Sequence[int], sigma_scale: float = 1 / 8) -> np.ndarray:
    """nnU-Net-style importance map: a Gaussian with sigma = patch / 8, max 1, no zeros."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in patch_size], indexing="ij")
    exponent = sum(((g - (n - 1) / 2) / (n * sigma_scale)) ** 2 for g, n in zip(grids, patch_size))
    weights = np.exp(-0.5 * exponent)
    weights /= weights.max()
    weights[weights == 0] = weights[weights > 0].min()
    return weights.astype(np.float32)


def tile_starts(size: int, patch: int, overlap: float) -> list:
    """Evenly spaced patch starts covering ``size`` with at most ``(1 - overlap) * patch`` step."""
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1 - overlap)))
    count = math.ceil((size - patch) / step) + 1
    return [int(round(i * (size - patch) / (count - 1))) for i in range(count)]


def autocast_dtype(device: str, amp: bool) -> torch.dtype | None:
    import torch

    if not amp:
        return None
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu":
        check = getattr(torch.cpu, "_is_avx512_bf16_supported", None) or getattr(torch.cpu, "_is_amx_tile_supported", None)
        return torch.bfloat16 if check is not None and check() else None
    if device == "mps":
        return torch.float16
    return None


class WindowResult(NamedTuple):
    logits: np.ndarray  # (K, D, H, W) float32 over ``box``
    box: tuple  # ((d0, d1), (h0, h1), (w0, w1)) in image voxels
    tiles_run: int  # patches the network ran on
    tiles_total: int  # patches the box holds (those without a region voxel are skipped)


def predict_logits(
    network: torch.nn.Module,
    image: np.ndarray,
    settings: WindowSettings,
    region: np.ndarray | None = None,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
) -> WindowResult:
    """Blended logits over the bounding box of ``region``: the network wrapped as a predictor
    (device, mixed precision, mirroring TTA, the out-of-memory fallback) and run by
    :func:`blend_tiles` on the patches that touch the region.

    ``image`` is (C, D, H, W) float32, already normalised. ``region`` (D, H, W bool) marks
    where predictions matter; voxels outside its box get no logits.
    """
    _, *shape = image.shape
    patch = tuple(int(p) for p in settings.patch_size)
    if region is None:
        region = np.ones(shape, bool)
    if not region.any():
        raise PastaError("the region to segment is empty")
    box = region_box(region, patch)
    sub = image[(slice(None),) + tuple(slice(a, b) for a, b in box)]
    sub_region = region[tuple(slice(a, b) for a, b in box)]
    pad = [(0, max(0, p - (b - a))) for p, (a, b) in zip(patch, box)]
    if any(after for _, after in pad):
        sub = np.pad(sub, [(0, 0)] + pad, mode="edge")
        sub_region = np.pad(sub_region, pad)
    tiles, total = plan_tiles(sub_region, patch, settings.overlap)
    fraction = [0.0]

    def tracked(done, message=""):
        fraction[0] = done
        progress(done, message)

    network_on_device = on_device(network, settings.device, settings.amp)
    predictor = network_on_device
    if settings.mirror_axes:  # the batch moves to the device once, then is flipped there
        flips = mirrored(network_on_device, settings.mirror_axes)
        predictor = lambda batch: flips(network_on_device.place(batch))  # noqa: E731
    predictor = with_oom_fallback(predictor, network_on_device, say=progress and (lambda m: progress(fraction[0], m)))
    logits = blend_tiles(predictor, sub, tiles, patch, settings.batch_size, progress and tracked, is_cancelled)
    crop = tuple(slice(0, b - a) for a, b in box)
    return WindowResult(logits[(slice(None),) + crop], tuple(box), len(tiles), total)


def region_box(region: np.ndarray, patch: Sequence[int]) -> list:
    """The bounding box of ``region``, grown to at least one patch per axis where the image allows."""
    shape, box = region.shape, []
    for axis in range(3):
        hits = np.flatnonzero(region.any(axis=tuple(a for a in range(3) if a != axis)))
        lo, hi = int(hits[0]), int(hits[-1]) + 1
        if hi - lo < patch[axis]:
            lo = max(0, min(lo - (patch[axis] - (hi - lo)) // 2, shape[axis] - patch[axis]))
            hi = min(shape[axis], lo + patch[axis])
        box.append((lo, hi))
    return box


def plan_tiles(region: np.ndarray, patch: Sequence[int], overlap: float) -> tuple:
    """``(starts of the patches holding a region voxel, count of all patches)``; a summed-area
    table makes each patch's test O(1)."""
    starts = list(itertools.product(*[tile_starts(n, p, overlap) for n, p in zip(region.shape, patch)]))
    table = np.pad(region.astype(np.int32).cumsum(0).cumsum(1).cumsum(2), ((1, 0), (1, 0), (1, 0)))
    return [s for s in starts if _box_sum(table, s, patch) > 0], len(starts)


def blend_tiles(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    tiles: Sequence[tuple[int, int, int]],
    patch: Sequence[int],
    batch_size: int = 2,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
) -> np.ndarray:
    """Tiling and Gaussian blending: ``predict(batch)`` (a (B, C, *patch) float32 CPU tensor ->
    (B, K, *patch) logits) runs on ``tiles`` of ``image`` (C, D, H, W) in batches; returns the
    weighted mean logits (K, D, H, W), zero where no tile ran."""
    import torch

    size = image.shape[1:]
    weights = torch.from_numpy(gaussian_weights(patch))
    source = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    logits, norm = None, torch.zeros(size, dtype=torch.float32)
    batch_size = max(1, int(batch_size))
    with torch.inference_mode():
        for done in range(0, len(tiles), batch_size):
            if is_cancelled is not None and is_cancelled():
                raise CancelledError()
            chunk = tiles[done : done + batch_size]
            batch = torch.stack([source[(slice(None),) + _window(st, patch)] for st in chunk])
            out = predict(batch).float().cpu()
            if logits is None:
                logits = torch.zeros((out.shape[1],) + tuple(size), dtype=torch.float32)
            for st, tile in zip(chunk, out):
                logits[(slice(None),) + _window(st, patch)] += tile * weights
                norm[_window(st, patch)] += weights
            if progress:
                progress((done + len(chunk)) / len(tiles), f"patch {done + len(chunk)}/{len(tiles)}")
        covered = norm > 0
        logits = torch.where(covered, logits / torch.where(covered, norm, torch.ones_like(norm)), torch.zeros_like(logits))
    return logits.numpy()


def _window(start, patch) -> tuple:
    return tuple(slice(s, s + p) for s, p in zip(start, patch))


class on_device:  # noqa: N801 - used like a function that returns a predictor
    """The network as a predictor on ``device`` (channels-last 3D, mixed precision where the
    device supports it); :meth:`to_cpu` moves it when the GPU memory is full."""

    def __init__(self, network: torch.nn.Module, device: str, amp: bool = True) -> None:
        import torch

        self.network, self.amp = network, amp
        self.device, self.dtype = torch.device(device), autocast_dtype(device, amp)
        if isinstance(network, torch.nn.Module):
            network.eval()
            # channels-last 3D lets oneDNN/cuDNN pick their fastest convolutions (2x on a CPU here)
            self.network = network.to(memory_format=torch.channels_last_3d)

    def place(self, batch: torch.Tensor) -> torch.Tensor:
        """``batch`` on the network's device, channels-last (nothing is copied when it is there already)."""
        import torch

        return batch.to(self.device).contiguous(memory_format=torch.channels_last_3d)

    def __call__(self, batch):
        import torch

        x = self.place(batch)
        if self.dtype is None:
            return self.network(x)
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            return self.network(x)

    def to_cpu(self) -> None:
        import torch

        self.device, self.dtype = torch.device("cpu"), autocast_dtype("cpu", self.amp)
        self.network = self.network.to(self.device)


def mirrored(predict: Callable[[torch.Tensor], torch.Tensor], axes: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Test-time augmentation: the mean of ``predict`` over every flip of the spatial ``axes``."""
    import torch

    flips = [()] + [c for r in range(1, len(axes) + 1) for c in itertools.combinations(axes, r)]

    def predict_mirrored(batch):
        total = None
        for flip in flips:
            dims = [a + 2 for a in flip]
            y = predict(torch.flip(batch, dims) if dims else batch).float()
            y = torch.flip(y, dims) if dims else y
            total = y if total is None else total + y
        return total / len(flips)

    return predict_mirrored


def with_oom_fallback(
    predict: Callable[[torch.Tensor], torch.Tensor], device_predictor: on_device, say: Callable[[str], None] | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """On GPU out-of-memory: run the batch in halves, and at one patch move ``device_predictor``'s
    network to the CPU, saying so through ``say(message)``."""
    import torch

    def predict_or_split(batch):
        try:
            return predict(batch)
        except RuntimeError as exc:
            if "out of memory" not in str(exc).lower() or device_predictor.device.type != "cuda":
                raise
            torch.cuda.empty_cache()
            if len(batch) > 1:
                half = len(batch) // 2
                if say:
                    say(f"GPU memory full: continuing with batches of {half}")
                return torch.cat([predict_or_split(batch[:half]), predict_or_split(batch[half:])])
            device_predictor.to_cpu()
            if say:
                say("GPU memory full: continuing on the CPU")
            return predict(batch)

    return predict_or_split


def _box_sum(table, start, patch) -> int:
    (a, b, c), (p, q, r) = start, patch
    x, y, z = a + p, b + q, c + r
    return int(
        table[x, y, z]
        - table[a, y, z]
        - table[x, b, z]
        - table[x, y, c]
        + table[a, b, z]
        + table[a, y, c]
        + table[x, b, c]
        - table[a, b, c]
    )
