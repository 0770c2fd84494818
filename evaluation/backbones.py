"""The small-image BatchNorm backbones of the multi-backbone methods (G-VBSM, EDC).

G-VBSM and EDC match the statistics of several networks at once and label with their ensemble.
Besides ResNet-18 and the ConvNets of :mod:`evaluation.models` they use three CIFAR backbones from
the knowledge-distillation literature, whose definitions both repositories take from the
RepDistiller/CRD model zoo (``recover/models/{mobilenetv2,ShuffleNetv2,wrn}.py`` of
shaoshitong/G_VBSM_Dataset_Condensation):

* ``mobilenetv2_0_5``: MobileNetV2 with expansion 6 and width 0.5 (CRD's ``mobile_half``; a
  stride-2 3x3 stem, 1280 final channels);
* ``shufflenetv2_0_5``: ShuffleNetV2 0.5x for 32x32 inputs (a 1x1 stem without pooling,
  stages of 48/96/192 channels with 3/7/3 basic blocks, 1024 final channels);
* ``wrn16_2``: the pre-activation Wide-ResNet 16-2 (16/32/64/128 channels).

The layers are registered in the reference order, so hooks that walk ``named_modules`` (the
statistics of G-VBSM) see the same sequence. Adaptations so every input size works, each a no-op
on 32x32 inputs:

* any number of input channels;
* the head pools globally (``AdaptiveAvgPool2d(1)``; the reference ``AvgPool2d(input // 16)`` of
  MobileNetV2 is that on 32x32 and fails on 8x8 or 28x28 inputs);
* a stride-2 layer keeps stride 1 where stride 2 would shrink its map below 2x2 (8x8 digits),
  as :class:`evaluation.models.ResNet18` does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evaluation.models import FeatureNet, _check_io, _conv_out, _image_hw, register_model

__all__ = ["MobileNetV2", "ShuffleNetV2", "WideResNet"]


def _stride(size: tuple[int, int], kernel: int, padding: int) -> int:
    """2, unless a stride-2 ``kernel`` conv would leave a side below 2 pixels."""
    h, w = size
    return 2 if min(_conv_out(h, kernel, padding, 2), _conv_out(w, kernel, padding, 2)) >= 2 else 1


def _shrink(size: tuple[int, int], kernel: int, padding: int, stride: int) -> tuple[int, int]:
    return _conv_out(size[0], kernel, padding, stride), _conv_out(size[1], kernel, padding, stride)


def _he_init(module: nn.Module, *, linear_std: float | None) -> None:
    """The reference init: conv ``N(0, sqrt(2 / (k k out)))``, BN 1/0, linear bias 0 (weight ``N(0, std)``)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                m.bias.data.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                m.weight.data.normal_(0, linear_std)
            m.bias.data.zero_()


# ---------------------------------------------------------------------------------------------
# MobileNetV2


def _conv_bn(inp: int, oup: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(oup), nn.ReLU())


