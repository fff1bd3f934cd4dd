"""The ResNet trunk of SimCLR, MoCo v2 and BYOL, under torchvision's parameter names.

Written here in plain torch rather than imported from torchvision: PyPI's torchvision does not
import beside the project's pinned torch build, and the encoder is small. The structure is
torchvision's ResNet v1.5 (stride on the 3x3 convolution of a bottleneck), so torchvision's
state-dict names (``conv1``, ``bn1``, ``layer1.0.conv2``, ``layer2.0.downsample.0``...) load as
they are. ``layers`` and ``channels`` set the depth and width of the four stages (ResNet50:
[3, 4, 6, 3] and [64, 128, 256, 512]; the stem has ``channels[0]`` filters, a stage outputs
4 x its width). No classifier: the trunk ends at the last feature map, the feature is its mean.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 convolutions with batch norm, plus the (projected) input."""

    def __init__(self, inplanes: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != width * EXPANSION:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, width * EXPANSION, 1, stride=stride, bias=False), nn.BatchNorm2d(width * EXPANSION)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetTrunk(nn.Module):
    """(B, 3, H, W) normalised pixels -> (B, 4 x channels[3]) average-pooled features."""

    def __init__(self, layers: list, channels: list) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = channels[0]
        for stage, (blocks, width) in enumerate(zip(layers, channels)):
            stride = 1 if stage == 0 else 2
            stack = []
            for index in range(blocks):
                stack.append(Bottleneck(inplanes, width, stride if index == 0 else 1))
                inplanes = width * EXPANSION
            setattr(self, f"layer{stage + 1}", nn.Sequential(*stack))
        self.feature_dim = inplanes

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H/32, W/32): the output of the last stage."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))


def fold_batchnorm(trunk: ResNetTrunk) -> ResNetTrunk:
    """An inference copy of ``trunk`` (in eval mode) with every batch norm folded into the
    convolution before it (torch's ``fuse_conv_bn_eval``): the same function, fewer passes over memory."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(trunk).eval()

    def fold(owner: nn.Module, conv: str, bn: str) -> None:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
        setattr(owner, bn, nn.Identity())

    fold(fused, "conv1", "bn1")
    for module in fused.modules():
        if isinstance(module, Bottleneck):
            for n in (1, 2, 3):
                fold(module, f"conv{n}", f"bn{n}")
            if module.downsample is not None:
                module.downsample[0] = fuse_conv_bn_eval(module.downsample[0], module.downsample[1])
                module.downsample[1] = nn.Identity()
    return fused
