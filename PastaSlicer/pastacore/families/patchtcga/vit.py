"""The Vision Transformer of DINO v1 and MAE, under timm's parameter names.

Written here in plain torch rather than imported from timm: timm needs torchvision, which does not
import beside the project's pinned torch build. DINO's and MAE's ViTs are timm's of their day:
a patch-embedding convolution (``patch_embed.proj``), a CLS token, a stored position embedding
(``pos_embed``, 1 + (img_size / patch)^2 tokens), pre-norm blocks (``blocks.N.norm1``,
``attn.qkv`` with bias, ``attn.proj``, ``norm2``, ``mlp.fc1``, exact GELU, ``mlp.fc2``) and a
final ``norm``; every LayerNorm has eps 1e-6. Attention runs through torch's fused
``scaled_dot_product_attention`` (the same softmax(q k^T / sqrt(d)) v).

Features: ``cls`` = final LayerNorm -> CLS token (DINO; MAE's linear probe); ``avg`` = mean of the
patch tokens (CLS excluded) -> ``fc_norm`` (MAE's fine-tuning default), a fresh LayerNorm
(weight 1, bias 0) unless the file carries its own ``fc_norm``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input's type (a bfloat16 network keeps its
    normalisation statistics exact); a no-op change for float32 inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = LayerNorm(dim, eps=EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """(B, 3, H, W) normalised pixels -> (B, embed_dim) features (see the module docstring).

    ``interpolate``: inputs whose size is not ``img_size`` get DINO's bicubic resampling of the
    position embedding (DINO's own code does this); otherwise such inputs are refused, as MAE's
    (timm's) patch embedding refuses them.
    """

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        pool: str = "cls",
        interpolate: bool = False,
    ) -> None:
        super().__init__()
        self.img_size, self.patch_size, self.pool, self.interpolate = img_size, patch_size, pool, interpolate
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (img_size // patch_size) ** 2, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = LayerNorm(embed_dim, eps=EPS)
        self.fc_norm = LayerNorm(embed_dim, eps=EPS)  # fresh (1, 0) unless a file brings its own
        self.feature_dim = embed_dim

    def position_embedding(self, height: int, width: int, tokens: int) -> torch.Tensor:
        """The position embedding for an input of ``height`` x ``width`` pixels giving ``tokens`` patches."""
        stored = self.pos_embed.shape[1] - 1
        if tokens == stored and height == width:  # DINO's test: square input with the stored count
            return self.pos_embed
        if not self.interpolate:
            from ...errors import PastaError

            raise PastaError(
                f"this encoder takes {self.img_size}x{self.img_size}-pixel patches (its position embedding); "
                f"got {width}x{height}: crop or tile the image to {self.img_size} pixels"
            )
        side = math.sqrt(stored)
        rows, cols = height // self.patch_size + 0.1, width // self.patch_size + 0.1  # DINO's +0.1 (its issue 8)
        stored_embed = self.pos_embed.float()  # resampled in float32 (also in a bfloat16 network)
        grid = stored_embed[:, 1:].reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=(rows / side, cols / side), mode="bicubic")
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, self.pos_embed.shape[-1])
        return torch.cat((stored_embed[:, :1], grid), dim=1).to(self.pos_embed.dtype)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1 + patches, D): the output of the last block (before the final norm)."""
        height, width = x.shape[-2:]
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.position_embedding(height, width, x.shape[1] - 1)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokens(x)
        if self.pool == "avg":
            return self.fc_norm(x[:, 1:].mean(dim=1))
        return self.norm(x)[:, 0]
