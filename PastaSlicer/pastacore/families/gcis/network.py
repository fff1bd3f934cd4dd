"""The gCIS network: MONAI's Swin encoder, residual skip encoders, and a decoder with seven
automatic-pathway (AP) positions (decoder10, decoder5, decoder4, decoder3, decoder2, decoder1,
the output head).

:class:`GcisSingle` has one path per position (the released task models); :class:`GcisMultiPath`
has ``ap_num`` per position, chosen by the prompt. Both take the public constructor's arguments
and name their modules as the public ``SwinSingle``/``SwinAP`` do, so their state dicts load
strictly. Input (B, in_channels, X, Y, Z) with every side a multiple of 32; output logits
(B, out_channels, X, Y, Z).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from monai.networks.blocks.dynunet_block import UnetOutBlock
from monai.networks.nets.swin_unetr import PatchMergingV2, SwinTransformer
from torch import nn

from ...errors import PastaError
from .blocks import ApBasicBlock, ApUpBlock, BasicBlock, LegacyPatchMerging, PathwaySwitch, UpBlock
from .config import AP_POSITIONS, DIVISOR, PROMPT_DIM, network_arguments

MERGING = {"merging": LegacyPatchMerging, "mergingv2": PatchMergingV2}
# (name, input channels, output channels) as multiples of feature_size, and whether the block is a bottleneck
SKIP_ENCODERS = (("encoder2", 1, 1, False), ("encoder3", 2, 2, False), ("encoder4", 4, 4, False), ("encoder5", 8, 8, True))
UP_BLOCKS = (
    ("decoder5", 16, 8, True),
    ("decoder4", 8, 4, True),
    ("decoder3", 4, 2, False),
    ("decoder2", 2, 1, False),
    ("decoder1", 1, 1, False),
)


class _GcisBase(nn.Module):
    """The encoder both variants share: ``swinViT`` and ``encoder1/2/3/4/5/10``."""

    def __init__(
        self,
        img_size: Sequence[int] | int,
        in_channels: int,
        out_channels: int,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        feature_size: int = 24,
        norm_name: tuple | str = "instance",
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        dropout_path_rate: float = 0.0,
        normalize: bool = True,
        use_checkpoint: bool = False,
        spatial_dims: int = 3,
        downsample: str = "merging",
    ) -> None:
        super().__init__()
        sizes = [img_size] * 3 if isinstance(img_size, int) else list(img_size)
        if spatial_dims != 3 or len(sizes) != 3 or any(s % DIVISOR for s in sizes):
            raise PastaError(f"gCIS builds 3-D networks on sides that are multiples of {DIVISOR}, got img_size {img_size}")
        if feature_size % 12:
            raise PastaError(f"gCIS needs a feature_size divisible by 12, got {feature_size}")
        self.normalize, self.feature_size = normalize, feature_size
        self.swinViT = SwinTransformer(**_swin_arguments(in_channels, feature_size, depths, num_heads, drop_rate, attn_drop_rate,
                                                         dropout_path_rate, use_checkpoint, downsample))  # fmt: skip
        f = feature_size
        self.encoder1 = BasicBlock(3, in_channels, f, norm_name, bottleneck=False)
        for name, cin, cout, bottleneck in SKIP_ENCODERS:
            self.add_module(name, BasicBlock(3, cin * f, cout * f, norm_name, bottleneck))
        self.encoder10 = BasicBlock(3, 16 * f, 16 * f, norm_name, bottleneck=True)

    def encode(self, x: torch.Tensor) -> tuple:
        """(deepest features (B, 16f, X/32, ...), skips from the finest (B, f, X, ...) to (B, 8f, X/16, ...))."""
        hidden = self.swinViT(x, self.normalize)
        skips = [
            self.encoder1(x),
            self.encoder2(hidden[0]),
            self.encoder3(hidden[1]),
            self.encoder4(hidden[2]),
            self.encoder5(hidden[3]),
        ]
        return self.encoder10(hidden[4]), skips


def _swin_arguments(
    in_channels, feature_size, depths, num_heads, drop_rate, attn_drop_rate, drop_path, use_checkpoint, downsample
):
    if downsample not in MERGING:
        raise PastaError(f"gCIS downsample must be one of {', '.join(MERGING)}, got {downsample!r}")
    arguments = dict(
        in_chans=in_channels,
        embed_dim=feature_size,
        window_size=(7, 7, 7),
        patch_size=(2, 2, 2),
        depths=tuple(depths),
        num_heads=tuple(num_heads),
        mlp_ratio=4.0,
        qkv_bias=True,
        drop_rate=drop_rate,
        attn_drop_rate=attn_drop_rate,
        drop_path_rate=drop_path,
        norm_layer=nn.LayerNorm,
        use_checkpoint=use_checkpoint,
        spatial_dims=3,
        downsample=MERGING[downsample],
    )
    if "use_flash_attention" in inspect.signature(SwinTransformer.__init__).parameters:
        # MONAI >= 1.5: the windowed attention through scaled_dot_product_attention when no gradient
        # is taken (the same numbers to float rounding, faster); training keeps the plain path
        arguments["use_flash_attention"] = True
    return arguments


class GcisSingle(_GcisBase):
    """One path per AP position (the public ``SwinSingle``): ``decoder10``, ``decoder5`` ...
    ``decoder1``, ``out``. ``forward(x)`` -> logits."""

    def __init__(self, img_size: Sequence[int] | int, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__(img_size, in_channels, out_channels, **kwargs)
        f, norm = self.feature_size, kwargs.get("norm_name", "instance")
        self.decoder10 = BasicBlock(3, 16 * f, 16 * f, norm, bottleneck=True)
        for name, cin, cout, bottleneck in UP_BLOCKS:
            self.add_module(name, UpBlock(3, cin * f, cout * f, norm, bottleneck))
        self.out = UnetOutBlock(spatial_dims=3, in_channels=f, out_channels=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deepest, skips = self.encode(x)
        out = self.decoder10(deepest)
        for (name, *_), skip in zip(UP_BLOCKS, reversed(skips)):
            out = getattr(self, name)(out, skip)
        return self.out(out)


class GcisMultiPath(_GcisBase, PathwaySwitch):
    """``ap_num`` sub-paths per AP position (the public ``SwinAP``), each position with its own
    ``prompt_router``; the output head's sub-paths are ``out_p<i>`` with the top-level router.
    ``forward(x, prompt)``: x (B, C, X, Y, Z), prompt (B, 512) or (1, 512) for the whole batch."""

    def __init__(
        self, img_size: Sequence[int] | int, in_channels: int, out_channels: int, ap_num: int = 1, tau: float = 1.0, **kwargs
    ) -> None:
        super().__init__(img_size, in_channels, out_channels, **kwargs)
        f, norm = self.feature_size, kwargs.get("norm_name", "instance")
        self.decoder10 = ApBasicBlock(3, 16 * f, 16 * f, norm, True, ap_num, tau)
        for name, cin, cout, bottleneck in UP_BLOCKS:
            self.add_module(name, ApUpBlock(3, cin * f, cout * f, norm, bottleneck, ap_num, tau))
        self._add_paths(
            "out_p", [UnetOutBlock(spatial_dims=3, in_channels=f, out_channels=out_channels) for _ in range(ap_num)], tau
        )

    def switches(self) -> list:
        """The seven AP positions in the public order (decoder10 ... decoder1, the output head)."""
        return [getattr(self, name) for name in AP_POSITIONS[:-1]] + [self]

    def pathways(self, prompt: torch.Tensor) -> torch.Tensor:
        """The sub-path each position takes for each prompt: (B, 7) int64, one-based, in
        :data:`~.config.AP_POSITIONS` order (the public ``--display_path`` / ``path_selection``)."""
        prompt = _checked_prompt(prompt)
        with torch.no_grad():
            return torch.stack([switch.choose(prompt) for switch in self.switches()], dim=1) + 1

    def forward(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        prompt = _checked_prompt(prompt, x.shape[0])
        deepest, skips = self.encode(x)
        out = self.decoder10(deepest, prompt)
        for (name, *_), skip in zip(UP_BLOCKS, reversed(skips)):
            out = getattr(self, name)(out, skip, prompt)
        return self.route(out, prompt)


def _checked_prompt(prompt: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    if prompt.dim() == 1:
        prompt = prompt[None]
    if prompt.dim() != 2 or prompt.shape[1] != PROMPT_DIM:
        raise PastaError(f"a gCIS prompt embedding is (B, {PROMPT_DIM}), got {tuple(prompt.shape)}")
    if batch is not None and prompt.shape[0] != batch:
        if prompt.shape[0] != 1:
            raise PastaError(f"{prompt.shape[0]} prompt embeddings for a batch of {batch} images")
        prompt = prompt.expand(batch, -1)
    return prompt.float()


def build_network(config: dict) -> nn.Module:
    """The network a checked config (:func:`~.config.check_config`) describes, in evaluation mode."""
    arguments = network_arguments(config)
    kind = GcisMultiPath if config["variant"] == "ap" else GcisSingle
    return kind(**arguments).eval()
