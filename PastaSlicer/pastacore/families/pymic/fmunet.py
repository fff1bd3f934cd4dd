"""FMUNet (PyMIC ``pymic.net.net3d.fmunet``; MIS-FM's copy is the same network).

Written for this project from PyMIC's description; the module names reproduce PyMIC's
state-dict names exactly (146 entries at the released config), so PyMIC checkpoints load by
name and the checkpoints written here load in PyMIC.

Layout (C = ``feature_chns``, depth N = ``depth``):

* ``project``: Conv3d(in_chns -> C0).
* ``encoder.en_conv{l}`` / ``decoder.de_conv{l}``, l = 0..4: residual stacks
  ``conv_list.{n}`` = [InstanceNorm3d(affine), LeakyReLU(0.01), Dropout, Conv3d], x + f(x),
  n < N; dropout only from level 2 on.
* ``encoder.down{l}``: [InstanceNorm3d, LeakyReLU, Conv3d(stride 2)] from level l to l+1.
* ``decoder.upcat{l}``: ``up`` = [InstanceNorm3d, LeakyReLU, Conv3d 1x1x1 (C_{l+1} -> C_l),
  trilinear x2 (``align_corners=True``)], then cat([skip, up]) -> ``conv`` = [InstanceNorm3d,
  LeakyReLU, Conv3d(2 C_l -> C_l)].
* ``out_layers.{l}``, l = 0..3: [InstanceNorm3d, LeakyReLU, Conv3d(C_l -> class_num)].

Kernels are 3x3x3 (padding 1), or 1x3x3 on the levels ``res_mode`` makes 2-D (1: level 0,
2: levels 0 and 1), whose down- and up-sampling is then in-plane only.
"""

from __future__ import annotations

import torch
from torch import nn

NEGATIVE_SLOPE = 1e-2
# res_mode -> the "dimension" (2: in-plane only, 3: full 3-D) of levels 0 and 1
LEVEL0_DIM = {0: 3, 1: 2, 2: 2}
LEVEL1_DIM = {0: 3, 1: 3, 2: 2}


def _kernel(dim: int) -> tuple:
    return ((1, 3, 3), (0, 1, 1)) if dim == 2 else ((3, 3, 3), (1, 1, 1))


def _step(dim: int) -> tuple:
    return (1, 2, 2) if dim == 2 else (2, 2, 2)


def _conv(in_channels: int, out_channels: int, dim: int, stride: tuple = (1, 1, 1)) -> nn.Conv3d:
    kernel, padding = _kernel(dim)
    return nn.Conv3d(in_channels, out_channels, kernel_size=kernel, padding=padding, stride=stride)


def _norm_act(channels: int) -> list:
    return [nn.InstanceNorm3d(channels, affine=True), nn.LeakyReLU(NEGATIVE_SLOPE)]


