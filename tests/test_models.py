"""Tests of the model registry, walked over every registered name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from evaluation.models import MODELS, ConvNet, create_model, list_models, register_model

NUM_CLASSES = 10
# (channels, side): 8x8 digits, 28x28 MNIST-like, 32x32 CIFAR-like, 64x64 TinyImageNet-like.
SHAPES = [(1, 8), (1, 28), (3, 32), (3, 64)]


def _build(name: str, channels: int, side: int, **kwargs: object) -> nn.Module:
    return create_model(name, in_channels=channels, num_classes=NUM_CLASSES, image_size=(side, side), **kwargs)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("channels,side", SHAPES, ids=[f"{c}x{s}x{s}" for c, s in SHAPES])
@pytest.mark.parametrize("name", list_models())
def test_forward_and_embed_shapes(name: str, channels: int, side: int) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _build(name, channels, side)
        x = torch.randn(2, channels, side, side)
    with torch.no_grad():
        logits = model(x)
        features = model.embed(x)
    assert logits.shape == (2, NUM_CLASSES)
    assert isinstance(model.feature_dim, int)
    assert features.shape == (2, model.feature_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(features).all()
    # The features must depend on the input (a norm over a single pixel would make them constant).
    assert not torch.allclose(features[0], features[1])
    if isinstance(model, ConvNet):
        maps = model.feature_maps(x)
        assert len(maps) == model.depth
        assert torch.equal(torch.flatten(maps[-1], 1), features)


@pytest.mark.parametrize("name", list_models())
def test_sgd_steps_reduce_loss(name: str) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _build(name, 1, 8)
        x = torch.randn(8, 1, 8, 8)
        y = torch.arange(8) % NUM_CLASSES
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        losses = []
        for _ in range(4):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        with torch.no_grad():
            final = nn.functional.cross_entropy(model(x), y).item()
    assert final < losses[0], (losses, final)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="convnet3"):
        create_model("convnet9000", in_channels=3, num_classes=10, image_size=(32, 32))


def test_duplicate_registration_raises() -> None:
    before = list_models()
    with pytest.raises(ValueError, match="already registered"):
        register_model("convnet3")(lambda **kwargs: nn.Identity())
    assert list_models() == before


def test_builders_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        MODELS.get("convnet3")(3, 10, (32, 32))


def test_list_models_pattern() -> None:
    assert list_models("convnetd?") == [f"convnetd{d}" for d in range(1, 6)]
    assert list_models("convnet*_bn") == ["convnet_bn", "convnetd2_bn", "convnetd4_bn"]
    assert set(list_models("resnet*")) == {"resnet18", "resnet18_bn"}


def test_convnet3_matches_reference() -> None:
    mnist = _build("convnet3", 1, 28)
    cifar = _build("convnet3", 3, 32)
    for model in (mnist, cifar):
        assert model.feature_dim == 2048 and model.feature_shape == (128, 4, 4)
        norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
        assert len(norms) == 3
        assert all(n.num_groups == 128 and n.num_channels == 128 and n.affine for n in norms)
        pools = [m for m in model.modules() if isinstance(m, nn.AvgPool2d)]
        assert len(pools) == 3
    assert mnist.features[0].conv.padding == (3, 3)  # 28 -> 32
    assert cifar.features[0].conv.padding == (1, 1)
    # Reference ConvNet-3 on 3x32x32, 10 classes:
    #   conv1 3*128*9 + 128 = 3_584, conv2 = conv3 = 128*128*9 + 128 = 147_584,
    #   three GroupNorm(128) affine 2*128 = 256 each, classifier 2048*10 + 10 = 20_490
    #   -> 3_584 + 2*147_584 + 3*256 + 20_490 = 320_010.
    assert _num_params(cifar) == 320_010
    # On 1x28x28 only conv1 changes: 1*128*9 + 128 = 1_280 -> 320_010 - 3_584 + 1_280 = 317_706.
    assert _num_params(mnist) == 317_706
    x = torch.randn(2, 3, 32, 32)
    assert [tuple(m.shape) for m in cifar.feature_maps(x)] == [(2, 128, s, s) for s in (16, 8, 4)]
    assert [tuple(m.shape) for m in cifar.feature_maps(x, pre_pool=True)] == [(2, 128, s, s) for s in (32, 16, 8)]


def test_convnet_small_and_deep_inputs() -> None:
    assert _build("convnet3", 1, 8).feature_shape == (128, 1, 1)  # 8 -> 4 -> 2 -> 1
    deep = _build("convnetd5", 1, 8)
    assert deep.feature_shape == (128, 1, 1)
    assert [m.shape[-1] for m in deep.feature_maps(torch.randn(2, 1, 8, 8))] == [4, 2, 2, 2, 1]
    assert _build("convnetd4", 3, 64).feature_shape == (128, 4, 4)


@pytest.mark.parametrize(
    "option",
    [{"norm": n} for n in ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")]
    + [{"act": a} for a in ("relu", "sigmoid", "leakyrelu", "swish")]
    + [{"pooling": p} for p in ("avgpool", "maxpool", "none")],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_convnet_options(option: dict[str, str]) -> None:
    model = _build("convnet", 1, 8, width=8, **option)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, NUM_CLASSES)


@pytest.mark.parametrize("option", [{"norm": "weird"}, {"act": "tanh"}, {"pooling": "lp"}, {"depth": 0}])
def test_convnet_bad_options_raise(option: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _build("convnet", 1, 8, **option)


def test_init_draws_from_the_callers_rng() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        a = _build("convnet3", 1, 8)
        b = _build("convnet3", 1, 8)
        torch.manual_seed(1)
        c = _build("convnet3", 1, 8)
    assert not torch.equal(a.classifier.weight, b.classifier.weight)
    assert torch.equal(a.classifier.weight, c.classifier.weight)
