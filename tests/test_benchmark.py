"""Benchmark cells on real digits under `fast`: the reference rows behave, records are reproducible."""

from __future__ import annotations

import json

import pytest
import torch

from bench import CellSpec, cell_key, run_cell
from data.synthetic import SyntheticSet
from evaluation.protocols import derive_protocol, get_protocol
from leaderboard import build_table, load_records


def cell(method: str, ipc: int | None = 10, seed: int = 0, protocol: object = "fast", **options) -> CellSpec:
    return CellSpec(method=method, dataset="digits", protocol=protocol, seed=seed, ipc=ipc, method_options=options)


#: ``quick`` (the main job's) with one model per set: the reference rows' behaviour at a fraction of
#: the cost (the whole set trains 100 epochs; the ceiling under ``fast`` is a slow test below).
ONE_MODEL = derive_protocol(get_protocol("quick"), {"num_models": 1})


@pytest.fixture(scope="module")
def reference_results(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    outcomes = {
        name: run_cell(spec, results_dir=results, device="cpu")
        for name, spec in {
            "full": cell("full", protocol=ONE_MODEL),
            "random_ipc1": cell("random", ipc=1, protocol=ONE_MODEL),
            "random_ipc10": cell("random", ipc=10, protocol=ONE_MODEL),
        }.items()
    }
    return results, {name: outcome.record.results["convnet3"].mean for name, outcome in outcomes.items()}


def test_full_random_and_budget_order(reference_results):
    _, accuracy = reference_results
    assert accuracy["full"] >= 0.95
    assert 0.5 < accuracy["random_ipc10"] < accuracy["full"]  # chance is 0.1
    assert accuracy["random_ipc1"] < accuracy["random_ipc10"]


def test_records_and_table(reference_results):
    results, _ = reference_results
    loaded = load_records(results)
    assert not loaded.problems and len(loaded.records) == 3
    for record in loaded.records:
        result = record.results["convnet3"]
        assert len(result.accuracies) == 1 and all(0 <= a <= 1 for a in result.accuracies)
        assert record.protocol == "quick[num_models=1]" and record.dataset == "digits"
        assert record.costs.eval_seconds > 0 and record.costs.set_bytes > 0
        assert record.versions["torch"]
    full = next(r for r in loaded.records if r.method == "full")
    assert full.ipc is None and full.fraction is None and full.family == "reference"
    assert full.protocol_config["epochs_run"] == 100
    table = build_table(loaded.records)
    assert {"random", "full"} <= set(table["method"])


def test_existing_record_is_skipped(reference_results):
    results, accuracy = reference_results
    again = run_cell(cell("random", ipc=1, protocol=ONE_MODEL), results_dir=results, device="cpu")
    assert again.skipped and again.record.results["convnet3"].mean == accuracy["random_ipc1"]


def test_full_ignores_the_budget():
    assert cell_key(cell("full", ipc=1)) == cell_key(cell("full", ipc=50))
    assert cell_key(cell("random", ipc=1)) != cell_key(cell("random", ipc=50))
    assert cell_key(cell("random", seed=0)) != cell_key(cell("random", seed=1))
    assert cell_key(cell("random", balanced=True)) == cell_key(cell("random"))


def test_a_budgeted_method_needs_a_budget():
    with pytest.raises(ValueError, match="needs a budget"):
        cell_key(cell("random", ipc=None))


VOLATILE = {"created", "costs", "git_revision", "set_path"}


def test_same_seed_same_record(tmp_path):
    first = run_cell(cell("random", ipc=2, seed=3), results_dir=tmp_path / "a", device="cpu")
    second = run_cell(cell("random", ipc=2, seed=3), results_dir=tmp_path / "b", device="cpu")
    a, b = first.record.to_dict(), second.record.to_dict()
    assert {k: v for k, v in a.items() if k not in VOLATILE} == {k: v for k, v in b.items() if k not in VOLATILE}
    set_a = SyntheticSet.load(tmp_path / "a" / a["set_path"])
    set_b = SyntheticSet.load(tmp_path / "b" / b["set_path"])
    assert torch.equal(set_a.images, set_b.images) and torch.equal(set_a.labels, set_b.labels)
    assert torch.equal(set_a.extras["indices"], set_b.extras["indices"])
    json.dumps(a)  # records are plain JSON


def test_two_seeds_share_the_split_and_every_cache(tmp_path):
    """The split seed is a dataset option, not the cell seed: seed 1 distils from seed 0's pool, so
    the fingerprint matches and the experts, the proxy and the teacher come from the caches."""
    import dataclasses

    from evaluation.protocols import get_protocol
    from evaluation.teachers import TeacherConfig

    fast = get_protocol("fast")
    tiny = dataclasses.replace(fast, num_models=1, recipe=dataclasses.replace(fast.recipe, epochs=2))
    soft = get_protocol("soft")
    teacher = TeacherConfig(model="convnetw32", epochs=2, batch_size=64, cache_dir=str(tmp_path / "teachers"))
    tiny_soft = dataclasses.replace(
        soft,
        models=("convnetw32",),
        num_models=1,
        recipe=dataclasses.replace(soft.recipe, epochs=2),
        soft=dataclasses.replace(soft.soft, teachers=(teacher,)),
    )
    experts = {"num_experts": 1, "expert_train_epochs": 2, "max_start_epoch": 1, "expert_epochs": 1}
    cells = {
        "mtt": ("mtt", tiny, {"model": "convnetd2", "iterations": 2, "syn_steps": 2, **experts}),
        "herding": ("herding", tiny, {"proxy_epochs": 2}),
        "teacher": ("random", tiny_soft, {}),
    }
    records = {}
    for seed in (0, 1):
        for name, (method, protocol, options) in cells.items():
            spec = CellSpec(
                method=method, dataset="digits", protocol=protocol, seed=seed, ipc=1, method_options=options
            )
            records[name, seed] = run_cell(spec, results_dir=tmp_path, device="cpu", save_set=False).record
    for name in cells:
        first, second = records[name, 0], records[name, 1]
        assert first.cell_key != second.cell_key
        assert first.dataset_fingerprint == second.dataset_fingerprint
        assert first.protocol_config["split_seed"] == second.protocol_config["split_seed"] == 0
        assert first.protocol_config["flip"] is False  # digits' flip policy, recorded
        assert second.costs.precompute_cache_hit is True, name
        assert second.costs.precompute_seconds == pytest.approx(first.costs.precompute_seconds), name
    # Another split seed is another pool (and another fingerprint).
    moved = CellSpec(method="random", dataset="digits", protocol=tiny, seed=0, ipc=1, dataset_options={"split_seed": 1})
    other = run_cell(moved, results_dir=tmp_path, device="cpu", save_set=False).record
    assert other.dataset_fingerprint != records["mtt", 0].dataset_fingerprint
    assert other.protocol_config["split_seed"] == 1


@pytest.mark.slow
def test_full_is_the_ceiling_under_fast(tmp_path):
    """``full`` trains to convergence (300 epochs under ``fast``): at least as accurate as random
    at IPC 50, and no interval of either leaves [0, 1]."""
    full = run_cell(cell("full"), results_dir=tmp_path, device="cpu", save_set=False).record
    random = run_cell(cell("random", ipc=50), results_dir=tmp_path, device="cpu", save_set=False).record
    assert full.results["convnet3"].mean >= random.results["convnet3"].mean
    for record in (full, random):
        low, high = record.results["convnet3"].ci95
        assert 0.0 <= low <= high <= 1.0