class ResidualStack(nn.Module):
    """``depth`` pre-activation residual convolutions: x <- x + conv(drop(act(norm(x))))."""

    def __init__(self, channels: int, dim: int, dropout: float, depth: int) -> None:
        super().__init__()
        self.conv_list = nn.ModuleList(
            nn.Sequential(*_norm_act(channels), nn.Dropout(dropout), _conv(channels, channels, dim)) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.conv_list:
            x = block(x) + x
        return x


class Down(nn.Module):
    """Strided pre-activation convolution to the next level (``down``)."""

    def __init__(self, in_channels: int, out_channels: int, dim: int) -> None:
        super().__init__()
        self.down = nn.Sequential(*_norm_act(in_channels), _conv(in_channels, out_channels, dim, _step(dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(x)


class UpCat(nn.Module):
    """1x1x1 projection + trilinear up-sampling of the coarse map, concatenated after the skip."""

    def __init__(self, coarse_channels: int, fine_channels: int, out_channels: int, dim: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            *_norm_act(coarse_channels),
            nn.Conv3d(coarse_channels, fine_channels, kernel_size=1),
            nn.Upsample(scale_factor=_step(dim), mode="trilinear", align_corners=True),
        )
        self.conv = nn.Sequential(*_norm_act(2 * fine_channels), _conv(2 * fine_channels, out_channels, dim))

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(coarse)], dim=1))


def level_dims(res_mode: int) -> list:
    """The convolution "dimension" (2 or 3) of each of the five levels."""
    return [LEVEL0_DIM[res_mode], LEVEL1_DIM[res_mode], 3, 3, 3]


class Encoder(nn.Module):
    def __init__(self, features: list, res_mode: int, dropout: float, depth: int) -> None:
        super().__init__()
        dims = level_dims(res_mode)
        for level in range(5):
            rate = dropout if level >= 2 else 0.0
            setattr(self, f"en_conv{level}", ResidualStack(features[level], dims[level], rate, depth))
        for level in range(4):
            setattr(self, f"down{level}", Down(features[level], features[level + 1], dims[level]))

    def forward(self, x: torch.Tensor) -> list:
        levels = [self.en_conv0(x)]
        for level in range(1, 5):
            down = getattr(self, f"down{level - 1}")
            levels.append(getattr(self, f"en_conv{level}")(down(levels[-1])))
        return levels


class Decoder(nn.Module):
    def __init__(self, features: list, res_mode: int, dropout: float, depth: int) -> None:
        super().__init__()
        dims = level_dims(res_mode)
        for level in range(4):
            setattr(self, f"upcat{level}", UpCat(features[level + 1], features[level], features[level], dims[level]))
        for level in range(5):
            rate = dropout if level >= 2 else 0.0
            setattr(self, f"de_conv{level}", ResidualStack(features[level], dims[level], rate, depth))

    def forward(self, levels: list) -> list:
        """Decoded maps, full resolution first: [level 0, 1, 2, 3]."""
        x = self.de_conv4(levels[4])
        decoded = []
        for level in range(3, -1, -1):
            x = getattr(self, f"de_conv{level}")(getattr(self, f"upcat{level}")(x, levels[level]))
            decoded.insert(0, x)
        return decoded


class FMUNet(nn.Module):
    """FMUNet from a checked PyMIC config (:func:`~.config.check_config`).

    ``forward(x)``: x (B, in_chns, D, H, W) -> logits (B, class_num, D, H, W). With
    ``deep_supervision=True`` the list [full, 1/2, 1/4, 1/8] (PyMIC's order; each at its own
    level's size, in-plane only on 2-D levels), as PyMIC's ``multiscale_pred`` in the training stage.
    """

    deep_supervision_levels = 4

    def __init__(self, config: dict) -> None:
        super().__init__()
        features, res_mode = list(config["feature_chns"]), int(config["res_mode"])
        dropout, depth = float(config["dropout"]), int(config["depth"])
        dims = level_dims(res_mode)
        self.config = dict(config)
        self.project = _conv(int(config["in_chns"]), features[0], dims[0])
        self.encoder = Encoder(features, res_mode, dropout, depth)
        self.decoder = Decoder(features, res_mode, dropout, depth)
        self.out_layers = nn.ModuleList(
            nn.Sequential(*_norm_act(features[level]), _conv(features[level], int(config["class_num"]), dims[level]))
            for level in range(4)
        )
        self.apply(_initializer(config.get("initialization", "he")))

    def forward(self, x: torch.Tensor, deep_supervision: bool = False) -> torch.Tensor | list:
        decoded = self.decoder(self.encoder(self.project(x)))
        if not deep_supervision:
            return self.out_layers[0](decoded[0])
        return [layer(level) for layer, level in zip(self.out_layers, decoded)]

    def encoder_modules(self) -> list:
        """The modules PyMIC counts as the encoder (``weights_load_mode`` encoder, ``finetune_mode`` decoder)."""
        return [self.project, self.encoder]


def _initializer(kind: str):
    """PyMIC's initialisation of convolutions: He (kaiming normal, a = 0.01) or Xavier uniform; biases 0."""

    def initialise(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            if str(kind).lower() == "he":
                nn.init.kaiming_normal_(module.weight, a=NEGATIVE_SLOPE)
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    return initialise
