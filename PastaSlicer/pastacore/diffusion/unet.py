"""The denoising UNet of LMNet and LINet (LDM ``openaimodel.UNetModel`` layout, 3D).

Layout (names as in the released checkpoints): ``time_embed`` (sinusoidal embedding of the
step -> Linear -> SiLU -> Linear, 4x width), ``context_linear_projection`` (the text
tokens pass a bias-free square Linear first), ``input_blocks`` (a 3^3 conv, then per level
``num_res_blocks`` residual blocks, each followed by a spatial transformer where the
downsampling factor is in ``attention_resolutions``, and a strided-conv downsampling
between levels), ``middle_block`` (residual, transformer, residual), ``output_blocks``
(per level ``num_res_blocks + 1`` residual blocks on the concatenated skip, transformer,
and a nearest x2 upsampling + conv at the end of each level but the last) and ``out``.
GroupNorm has 32 groups where the width allows, else one group per channel.

With ``skip_context`` the text context is dropped (the cross-attention runs as a second
self-attention), as the released LINet config sets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import SpatialTransformer
from .config import UNetSpec


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32 if channels % 32 == 0 else channels, channels)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[cos(t f), sin(t f)] with f = exp(-ln(max_period) * arange(dim/2) / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class ResBlock(nn.Module):
    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        out = out_channels or channels
        self.in_layers = nn.Sequential(group_norm(channels), nn.SiLU(), nn.Conv3d(channels, out, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out))
        self.out_layers = nn.Sequential(group_norm(out), nn.SiLU(), nn.Dropout(0.0), nn.Conv3d(out, out, 3, padding=1))
        self.skip_connection = nn.Identity() if out == channels else nn.Conv3d(channels, out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv3d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Step(nn.Sequential):
    """A block of the UNet: passes the step embedding and the context to the layers that use them."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class DiffusionUNet(nn.Module):
    def __init__(self, spec: UNetSpec) -> None:
        super().__init__()
        self.spec = spec
        mc, emb = spec.model_channels, spec.model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.context_linear_projection = nn.Linear(spec.context_dim, spec.context_dim, bias=False)

        def transformer(width):
            heads, per_head = spec.heads(width)
            return SpatialTransformer(width, heads, per_head, spec.transformer_depth, spec.context_dim)

        self.input_blocks = nn.ModuleList([Step(nn.Conv3d(spec.in_channels, mc, 3, padding=1))])
        skips, ch, ds = [mc], mc, 1
        for level, mult in enumerate(spec.channel_mult):
            for _ in range(spec.num_res_blocks):
                layers = [ResBlock(ch, emb, mult * mc)]
                ch = mult * mc
                if ds in spec.attention_resolutions:
                    layers.append(transformer(ch))
                self.input_blocks.append(Step(*layers))
                skips.append(ch)
            if level != len(spec.channel_mult) - 1:
                self.input_blocks.append(Step(Downsample(ch)))
                skips.append(ch)
                ds *= 2
        middle = [ResBlock(ch, emb)] + ([transformer(ch)] if spec.attention_resolutions else []) + [ResBlock(ch, emb)]
        self.middle_block = Step(*middle)
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(spec.channel_mult))[::-1]:
            for i in range(spec.num_res_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), emb, mc * mult)]
                ch = mc * mult
                if ds in spec.attention_resolutions:
                    layers.append(transformer(ch))
                if level and i == spec.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Step(*layers))
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv3d(mc, spec.out_channels, 3, padding=1))

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.spec.channel_mult) - 1)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, in_channels, D, H, W) with D, H, W divisible by :attr:`downsampling`;
        ``timesteps`` (B,); ``context`` (B, N, context_dim) or None."""
        emb = self.time_embed(timestep_embedding(timesteps, self.spec.model_channels).to(x.dtype))
        if context is not None:
            context = None if self.spec.skip_context else self.context_linear_projection(context.to(x.dtype))
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb, context)
        return self.out(h)
