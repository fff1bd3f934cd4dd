"""gCIS's building blocks, from MONAI's where MONAI has them.

Module and attribute names follow the public gCIS code, so the released state dicts load
strictly: a bottleneck residual block (``conv1``/``norm1``, ``conv2``/``norm2``,
``conv2_2``/``norm2_2``, and ``conv3``/``norm3`` when the shape changes), MONAI's
``UnetResBlock`` otherwise; an up block's ``transp_conv``, ``concat_conv``, ``norm1`` and
``lrelu`` before its residual block; an automatic-pathway (AP) block's ``prompt_router`` and its
sub-paths ``<name>_p0``, ``<name>_p1``...

An AP block picks one sub-path per sample from the prompt: in evaluation the argmax of the
router's softmax, and only that sub-path runs (the public code runs every sub-path and masks all
but one, which costs ``ap_num`` times the work for the same numbers); in training a hard
Gumbel-softmax sample weights the sub-paths, as the public training does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks.dynunet_block import UnetResBlock, get_conv_layer
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from monai.networks.nets.swin_unetr import PatchMergingV2
from torch import nn

from .config import PROMPT_DIM

LEAKY_RELU = ("leakyrelu", {"inplace": True, "negative_slope": 0.01})


class LegacyPatchMerging(PatchMergingV2):
    """MONAI's 3-D patch merging as it was from 0.9 to 1.4, which gCIS weights were trained with.

    MONAI 1.5 changed the order in which the eight sub-voxels of a 2x2x2 block are concatenated
    (MONAI issue 8284): the old order repeats two sub-voxels and leaves two out. The reduction
    layer's weights follow that order, so newer MONAI needs this class to give the public numbers.
    Our own piece because no MONAI we support keeps the old order under a name of its own.
    """

    OFFSETS = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 0), (0, 0, 1), (1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, D, H, W, C) -> (B, D/2, H/2, W/2, 2C) (a 2-D input takes MONAI's own path)."""
        if x.dim() != 5:
            return super().forward(x)
        _, d, h, w, _ = x.shape
        if d % 2 or h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2, 0, d % 2))
        x = torch.cat([x[:, a::2, b::2, c::2, :] for a, b, c in self.OFFSETS], -1)
        return self.reduction(self.norm(x))


def _conv(spatial_dims: int, cin: int, cout: int, kernel_size, stride=1) -> nn.Module:
    """MONAI's bias-free convolution wrapper (a ``Convolution`` holding ``conv``), no norm or activation."""
    return get_conv_layer(spatial_dims, cin, cout, kernel_size=kernel_size, stride=stride, act=None, norm=None, conv_only=False)


