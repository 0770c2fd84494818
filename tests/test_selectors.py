"""Coreset selectors on real digits: budgets, determinism, scores, and known answers.

One tiny proxy (4 epochs) is trained once into a temporary cache and shared by every selector
test. The benchmark-table test runs real cells under a one-model cut of ``fast`` by default and
under ``fast`` itself with ``-m slow``, as does the kept-fraction-0.5 accuracy check.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines import Selector
from baselines._budget import allocate_proportionally, selection_groups, top_k
from baselines._proxy import (
    DYNAMICS,
    ProxyRecipe,
    ProxySelector,
    build_proxy_model,
    el2n_from_logits,
    last_layer_gradients,
    load_or_train_proxy,
    margin_from_logits,
    prediction_change,
    train_proxy,
)
from baselines.ccs import allocate_to_strata, auto_beta, ccs_select, strata
from baselines.dq import gradient_similarity, graphcut_bins, graphcut_greedy
from baselines.herding import herding_order
from baselines.kcenter import covering_radius, kcenter_order
from baselines.moderate import feature_median, middle_band
from baselines.scores import forgetting_counts, grand_scores
from baselines.tdds import tdds_scores
from condense import create_method, list_methods
from data import load_dataset
from data.methods import METHODS
from data.synthetic import Budget
from evaluation.protocols import get_protocol

#: The proxy-based selectors, from the registry.
SELECTORS = tuple(n for n in list_methods() if issubclass(METHODS.get(n), ProxySelector))
TINY_EPOCHS = 4
#: Options that keep every selector's proxy tiny (and, for GraNd, two proxies).
TINY_OPTIONS = {
    "el2n": {"epochs": 3},
    "grand": {"repeats": 2},
    "tdds": {"trajectory_len": TINY_EPOCHS, "window": 3},
}
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "method"


@pytest.fixture(scope="module")
def train():
    return load_dataset("digits", seed=0)[0]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("proxy_cache")


def tiny(name: str, cache_dir: Path, **extra):
    options = {"proxy_epochs": TINY_EPOCHS, "cache_dir": str(cache_dir), **TINY_OPTIONS.get(name, {}), **extra}
    return create_method(name, **options)


@pytest.fixture(scope="module")
def proxy(train, cache_dir):
    recipe = ProxyRecipe(epochs=TINY_EPOCHS, seed=0)
    return load_or_train_proxy(train, recipe, cache_dir=cache_dir)


# -- registry and configs ----------------------------------------------------------------------


def test_selectors_are_registered_with_typed_configs():
    assert {"herding", "kcenter", "forgetting", "el2n", "grand", "ccs", "moderate", "dq", "tdds"} <= set(SELECTORS)
    for name in SELECTORS:
        method = create_method(name)
        assert isinstance(method, Selector) and method.family == "selection" and method.name == name
        assert dataclasses.is_dataclass(method.config) and method.config.__dataclass_params__.frozen
        with pytest.raises(dataclasses.FrozenInstanceError):
            method.config.balanced = False  # type: ignore[misc]
        assert "cache_dir" not in method.config_dict()  # a location: kept out of cell keys


def test_cache_location_is_not_part_of_the_cell_key(tmp_path):
    from bench import CellSpec, cell_key

    def key(**options):
        spec = CellSpec(method="el2n", dataset="digits", protocol="fast", seed=0, ipc=10, method_options=options)
        return cell_key(spec)

    assert key() == key(cache_dir=str(tmp_path)) != key(proxy_epochs=20)


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="variant"):
        create_method("herding", variant="nosuch")
    with pytest.raises(ValueError, match="trajectory_len"):
        create_method("tdds", proxy_epochs=10)
    with pytest.raises(ValueError, match="beta"):
        create_method("ccs", beta=1.5)
    with pytest.raises(ValueError, match="valid options"):
        create_method("el2n", nosuch=1)


# -- every selector on digits -------------------------------------------------------------------


@pytest.mark.parametrize("name", SELECTORS)
def test_selector_budgets_determinism_and_scores(name, train, cache_dir):
    ipc = tiny(name, cache_dir).condense(train, Budget(ipc=10), seed=0)
    assert ipc.class_counts().tolist() == [10] * train.num_classes
    indices = ipc.extras["indices"]
    assert len(torch.unique(indices)) == len(indices) == 100
    assert torch.equal(ipc.images, train.images[indices]) and torch.equal(ipc.labels, train.labels[indices])
    scores = ipc.extras["scores"]
    assert scores.shape == (len(train),) and torch.isfinite(scores).all() and scores.std() > 0
    assert ipc.provenance["method"] == name and ipc.provenance["precomputed"]["proxy"]["seconds"] > 0

    budget = Budget(fraction=0.3)
    first = tiny(name, cache_dir).condense(train, budget, seed=0)
    again = tiny(name, cache_dir).condense(train, budget, seed=0)
    assert first.class_counts().tolist() == budget.per_class_counts(train.class_counts()).tolist()
    assert torch.equal(first.extras["indices"], again.extras["indices"])
    assert torch.equal(first.extras["scores"], again.extras["scores"])
    assert again.provenance["precomputed"]["proxy"]["cache_hit"] is True
    assert again.provenance["precomputed"]["proxy"]["seconds"] == first.provenance["precomputed"]["proxy"]["seconds"]


@pytest.mark.parametrize("name", ["el2n", "moderate", "ccs"])
def test_global_selection_keeps_the_overall_fraction(name, train, cache_dir):
    selected = tiny(name, cache_dir, balanced=False).condense(train, Budget(fraction=0.3), seed=0)
    assert len(selected) == round(0.3 * len(train))
    assert len(torch.unique(selected.extras["indices"])) == len(selected)


def test_groups_follow_the_budget(train):
    groups = selection_groups(train, Budget(ipc=10), balanced=False)  # IPC is always per class
    assert len(groups) == train.num_classes and all(count == 10 for _, count in groups)
    (members, count), *rest = selection_groups(train, Budget(fraction=0.25), balanced=False)
    assert not rest and len(members) == len(train) and count == round(0.25 * len(train))


def test_top_k_breaks_ties_by_the_generator():
    scores = torch.tensor([1.0, 5.0, 5.0, 5.0, 0.0])
    picks = {tuple(sorted(top_k(scores, 2, torch.Generator().manual_seed(s)).tolist())) for s in range(20)}
    assert all(set(p) <= {1, 2, 3} for p in picks) and len(picks) > 1
    assert top_k(torch.tensor([3.0, 1.0, 2.0]), 2, torch.Generator()).tolist() == [0, 2]


def test_proportional_allocation_is_exact():
    generator = torch.Generator().manual_seed(0)
    counts = allocate_proportionally(7, torch.tensor([10, 10, 0, 3]), generator)
    assert int(counts.sum()) == 7 and counts[2] == 0 and (counts <= torch.tensor([10, 10, 0, 3])).all()


# -- the proxy ----------------------------------------------------------------------------------


def test_proxy_is_cached_and_reused(train, cache_dir, proxy):
    again = load_or_train_proxy(train, proxy.recipe, cache_dir=cache_dir)
    assert again.cache_hit and again.key == proxy.key and again.seconds == proxy.seconds > 0
    assert proxy.path is not None and proxy.path.is_file() and not list(cache_dir.glob(".*.tmp"))
    for name in DYNAMICS:
        assert again.dynamics[name].shape == (TINY_EPOCHS, len(train))
        assert torch.equal(again.dynamics[name], proxy.dynamics[name])
    with torch.no_grad():
        assert torch.equal(again.model(train.images[:50]), proxy.model(train.images[:50]))
    learned = proxy.dynamics["correct"].float().mean(dim=1)
    assert learned[-1] > max(0.3, learned[0] + 0.2)  # the proxy is learning digits
    assert ProxyRecipe(epochs=TINY_EPOCHS, seed=1).cache_key(train) != proxy.key


def test_unreadable_cache_file_is_replaced(train, tmp_path):
    recipe = ProxyRecipe(epochs=1, seed=5)
    first = load_or_train_proxy(train, recipe, cache_dir=tmp_path)
    first.path.write_bytes(b"not a safetensors file")
    second = load_or_train_proxy(train, recipe, cache_dir=tmp_path)
    assert not second.cache_hit and torch.equal(second.dynamics["el2n"], first.dynamics["el2n"])
    assert load_or_train_proxy(train, recipe, cache_dir=tmp_path).cache_hit


def test_recorded_dynamics_match_a_direct_computation(train):
    """With one batch per epoch, epoch 0 is the initial model's outputs on the training set."""
    subset = train.subset(torch.arange(200))
    recipe = ProxyRecipe(epochs=2, batch_size=256, seed=3)
    _, dynamics, _ = train_proxy(subset, recipe)
    with torch.no_grad():
        logits = build_proxy_model(recipe, subset)(subset.images)
    probabilities = F.softmax(logits, dim=1)
    onehot = F.one_hot(subset.labels, 10).float()
    torch.testing.assert_close(dynamics["el2n"][0], (probabilities - onehot).pow(2).sum(dim=1).sqrt())
    torch.testing.assert_close(dynamics["loss"][0], F.cross_entropy(logits, subset.labels, reduction="none"))
    assert torch.equal(dynamics["correct"][0].bool(), logits.argmax(dim=1) == subset.labels)
    assert torch.equal(dynamics["change"][0], torch.zeros(200)) and (dynamics["change"][1] > 0).all()


