"""Evaluation networks of the dataset-condensation literature behind one registry.

``create_model(name, in_channels=..., num_classes=..., image_size=...)`` builds a freshly
initialized network (PyTorch default init; seed the global RNG outside, e.g. with
``data.seeding.seeded_torch``). Every model maps images to logits with ``forward`` and exposes
``embed(x)``, the flattened penultimate features (the input of the final ``Linear``) used by
DM/IDM/DataDAM/herding, with their size in ``feature_dim``. ConvNets also expose
``feature_maps(x)``.

The architectures follow the ``networks.py`` of VICO-UoE/DatasetCondensation. Where the
reference would crash or silently assume 28/32-pixel inputs, the shapes are computed from
``image_size`` instead, so every model accepts 1- or 3-channel 8x8, 28x28, 32x32 and 64x64
images. Two rules are shared by all models:

* 28-pixel sides get the reference's extra first-layer padding (28 -> 32), whatever the
  number of channels (the reference keys it on ``channel == 1``, i.e. MNIST).
* Downsampling never shrinks a map below 2x2 while a normalization layer still follows:
  instance norm (``GroupNorm(C, C)``) over a single pixel outputs a constant, which would make
  the network ignore its input. Only the last downsampling may reach 1x1 (ConvNet-3 on 8x8
  digits: 8 -> 4 -> 2 -> 1). For 28/32-pixel inputs nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from data._registry import Registry

__all__ = [
    "ACTIVATIONS",
    "CONVNET_DEFAULTS",
    "CONVNET_PRESETS",
    "MODELS",
    "NORMS",
    "POOLINGS",
    "AlexNet",
    "ConvNet",
    "FeatureNet",
    "LeNet",
    "MLP",
    "ResNet18",
    "VGG11",
    "create_model",
    "list_models",
    "register_model",
]

ModelBuilder = Callable[..., nn.Module]
#: The CIFAR backbones of the multi-backbone methods register themselves from ``evaluation.backbones``.
MODELS: Registry[ModelBuilder] = Registry("model", providers=("evaluation.backbones",))

NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
ACTIVATIONS = ("relu", "sigmoid", "leakyrelu", "swish")
POOLINGS = ("avgpool", "maxpool", "none")


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering a keyword-only builder ``fn(*, in_channels, num_classes, image_size, ...)``."""
    return MODELS.register(name)  # type: ignore[return-value]


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    return MODELS.names(pattern)


def create_model(
    name: str,
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model ``name`` for ``in_channels x H x W`` images.

    Args:
        name: registry name (see :func:`list_models`).
        in_channels: image channels (1 or 3 in the benchmarks).
        num_classes: number of logits.
        image_size: ``(H, W)`` of the inputs the model will see.
        **kwargs: builder options (``depth``, ``width``, ``norm``, ... for the ConvNets).

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names) or a bad option value.
    """
    builder = MODELS.get(name)
    return builder(in_channels=in_channels, num_classes=num_classes, image_size=image_size, **kwargs)


# ---------------------------------------------------------------------------------------------
# Shared pieces


def _check_choice(kind: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; valid {kind}s: {', '.join(choices)}")


def _image_hw(image_size: Sequence[int]) -> tuple[int, int]:
    size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be (H, W) with positive sides, got {tuple(image_size)!r}")
    return size[0], size[1]


def _check_io(in_channels: int, num_classes: int) -> None:
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"in_channels and num_classes must be positive, got {in_channels}, {num_classes}")


def _norm2d(norm: str, channels: int) -> nn.Module:
    """The reference norms; ``layernorm`` is ``GroupNorm(1, C)`` (per-channel affine)."""
    _check_choice("norm", norm, NORMS)
    if norm == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if norm == "batchnorm":
        return nn.BatchNorm2d(channels)
    if norm == "layernorm":
        return nn.GroupNorm(1, channels, affine=True)
    if norm == "groupnorm":
        return nn.GroupNorm(4, channels, affine=True)
    return nn.Identity()


def _activation(act: str) -> nn.Module:
    _check_choice("act", act, ACTIVATIONS)
    if act == "relu":
        return nn.ReLU()
    if act == "sigmoid":
        return nn.Sigmoid()
    if act == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.01)
    return nn.SiLU()  # swish: x * sigmoid(x)


def _pad28(h: int, w: int, pad28: int, default: int) -> tuple[int, int]:
    """First-layer padding: ``pad28`` on 28-pixel sides (the reference 28 -> 32 trick)."""
    return (pad28 if h == 28 else default, pad28 if w == 28 else default)


def _conv_out(size: int, kernel: int, padding: int, stride: int = 1) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _may_halve(h: int, w: int, *, norm_follows: bool) -> bool:
    """Whether a 2x2/stride-2 pooling fits, keeping >= 2x2 if a norm layer comes later."""
    if min(h, w) < 2:
        return False
    return not norm_follows or min(h // 2, w // 2) >= 2


class FeatureNet(nn.Module):
    """A classifier whose logits are ``classifier(embed(x))``.

    Subclasses set ``classifier`` (an ``nn.Linear``), ``feature_dim`` and implement ``embed``.
    """

    feature_dim: int
    classifier: nn.Linear

    def embed(self, x: Tensor) -> Tensor:
        """Flattened penultimate features, ``N x feature_dim``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


