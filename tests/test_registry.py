"""Registries: duplicate and unknown names raise with the valid choices; every registry is walkable."""

from __future__ import annotations

import pytest

from condense import create_method, list_methods
from data import Registry, list_datasets
from evaluation.protocols import get_protocol, list_protocols


def test_registry_rejects_duplicates_and_lists_valid_names():
    registry: Registry[int] = Registry("thing")
    registry.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", 2)
    with pytest.raises(ValueError, match="valid things: a"):
        registry.get("b")
    assert registry.names("a*") == ["a"] and "a" in registry and len(registry) == 1


def test_unknown_method_lists_the_methods():
    with pytest.raises(ValueError) as error:
        create_method("nosuch")
    assert "random" in str(error.value) and "full" in str(error.value)


def test_unknown_method_option_lists_the_options():
    with pytest.raises(ValueError, match="valid options: balanced"):
        create_method("random", nosuch=1)


def test_public_names():
    assert {"random", "full"} <= set(list_methods())
    expected = {"digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "tiny_imagenet", "imagefolder"}
    assert expected <= set(list_datasets())
    assert {"classic", "cross_arch", "fast"} <= set(list_protocols())
    with pytest.raises(ValueError, match="valid protocols"):
        get_protocol("nosuch")


def test_protocol_recipes_match_the_reference():
    classic = get_protocol("classic")
    assert classic.models == ("convnet3",) and classic.num_models == 5
    recipe = classic.recipe
    assert (recipe.epochs, recipe.lr, recipe.momentum, recipe.weight_decay, recipe.batch_size) == (
        1000,
        0.01,
        0.9,
        5e-4,
        256,
    )
    assert recipe.decay_at == 0.5 and recipe.decay_factor == 0.1 and classic.augmentation == "dsa"
    assert set(get_protocol("cross_arch").models) == {"mlp", "lenet", "alexnet", "vgg11", "resnet18"}


def test_every_method_has_a_config_that_states_only_its_schema():
    """``configs/method/<name>.yaml`` extends the method's typed schema and restates no default."""
    from omegaconf import OmegaConf

    from data.configs import config_dir

    for name in list_methods():
        values = OmegaConf.to_container(OmegaConf.load(config_dir() / "method" / f"{name}.yaml"))
        assert values == {"defaults": [f"/method_schema/{name}@_here_", "_self_"]}, name


def test_a_registry_fills_itself_from_its_providers_once_and_keeps_a_failure(tmp_path, monkeypatch):
    (tmp_path / "provider_ok.py").write_text("from test_registry_target import REGISTRY\nREGISTRY.register('a', 1)\n")
    (tmp_path / "provider_bad.py").write_text("raise RuntimeError('broken provider')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import sys
    import types

    target = types.ModuleType("test_registry_target")
    target.REGISTRY = Registry("thing", providers=("provider_ok",))
    monkeypatch.setitem(sys.modules, "test_registry_target", target)
    assert target.REGISTRY.get("a") == 1 and target.REGISTRY.names() == ["a"]
    broken = Registry("thing", providers=("provider_bad",))
    for _ in range(2):  # the provider's own error, every time
        with pytest.raises(RuntimeError, match="broken provider"):
            broken.names()
