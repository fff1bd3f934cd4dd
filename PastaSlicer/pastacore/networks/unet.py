"""PASTA's network: a 3-D U-Net with the topology of nnU-Net v1's ``Generic_UNet``.

Written for this project from the published description of the architecture; the module
names reproduce those of the public PASTA weights exactly, so that ``PASTA_final.pth`` and
the nnU-Net v2 ``network_weights`` of PASTA's fine-tuned models load by name.

Layout for ``num_pool`` = P (PASTA: P = 5, 64 base features, at most 1024 per stage):

* ``conv_blocks_context.{0..P-1}``: encoder stages of two conv blocks
  (``.blocks.{0,1}.conv`` / ``.instnorm``); the first conv of stages 1..P-1 has stride 2.
* ``conv_blocks_context.P``: the bottleneck, two single-block stacks
  (``.{0,1}.blocks.0.*``), the first with stride 2.
* ``tu.{u}``: 2x2x2 transposed conv (stride 2, no bias) from the level below to the skip's
  channel count, for ``u`` = 0 (deepest) .. P-1 (full resolution).
* ``conv_blocks_localization.{u}``: two single-block stacks, concat(2C) -> C -> C.
* ``seg_outputs.{u}``: 1x1x1 conv (no bias) to the class logits at each decoder level.
* ``head.{0,2,4}`` (optional): Linear(C_top, 512) -> LeakyReLU -> Linear(512, 256) ->
  LeakyReLU -> Linear(256, N), fed with the globally pooled output of encoder stage P-1.

A block is Conv3d(3x3x3, pad 1, bias) -> InstanceNorm3d(affine, eps 1e-5, no running
statistics) -> LeakyReLU(0.01).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import PastaError

ARCHITECTURE = "pasta-generic-unet"
NEGATIVE_SLOPE = 1e-2
HEAD_HIDDEN = (512, 256)


class ConvBlock(nn.Module):
    """Conv3d(3x3x3) -> InstanceNorm3d -> LeakyReLU; child names ``conv``, ``instnorm``, ``lrelu``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=True)
        self.instnorm = nn.InstanceNorm3d(out_channels, eps=1e-5, affine=True, track_running_stats=False)
        self.lrelu = nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lrelu(self.instnorm(self.conv(x)))


class ConvStack(nn.Module):
    """``count`` conv blocks in ``.blocks``; only the first may be strided."""

    def __init__(self, in_channels: int, out_channels: int, count: int, first_stride: int = 1) -> None:
        super().__init__()
        layers = [ConvBlock(in_channels, out_channels, first_stride)]
        layers += [ConvBlock(out_channels, out_channels) for _ in range(count - 1)]
        self.blocks = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def stage_channels(base_features: int, num_pool: int, max_features: int = 1024) -> list:
    """Channels of encoder stages 0..num_pool-1 followed by the bottleneck."""
    return [min(base_features * 2**d, max_features) for d in range(num_pool + 1)]


