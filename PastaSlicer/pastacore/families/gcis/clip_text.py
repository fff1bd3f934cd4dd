"""The text tower of open_clip's ``ViT-B-32-quickgelu``: what gCIS embeds a prompt with.

Token embedding (49408 x 512) plus a learned position embedding (77 x 512); 12 pre-norm residual
blocks of width 512 with 8 attention heads (causal mask: a token sees itself and those before)
and an MLP 512 -> 2048 -> 512 with QuickGELU (``x * sigmoid(1.702 x)``); a final LayerNorm; the
features at the end-of-text token (the highest id of each row) times ``text_projection`` (512 x
512). The embedding is not normalised (gCIS calls ``encode_text`` without ``normalize``).

Our own module so that open_clip (whose import needs torchvision) is not needed; the parameter
names are open_clip's, so its state dict loads strictly. The image tower is not built.
"""

from __future__ import annotations

import torch
from torch import nn

VOCAB, CONTEXT, WIDTH, HEADS, LAYERS, EMBED = 49408, 77, 512, 8, 12, 512
TEXT_PREFIXES = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualBlock(nn.Module):
    """x + attention(LayerNorm(x)), then + MLP(LayerNorm(...)); x (B, L, width)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Blocks(nn.Module):
    """``resblocks``, as open_clip's ``Transformer`` holds them."""

    def __init__(self, width: int, heads: int, layers: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class ClipTextTower(nn.Module):
    """``tokens`` (B, 77) int64 -> (B, 512) prompt embeddings."""

    def __init__(self, vocab: int = VOCAB, context: int = CONTEXT, width: int = WIDTH, heads: int = HEADS,
                 layers: int = LAYERS, embed: int = EMBED) -> None:  # fmt: skip
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context, width))
        self.transformer = Blocks(width, heads, layers)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.zeros(width, embed))
        causal = torch.full((context, context), float("-inf")).triu(1)
        self.register_buffer("attn_mask", causal, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.ln_final(self.transformer(x, self.attn_mask))
        end = tokens.argmax(dim=-1)  # the end-of-text token has the highest id
        return x[torch.arange(x.shape[0]), end] @ self.text_projection


def tower_for(state: dict, name: str = "the file") -> ClipTextTower:
    """An untrained tower shaped as the text tensors ``state`` (width from the token embedding,
    depth from the blocks, one head per 64 channels as open_clip's text towers have), refused when
    it cannot serve gCIS: a 49408-token vocabulary (the BPE tokenizer's), 77 positions and a 512-d
    output (the routers' input)."""
    from ...errors import PastaError

    tokens, positions = state.get("token_embedding.weight"), state.get("positional_embedding")
    projection = state.get("text_projection")
    if tokens is None or positions is None or projection is None:
        raise PastaError(f"{name} holds no CLIP text tower (token_embedding, positional_embedding, text_projection)")
    vocab, width = tokens.shape
    layers = len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")})
    if vocab != VOCAB or positions.shape[0] != CONTEXT or projection.shape[1] != EMBED or layers == 0 or width % 64:
        raise PastaError(
            f"{name} is not a CLIP text tower gCIS can use: vocabulary {vocab} (needs {VOCAB}), context "
            f"{positions.shape[0]} (needs {CONTEXT}), output {projection.shape[1]} (needs {EMBED}), {layers} blocks of width {width}"
        )
    return ClipTextTower(vocab, positions.shape[0], width, width // 64, layers, projection.shape[1])


def text_state(state: dict) -> dict:
    """The text tower's tensors of a whole CLIP state dict (the image tower, ``logit_scale`` and a
    stored ``attn_mask`` left out)."""
    return {k: v for k, v in state.items() if k.startswith(TEXT_PREFIXES)}