class _InvertedResidual(nn.Module):
    """Pointwise expand -> depthwise 3x3 -> pointwise project; identity shortcut when shapes agree."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_residual = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(FeatureNet):
    """CRD's CIFAR MobileNetV2 (``mobilenetv2_T_w``): expansion ``expansion``, width ``width_mult``."""

    #: (expansion, channels, blocks, stride) per stage; the first stage never expands.
    STAGES = ((1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2), (None, 96, 3, 1),
              (None, 160, 3, 2), (None, 320, 1, 1))  # fmt: skip

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        expansion: int = 6,
        width_mult: float = 0.5,
    ) -> None:
        super().__init__()
        _check_io(in_channels, num_classes)
        size = _image_hw(image_size)
        channels = int(32 * width_mult)
        stride = _stride(size, 3, 1)
        self.conv1 = _conv_bn(in_channels, channels, 3, stride)
        size = _shrink(size, 3, 1, stride)
        self.blocks = nn.ModuleList()
        for t, c, n, s in self.STAGES:
            out = int(c * width_mult)
            layers = []
            for index in range(n):
                block_stride = _stride(size, 3, 1) if (s == 2 and index == 0) else 1
                layers.append(_InvertedResidual(channels, out, block_stride, expansion if t is None else t))
                size = _shrink(size, 3, 1, block_stride)
                channels = out
            self.blocks.append(nn.Sequential(*layers))
        self.feature_dim = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = _conv_bn(channels, self.feature_dim, 1, 1)
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        _he_init(self, linear_std=0.01)

    def embed(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        for stage in self.blocks:
            x = stage(x)
        return torch.flatten(F.adaptive_avg_pool2d(self.conv2(x), 1), 1)


# ---------------------------------------------------------------------------------------------
# ShuffleNetV2


def _channel_shuffle(x: Tensor, groups: int = 2) -> Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class _ShuffleBasicBlock(nn.Module):
    """Split the channels in half, transform one half (1x1, depthwise 3x3, 1x1), concatenate, shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.conv1 = nn.Conv2d(half, half, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)

    def forward(self, x: Tensor) -> Tensor:
        kept, transformed = x.chunk(2, dim=1)
        out = F.relu(self.bn1(self.conv1(transformed)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return _channel_shuffle(torch.cat([kept, out], 1))


class _ShuffleDownBlock(nn.Module):
    """Two strided branches (depthwise then pointwise; pointwise, depthwise, pointwise), concatenated."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        mid = oup // 2
        self.conv1 = nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False)
        self.bn1 = nn.BatchNorm2d(inp)
        self.conv2 = nn.Conv2d(inp, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(inp, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x: Tensor) -> Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return _channel_shuffle(torch.cat([left, right], 1))


class ShuffleNetV2(FeatureNet):
    """CRD's CIFAR ShuffleNetV2: 1x1 stem (24 channels, no max-pool), three down-and-basic stages, 1x1 head."""

    #: (stage channels, basic blocks per stage, head channels) by net size.
    SIZES = {0.5: ((48, 96, 192), (3, 7, 3), 1024), 1.0: ((116, 232, 464), (3, 7, 3), 1024)}

    def __init__(
        self, *, in_channels: int, num_classes: int, image_size: tuple[int, int], net_size: float = 0.5
    ) -> None:
        super().__init__()
        _check_io(in_channels, num_classes)
        if net_size not in self.SIZES:
            raise ValueError(f"unknown ShuffleNetV2 size {net_size}; valid: {', '.join(map(str, self.SIZES))}")
        stage_channels, stage_blocks, head = self.SIZES[net_size]
        size = _image_hw(image_size)
        self.conv1 = nn.Conv2d(in_channels, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        channels = 24
        stages = []
        for out, blocks in zip(stage_channels, stage_blocks, strict=True):
            stride = _stride(size, 3, 1)
            size = _shrink(size, 3, 1, stride)
            stages.append(
                nn.Sequential(
                    _ShuffleDownBlock(channels, out, stride), *(_ShuffleBasicBlock(out) for _ in range(blocks))
                )
            )
            channels = out
        self.layer1, self.layer2, self.layer3 = stages
        self.conv2 = nn.Conv2d(channels, head, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(head)
        self.feature_dim = head
        self.classifier = nn.Linear(head, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


# ---------------------------------------------------------------------------------------------
# Wide-ResNet


class _WideBasicBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-conv3x3, 1x1 projection when the shape changes."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inp)
        self.conv1 = nn.Conv2d(inp, oup, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(oup)
        self.conv2 = nn.Conv2d(oup, oup, 3, 1, 1, bias=False)
        self.equal_in_out = inp == oup and stride == 1
        self.shortcut = None if self.equal_in_out else nn.Conv2d(inp, oup, 1, stride, 0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        # The reference projects the activated input; an identity block adds the raw input.
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(FeatureNet):
    """The pre-activation Wide-ResNet ``depth``-``widen`` (CRD's ``wrn``), 16/16k/32k/64k channels."""

    def __init__(
        self, *, in_channels: int, num_classes: int, image_size: tuple[int, int], depth: int = 16, widen: int = 2
    ) -> None:
        super().__init__()
        _check_io(in_channels, num_classes)
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"Wide-ResNet depth must be 6n + 4 (10, 16, 22, ...), got {depth}")
        per_group = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        size = _image_hw(image_size)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        groups = []
        channels = widths[0]
        for index, out in enumerate(widths[1:]):
            stride = 1 if index == 0 else _stride(size, 3, 1)
            size = _shrink(size, 3, 1, stride)
            blocks = [_WideBasicBlock(channels, out, stride)] + [
                _WideBasicBlock(out, out, 1) for _ in range(per_group - 1)
            ]
            groups.append(nn.Sequential(*blocks))
            channels = out
        self.block1, self.block2, self.block3 = groups
        self.bn1 = nn.BatchNorm2d(channels)
        self.feature_dim = channels
        self.classifier = nn.Linear(channels, num_classes)
        _he_init(self, linear_std=None)

    def embed(self, x: Tensor) -> Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(F.relu(self.bn1(x)), 1), 1)


# ---------------------------------------------------------------------------------------------
# Registered builders


@register_model("mobilenetv2_0_5")
def mobilenetv2_0_5(*, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> MobileNetV2:
    """CRD's ``mobile_half``: MobileNetV2, expansion 6, width 0.5 (G-VBSM/EDC's ``MobileNetV2``)."""
    return MobileNetV2(in_channels=in_channels, num_classes=num_classes, image_size=image_size)


@register_model("shufflenetv2_0_5")
def shufflenetv2_0_5(*, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> ShuffleNetV2:
    """CRD's ``ShuffleV2_0_5`` (G-VBSM/EDC's ``ShuffleNetV2_0_5``)."""
    return ShuffleNetV2(in_channels=in_channels, num_classes=num_classes, image_size=image_size, net_size=0.5)


@register_model("wrn16_2")
def wrn16_2(*, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> WideResNet:
    """CRD's ``wrn_16_2`` (G-VBSM/EDC's ``WRN_16_2``)."""
    return WideResNet(in_channels=in_channels, num_classes=num_classes, image_size=image_size, depth=16, widen=2)
