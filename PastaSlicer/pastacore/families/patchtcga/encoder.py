"""RGB patches -> features with a loaded PatchTCGA encoder: batched, channels-last, fp32 or bf16.

Pixels go in as they are (uint8 RGB, any size the network takes: no resize, no crop), become
``RGB / 255``, then ``(x - mean) / std`` with the config's statistics, in float32 as torchvision's
``ToTensor`` + ``Normalize`` do. For inference the ResNet's batch norms are folded into their
convolutions and the batch is laid out channels-last (oneDNN's fast path on CPUs); ``bf16`` runs
a bfloat16 copy of the network (its LayerNorms in float32; on a CPU only where it has native
bfloat16), ``fp32`` (the default) gives the full-precision features.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np
import torch

from ...errors import CancelledError, PastaError
from .config import is_vit
from .resnet import fold_batchnorm

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ...progress import Cancelled, Progress
    from .weights import LoadedEncoder

PRECISIONS = ("fp32", "bf16", "auto")
DEFAULT_BATCH = 16


def bf16_supported(device: str) -> bool:
    """Whether ``device`` runs bfloat16 natively (CPU: AVX512-BF16 or AMX, as oneDNN reports)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except Exception:  # an older build without the query
        return False


def resolve_precision(precision: str, device: str) -> str:
    """``fp32`` or ``bf16``: ``auto`` takes bf16 where the device has it."""
    if precision not in PRECISIONS:
        raise PastaError(f"precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


def _to_bfloat16(network: torch.nn.Module) -> torch.nn.Module:
    """``network`` with bfloat16 weights but float32 LayerNorms (they compute in float32): no
    per-call casts as under autocast, and the ViT's normalisation stays exact."""
    network = network.to(torch.bfloat16)
    for module in network.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.float()
    return network


class PatchEncoder:
    """A loaded encoder ready for patches: ``features(images)`` -> (B, C) float32."""

    def __init__(self, loaded: LoadedEncoder, device: str = "cpu", precision: str = "fp32") -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device.type)
        network = loaded.network
        if not is_vit(self.config):
            network = fold_batchnorm(network).to(memory_format=torch.channels_last)
        elif self.precision == "bf16":
            network = copy.deepcopy(network)
        if self.precision == "bf16":
            network = _to_bfloat16(network)
        self.network = network.to(self.device).eval()
        self.mean = torch.tensor(self.config["mean"], dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(self.config["std"], dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    @property
    def feature_dim(self) -> int:
        return int(self.loaded.network.feature_dim)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) float32 normalised, channels-last, on the device."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise PastaError(f"patches must be 8-bit RGB arrays (B, H, W, 3); got {images.dtype} {tuple(images.shape)}")
        pixels = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2)
        return (pixels.float().div(255.0) - self.mean) / self.std  # NHWC storage: already channels-last

    def run(self, batch: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) network input -> (B, C) float32 features."""
        with torch.inference_mode():
            out = self.network(batch.to(torch.bfloat16) if self.precision == "bf16" else batch)
        return out.float().cpu().numpy()

    def features(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 RGB patches of one size -> (B, C) float32."""
        return self.run(self.preprocess(images))

    def features_of(
        self,
        images: Sequence[np.ndarray],
        batch_size: int = DEFAULT_BATCH,
        progress: Progress | None = None,
        cancelled: Cancelled | None = None,
    ) -> np.ndarray:
        """(N, C) features of ``images`` (each (H, W, 3) uint8), batched by equal size, in order."""
        if batch_size < 1:
            raise PastaError(f"the batch size must be at least 1 (got {batch_size})")
        out = np.empty((len(images), self.feature_dim), np.float32)
        start = 0
        while start < len(images):
            shape = images[start].shape
            stop = start + 1
            while stop < len(images) and stop - start < batch_size and images[stop].shape == shape:
                stop += 1
            if cancelled is not None and cancelled():
                raise CancelledError()
            out[start:stop] = self.features(np.stack(images[start:stop]))
            start = stop
            if progress is not None:
                progress(start / len(images), f"{start}/{len(images)} patches")
        return out
