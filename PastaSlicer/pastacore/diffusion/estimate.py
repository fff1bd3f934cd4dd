"""How long the diffusion networks will take here, estimated before any heavy work.

The work of one network call is counted exactly (``torch.utils.flop_counter`` on "meta"
tensors: no memory, no arithmetic), split into convolutions and matrix products
(attention, linear layers). Two short micro-benchmarks on the chosen device (a 3D
convolution and an attention call, about 0.1 s each) give this machine's rate for each
kind; the estimate is the sum of work / rate. On a 2-core CPU it was within 10 % for an LMNet
step and about 2.2x too high for LINet and the VQ (Testing/Benchmarks/RESULTS.md): an order of
magnitude, on the safe side, to refuse hour-long runs before they start.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import torch

from .config import UNetSpec, VQSpec

_CONV_OPS = ("convolution",)


@dataclass(frozen=True)
class Cost:
    conv_flops: float = 0.0
    matmul_flops: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.conv_flops + other.conv_flops, self.matmul_flops + other.matmul_flops)

    def __mul__(self, n: float) -> Cost:
        return Cost(self.conv_flops * n, self.matmul_flops * n)

    def seconds(self, rates: dict) -> float:
        conv_rate, matmul_rate = rates
        return self.conv_flops / conv_rate + self.matmul_flops / matmul_rate


def _count(run) -> Cost:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        run()
    conv = matmul = 0.0
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        if any(name in str(op) for name in _CONV_OPS):
            conv += flops
        else:
            matmul += flops
    return Cost(conv, matmul)


@functools.lru_cache(maxsize=16)
def unet_cost(spec: UNetSpec, spatial: tuple, tokens: int) -> Cost:
    """Work of one UNet call on a (1, in_channels, *spatial) input with ``tokens`` context tokens."""
    from .unet import DiffusionUNet

    def run():
        net = DiffusionUNet(spec)
        net(
            torch.empty(1, spec.in_channels, *spatial),
            torch.zeros(1, dtype=torch.long),
            torch.empty(1, max(tokens, 1), spec.context_dim),
        )

    return _count(run)


@functools.lru_cache(maxsize=8)
def vq_cost(spec: VQSpec, spatial: tuple) -> Cost:
    """Work of encoding and decoding one (1, 1, *spatial) crop."""
    from .vq import VQModel

    def run():
        VQModel(spec)(torch.empty(1, spec.in_channels, *spatial))

    return _count(run)


def _time(function, repeat: int = 3) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeat):
        function()
    return (time.perf_counter() - start) / repeat


@functools.lru_cache(maxsize=4)
def rates(device: str = "cpu") -> tuple:
    """(convolution, matrix product) FLOP/s measured on ``device``."""
    import torch.nn.functional as F

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    size = 48 if dev.type == "cuda" else 32
    conv = torch.nn.Conv3d(32, 32, 3, padding=1).to(dev)
    x = torch.randn(1, 32, size, size, size, device=dev)
    q = torch.randn(1, 2, 4096, 32, device=dev)
    with torch.inference_mode():
        conv_s = _time(lambda: (conv(x), sync()))
        attn_s = _time(lambda: (F.scaled_dot_product_attention(q, q, q), sync()))
    conv_flops = 2.0 * 32 * 32 * 27 * size**3
    attn_flops = 4.0 * 2 * 4096 * 4096 * 32
    return conv_flops / max(conv_s, 1e-9), attn_flops / max(attn_s, 1e-9)


def describe_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