class PastaUNet(nn.Module):
    """The PASTA / nnU-Net v1 ``Generic_UNet`` (3-D, isotropic 2x2x2 pooling, 2 convs per stage).

    ``forward(x)`` gives full-resolution logits (B, K, D, H, W); with ``deep_supervision``
    a list of logits from full resolution down to 1/2**(P-1). ``encode_features(x)`` gives
    the globally pooled output of the last encoder stage (1024 values for PASTA), and
    ``classify(x)`` the head's outputs for those features.
    """

    def __init__(
        self,
        num_classes: int,
        base_features: int = 64,
        num_pool: int = 5,
        input_channels: int = 1,
        max_features: int = 1024,
        num_head_outputs: int | None = None,
        deep_supervision: bool = False,
        head_in_features: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("base_features", base_features),
            ("num_pool", num_pool),
            ("input_channels", input_channels),
            ("max_features", max_features),
        ):
            if not isinstance(value, int) or value < 1:
                raise PastaError(f"network {name} must be a positive integer, not {value!r}")
        if num_head_outputs is not None and (not isinstance(num_head_outputs, int) or num_head_outputs < 1):
            raise PastaError(f"network num_head_outputs must be a positive integer or None, not {num_head_outputs!r}")
        self.num_classes = num_classes
        self.base_features = base_features
        self.num_pool = num_pool
        self.input_channels = input_channels
        self.max_features = max_features
        self.num_head_outputs = num_head_outputs
        self.deep_supervision = deep_supervision

        channels = stage_channels(base_features, num_pool, max_features)
        self.channels = channels
        self.feature_channels = channels[num_pool - 1]
        # PASTA's public classifier keeps Linear(1024, 512) at any width: a file says what its head takes
        self.head_in_features = head_in_features or self.feature_channels

        context = []
        previous = input_channels
        for d in range(num_pool):
            context.append(ConvStack(previous, channels[d], 2, first_stride=1 if d == 0 else 2))
            previous = channels[d]
        bottom = channels[num_pool]
        context.append(nn.Sequential(ConvStack(previous, bottom, 1, first_stride=2), ConvStack(bottom, bottom, 1)))
        self.conv_blocks_context = nn.ModuleList(context)

        up, local, heads = [], [], []
        below = bottom
        for u in range(num_pool):
            skip = channels[num_pool - 1 - u]
            up.append(nn.ConvTranspose3d(below, skip, kernel_size=2, stride=2, bias=False))
            local.append(nn.Sequential(ConvStack(2 * skip, skip, 1), ConvStack(skip, skip, 1)))
            heads.append(nn.Conv3d(skip, num_classes, kernel_size=1, stride=1, padding=0, bias=False))
            below = skip
        self.tu = nn.ModuleList(up)
        self.conv_blocks_localization = nn.ModuleList(local)
        self.seg_outputs = nn.ModuleList(heads)

        if num_head_outputs is not None:
            h1, h2 = HEAD_HIDDEN
            self.head = nn.Sequential(
                nn.Linear(self.head_in_features, h1),
                nn.LeakyReLU(NEGATIVE_SLOPE),
                nn.Linear(h1, h2),
                nn.LeakyReLU(NEGATIVE_SLOPE),
                nn.Linear(h2, num_head_outputs),
            )
        else:
            self.head = None
        self.apply(_he_init)

    # --- configuration -------------------------------------------------------------------
    @property
    def divisor(self) -> int:
        """Every spatial size of a segmentation input must be a multiple of this."""
        return 2**self.num_pool

    def config(self) -> dict:
        return {
            "architecture": ARCHITECTURE,
            "base_features": self.base_features,
            "num_classes": self.num_classes,
            "num_pool": self.num_pool,
            "input_channels": self.input_channels,
            "max_features": self.max_features,
            "num_head_outputs": self.num_head_outputs,
        }

    # --- forward passes --------------------------------------------------------------------
    def forward(self, x: torch.Tensor, deep_supervision: bool | None = None) -> torch.Tensor | list[torch.Tensor]:
        self._check_input(x, segmentation=True)
        skips = []
        for stage in self.conv_blocks_context[:-1]:
            x = stage(x)
            skips.append(x)
        x = self.conv_blocks_context[-1](x)
        outputs = []
        want_all = self.deep_supervision if deep_supervision is None else deep_supervision
        last = self.num_pool - 1
        for u in range(self.num_pool):
            x = self.tu[u](x)
            x = torch.cat((x, skips[last - u]), dim=1)
            x = self.conv_blocks_localization[u](x)
            if want_all or u == last:
                outputs.append(self.seg_outputs[u](x))
        if not want_all:
            return outputs[-1]
        return outputs[::-1]  # full resolution first, as nnU-Net's deep supervision expects

    def encode_features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder stages 0..P-1 (not the bottleneck), then global average pooling: (B, C_top)."""
        self._check_input(x, segmentation=False)
        for stage in self.conv_blocks_context[:-1]:
            x = stage(x)
        return torch.flatten(nn.functional.adaptive_avg_pool3d(x, 1), 1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise PastaError("this network has no classification head (num_head_outputs is None)")
        if self.head_in_features != self.feature_channels:
            raise PastaError(
                f"the classification head takes {self.head_in_features} features but the encoder gives "
                f"{self.feature_channels}; this file can segment but not classify"
            )
        return self.head(self.encode_features(x))

    def _check_input(self, x, segmentation: bool):
        if not torch.is_tensor(x) or x.dim() != 5:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise PastaError(f"network input must be a 5-D tensor (B, C, D, H, W), got {shape}")
        if x.shape[1] != self.input_channels:
            raise PastaError(
                f"network expects {self.input_channels} input channel(s), got {x.shape[1]} (input shape {tuple(x.shape)})"
            )
        spatial = tuple(int(s) for s in x.shape[2:])
        if segmentation:
            bad = [s for s in spatial if s % self.divisor]
            if bad:
                raise PastaError(
                    f"segmentation input size {spatial} is not divisible by {self.divisor} "
                    f"(2**{self.num_pool}) on every axis; pad or crop it first"
                )
            deepest = [s // self.divisor for s in spatial]
        else:
            deepest = list(spatial)
            for _ in range(self.num_pool - 1):
                deepest = [math.ceil(s / 2) for s in deepest]
        if math.prod(deepest) < 2:  # instance normalisation needs more than one voxel per map
            raise PastaError(
                f"input size {spatial} is too small for this network: its deepest level would be "
                f"{tuple(deepest)} voxel(s); make at least one axis twice as large"
            )


def _he_init(module):
    """He (Kaiming normal, a = 0.01) weights and zero biases for convolutions, as in nnU-Net."""
    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=NEGATIVE_SLOPE)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def expected_layout(
    num_classes: int,
    base_features: int = 64,
    num_pool: int = 5,
    input_channels: int = 1,
    max_features: int = 1024,
    num_head_outputs: int | None = None,
    head_in_features: int | None = None,
) -> dict:
    """``{name: shape}`` of the network's state dict, computed on the meta device (no memory used)."""
    with torch.device("meta"):
        net = PastaUNet(
            num_classes,
            base_features,
            num_pool,
            input_channels,
            max_features,
            num_head_outputs,
            head_in_features=head_in_features,
        )
    return {name: tuple(t.shape) for name, t in net.state_dict().items()}
