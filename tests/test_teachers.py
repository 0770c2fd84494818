"""Teachers: cached by config hash + dataset fingerprint, recipe and accuracy beside the weights,
corrupt entries rebuilt, user weights loaded without running code, ensembles."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from data.cache import cache_dir
from data.provenance import merge_provenance, precomputed_costs
from evaluation.teachers import (
    META_NAME,
    WEIGHTS_NAME,
    TeacherConfig,
    TeacherEnsemble,
    cache_key,
    charge_teachers,
    load_or_train_teacher,
    load_or_train_teachers,
    read_state_dict,
)


def _config(tmp_path: Path, **overrides) -> TeacherConfig:
    options = {"model": "convnetw32", "epochs": 3, "batch_size": 32, "lr": 0.05, "cache_dir": str(tmp_path)}
    options.update(overrides)
    return TeacherConfig(**options)


def test_teacher_is_cached_with_recipe_and_accuracy(tmp_path: Path, digits) -> None:
    train, val, test = digits
    config = _config(tmp_path)
    first = load_or_train_teacher(config, train, val=val, test=test)
    assert not first.cache_hit and first.seconds > 0
    assert first.path is not None and first.path.name == WEIGHTS_NAME
    meta = json.loads((first.path.parent / META_NAME).read_text())
    assert meta["recipe"]["model"] == "convnetw32" and meta["recipe"]["epochs"] == 3
    assert meta["dataset_fingerprint"] == train.fingerprint()
    assert 0.4 < meta["test_accuracy"] <= 1.0 and meta["test_accuracy"] == first.test_accuracy
    assert not any(p.requires_grad for p in first.model.parameters()) and not first.model.training

    second = load_or_train_teacher(config, train, val=val, test=test)
    assert second.cache_hit and second.seconds == first.seconds
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    provenance: dict = {}
    charge_teachers(provenance, [second])
    charge_teachers(provenance, [first])  # a second use adds its cost; a hit only if both were
    assert provenance == {"precomputed": {"teacher": {"seconds": 2 * first.seconds, "cache_hit": False}}}
    assert precomputed_costs(provenance) == {"precompute_seconds": 2 * first.seconds, "precompute_cache_hit": False}
    merged = merge_provenance({"distill_seconds": 1.0}, provenance)
    assert merged["distill_seconds"] == 1.0 and merged["precomputed"] == provenance["precomputed"]


def test_key_covers_recipe_and_data_not_location(tmp_path: Path, digits) -> None:
    train, _, _ = digits
    base = cache_key(_config(tmp_path), train)
    assert cache_key(_config(tmp_path / "elsewhere"), train) == base
    assert cache_key(_config(tmp_path, epochs=4), train) != base
    assert cache_key(_config(tmp_path, seed=1), train) != base
    assert cache_key(_config(tmp_path), train.subset(torch.arange(100))) != base
    assert base.startswith("digits_convnetw32_")


def test_corrupt_entry_is_rejected_and_rebuilt(tmp_path: Path, digits) -> None:
    train, _, test = digits
    config = _config(tmp_path)
    first = load_or_train_teacher(config, train, test=test)
    assert first.path is not None
    first.path.write_bytes(first.path.read_bytes()[:100])  # a truncated weights file
    rebuilt = load_or_train_teacher(config, train, test=test)
    assert not rebuilt.cache_hit
    for a, b in zip(first.model.state_dict().values(), rebuilt.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # same seed, same recipe: the same teacher again
    (first.path.parent / META_NAME).write_text("{not json")
    assert not load_or_train_teacher(config, train).cache_hit


def test_user_weights_load_without_running_code(tmp_path: Path, digits) -> None:
    train, _, test = digits
    trained = load_or_train_teacher(_config(tmp_path), train, test=test)
    user_file = tmp_path / "mine.pt"
    torch.save(trained.model.state_dict(), user_file)
    loaded = load_or_train_teacher(_config(tmp_path, path=str(user_file)), train, test=test)
    assert loaded.cache_hit and loaded.seconds == 0.0
    assert loaded.test_accuracy == pytest.approx(trained.test_accuracy)

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"weight": Payload()}))
    with pytest.raises(ValueError, match="not a readable weights file"):
        read_state_dict(evil)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.safetensors")


def test_ensemble_averages_member_logits(tmp_path: Path, digits) -> None:
    train, _, _ = digits
    configs = [_config(tmp_path, seed=0), _config(tmp_path, seed=1)]
    ensemble, members = load_or_train_teachers(configs, train)
    assert isinstance(ensemble, TeacherEnsemble) and len(members) == 2
    x = train.images[:7]
    expected = (members[0].model(x) + members[1].model(x)) / 2
    torch.testing.assert_close(ensemble(x), expected)
    single, (member,) = load_or_train_teachers(configs[:1], train)
    assert single is member.model and member.cache_hit


def test_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONDENSE_CACHE", str(tmp_path))
    assert cache_dir("teachers") == tmp_path / "teachers"
    monkeypatch.delenv("CONDENSE_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir("teachers") == Path.home() / ".cache" / "condense" / "teachers"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("experts") == tmp_path / "xdg" / "condense" / "experts"
