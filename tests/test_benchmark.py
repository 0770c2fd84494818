"""Benchmark cells on real digits under `fast`: the reference rows behave, records are reproducible."""

from __future__ import annotations

import json

import pytest
import torch

from bench import CellSpec, cell_key, run_cell
from data.synthetic import SyntheticSet
from leaderboard import build_table, load_records


def cell(method: str, ipc: int | None = 10, seed: int = 0, **options) -> CellSpec:
    return CellSpec(method=method, dataset="digits", protocol="fast", seed=seed, ipc=ipc, method_options=options)


@pytest.fixture(scope="module")
def reference_results(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    outcomes = {
        name: run_cell(spec, results_dir=results, device="cpu")
        for name, spec in {
            "full": cell("full"),
            "random_ipc1": cell("random", ipc=1),
            "random_ipc10": cell("random", ipc=10),
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
        assert len(result.accuracies) == 3 and all(0 <= a <= 1 for a in result.accuracies)
        assert record.protocol == "fast" and record.dataset == "digits"
        assert record.costs.eval_seconds > 0 and record.costs.set_bytes > 0
        assert record.versions["torch"]
    full = next(r for r in loaded.records if r.method == "full")
    assert full.ipc is None and full.fraction is None and full.family == "reference"
    assert full.protocol_config["epochs_run"] == 100
    table = build_table(loaded.records)
    assert {"random", "full"} <= set(table["method"])


def test_existing_record_is_skipped(reference_results):
    results, accuracy = reference_results
    again = run_cell(cell("random", ipc=1), results_dir=results, device="cpu")
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
