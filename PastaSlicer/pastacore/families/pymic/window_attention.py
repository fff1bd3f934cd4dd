"""The windowed 3-D transformer of PCT-Net (MIS-FM ``net/transformer.py``: ``BasicLayer`` of
Swin-style blocks), written for this project with PCT-Net's module names and its own rules:

* a block's window is the layer's, unless the level's smallest side is not larger than it:
  then the window is that side and the block is not shifted;
* every other block is shifted by half the layer's window (cyclic roll, Swin's attention mask
  with -100 between regions);
* the map is zero-padded at the far end to whole windows after the first LayerNorm;
* the relative-position index is PCT-Net's own formula, ``(ds + w0 - 1) * (3 w1 - 1) +
  (dh + w1 - 1) * (2 w1 - 1) + (dw + w2 - 1)`` (not Swin-3D's), in a table of
  (2w0-1)(2w1-1)(2w2-1) rows; it is a persistent buffer, so a checkpoint carries it.

Attention is softmax(q k^T / sqrt(d) + bias [+ shift mask]) v over all windows at once: with
``scaled_dot_product_attention`` on CUDA, as two batched matrix products on CPUs (where the
fused kernel with an additive mask was slower; ``benchmark_misfm.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SHIFT_MASK = -100.0
MLP_RATIO = 4.0


class DropPath(nn.Module):
    """Stochastic depth per sample (scaled by 1 / keep), identity in evaluation. Ours: a few
    lines, so the inference path needs neither timm nor MONAI."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate <= 0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)


class Mlp(nn.Module):
    def __init__(self, channels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def relative_position_index(window: tuple) -> torch.Tensor:
    """PCT-Net's index (N, N), N = w0 w1 w2, into its bias table (see the module notes)."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")).flatten(1)
    offsets = (grid[:, :, None] - grid[:, None, :]).permute(1, 2, 0)
    offsets = offsets + torch.tensor([w - 1 for w in window])
    weights = torch.tensor([3 * window[1] - 1, 2 * window[1] - 1, 1])
    return (offsets * weights).sum(-1)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside (w0, w1, w2) windows with a learnt relative-position bias."""

    def __init__(self, channels: int, window: tuple, heads: int, dropout: float) -> None:
        super().__init__()
        self.window, self.heads = tuple(window), heads
        rows = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, heads))
        self.register_buffer("relative_position_index", relative_position_index(self.window))
        self.qkv = nn.Linear(channels, 3 * channels)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(dropout)
        self.softmax = nn.Softmax(dim=-1)  # MIS-FM's module layout (no parameters)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> torch.Tensor:
        """(heads, N, N) bias of every query-key pair of a window."""
        n = self.relative_position_index.shape[0]
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(n, n, self.heads).permute(2, 0, 1)

    def forward(self, windows: torch.Tensor, shift_mask: torch.Tensor | None = None) -> torch.Tensor:
        """windows (B, nW, N, C) -> (B, nW, N, C); ``shift_mask`` (nW, N, N) or None."""
        b, nw, n, c = windows.shape
        qkv = self.qkv(windows).reshape(b, nw, n, 3, self.heads, c // self.heads).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.position_bias().to(qkv.dtype)  # (heads, N, N)
        mask = bias if shift_mask is None else bias[None] + shift_mask[:, None].to(qkv.dtype)  # (nW, heads, N, N)
        if q.is_cuda:  # fused attention kernels
            drop = self.attn_drop.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        else:  # on CPUs the fused kernel with an additive mask was 1.4x (fp32) to 3x (bf16) slower than this
            scores = torch.matmul(q * (q.shape[-1] ** -0.5), k.transpose(-2, -1))
            scores += mask
            out = torch.matmul(self.attn_drop(torch.softmax(scores, dim=-1)).to(v.dtype), v)
        out = out.transpose(2, 3).reshape(b, nw, n, c)
        return self.proj_drop(self.proj(out))


def partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, S, H, W, C) -> (B, nW, w^3, C), windows in (s, h, w) order."""
    b, s, h, w, c = x.shape
    x = x.reshape(b, s // window, window, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, -1, window**3, c)


def merge(windows: torch.Tensor, window: int, size: tuple) -> torch.Tensor:
    """Inverse of :func:`partition`: (B, nW, w^3, C) -> (B, S, H, W, C)."""
    b, _, _, c = windows.shape
    s, h, w = size
    x = windows.reshape(b, s // window, h // window, w // window, window, window, window, c)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, s, h, w, c)


def shift_mask(padded: tuple, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """Swin's mask (nW, N, N): 0 within a region of the rolled map, -100 across regions."""
    regions = torch.zeros(padded, device=device)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for a in cuts:
        for b in cuts:
            for c in cuts:
                regions[a, b, c] = label
                label += 1
    ids = partition(regions[None, ..., None], window)[0, :, :, 0]  # (nW, N)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.where(diff != 0, torch.tensor(SHIFT_MASK, device=device), torch.tensor(0.0, device=device))


class TransformerBlock(nn.Module):
    """LayerNorm -> (shifted) window attention -> residual; LayerNorm -> MLP -> residual."""

    def __init__(
        self, channels: int, resolution: tuple, heads: int, window: int, shift: int, dropout: float, drop_path: float
    ) -> None:
        super().__init__()
        self.resolution = tuple(resolution)
        if min(self.resolution) <= window:  # PCT-Net: a window never exceeds the smallest side
            window, shift = min(self.resolution), 0
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(channels)
        self.attn = WindowAttention(channels, (window,) * 3, heads, dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = Mlp(channels, int(channels * MLP_RATIO), dropout)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, length, c = tokens.shape
        s, h, w = self.resolution
        win = self.window
        x = self.norm1(tokens).reshape(b, s, h, w, c)
        pads = [(-n) % win for n in (s, h, w)]
        if any(pads):
            x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        padded = tuple(x.shape[1:4])
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift,) * 3, dims=(1, 2, 3))
        x = merge(self.attn(partition(x, win), mask if self.shift else None), win, padded)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift,) * 3, dims=(1, 2, 3))
        x = x[:, :s, :h, :w].reshape(b, length, c)
        x = tokens + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TransformerLayer(nn.Module):
    """``depth`` blocks (``blocks``), every second one shifted by half the window."""

    def __init__(
        self, channels: int, resolution: tuple, depth: int, heads: int, window: int, dropout: float, drop_path: float
    ) -> None:
        super().__init__()
        self.resolution, self.window, self.shift = tuple(resolution), window, window // 2
        self.blocks = nn.ModuleList(
            TransformerBlock(channels, resolution, heads, window, 0 if i % 2 == 0 else window // 2, dropout, drop_path)
            for i in range(depth)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = None
        if any(block.shift for block in self.blocks):
            padded = tuple(math.ceil(n / self.window) * self.window for n in self.resolution)
            mask = shift_mask(padded, self.window, self.shift, tokens.device)
        for block in self.blocks:
            tokens = block(tokens, mask)
        return tokens
