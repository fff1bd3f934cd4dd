"""PCT-Net (MIS-FM ``net/pct_net.py``), written for this project with MIS-FM's module names, so
its checkpoints (684 state-dict entries at the released config) load by name.

* ``embeddings.{0,1,2}`` / ``pred_heads.{0,1,2}``: three convolutional stems and heads, one per
  ``resolution_mode`` (0: isotropic, 1: the first down-sampling in-plane, 2: both in-plane);
  all three are built (and stored), only the mode's pair runs. A stem: ``proj`` conv ->
  ``conv0`` -> ``down1`` -> ``conv1`` -> ``down2`` (max-pool + pre-activation conv), giving
  feature maps at full, 1/2 and 1/4 size (per axis as the mode says).
* ``pyramid_ct``: ``convtrans_e2`` -> ``down3`` -> ``convtrans_e3`` -> ``down4`` ->
  ``convtrans_e4``, then ``up4`` -> ``convtrans_d3`` -> ``up3`` -> ``convtrans_d2``; a
  conv-transformer block adds a pre-activation conv block and a windowed transformer layer
  (:mod:`.window_attention`) of the same input. ``out_conv2`` / ``out_conv3`` predict from
  its two finest decoded maps when multiscale outputs are asked for.
* A head: ``up2`` (transposed conv, cat with the stem's 1/2 map) -> ``conv1`` -> ``up1`` ->
  ``conv0`` -> ``out_conv0``; ``out_conv1`` predicts at 1/2.

Every block is pre-activation: BatchNorm3d -> PReLU -> conv. The transformer is built for one
input size (``input_size``), so the network takes exactly that patch.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import PCT_STEM_SCALE
from .window_attention import TransformerLayer

DROP_PATH = 0.2  # MIS-FM's ConvTransBlock default, every block


def _kernel(dim: int) -> tuple:
    return ((1, 3, 3), (0, 1, 1)) if dim == 2 else ((3, 3, 3), (1, 1, 1))


def _pre(channels: int) -> list:
    return [nn.BatchNorm3d(channels), nn.PReLU()]


class ConvBlock(nn.Module):
    """``conv_conv``: [BN, PReLU, conv, BN, PReLU, Dropout, conv] (no residual)."""

    def __init__(self, in_channels: int, out_channels: int, dim: int, dropout: float) -> None:
        super().__init__()
        kernel, pad = _kernel(dim)
        self.conv_conv = nn.Sequential(
            *_pre(in_channels),
            nn.Conv3d(in_channels, out_channels, kernel_size=kernel, padding=pad),
            *_pre(out_channels),
            nn.Dropout(dropout),
            nn.Conv3d(out_channels, out_channels, kernel_size=kernel, padding=pad),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_conv(x)


class DownSample(nn.Module):
    """Max-pool (2 or 1x2x2) then [BN, PReLU, conv]."""

    def __init__(self, in_channels: int, out_channels: int, down_dim: int, conv_dim: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool3d((1, 2, 2) if down_dim == 2 else 2)
        kernel, pad = _kernel(conv_dim)
        self.conv = nn.Sequential(*_pre(in_channels), nn.Conv3d(in_channels, out_channels, kernel_size=kernel, padding=pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class ConvLayer(nn.Module):
    """[BN, PReLU, 1x1x1 conv] (the output layers)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(*_pre(in_channels), nn.Conv3d(in_channels, out_channels, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UpCatBlock(nn.Module):
    """``up``: [BN, PReLU, transposed conv (2 or 1x2x2)] of the coarse map; cat([fine, up]) -> ``conv``."""

    def __init__(self, fine_channels: int, coarse_channels: int, up_dim: int, conv_dim: int) -> None:
        super().__init__()
        step = (1, 2, 2) if up_dim == 2 else (2, 2, 2)
        self.up = nn.Sequential(
            *_pre(coarse_channels), nn.ConvTranspose3d(coarse_channels, fine_channels, kernel_size=step, stride=step)
        )
        kernel, pad = _kernel(conv_dim)
        self.conv = nn.Sequential(
            *_pre(2 * fine_channels), nn.Conv3d(2 * fine_channels, fine_channels, kernel_size=kernel, padding=pad)
        )

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([fine, self.up(coarse)], dim=1))


class ConvTransBlock(nn.Module):
    """A conv block and a windowed transformer layer on the same map, summed."""

    def __init__(self, channels: int, resolution: list, depth: int, heads: int, window: int, dropout: float) -> None:
        super().__init__()
        self.conv = ConvBlock(channels, channels, 3, dropout)
        self.trans = TransformerLayer(channels, tuple(resolution), depth, heads, window, dropout, DROP_PATH)
        self.norm_layer = nn.LayerNorm(channels)  # built (and stored) by MIS-FM, never applied
        self.pos_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, s, h, w = x.shape
        tokens = self.pos_drop(x.flatten(2).transpose(1, 2).contiguous())
        attended = self.trans(tokens).reshape(b, s, h, w, c).permute(0, 4, 1, 2, 3)
        return self.conv(x) + attended.contiguous()


class PatchEmbedding(nn.Module):
    def __init__(self, in_channels: int, features: list, conv_dims: list, down_dims: list, dropout: list) -> None:
        super().__init__()
        kernel, pad = _kernel(conv_dims[0])
        self.proj = nn.Conv3d(in_channels, features[0], kernel_size=kernel, padding=pad)
        self.conv0 = ConvBlock(features[0], features[0], conv_dims[0], dropout[0])
        self.conv1 = ConvBlock(features[1], features[1], conv_dims[1], dropout[1])
        self.down1 = DownSample(features[0], features[1], down_dims[0], conv_dims[1])
        self.down2 = DownSample(features[1], features[2], down_dims[1], 3)

    def forward(self, x: torch.Tensor) -> tuple:
        x0 = self.conv0(self.proj(x))
        x1 = self.conv1(self.down1(x0))
        return x0, x1, self.down2(x1)


class PyramidConvTrans(nn.Module):
    def __init__(
        self, resolution: list, features: list, dropout: list, depths: list, heads: list, windows: list, classes: int
    ) -> None:
        super().__init__()
        self.down3 = DownSample(features[0], features[1], 3, 3)
        self.down4 = DownSample(features[1], features[2], 3, 3)
        self.up3 = UpCatBlock(features[0], features[1], 3, 3)
        self.up4 = UpCatBlock(features[1], features[2], 3, 3)
        sizes = [list(resolution), [n // 2 for n in resolution], [n // 4 for n in resolution]]

        def block(level):
            return ConvTransBlock(features[level], sizes[level], depths[level], heads[level], windows[level], dropout[level])

        self.convtrans_e2 = block(0)
        self.convtrans_d2 = block(0)
        self.convtrans_e3 = block(1)
        self.convtrans_d3 = block(1)
        self.convtrans_e4 = block(2)
        self.out_conv2 = ConvLayer(features[0], classes)
        self.out_conv3 = ConvLayer(features[1], classes)

    def forward(self, x: torch.Tensor) -> tuple:
        """(decoded finest map, the two decoded maps [1/4, 1/8 of the input])."""
        x2 = self.convtrans_e2(x)
        x3 = self.convtrans_e3(self.down3(x2))
        x4 = self.convtrans_e4(self.down4(x3))
        d3 = self.convtrans_d3(self.up4(x3, x4))
        d2 = self.convtrans_d2(self.up3(x2, d3))
        return d2, d3


class PredictionHead(nn.Module):
    def __init__(self, features: list, conv_dims: list, down_dims: list, dropout: list, classes: int) -> None:
        super().__init__()
        self.up1 = UpCatBlock(features[0], features[1], down_dims[0], conv_dims[0])
        self.up2 = UpCatBlock(features[1], features[2], down_dims[1], conv_dims[1])
        self.conv0 = ConvBlock(features[0], features[0], conv_dims[0], dropout[0])
        self.conv1 = ConvBlock(features[1], features[1], conv_dims[1], dropout[1])
        self.out_conv0 = ConvLayer(features[0], classes)
        self.out_conv1 = ConvLayer(features[1], classes)

    def decode(self, x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> tuple:
        d1 = self.conv1(self.up2(x1, x2))
        return self.conv0(self.up1(x0, d1)), d1


STEM_DIMS = {0: ([3, 3], [3, 3]), 1: ([2, 3], [2, 3]), 2: ([2, 2], [2, 2])}  # mode -> (conv dims, down dims)


class PCTNet(nn.Module):
    """PCT-Net from a checked PyMIC config (:func:`~.config.check_config`).

    ``forward(x)``: x (B, in_chns, *input_size) -> logits (B, class_num, *input_size). With
    ``deep_supervision=True`` the list [full, 1/2, 1/4, 1/8] (MIS-FM's order with
    ``multiscale_pred``; sizes per axis as the resolution mode says).
    """

    deep_supervision_levels = 4

    def __init__(self, config: dict) -> None:
        super().__init__()
        features, dropout = list(config["feature_chns"]), list(config["dropout"])
        classes, in_channels = int(config["class_num"]), int(config["in_chns"])
        self.config = dict(config)
        self.mode = int(config["resolution_mode"])
        self.input_size = tuple(int(n) for n in config["input_size"])
        scale = PCT_STEM_SCALE[self.mode]
        self.embeddings = nn.ModuleList(
            PatchEmbedding(in_channels, features[:3], *STEM_DIMS[mode], dropout[:3]) for mode in range(3)
        )
        resolution = [n // s for n, s in zip(self.input_size, scale)]
        self.pyramid_ct = PyramidConvTrans(
            resolution,
            features[2:],
            dropout[2:],
            list(config["depths"]),
            list(config["num_heads"]),
            list(config["window_sizes"]),
            classes,
        )
        self.pred_heads = nn.ModuleList(PredictionHead(features[:3], *STEM_DIMS[mode], dropout[:3], classes) for mode in range(3))

    def forward(self, x: torch.Tensor, deep_supervision: bool = False) -> torch.Tensor | list:
        if tuple(x.shape[2:]) != self.input_size:
            from ...errors import PastaError

            raise PastaError(
                f"PCT-Net takes exactly its input_size {'x'.join(map(str, self.input_size))}, got "
                f"{'x'.join(map(str, x.shape[2:]))}"
            )
        x0, x1, x2 = self.embeddings[self.mode](x)
        d2, d3 = self.pyramid_ct(x2)
        head = self.pred_heads[self.mode]
        d0, d1 = head.decode(x0, x1, d2)
        full = head.out_conv0(d0)
        if not deep_supervision:
            return full
        return [full, head.out_conv1(d1), self.pyramid_ct.out_conv2(d2), self.pyramid_ct.out_conv3(d3)]

    def encoder_modules(self) -> list:
        """The stems and the pyramid's encoding path."""
        p = self.pyramid_ct
        return [self.embeddings, p.down3, p.down4, p.convtrans_e2, p.convtrans_e3, p.convtrans_e4]