# -- herding and k-center: known answers ---------------------------------------------------------


def test_herding_golden_order_on_a_line():
    points = torch.tensor([[-1.0], [0.0], [1.0], [10.0]])  # mean 2.5
    assert herding_order(points, 3).tolist() == [2, 1, 3]
    assert herding_order(points, 1, variant="deepcore").tolist() == [3]


def _running_mean_error(points: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    running = points[order].cumsum(dim=0) / torch.arange(1, len(order) + 1)[:, None]
    return (running - points.mean(dim=0)).norm(dim=1)


def test_herding_running_mean_approaches_the_class_mean_faster_than_random(train):
    points = train.images[train.class_indices(3)].flatten(1).double()
    steps = 30
    herding = _running_mean_error(points, herding_order(points, steps))
    generator = torch.Generator().manual_seed(0)
    random = torch.stack(
        [_running_mean_error(points, torch.randperm(len(points), generator=generator)[:steps]) for _ in range(50)]
    ).mean(dim=0)
    assert (herding < random).all()
    assert herding.sum() < 0.5 * random.sum()
    deepcore = _running_mean_error(points, herding_order(points, steps, variant="deepcore"))
    assert deepcore.sum() > random.sum()  # DeepCore's argmax runs away from the mean


def test_kcenter_covering_radius_is_smaller_than_random(train):
    points = train.images[train.class_indices(7)].flatten(1)
    generator = torch.Generator().manual_seed(0)
    for size in (5, 10, 20):
        greedy = covering_radius(points, kcenter_order(points, size, generator))
        random = [covering_radius(points, torch.randperm(len(points), generator=generator)[:size]) for _ in range(30)]
        assert greedy < np.mean(random)
        if size == 20:
            assert greedy < 0.85 * np.mean(random) and greedy < min(random)


def test_kcenter_adds_the_farthest_point_every_step():
    points = torch.tensor([[0.0], [1.0], [2.0], [10.0], [6.0], [3.5]])
    for seed in range(5):
        order = kcenter_order(points, 4, torch.Generator().manual_seed(seed)).tolist()
        assert len(set(order)) == 4
        for step in range(1, 4):
            nearest = torch.cdist(points, points[order[:step]]).min(dim=1).values
            assert nearest[order[step]] == nearest.max()
    starts = {kcenter_order(points, 1, torch.Generator().manual_seed(seed)).item() for seed in range(20)}
    assert len(starts) > 1  # the first center is random


# -- score-based selectors: known answers --------------------------------------------------------


def test_forgetting_counts_on_a_hand_built_sequence():
    correct = torch.tensor(
        [  # epochs x samples
            [1, 0, 1, 0, 1, 1],
            [0, 0, 1, 1, 0, 1],
            [1, 0, 1, 1, 0, 0],
            [0, 0, 1, 0, 0, 1],
        ],
        dtype=torch.uint8,
    )
    assert forgetting_counts(correct).tolist() == [2, 0, 0, 1, 1, 1]


def test_el2n_and_margin_from_logits_match_a_direct_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [-3.0, 4.0, 1.0]])
    labels = torch.tensor([0, 2, 0])
    p = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(axis=1, keepdims=True)
    expected_el2n = [np.linalg.norm(p[i] - np.eye(3)[labels[i]]) for i in range(3)]
    expected_margin = [p[i, y] - max(p[i, k] for k in range(3) if k != y) for i, y in enumerate(labels.tolist())]
    np.testing.assert_allclose(el2n_from_logits(logits, labels).numpy(), expected_el2n, rtol=1e-6)
    np.testing.assert_allclose(margin_from_logits(logits, labels).numpy(), expected_margin, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("softmax_outputs", [False, True])
def test_grand_matches_per_sample_autograd(proxy, train, softmax_outputs):
    model = proxy.model
    images, labels = train.images[:6], train.labels[:6]
    gradients, features = last_layer_gradients(model, images, labels, softmax_outputs=softmax_outputs)
    ours = grand_scores(gradients, features)
    for i in range(len(images)):
        model.zero_grad()
        logits = model(images[i : i + 1])
        outputs = F.softmax(logits, dim=1) if softmax_outputs else logits
        F.cross_entropy(outputs, labels[i : i + 1]).backward()
        full = torch.cat([model.classifier.bias.grad.flatten(), model.classifier.weight.grad.flatten()])
        assert math.isclose(float(ours[i]), float(full.double().norm()), rel_tol=1e-4)
    model.zero_grad()


def test_score_selectors_keep_the_highest_scores(train, cache_dir, proxy):
    expected = {
        "forgetting": forgetting_counts(proxy.dynamics["correct"]).float(),
        "el2n": proxy.dynamics["el2n"][:3].sum(dim=0),
    }
    for name, scores in expected.items():
        selected = tiny(name, cache_dir).condense(train, Budget(fraction=0.4), seed=0)
        torch.testing.assert_close(selected.extras["scores"], scores)
        kept = torch.zeros(len(train), dtype=torch.bool)
        kept[selected.extras["indices"]] = True
        for label in range(train.num_classes):
            in_class = train.labels == label
            assert scores[kept & in_class].min() >= scores[~kept & in_class].max()


# -- CCS -------------------------------------------------------------------------------------------


def test_ccs_allocation_matches_the_official_rule():
    # ascending sizes 0, 2, 5, 100: shares 0, min(2, 20//3), min(5, 18//2), min(100, 13)
    counts = allocate_to_strata(20, torch.tensor([0, 5, 100, 2]), torch.Generator())
    assert counts.tolist() == [0, 5, 13, 2]
    assert strata(torch.tensor([0.0, 0.49, 0.5, 1.0]), 2).tolist() == [0, 0, 1, 1]
    assert [auto_beta(p) for p in (0.1, 0.5, 0.7, 0.8, 0.9, 0.95)] == [0.0, 0.0, 0.1, 0.2, 0.3, 0.3]


def test_ccs_never_keeps_the_dropped_hardest_fraction(train, cache_dir, proxy):
    beta, budget = 0.3, Budget(fraction=0.4)
    selected = tiny("ccs", cache_dir, beta=beta).condense(train, budget, seed=0)
    aum = proxy.dynamics["margin"].sum(dim=0)
    torch.testing.assert_close(selected.extras["scores"], aum)
    kept = set(selected.extras["indices"].tolist())
    for label in range(train.num_classes):
        members = train.class_indices(label)
        hardest = members[torch.argsort(aum[members])[: int(beta * len(members))]]
        assert kept.isdisjoint(hardest.tolist())
    assert selected.class_counts().tolist() == budget.per_class_counts(train.class_counts()).tolist()


def test_ccs_covers_the_score_range():
    scores = torch.linspace(0, 1, 1000)
    chosen, dropped = ccs_select(scores, 100, beta=0.2, bins=10, generator=torch.Generator().manual_seed(0))
    assert set(dropped.tolist()) == set(range(200)) and len(chosen) == 100
    # Coverage: every stratum of the kept range is sampled evenly (10 each).
    kept_strata = strata(scores[200:], 10)
    assert torch.bincount(kept_strata[chosen - 200], minlength=10).tolist() == [10] * 10
    # Beta is reduced rather than failing the budget.
    chosen, dropped = ccs_select(scores, 900, beta=0.3, bins=10, generator=torch.Generator())
    assert len(chosen) == 900 and len(dropped) == 100


# -- Moderate-DS, DQ, TDDS --------------------------------------------------------------------------


def test_moderate_keeps_the_middle_band():
    scores = torch.tensor([9.0, 0.0, 5.0, 1.0, 8.0, 3.0, 7.0, 2.0, 6.0, 4.0])
    assert sorted(scores[middle_band(scores, 4)].tolist()) == [3.0, 4.0, 5.0, 6.0]
    values = torch.randn(7, 3, dtype=torch.float64)
    for rows in (values, values[:6]):
        np.testing.assert_allclose(feature_median(rows).numpy(), np.median(rows.numpy(), axis=0))


def test_dq_similarity_matches_explicit_gradients():
    generator = torch.Generator().manual_seed(0)
    g, e = torch.randn(6, 3, generator=generator), torch.randn(6, 4, generator=generator)
    explicit = torch.cat([g, (g[:, :, None] * e[:, None, :]).flatten(1)], dim=1)
    cosine = F.cosine_similarity(explicit[:, None, :], explicit[None, :, :], dim=2)
    torch.testing.assert_close(gradient_similarity(g, e), 0.5 + 0.5 * cosine, rtol=1e-4, atol=1e-5)


def test_graphcut_bins_partition_and_diversity():
    # Two tight clusters; GraphCut's redundancy penalty alternates between them.
    similarity = torch.full((8, 8), 0.1)
    similarity[:4, :4] = 0.9
    similarity[4:, 4:] = 0.9
    similarity.fill_diagonal_(1.0)
    first_two = graphcut_greedy(similarity, torch.ones(8, dtype=torch.bool), 2).tolist()
    assert (first_two[0] < 4) != (first_two[1] < 4)
    bins = graphcut_bins(similarity, 4)
    assert torch.bincount(bins, minlength=4).tolist() == [2, 2, 2, 2]


def test_tdds_matches_the_official_window_loop():
    generator = torch.Generator().manual_seed(0)
    epochs, n, window, decay = 8, 5, 4, 0.9
    probabilities = F.softmax(torch.randn(epochs, n, 3, generator=generator) * 2, dim=2)
    change = torch.zeros(epochs, n)
    for t in range(1, epochs):
        change[t] = prediction_change(probabilities[t], probabilities[t - 1])
    expected = np.zeros(n)
    for k in range(epochs - window + 1):  # importance_evaluation.py, literally
        kd = []
        for j in range(window - 1):
            log = np.log(probabilities[k + j + 1].numpy() + 1e-8) - np.log(probabilities[k + j].numpy() + 1e-8)
            kd.append(np.abs(probabilities[k + j + 1].numpy() * log).sum(axis=1))
        kd = np.array(kd)
        norm = np.linalg.norm(kd - kd.sum(0) / (window - 1), axis=0)
        expected += norm * decay * (1 - decay) ** (epochs - window - k)
    ours = tdds_scores(change, trajectory_len=epochs, window=window, decay=decay)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5)


