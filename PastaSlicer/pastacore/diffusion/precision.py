"""Device and number format for the diffusion networks.

On CUDA the networks run under autocast: float16 where the config asks for it
(``use_fp16``, LINet and its VQ, as the authors ran them), float32 otherwise (LMNet), unless
the caller chooses ``fp16``, ``bf16`` or ``fp32``. On the CPU everything is float32 (half
precision does not make CPU convolutions faster).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

from ..errors import PastaError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(preference: str = "auto") -> torch.device:
    from ..deps import torch_device_info

    kind = torch_device_info(preference).kind
    return torch.device("cuda" if kind == "cuda" else "cpu")  # MPS lacks some 3D kernels: CPU


def resolve_precision(precision: str, device: torch.device, config_fp16: bool) -> str:
    if precision not in PRECISIONS:
        raise PastaError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        if precision in ("fp16", "bf16"):
            raise PastaError(f"{precision} needs a CUDA GPU; on the CPU the networks run in fp32")
        return "fp32"
    if precision == "auto":
        return "fp16" if config_fp16 else "fp32"
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise PastaError("this GPU does not support bf16; use fp16 or fp32")
    return precision


def autocast(device: str | torch.device, precision: str) -> AbstractContextManager:
    """A context running the networks in ``precision`` on ``device`` (no-op for fp32 / CPU)."""
    device = torch.device(device)
    if device.type == "cuda" and precision in _DTYPES:
        return torch.autocast("cuda", dtype=_DTYPES[precision])
    return contextlib.nullcontext()
