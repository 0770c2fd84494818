"""The papers' own evaluations beside the fair protocols: dc_paper, mtt_paper, datadam_paper."""

from __future__ import annotations

import dataclasses

import pytest

from bench import CellSpec, run_cell
from condense import create_method
from data.synthetic import Budget
from evaluation.protocols import evaluate_set, get_protocol
from leaderboard import build_table, load_records


def test_the_paper_protocols_replay_the_papers_settings():
    dc, mtt, datadam = get_protocol("dc_paper"), get_protocol("mtt_paper"), get_protocol("datadam_paper")
    assert (dc.recipe.epochs, dc.augmentation, dc.num_models, dc.report) == (300, "none", 20, "final")
    assert (mtt.recipe.epochs, mtt.augmentation, mtt.report, mtt.test_every) == (1000, "dsa", "best_test", 100)
    assert datadam.models == ("convnet_bn",) and datadam.recipe.epochs == 1800 and datadam.num_models == 10
    assert mtt.selects_on_test and datadam.selects_on_test and not dc.selects_on_test
    assert "report" not in get_protocol("classic").config_dict()  # the fair records keep their layout
    assert mtt.config_dict()["report"] == "best_test"
    with pytest.raises(ValueError, match="test_every >= 1"):
        dataclasses.replace(mtt, test_every=0)


def test_best_test_reports_the_best_checkpoint_of_the_same_training(digits):
    """Testing at checkpoints does not change the training: the best checkpoint is at least the
    final accuracy of the same model, and above it where an earlier epoch tested better."""
    train, _, test = digits
    subset = create_method("random").condense(train, Budget(ipc=2), seed=0)
    final = dataclasses.replace(
        get_protocol("fast"), num_models=2, recipe=dataclasses.replace(get_protocol("fast").recipe, epochs=30)
    )
    best = dataclasses.replace(final, name="fast_best", report="best_test", test_every=3)
    finals = evaluate_set(subset, test, final, seed=0).per_model["convnet3"].accuracies
    bests = evaluate_set(subset, test, best, seed=0).per_model["convnet3"].accuracies
    assert all(b >= f for b, f in zip(bests, finals, strict=True))


def test_best_on_test_rows_are_never_ranked(tmp_path):
    fast = get_protocol("fast")
    tiny = dataclasses.replace(fast, num_models=1, recipe=dataclasses.replace(fast.recipe, epochs=4))
    best = dataclasses.replace(tiny, name="tiny_best", report="best_test", test_every=2)
    for protocol in (tiny, best):
        for method in ("random", "herding"):
            options = {"proxy_epochs": 1} if method == "herding" else {}
            spec = CellSpec(method=method, dataset="digits", protocol=protocol, seed=0, ipc=2, method_options=options)
            run_cell(spec, results_dir=tmp_path, device="cpu", save_set=False)
    table = build_table(load_records(tmp_path).records)
    fair, replayed = table[table["protocol"] == tiny.name], table[table["protocol"] == "tiny_best"]
    assert fair["rank"].notna().all() and not fair["selected_on_test"].any()
    assert replayed["rank"].isna().all() and replayed["selected_on_test"].all()
