"""SyntheticSet and Budget: bit-exact round trips, refusal of unsafe files, validation."""

from __future__ import annotations

import dataclasses
import os
import pickle

import pytest
import torch

from data.synthetic import Budget, SyntheticSet


def make_set(soft: bool = False, ipc: int = 2, classes: int = 3) -> SyntheticSet:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(ipc * classes, 1, 8, 8, generator=generator)
    labels = torch.arange(classes).repeat_interleave(ipc)
    if soft:
        labels = torch.softmax(torch.randn(ipc * classes, classes, generator=generator), dim=1)
    return SyntheticSet(
        images=images,
        labels=labels,
        num_classes=classes,
        mean=(0.3,),
        std=(0.4,),
        budget=Budget(ipc=ipc),
        learned_lr=0.0123 if soft else None,
        extras={"indices": torch.arange(ipc * classes), "scores": torch.rand(ipc * classes, generator=generator)},
        provenance={"method": "test", "seed": 0, "method_config": {"a": 1}},
    )


@pytest.mark.parametrize("soft", [False, True])
def test_save_load_is_bit_exact(tmp_path, soft):
    original = make_set(soft=soft)
    path = original.save(tmp_path / "set.safetensors")
    loaded = SyntheticSet.load(path)
    assert torch.equal(loaded.images, original.images)
    assert torch.equal(loaded.labels, original.labels)
    assert loaded.labels.dtype == original.labels.dtype
    assert loaded.extras.keys() == original.extras.keys()
    for key in original.extras:
        assert torch.equal(loaded.extras[key], original.extras[key])
    assert loaded.learned_lr == original.learned_lr
    assert loaded.budget == original.budget
    assert loaded.provenance == original.provenance
    assert (loaded.mean, loaded.std, loaded.num_classes) == (original.mean, original.std, original.num_classes)
    # The size counts what trains, not the provenance (how the set was made).
    without_provenance = dataclasses.replace(original, provenance={}).save(path.with_name("bare.safetensors"))
    assert original.num_bytes() == os.path.getsize(without_provenance) < os.path.getsize(path)


def test_torch_format_round_trip(tmp_path):
    original = make_set(soft=True)
    loaded = SyntheticSet.load(original.save_torch(tmp_path / "set.pt"))
    assert torch.equal(loaded.images, original.images) and torch.equal(loaded.labels, original.labels)


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_pickle_payload_is_refused_without_running(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    if suffix == ".pt":
        torch.save({"tensors": {}, "metadata": _Exploit(str(marker))}, path)
    else:
        path.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(ValueError):
        SyntheticSet.load(path)
    assert not marker.exists()


def test_foreign_safetensors_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="metadata"):
        SyntheticSet.load(path)


def test_truncated_file_is_refused(tmp_path):
    path = make_set().save(tmp_path / "set.safetensors")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError):
        SyntheticSet.load(path)


def test_validate_rejects_bad_sets():
    good = make_set()
    good.validate()
    nan = make_set()
    nan.images[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        nan.validate()
    flat = make_set()
    flat.images = flat.images.flatten(1)
    with pytest.raises(ValueError, match="N x C x H x W"):
        flat.validate()
    bad_label = make_set()
    bad_label.labels[0] = 7
    with pytest.raises(ValueError, match="labels outside"):
        bad_label.validate()
    wrong_shape = make_set()
    with pytest.raises(ValueError, match="expected"):
        wrong_shape.validate(image_shape=(3, 8, 8))
    over_budget = make_set()
    over_budget.budget = Budget(ipc=3)
    with pytest.raises(ValueError, match="per-class counts"):
        over_budget.validate()
    soft_bad = make_set(soft=True)
    soft_bad.labels = soft_bad.labels[:, :2]
    with pytest.raises(ValueError, match="soft labels"):
        soft_bad.validate()
    bad_lr = make_set()
    bad_lr.learned_lr = -1.0
    with pytest.raises(ValueError, match="learned_lr"):
        bad_lr.validate()


def test_budget_rules():
    counts = torch.tensor([10, 3, 0])
    assert Budget(ipc=5).per_class_counts(counts).tolist() == [5, 3, 0]
    assert Budget(fraction=0.3).per_class_counts(counts).tolist() == [3, 1, 0]
    assert Budget().is_full and Budget().describe() == "full"
    assert Budget(fraction=0.5).describe() == "fraction=0.5"
    for bad in [dict(ipc=0), dict(fraction=0.0), dict(fraction=1.5), dict(ipc=1, fraction=0.5), dict(ipc=2.5)]:
        with pytest.raises(ValueError):
            Budget(**bad)
