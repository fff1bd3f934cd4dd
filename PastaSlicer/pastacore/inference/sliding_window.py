"""Sliding-window inference with Gaussian blending, only where it matters.

The image is cut into overlapping patches (nnU-Net's tiling: evenly spaced starts with a
step of ``(1 - overlap) * patch``); each patch's logits are weighted by a Gaussian centred
on the patch and accumulated. Patches whose region mask is empty (air outside the body, or
outside the organ box) are not run at all, and only the bounding box of the region is
allocated, so memory follows the region rather than the scan. Optional mirroring
test-time augmentation averages the logits of the flipped inputs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..errors import CancelledError, PastaError


@dataclass
class WindowSettings:
    patch_size: tuple = (128, 128, 128)
    overlap: float = 0.5
    batch_size: int = 2
    mirror_axes: tuple = ()      # e.g. (0, 1, 2) for 8-fold mirroring
    device: str = "cpu"
    amp: bool = True             # bf16 on CPUs that support it, fp16 on CUDA


def gaussian_weights(patch_size, sigma_scale: float = 1 / 8) -> np.ndarray:
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


def autocast_dtype(device: str, amp: bool):
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


def predict_logits(network, image: np.ndarray, settings: WindowSettings, region=None, progress=None, is_cancelled=None):
    """Blended logits (K, D, H, W) float32 over the bounding box of ``region``.

    ``image`` is (C, D, H, W) float32, already normalised. ``region`` (D, H, W bool) marks
    where predictions matter; voxels outside its box get no logits. Returns
    (logits, box) with box = ((d0, d1), (h0, h1), (w0, w1)) in image voxels.
    """
    import torch

    _, *shape = image.shape
    patch = tuple(int(p) for p in settings.patch_size)
    if region is None:
        region = np.ones(shape, bool)
    if not region.any():
        raise PastaError("the region to segment is empty")
    box = []
    for axis in range(3):
        hits = np.flatnonzero(region.any(axis=tuple(a for a in range(3) if a != axis)))
        lo, hi = int(hits[0]), int(hits[-1]) + 1
        if hi - lo < patch[axis]:  # grow the box to one patch where the image allows
            lo = max(0, min(lo - (patch[axis] - (hi - lo)) // 2, shape[axis] - patch[axis]))
            hi = min(shape[axis], lo + patch[axis])
        box.append((lo, hi))
    sub = image[(slice(None),) + tuple(slice(a, b) for a, b in box)]
    sub_region = region[tuple(slice(a, b) for a, b in box)]
    pad = [(0, max(0, p - (b - a))) for p, (a, b) in zip(patch, box)]
    if any(after for _, after in pad):
        sub = np.pad(sub, [(0, 0)] + pad, mode="edge")
        sub_region = np.pad(sub_region, pad)
    size = sub.shape[1:]
    starts = list(itertools.product(*[tile_starts(n, p, settings.overlap) for n, p in zip(size, patch)]))
    # Skip tiles with no region voxel: a summed-area table makes each test O(1).
    table = np.pad(sub_region.astype(np.int32).cumsum(0).cumsum(1).cumsum(2), ((1, 0), (1, 0), (1, 0)))
    tiles = [s for s in starts if _box_sum(table, s, patch) > 0]
    weights = torch.from_numpy(gaussian_weights(patch))
    device = torch.device(settings.device)
    dtype = autocast_dtype(settings.device, settings.amp)
    logits = None
    norm = torch.zeros(size, dtype=torch.float32)
    source = torch.from_numpy(np.ascontiguousarray(sub, dtype=np.float32))
    mirrors = [()] + [c for r in range(1, len(settings.mirror_axes) + 1) for c in itertools.combinations(settings.mirror_axes, r)]
    batch_size = max(1, int(settings.batch_size))
    done = 0
    if isinstance(network, torch.nn.Module):
        network.eval()
        # channels-last 3D lets oneDNN/cuDNN pick their fastest convolutions (2x on a CPU here)
        network = network.to(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        while done < len(tiles):
            if is_cancelled is not None and is_cancelled():
                raise CancelledError()
            chunk = tiles[done:done + batch_size]
            batch = torch.stack([source[(slice(None),) + tuple(slice(s, s + p) for s, p in zip(st, patch))] for st in chunk])
            try:
                batch = batch.to(device).contiguous(memory_format=torch.channels_last_3d)
                out = _run(network, batch, mirrors, dtype).float().cpu().contiguous()
            except RuntimeError as exc:  # CUDA out of memory: smaller batches, then the CPU
                if "out of memory" not in str(exc).lower() or device.type != "cuda":
                    raise
                torch.cuda.empty_cache()
                if batch_size > 1:
                    batch_size //= 2
                else:
                    device, dtype = torch.device("cpu"), autocast_dtype("cpu", settings.amp)
                    network = network.to(device)
                if progress:
                    progress(done / len(tiles), f"GPU memory full: continuing with batch {batch_size} on {device.type}")
                continue
            if logits is None:
                logits = torch.zeros((out.shape[1],) + tuple(size), dtype=torch.float32)
            for st, tile in zip(chunk, out):
                where = tuple(slice(s, s + p) for s, p in zip(st, patch))
                logits[(slice(None),) + where] += tile * weights
                norm[where] += weights
            done += len(chunk)
            if progress:
                progress(done / len(tiles), f"patch {done}/{len(tiles)}")
        covered = norm > 0
        logits = torch.where(covered, logits / torch.where(covered, norm, torch.ones_like(norm)), torch.zeros_like(logits))
    crop = tuple(slice(0, b - a) for a, b in box)
    return logits[(slice(None),) + crop].numpy(), tuple(box), len(tiles), len(starts)


def _box_sum(table, start, patch) -> int:
    (a, b, c), (p, q, r) = start, patch
    x, y, z = a + p, b + q, c + r
    return int(table[x, y, z] - table[a, y, z] - table[x, b, z] - table[x, y, c]
               + table[a, b, z] + table[a, y, c] + table[x, b, c] - table[a, b, c])


def _run(network, batch, mirrors, dtype):
    import torch

    def forward(x):
        if dtype is None:
            return network(x)
        with torch.autocast(device_type=x.device.type, dtype=dtype):
            return network(x)

    total = None
    for axes in mirrors:
        dims = [a + 2 for a in axes]
        x = torch.flip(batch, dims) if dims else batch
        y = forward(x).float()
        y = torch.flip(y, dims) if dims else y
        total = y if total is None else total + y
    return total / len(mirrors)
