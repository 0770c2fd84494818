"""Every registered method, walked from the registry: a tiny budget on real data gives a valid set.

Image methods run on digits, graph methods on MUTAG, each with its digits preset where there is one
and its training budgets shrunk by field name, so that a new method is tested here as soon as it
is registered.
"""

from __future__ import annotations

import dataclasses

import pytest

from condense import create_method, list_methods, method_options
from data import load_dataset
from data.configs import config_dir
from data.graphs import GraphSet
from data.methods import METHODS
from data.synthetic import Budget, SyntheticSet

#: Budget fields shrunk wherever a method has them (never raised): seconds instead of GPU hours.
SHRINK = {
    "iterations": 2,
    "batch_real": 16,
    "proxy_epochs": 3,
    "epochs": 2,
    "repeats": 2,
    "trajectory_len": 3,
    "window": 2,
    "squeeze_epochs": 2,
    "teacher_epochs": 2,
    "observer_epochs": 2,
    "num_experts": 1,
    "expert_train_epochs": 4,
    "syn_steps": 2,
    "expert_epochs": 1,
    "max_start_epoch": 2,
    "current_max_start_epoch": 1,
    "expansion_end_epoch": 2,
    "model_train_steps": 1,
    "mipc": 20,
    "num_premodels": 1,
    "premodel_epochs": 2,
    "num_freqs": 64,
}
#: Backbone lists cut wherever a method has them: G-VBSM's and EDC's observers keep only their second,
#: the ConvNet (their first, ResNet-18, trains for most of a minute here; test_gvbsm runs several).
SHORTEN = {"observers": slice(1, 2)}
IPC = 2


def tiny_options(name: str) -> dict[str, object]:
    """The method's digits preset (or defaults), every budget field of :data:`SHRINK` capped, :data:`SHORTEN` sliced."""
    preset = config_dir() / "method" / "digits" / f"{name}.yaml"
    options = method_options(f"digits/{name}")[1] if preset.is_file() else {}
    defaults = dataclasses.asdict(METHODS.get(name).config_class())
    for field, cap in SHRINK.items():
        current = options.get(field, defaults.get(field, None))
        if field in defaults and (current is None or current > cap):
            options[field] = cap
    for field, part in SHORTEN.items():
        if field in defaults:
            options[field] = tuple(options.get(field, defaults[field]))[part]
    return options


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return {"image": load_dataset("digits", seed=0), "graph": load_dataset("mutag", seed=0)}


@pytest.fixture(autouse=True, scope="module")
def _private_cache(tmp_path_factory):
    """Teachers, experts and proxies of this module in a cache of its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONDENSE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.mark.parametrize("name", list_methods())
def test_every_method_condenses_a_valid_set(name, splits):
    method = create_method(name, **tiny_options(name))
    train = splits[method.modality][0]
    compressed = method.condense(train, Budget(ipc=IPC), seed=0)
    expected = Budget(ipc=IPC) if method.uses_budget else Budget()
    assert compressed.budget == expected
    if method.modality == "image":
        assert isinstance(compressed, SyntheticSet)
        compressed.validate(image_shape=train.image_shape, check_budget=True)
        if method.uses_budget and compressed.sampler is None and compressed.decoder is None:
            assert compressed.class_counts().tolist() == [IPC] * train.num_classes
    else:
        assert isinstance(compressed, GraphSet)
        compressed.validate()
        assert set(compressed.labels.tolist()) == set(range(train.num_classes))
    assert len(compressed) > 0 and compressed.num_bytes() > 0
    provenance = compressed.provenance
    assert provenance["method"] == name and provenance["seed"] == 0
    assert provenance["dataset_fingerprint"] == train.fingerprint()
