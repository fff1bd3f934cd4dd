"""LesionDiffusion's VQ autoencoder (LDM ``VQModel`` layout, 3D, attention-free).

Encoder: 3^3 conv -> per level ``num_res_blocks`` residual blocks (GroupNorm 16 groups,
eps 1e-6, swish), a stride-2 conv (input padded by one voxel at the far side of each axis)
after the levels listed in ``sample_depth`` -> middle (two residual blocks) -> norm, swish,
conv to ``z_channels``; ``quant_conv`` (1^3) gives the latent. Quantisation replaces each
latent vector by its nearest codebook entry. Decoder: ``post_quant_conv``, conv, middle,
levels in reverse with ``num_res_blocks + 1`` residual blocks and a nearest x2 upsampling
+ conv after level ``i`` when ``num_res_blocks - i`` is in ``sample_depth`` (the public
code's rule, kept as is), then norm, swish, conv to the output.

LINet diffuses the unquantised latent (``encode``); decoding quantises first (``decode``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import nn

from .config import VQSpec

if TYPE_CHECKING:
    import torch


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(16, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = _norm(channels)
        self.conv1 = nn.Conv3d(channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        if channels != out_channels:
            self.nin_shortcut = nn.Conv3d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _middle(channels: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels)
    mid.block_2 = ResnetBlock(channels, channels)
    return mid


class Encoder(nn.Module):
    def __init__(self, spec: VQSpec) -> None:
        super().__init__()
        self.spec = spec
        self.conv_in = nn.Conv3d(spec.in_channels, spec.ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = spec.ch
        for level, mult in enumerate(spec.ch_mult):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(spec.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, spec.ch * mult))
                block_in = spec.ch * mult
            if self._downsamples(level):
                stage.downsample = Downsample(block_in)
            self.down.append(stage)
        self.mid = _middle(block_in)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv3d(block_in, spec.z_channels, 3, padding=1)

    def _downsamples(self, level: int) -> bool:
        if self.spec.sample_depth is None:
            return level != len(self.spec.ch_mult) - 1
        return level in self.spec.sample_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.block_1(h))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, spec: VQSpec) -> None:
        super().__init__()
        self.spec = spec
        levels = len(spec.ch_mult)
        block_in = spec.ch * spec.ch_mult[-1]
        self.conv_in = nn.Conv3d(spec.z_channels, block_in, 3, padding=1)
        self.mid = _middle(block_in)
        stages = {}
        for level in reversed(range(levels)):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(spec.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, spec.ch * spec.ch_mult[level]))
                block_in = spec.ch * spec.ch_mult[level]
            if self._upsamples(level):
                stage.upsample = Upsample(block_in)
            stages[level] = stage
        self.up = nn.ModuleList(stages[level] for level in range(levels))
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv3d(block_in, spec.out_ch, 3, padding=1)

    def _upsamples(self, level: int) -> bool:
        if self.spec.sample_depth is None:
            return level != 0
        return self.spec.num_res_blocks - level in self.spec.sample_depth

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid.block_2(self.mid.block_1(self.conv_in(z)))
        for level in reversed(range(len(self.up))):
            stage = self.up[level]
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(nearest codebook vectors shaped like ``z``, indices (B, D, H, W))."""
        b, c = z.shape[:2]
        flat = z.float().movedim(1, -1).reshape(-1, c)
        codes = self.embedding.weight.float()
        distance = (flat**2).sum(1, keepdim=True) + (codes**2).sum(1) - 2 * flat @ codes.t()
        indices = distance.argmin(dim=1)
        quant = codes[indices].reshape(b, *z.shape[2:], c).movedim(-1, 1)
        return quant.to(z.dtype), indices.reshape(b, *z.shape[2:])


class VQModel(nn.Module):
    def __init__(self, spec: VQSpec) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = Encoder(spec)
        self.decoder = Decoder(spec)
        self.quantize = VectorQuantizer(spec.n_embed, spec.embed_dim)
        self.quant_conv = nn.Conv3d(spec.z_channels, spec.embed_dim, 1)
        self.post_quant_conv = nn.Conv3d(spec.embed_dim, spec.z_channels, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The unquantised latent (what LINet diffuses)."""
        return self.quant_conv(self.encoder(x))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Quantise, then decode to the image."""
        quant, _ = self.quantize(latent)
        return self.decoder(self.post_quant_conv(quant))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(quant, indices, decoded): the autoencoder round trip."""
        quant, indices = self.quantize(self.encode(x))
        return quant, indices, self.decoder(self.post_quant_conv(quant))