# ---------------------------------------------------------------------------------------------
# ConvNet


class _ConvBlock(nn.Module):
    """Conv2d 3x3 -> norm -> act -> pool (norm/pool may be ``Identity``)."""

    def __init__(self, conv: nn.Conv2d, norm: nn.Module, act: nn.Module, pool: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.norm = norm
        self.act = act
        self.pool = pool

    def pre_pool(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.pre_pool(x))


class ConvNet(FeatureNet):
    """The DC-family ConvNet: ``depth`` blocks of Conv3x3(width) -> norm -> act -> pool, then Linear.

    With the defaults it is ConvNet-3 (width 128, instance norm as ``GroupNorm(128, 128)``, ReLU,
    2x2 average pooling); 28x28 inputs get first-conv padding 3 (28 -> 32) so MNIST and CIFAR
    both end at 128x4x4 = 2048 features. Pooling is skipped where the map is already too small
    (see the module docstring), so deep nets work on small images.

    Args:
        in_channels: image channels.
        num_classes: number of logits.
        image_size: ``(H, W)``.
        depth: number of conv blocks.
        width: channels of every conv.
        norm: one of :data:`NORMS` (``layernorm`` is ``GroupNorm(1, width)``, unlike the reference's
            ``LayerNorm([C, H, W])``; ``groupnorm`` is ``GroupNorm(4, width)``).
        act: one of :data:`ACTIVATIONS`.
        pooling: one of :data:`POOLINGS`.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        depth: int = 3,
        width: int = 128,
        norm: str = "instancenorm",
        act: str = "relu",
        pooling: str = "avgpool",
    ) -> None:
        super().__init__()
        _check_io(in_channels, num_classes)
        _check_choice("norm", norm, NORMS)
        _check_choice("act", act, ACTIVATIONS)
        _check_choice("pooling", pooling, POOLINGS)
        if depth < 1 or width < 1:
            raise ValueError(f"depth and width must be positive, got depth={depth}, width={width}")
        self.depth, self.width, self.norm, self.act, self.pooling = depth, width, norm, act, pooling

        h, w = _image_hw(image_size)
        blocks: list[nn.Module] = []
        channels = in_channels
        for d in range(depth):
            pad = _pad28(h, w, 3, 1) if d == 0 else (1, 1)
            conv = nn.Conv2d(channels, width, kernel_size=3, padding=pad)
            h, w = _conv_out(h, 3, pad[0]), _conv_out(w, 3, pad[1])
            pool: nn.Module = nn.Identity()
            norm_follows = norm != "none" and d < depth - 1
            if pooling != "none" and _may_halve(h, w, norm_follows=norm_follows):
                pool = nn.AvgPool2d(2, 2) if pooling == "avgpool" else nn.MaxPool2d(2, 2)
                h, w = h // 2, w // 2
            blocks.append(_ConvBlock(conv, _norm2d(norm, width), _activation(act), pool))
            channels = width
        self.features = nn.Sequential(*blocks)
        self.feature_shape = (width, h, w)
        self.feature_dim = width * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def feature_maps(self, x: Tensor, *, pre_pool: bool = False) -> list[Tensor]:
        """The output of every conv block, ``N x width x h_d x w_d``, in order.

        Args:
            x: images.
            pre_pool: return each block's activation before its pooling instead (what DataDAM's
                hooks on the ``ReLU`` modules see in the reference code).
        """
        maps = []
        for block in self.features:
            if pre_pool:
                x = block.pre_pool(x)
                maps.append(x)
                x = block.pool(x)
            else:
                x = block(x)
                maps.append(x)
        return maps

    def embed(self, x: Tensor) -> Tensor:
        return torch.flatten(self.features(x), 1)


# ---------------------------------------------------------------------------------------------
# MLP, LeNet, AlexNet


class MLP(FeatureNet):
    """The reference MLP: flatten -> Linear(width) -> ReLU -> Linear(width) -> ReLU -> Linear."""

    def __init__(self, *, in_channels: int, num_classes: int, image_size: tuple[int, int], width: int = 128) -> None:
        super().__init__()
        _check_io(in_channels, num_classes)
        h, w = _image_hw(image_size)
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * h * w, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
        )
        self.feature_dim = width
        self.classifier = nn.Linear(width, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.body(x)


class LeNet(FeatureNet):
    """The reference LeNet: Conv5x5(6) -> ReLU -> MaxPool -> Conv5x5(16) -> ReLU -> MaxPool -> FC 120-84.

    ``embed`` is the 84-d output of the FC stack. Adaptations so any input size works:

    * the first conv pads 2 on sides below 32 pixels (the reference pads 1-channel 28x28 MNIST
      this way, keeping 28x28); the second conv pads 2 when its input is below 5 pixels (8x8);
    * where the map after the second pooling is larger than the reference 5x5 (e.g. 64x64
      inputs give 13x13) an ``AdaptiveAvgPool2d(5)`` brings it to 5x5, so the FC stack keeps the
      reference ``16*5*5 -> 120``; smaller maps (8x8 inputs give 2x2) are flattened as they are.

    For 28x28 and 32x32 inputs the network is exactly the reference one.
    """

    def __init__(self, *, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        _check_io(in_channels, num_classes)
        h, w = _image_hw(image_size)
        layers: list[nn.Module] = []
        pad1 = (2 if h < 32 else 0, 2 if w < 32 else 0)
        layers += [nn.Conv2d(in_channels, 6, kernel_size=5, padding=pad1), nn.ReLU()]
        h, w = _conv_out(h, 5, pad1[0]), _conv_out(w, 5, pad1[1])
        if _may_halve(h, w, norm_follows=False):
            layers.append(nn.MaxPool2d(2, 2))
            h, w = h // 2, w // 2
        pad2 = (2 if h < 5 else 0, 2 if w < 5 else 0)
        layers += [nn.Conv2d(6, 16, kernel_size=5, padding=pad2), nn.ReLU()]
        h, w = _conv_out(h, 5, pad2[0]), _conv_out(w, 5, pad2[1])
        if _may_halve(h, w, norm_follows=False):
            layers.append(nn.MaxPool2d(2, 2))
            h, w = h // 2, w // 2
        if h > 5 or w > 5:
            h, w = min(h, 5), min(w, 5)
            layers.append(nn.AdaptiveAvgPool2d((h, w)))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(16 * h * w, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
        self.feature_dim = 84
        self.classifier = nn.Linear(84, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


class AlexNet(FeatureNet):
    """The reference (small-image) AlexNet: five convs 128-192-256-192-192, three max-pools, one Linear.

    ``norm="batchnorm"`` is the reference AlexNetBN (BatchNorm after every conv). The first
    conv pads 4 on 28-pixel sides (28 -> 32), else 2, so 28/32-pixel inputs end at 192x4x4;
    other sizes keep their natural map (64x64 -> 192x8x8, 8x8 -> 192x1x1).
    """

    _CONVS = ((128, 5, 2), (192, 5, 2), (256, 3, 1), (192, 3, 1), (192, 3, 1))  # (out, kernel, pad)
    _POOL_AFTER = (0, 1, 4)

    def __init__(self, *, in_channels: int, num_classes: int, image_size: tuple[int, int], norm: str = "none") -> None:
        super().__init__()
        _check_io(in_channels, num_classes)
        _check_choice("norm", norm, NORMS)
        self.norm = norm
        h, w = _image_hw(image_size)
        layers: list[nn.Module] = []
        channels = in_channels
        for i, (out, kernel, pad) in enumerate(self._CONVS):
            padding = _pad28(h, w, 4, pad) if i == 0 else (pad, pad)
            layers.append(nn.Conv2d(channels, out, kernel_size=kernel, padding=padding))
            if norm != "none":
                layers.append(_norm2d(norm, out))
            layers.append(nn.ReLU())
            h, w = _conv_out(h, kernel, padding[0]), _conv_out(w, kernel, padding[1])
            norm_follows = norm != "none" and i < len(self._CONVS) - 1
            if i in self._POOL_AFTER and _may_halve(h, w, norm_follows=norm_follows):
                layers.append(nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
            channels = out
        self.features = nn.Sequential(*layers)
        self.feature_dim = channels * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return torch.flatten(self.features(x), 1)


# ---------------------------------------------------------------------------------------------
# VGG11, ResNet18


class VGG11(FeatureNet):
    """The reference VGG11 for small images: 8 Conv3x3 -> norm -> ReLU, 5 max-pools, one Linear.

    ``norm="instancenorm"`` (reference default) is ``GroupNorm(C, C)``; ``"batchnorm"`` is VGG11BN.
    28-pixel sides get first-conv padding 3 (28 -> 32), so 28/32-pixel inputs end at 512x1x1.
    Max-pools are skipped where the map would drop below 2x2 before more convs (8x8 inputs),
    and larger inputs keep their map (64x64 -> 512x2x2 = 2048 features).
    """

    CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(
        self, *, in_channels: int, num_classes: int, image_size: tuple[int, int], norm: str = "instancenorm"
    ) -> None:
        super().__init__()
        _check_io(in_channels, num_classes)
        _check_choice("norm", norm, NORMS)
        self.norm = norm
        h, w = _image_hw(image_size)
        layers: list[nn.Module] = []
        channels = in_channels
        for i, item in enumerate(self.CFG):
            if item == "M":
                norm_follows = norm != "none" and any(v != "M" for v in self.CFG[i + 1 :])
                if _may_halve(h, w, norm_follows=norm_follows):
                    layers.append(nn.MaxPool2d(2, 2))
                    h, w = h // 2, w // 2
                continue
            out = int(item)
            padding = _pad28(h, w, 3, 1) if i == 0 else (1, 1)
            layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=padding))
            if norm != "none":
                layers.append(_norm2d(norm, out))
            layers.append(nn.ReLU())
            h, w = _conv_out(h, 3, padding[0]), _conv_out(w, 3, padding[1])
            channels = out
        self.features = nn.Sequential(*layers)
        self.feature_dim = channels * h * w
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return torch.flatten(self.features(x), 1)


class _BasicBlock(nn.Module):
    """ResNet basic block: two Conv3x3 (no bias) with norms; projection shortcut when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm2d(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = _norm2d(norm, planes)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                _norm2d(norm, planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(FeatureNet):
    """The reference small-image ResNet-18: 3x3 stride-1 stem, no max-pool, [2, 2, 2, 2] basic blocks.

    ``norm="instancenorm"`` (reference ``ResNet18``) is ``GroupNorm(C, C)``; ``"batchnorm"`` is
    ``ResNet18BN``. The head is a global average pool (the reference's ``avg_pool2d(4)`` equals it
    for 28/32-pixel inputs) and one ``Linear(512)``. A stage keeps stride 1 where stride 2 would
    shrink the map below 2x2 (8x8 inputs: 8 -> 8 -> 4 -> 2 -> 2).
    """

    def __init__(
        self, *, in_channels: int, num_classes: int, image_size: tuple[int, int], norm: str = "instancenorm"
    ) -> None:
        super().__init__()
        _check_io(in_channels, num_classes)
        _check_choice("norm", norm, NORMS)
        self.norm = norm
        h, w = _image_hw(image_size)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False),
            _norm2d(norm, 64),
            nn.ReLU(),
        )
        stages: list[nn.Module] = []
        in_planes = 64
        for i, planes in enumerate((64, 128, 256, 512)):
            stride = 1
            if i > 0 and min(_conv_out(h, 3, 1, 2), _conv_out(w, 3, 1, 2)) >= 2:
                stride = 2
                h, w = _conv_out(h, 3, 1, 2), _conv_out(w, 3, 1, 2)
            stages.append(
                nn.Sequential(_BasicBlock(in_planes, planes, stride, norm), _BasicBlock(planes, planes, 1, norm))
            )
            in_planes = planes
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 512
        self.classifier = nn.Linear(512, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return torch.flatten(self.pool(self.layers(self.stem(x))), 1)


# ---------------------------------------------------------------------------------------------
# Registered builders (names are public identifiers: configs, records, leaderboard)

#: Keyword defaults of the ``convnet`` builder (ConvNet-3).
CONVNET_DEFAULTS: dict[str, Any] = {
    "depth": 3,
    "width": 128,
    "norm": "instancenorm",
    "act": "relu",
    "pooling": "avgpool",
}

#: ConvNet presets of the literature; each builder's keywords override its preset.
CONVNET_PRESETS: dict[str, dict[str, Any]] = {
    "convnet3": {},
    "convnetd1": {"depth": 1},
    "convnetd2": {"depth": 2},
    "convnetd3": {"depth": 3},
    "convnetd4": {"depth": 4},
    "convnetd5": {"depth": 5},
    "convnet_bn": {"norm": "batchnorm"},
    "convnetd2_bn": {"depth": 2, "norm": "batchnorm"},
    "convnetd4_bn": {"depth": 4, "norm": "batchnorm"},
    "convnetw32": {"width": 32},
    "convnetw64": {"width": 64},
    "convnetw256": {"width": 256},
}


@register_model("convnet")
def convnet(
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    depth: int = 3,
    width: int = 128,
    norm: str = "instancenorm",
    act: str = "relu",
    pooling: str = "avgpool",
) -> ConvNet:
    """Configurable ConvNet; the defaults are ConvNet-3."""
    return ConvNet(
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
        depth=depth,
        width=width,
        norm=norm,
        act=act,
        pooling=pooling,
    )


def _convnet_preset(name: str, preset: dict[str, Any]) -> ModelBuilder:
    defaults = {**CONVNET_DEFAULTS, **preset}

    def build(*, in_channels: int, num_classes: int, image_size: tuple[int, int], **overrides: Any) -> ConvNet:
        return ConvNet(
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=image_size,
            **{**defaults, **overrides},
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"ConvNet with {defaults}; keywords override these."
    return build


for _name, _preset in CONVNET_PRESETS.items():
    register_model(_name)(_convnet_preset(_name, _preset))
del _name, _preset


@register_model("mlp")
def mlp(*, in_channels: int, num_classes: int, image_size: tuple[int, int], width: int = 128) -> MLP:
    """The reference MLP (128-128)."""
    return MLP(in_channels=in_channels, num_classes=num_classes, image_size=image_size, width=width)


@register_model("lenet")
def lenet(*, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> LeNet:
    """The reference LeNet (see :class:`LeNet` for the small/large-input adaptations)."""
    return LeNet(in_channels=in_channels, num_classes=num_classes, image_size=image_size)


@register_model("alexnet")
def alexnet(*, in_channels: int, num_classes: int, image_size: tuple[int, int], norm: str = "none") -> AlexNet:
    """The reference AlexNet (no normalization)."""
    return AlexNet(in_channels=in_channels, num_classes=num_classes, image_size=image_size, norm=norm)


@register_model("alexnet_bn")
def alexnet_bn(*, in_channels: int, num_classes: int, image_size: tuple[int, int], norm: str = "batchnorm") -> AlexNet:
    """The reference AlexNetBN."""
    return AlexNet(in_channels=in_channels, num_classes=num_classes, image_size=image_size, norm=norm)


@register_model("vgg11")
def vgg11(*, in_channels: int, num_classes: int, image_size: tuple[int, int], norm: str = "instancenorm") -> VGG11:
    """The reference VGG11 (instance norm)."""
    return VGG11(in_channels=in_channels, num_classes=num_classes, image_size=image_size, norm=norm)


@register_model("vgg11_bn")
def vgg11_bn(*, in_channels: int, num_classes: int, image_size: tuple[int, int], norm: str = "batchnorm") -> VGG11:
    """The reference VGG11BN."""
    return VGG11(in_channels=in_channels, num_classes=num_classes, image_size=image_size, norm=norm)


@register_model("resnet18")
def resnet18(
    *, in_channels: int, num_classes: int, image_size: tuple[int, int], norm: str = "instancenorm"
) -> ResNet18:
    """The reference ResNet18 (instance norm, small-image stem)."""
    return ResNet18(in_channels=in_channels, num_classes=num_classes, image_size=image_size, norm=norm)


@register_model("resnet18_bn")
def resnet18_bn(
    *, in_channels: int, num_classes: int, image_size: tuple[int, int], norm: str = "batchnorm"
) -> ResNet18:
    """The reference ResNet18BN (BatchNorm, small-image stem)."""
    return ResNet18(in_channels=in_channels, num_classes=num_classes, image_size=image_size, norm=norm)