# -- the benchmark: selectors and distillation in one table ---------------------------------------


#: A one-model, 40-epoch cut of ``fast`` so the default test run stays short; the same test runs
#: under the real ``fast`` protocol with ``-m slow``.
SMOKE_PROTOCOL = dataclasses.replace(
    get_protocol("fast"),
    name="fast_smoke_selectors",
    num_models=1,
    recipe=dataclasses.replace(get_protocol("fast").recipe, epochs=40),
    description="test-only cut of fast: 1 model, 40 epochs",
)


@pytest.mark.parametrize(
    "protocol", [SMOKE_PROTOCOL, pytest.param(get_protocol("fast"), marks=pytest.mark.slow)], ids=lambda p: p.name
)
def test_herding_and_kcenter_cells_share_a_table_with_random_and_dm(protocol, tmp_path, cache_dir):
    from bench import CellSpec, run_cell
    from leaderboard import build_table, load_records

    proxy_options = {"proxy_epochs": TINY_EPOCHS, "cache_dir": str(cache_dir)}
    cells = {"random": {}, "herding": proxy_options, "kcenter": proxy_options}
    if "dm" in list_methods():
        cells["dm"] = {"iterations": 10}
    for method, options in cells.items():
        spec = CellSpec(method=method, dataset="digits", protocol=protocol, seed=0, ipc=10, method_options=options)
        run_cell(spec, results_dir=tmp_path, device="cpu", save_set=False)
    loaded = load_records(tmp_path)
    assert not loaded.problems
    table = build_table(loaded.records)
    for method in cells:
        rows = table[
            (table["method"] == method) & (table["dataset"] == "digits") & (table["protocol"] == protocol.name)
        ]
        assert len(rows) == 1, f"no {method} row in the table"
    models = protocol.num_models
    for record in loaded.records:
        accuracies = record.results["convnet3"].accuracies
        assert len(accuracies) == models and all(math.isfinite(a) and 0.1 < a <= 1 for a in accuracies)
        assert record.ipc == 10


# -- slow: the accuracy acceptance check ----------------------------------------------------------


@pytest.mark.slow
def test_half_of_digits_stays_within_three_points_of_full(tmp_path):
    from bench import CellSpec, run_cell

    def accuracy(method: str, fraction: float | None) -> float:
        options = {} if method in ("random", "full") else {"cache_dir": str(tmp_path / "proxy_cache")}
        spec = CellSpec(
            method=method,
            dataset="digits",
            protocol="fast",
            seed=0,
            ipc=10 if fraction is None else None,
            fraction=fraction,
            method_options=options,
        )
        return run_cell(spec, results_dir=tmp_path, device="cpu", save_set=False).record.results["convnet3"].mean

    full = accuracy("full", None)
    assert full > 0.95
    for method in ("random", "herding", "el2n", "ccs"):
        assert accuracy(method, 0.5) >= full - 0.03, method