class BottleneckResBlock(nn.Module):
    """Residual block 1x1x1 -> kxkxk -> 1x1x1 at half width (gCIS's own; MONAI has none like it).

    (B, cin, D, H, W) -> (B, cout, D/s, H/s, W/s); each convolution is followed by the norm, all
    but the last by a leaky ReLU (slope 0.01); the shortcut is a 1x1x1 convolution + norm when
    the channels or the stride change; a leaky ReLU follows the sum.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple,
        stride: int | tuple,
        norm_name: str | tuple,
    ) -> None:
        super().__init__()
        mid = out_channels // 2
        self.lrelu = get_act_layer(name=LEAKY_RELU)
        self.conv1 = _conv(spatial_dims, in_channels, mid, 1, stride)
        self.norm1 = get_norm_layer(name=norm_name, spatial_dims=spatial_dims, channels=mid)
        self.conv2 = _conv(spatial_dims, mid, mid, kernel_size)
        self.norm2 = get_norm_layer(name=norm_name, spatial_dims=spatial_dims, channels=mid)
        self.conv2_2 = _conv(spatial_dims, mid, out_channels, 1)
        self.norm2_2 = get_norm_layer(name=norm_name, spatial_dims=spatial_dims, channels=out_channels)
        strided = any(s != 1 for s in (stride if isinstance(stride, (list, tuple)) else [stride]))
        if in_channels != out_channels or strided:
            self.conv3 = _conv(spatial_dims, in_channels, out_channels, 1, stride)
            self.norm3 = get_norm_layer(name=norm_name, spatial_dims=spatial_dims, channels=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lrelu(self.norm1(self.conv1(x)))
        out = self.lrelu(self.norm2(self.conv2(out)))
        out = self.norm2_2(self.conv2_2(out))
        shortcut = self.norm3(self.conv3(x)) if hasattr(self, "conv3") else x
        return self.lrelu(out + shortcut)


def residual_block(spatial_dims: int, cin: int, cout: int, norm_name: str | tuple, bottleneck: bool) -> nn.Module:
    """gCIS's residual block at stride 1 with 3x3x3 kernels: the bottleneck one or MONAI's ``UnetResBlock``."""
    kind = BottleneckResBlock if bottleneck else UnetResBlock
    return kind(spatial_dims, cin, cout, kernel_size=3, stride=1, norm_name=norm_name)


class BasicBlock(nn.Module):
    """A residual block held as ``layer`` (the public ``GcisBasicBlock``)."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, norm_name: str | tuple, bottleneck: bool) -> None:
        super().__init__()
        self.layer = residual_block(spatial_dims, cin, cout, norm_name, bottleneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class UpStem(nn.Module):
    """What every up block does before its residual block: x2 transposed convolution, concatenation
    with the skip, 1x1x1 convolution, norm, leaky ReLU. (B, cin, D, H, W) + (B, cout, 2D, 2H, 2W)
    -> (B, cout, 2D, 2H, 2W). Its modules sit directly in the up block (``transp_conv``...)."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, norm_name: str | tuple) -> None:
        super().__init__()
        self.transp_conv = get_conv_layer(spatial_dims, cin, cout, kernel_size=2, stride=2, conv_only=True, is_transposed=True)
        self.concat_conv = _conv(spatial_dims, 2 * cout, cout, 1)
        self.norm1 = get_norm_layer(name=norm_name, spatial_dims=spatial_dims, channels=cout)
        self.lrelu = get_act_layer(name=LEAKY_RELU)

    def stem(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        out = torch.cat((self.transp_conv(x), skip), dim=1)
        return self.lrelu(self.norm1(self.concat_conv(out)))


class UpBlock(UpStem):
    """The single-path up block (the public ``GcisUpBlock``): stem, then ``conv_block``."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, norm_name: str | tuple, bottleneck: bool) -> None:
        super().__init__(spatial_dims, cin, cout, norm_name)
        self.conv_block = residual_block(spatial_dims, cout, cout, norm_name, bottleneck)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(self.stem(x, skip))


class PathwaySwitch(nn.Module):
    """The routing part of an AP block: ``prompt_router`` (Linear 512 -> ap_num) and the sub-paths
    registered as ``<stem>0``, ``<stem>1``... on the block itself."""

    def _add_paths(self, stem: str, paths: list, tau: float) -> None:
        self.ap_num, self.tau, self._stem = len(paths), tau, stem
        self.prompt_router = nn.Linear(PROMPT_DIM, len(paths))
        for index, path in enumerate(paths):
            self.add_module(f"{stem}{index}", path)

    def path(self, index: int) -> nn.Module:
        return getattr(self, f"{self._stem}{index}")

    def choose(self, prompt: torch.Tensor) -> torch.Tensor:
        """Evaluation: the chosen sub-path of each sample (B,) int64, zero-based: the argmax of the
        router's softmax, as the public code takes it (ties go to the lower index)."""
        return torch.softmax(self.prompt_router(prompt), dim=1).max(1)[1]

    def route(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """Each sample of x (B, C, ...) through its sub-path; prompt (B, 512)."""
        if self.training:
            return self._route_training(x, prompt)
        choice = self.choose(prompt)
        if bool((choice == choice[0]).all()):  # the usual case (one prompt for a batch of windows)
            return self.path(int(choice[0]))(x)
        out = None
        for index in torch.unique(choice).tolist():
            picked = (choice == index).nonzero().flatten()
            y = self.path(index)(x[picked])
            out = y.new_empty((x.shape[0],) + tuple(y.shape[1:])) if out is None else out
            out[picked] = y
        return out

    def _route_training(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """The public training forward: a hard Gumbel-softmax sample per sample weights every sub-path
        (the gradient reaches the router through the straight-through estimator); one sample at a time."""
        weights = F.gumbel_softmax(F.log_softmax(self.prompt_router(prompt), dim=1), tau=self.tau, hard=True)
        outputs = []
        for i in range(x.shape[0]):
            sample = x[i : i + 1]
            outputs.append(sum(self.path(p)(sample) * weights[i, p] for p in range(self.ap_num)))
        return torch.cat(outputs, 0)


class ApBasicBlock(PathwaySwitch):
    """The AP form of :class:`BasicBlock` (the public ``GcisApBasicBlock``): sub-paths ``layer_p<i>``."""

    def __init__(
        self, spatial_dims: int, cin: int, cout: int, norm_name: str | tuple, bottleneck: bool, ap_num: int, tau: float
    ) -> None:
        super().__init__()
        self._add_paths("layer_p", [residual_block(spatial_dims, cin, cout, norm_name, bottleneck) for _ in range(ap_num)], tau)

    def forward(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        return self.route(x, prompt)


class ApUpBlock(UpStem, PathwaySwitch):
    """The AP form of :class:`UpBlock` (the public ``GcisApUpBlock``): a shared stem, then sub-paths
    ``conv_block_p<i>``."""

    def __init__(
        self, spatial_dims: int, cin: int, cout: int, norm_name: str | tuple, bottleneck: bool, ap_num: int, tau: float
    ) -> None:
        super().__init__(spatial_dims, cin, cout, norm_name)
        paths = [residual_block(spatial_dims, cout, cout, norm_name, bottleneck) for _ in range(ap_num)]
        self._add_paths("conv_block_p", paths, tau)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        return self.route(self.stem(x, skip), prompt)
