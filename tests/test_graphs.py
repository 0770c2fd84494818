"""Graph side on real MUTAG: TU reader, tree codes, FP-growth, set format, GNNs, Mirage, benchmark cells."""

from __future__ import annotations

import dataclasses
import itertools
import random
import sys
from pathlib import Path

import pytest
import torch
import yaml

from baselines.graphs import FullGraphs, HerdingGraphs, RandomGraphs, herding_order
from bench import CellSpec, resolve_cell, run_cell
from condense import create_method, list_methods
from condense._fpgrowth import ItemsetLimitError, fp_growth
from condense._trees import ExplicitTree, TreeInterner, adjacency, computation_tree, explicit_tree_code, tree_codes
from condense.mirage import Mirage, MirageConfig
from data import DATASETS, dataset_modality, list_datasets, load_dataset
from data.graphs import (
    GraphDataset,
    GraphSet,
    full_set_bytes,
    grakel_data_folder,
    graph_set_of,
    read_tu,
)
from data.synthetic import Budget
from evaluation.gnn import collate, create_gnn, list_gnns
from evaluation.protocols import GraphProtocol, evaluate_set, get_protocol, list_protocols
from evaluation.protocols.graph import epoch_order
from leaderboard import build_table, load_records
from leaderboard.records import ModelResult, RecordError
from leaderboard.table import to_markdown


@pytest.fixture(scope="module")
def mutag() -> GraphDataset:
    return DATASETS.get("mutag").loader()


@pytest.fixture(scope="module")
def splits():
    return load_dataset("mutag", seed=0)


@pytest.fixture(scope="module")
def mirage_set(splits) -> GraphSet:
    return create_method("mirage", **MUTAG_MIRAGE).condense(splits.train, Budget(fraction=0.1), seed=0)


#: Mirage's defaults (configs/method/mirage.yaml), the MUTAG setting.
MUTAG_MIRAGE = {"hops": 2, "support": 0.5, "drop_shared": False}
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


# -- data ----------------------------------------------------------------------------------------


def test_mutag_from_grakel_wheel_without_importing_grakel(mutag):
    assert grakel_data_folder("MUTAG") is not None
    assert "grakel" not in sys.modules  # found with find_spec, never imported
    assert len(mutag) == 188
    assert mutag.class_names == ("-1", "1") and mutag.class_counts().tolist() == [63, 125]
    assert mutag.num_nodes == 3371 and mutag.num_edges == 7442  # 3,721 undirected edges, both directions
    assert (mutag.num_node_labels, mutag.num_edge_labels) == (7, 4)
    # Every edge has its reverse with the same label.
    forward = {(u, v, e) for u, v, e in zip(*mutag.edge_index.tolist(), mutag.edge_labels.tolist(), strict=True)}
    assert all((v, u, e) in forward for u, v, e in forward)


def test_stratified_seeded_splits(splits):
    train, val, test = splits
    assert (len(train), len(val), len(test)) == (151, 19, 18)
    assert test.class_counts().tolist() == [6, 12] and val.class_counts().tolist() == [6, 13]
    again = load_dataset("mutag", seed=0)
    assert torch.equal(again.test.labels, test.labels) and again.train.fingerprint() == train.fingerprint()
    assert load_dataset("mutag", seed=1).train.fingerprint() != train.fingerprint()


def test_tu_reader_on_a_small_folder(tmp_path):
    folder = tmp_path / "TOY"
    folder.mkdir()
    # Graph 1: triangle 1-2-3 listed one way only plus a self loop; graph 2: edge 4-5 both ways.
    (folder / "TOY_A.txt").write_text("1, 2\n2, 3\n3, 1\n2, 2\n4, 5\n5, 4\n")
    (folder / "TOY_graph_indicator.txt").write_text("1\n1\n1\n2\n2\n")
    (folder / "TOY_graph_labels.txt").write_text("3\n-1\n")
    (folder / "TOY_node_labels.txt").write_text("10\n20\n10\n20\n30\n")
    (folder / "TOY_edge_labels.txt").write_text("1\n2\n1\n1\n5\n5\n")
    (folder / "TOY_node_attributes.txt").write_text("0.5, 1\n1, 2\n0, 0\n1, 1\n2, 2\n")
    graphs = read_tu(folder)
    assert graphs.name == "toy" and len(graphs) == 2 and graphs.class_names == ("-1", "3")
    assert graphs.labels.tolist() == [1, 0] and graphs.node_labels.tolist() == [0, 1, 0, 1, 2]
    assert graphs.num_edges == 8 and graphs.edge_ptr.tolist() == [0, 6, 8]  # self loop dropped, made symmetric
    assert graphs.node_attributes is not None and graphs.node_attributes.shape == (5, 2)
    nodes, edges, labels = graphs.graph(1)
    assert nodes.tolist() == [1, 2] and edges.tolist() == [[0, 1], [1, 0]] and labels.tolist() == [2, 2]
    with pytest.raises(FileNotFoundError, match="download=true"):
        load_dataset("tu", tu_name="NOPE", root=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load_dataset("nope")


def test_graph_set_bytes_round_trip(splits, mirage_set):
    train = splits.train
    full = graph_set_of(train, budget=Budget())
    back = GraphSet.from_bytes(full.to_bytes())
    assert torch.equal(back.graphs.edge_index, train.edge_index) and torch.equal(back.graphs.labels, train.labels)
    assert full.num_bytes() == full_set_bytes(train) == 12238
    forest = GraphSet.from_bytes(mirage_set.to_bytes())
    for name in ("root_mask", "node_degrees", "counts"):
        assert torch.equal(getattr(forest, name), getattr(mirage_set, name))
    assert torch.equal(forest.graphs.edge_index, mirage_set.graphs.edge_index)
    assert torch.equal(forest.graphs.edge_labels, mirage_set.graphs.edge_labels)
    with pytest.raises(ValueError, match="not a condense-bench graph set"):
        GraphSet.from_bytes(b"PK\x03\x04junk")


# -- computation trees ---------------------------------------------------------------------------


def _tree(labels, parent, edge_labels) -> ExplicitTree:
    return ExplicitTree(labels, parent, edge_labels, [0] * len(labels))


def test_tree_codes_equal_exactly_for_isomorphic_trees():
    interner = TreeInterner()
    # Root a(0) with children b(1) via edge 0 and c(2) via edge 1; c has a child d(3).
    base = explicit_tree_code(_tree([0, 1, 2, 3], [-1, 0, 0, 2], [-1, 0, 1, 0]), interner)
    # The same tree with the children listed in the other order.
    swapped = explicit_tree_code(_tree([0, 2, 1, 3], [-1, 0, 0, 1], [-1, 1, 0, 0]), interner)
    assert base == swapped
    different = [
        _tree([0, 1, 2, 3], [-1, 0, 0, 1], [-1, 0, 1, 0]),  # d hangs under b instead of c
        _tree([0, 1, 2, 3], [-1, 0, 0, 2], [-1, 1, 0, 0]),  # edge labels of b and c exchanged
        _tree([0, 1, 2, 4], [-1, 0, 0, 2], [-1, 0, 1, 0]),  # leaf label differs
        _tree([0, 1, 2], [-1, 0, 0], [-1, 0, 1]),  # leaf missing
    ]
    codes = {explicit_tree_code(tree, interner) for tree in different}
    assert base not in codes and len(codes) == len(different)


def _graph(num_nodes: int, edges: list[tuple[int, int]], labels: list[int] | None = None) -> GraphDataset:
    both = edges + [(v, u) for u, v in edges]
    both.sort()
    return GraphDataset(
        node_labels=torch.tensor(labels or [0] * num_nodes),
        edge_index=torch.tensor(both, dtype=torch.long).T.reshape(2, -1),
        edge_labels=torch.zeros(len(both), dtype=torch.long),
        node_ptr=torch.tensor([0, num_nodes]),
        edge_ptr=torch.tensor([0, len(both)]),
        labels=torch.tensor([0]),
        num_classes=1,
        num_node_labels=2,
        num_edge_labels=1,
    )


def test_wl_codes_match_computation_trees():
    interner = TreeInterner()
    triangle, hexagon = _graph(3, [(0, 1), (1, 2), (2, 0)]), _graph(6, [(i, (i + 1) % 6) for i in range(6)])
    # A triangle and a hexagon have isomorphic computation trees at every depth (WL cannot tell them apart).
    for depth in (1, 2, 3):
        assert set(tree_codes(triangle, depth, interner).tolist()) == set(tree_codes(hexagon, depth, interner).tolist())
    path = _graph(3, [(0, 1), (1, 2)])
    codes = tree_codes(path, 2, interner).tolist()
    assert codes[0] == codes[2] != codes[1]  # both ends alike, the middle differs
    labelled = _graph(3, [(0, 1), (1, 2)], [0, 0, 1])
    assert len(set(tree_codes(labelled, 2, interner).tolist())) == 3  # a label breaks the symmetry
    # Depth 1 sees degrees: the path's middle node (degree 2) differs from a triangle node only at depth 2.
    assert tree_codes(path, 1, interner)[1] == tree_codes(triangle, 1, interner)[0]
    assert tree_codes(path, 2, interner)[1] != tree_codes(triangle, 2, interner)[0]


def test_wl_codes_equal_explicit_unrolling_on_mutag(mutag):
    graphs = mutag.subset(range(40))
    neighbours, labels = adjacency(graphs), graphs.node_labels.tolist()
    for depth in (1, 2, 3):
        interner = TreeInterner()
        codes = tree_codes(graphs, depth, interner).tolist()
        for node in range(0, graphs.num_nodes, 7):
            tree = computation_tree(neighbours, labels, node, depth)
            # Children include the parent: a depth-2 tree of a degree-d node has 1 + d + sum of degrees nodes.
            if depth == 2:
                assert len(tree.labels) == 1 + len(neighbours[node]) + sum(
                    len(neighbours[u]) for u, _ in neighbours[node]
                )
            assert explicit_tree_code(tree, interner) == codes[node]


# -- FP-growth -----------------------------------------------------------------------------------


def _brute_force(transactions: list[set[int]], min_support: int) -> dict[tuple[int, ...], int]:
    items = sorted(set().union(*transactions))
    found = {}
    for size in range(1, len(items) + 1):
        for itemset in itertools.combinations(items, size):
            support = sum(1 for t in transactions if set(itemset) <= t)
            if support >= min_support:
                found[itemset] = support
    return found


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fp_growth_matches_brute_force(seed):
    rng = random.Random(seed)
    transactions = [set(rng.sample(range(9), rng.randint(1, 7))) for _ in range(40)]
    for min_support in (1, 4, 10, 25):
        expected = _brute_force(transactions, min_support)
        assert fp_growth(transactions, min_support) == expected
        assert fp_growth(transactions, min_support, max_size=2) == {k: v for k, v in expected.items() if len(k) <= 2}
    assert fp_growth(transactions, 41) == {}
    with pytest.raises(ItemsetLimitError):
        fp_growth(transactions, 1, max_itemsets=10)


# -- GNNs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_gnns())
def test_root_embeddings_on_forests_equal_node_embeddings(name, splits):
    train = splits.train.subset(range(30))
    interner = TreeInterner()
    codes = tree_codes(train, 2, interner)
    from condense.mirage import MinedTreeSet, build_forests

    distinct = sorted(set(codes.tolist()))
    forests = build_forests([MinedTreeSet(0, (c,), 1) for c in distinct], train, codes, 2, sampling="uniform")
    first = {c: int(torch.nonzero(codes == c)[0]) for c in distinct}
    torch.manual_seed(0)
    model = create_gnn(name, num_node_labels=7, num_edge_labels=4, num_classes=2, hidden=32, layers=2).eval()
    with torch.no_grad():
        on_graphs = model.node_embeddings(collate(train))
        on_forests = model.node_embeddings(collate(forests))
    roots = torch.nonzero(forests.root_mask, as_tuple=True)[0]
    torch.testing.assert_close(on_forests[roots], on_graphs[[first[c] for c in distinct]], atol=1e-5, rtol=1e-5)


def test_readouts_and_unknown_model(splits):
    batch = collate(splits.val)
    summed = create_gnn("gin", num_node_labels=7, num_edge_labels=4, num_classes=2, hidden=16, readout="sum")
    mean = create_gnn("gin", num_node_labels=7, num_edge_labels=4, num_classes=2, hidden=16, readout="mean")
    mean.load_state_dict(summed.state_dict())
    sizes = splits.val.graph_sizes().unsqueeze(1).float()
    torch.testing.assert_close(summed.embed(batch) / sizes, mean.embed(batch))
    with pytest.raises(ValueError, match="valid graph models: gat, gcn, gin"):
        create_gnn("sage", num_node_labels=7, num_edge_labels=4, num_classes=2)


# -- methods -------------------------------------------------------------------------------------


def test_graph_methods_registered():
    assert {"mirage", "random_graphs", "herding_graphs", "full_graphs"} <= set(list_methods())
    assert all(getattr(create_method(n), "modality", "image") == "graph" for n in ("mirage", "random_graphs"))
    assert getattr(create_method("dm"), "modality", "image") == "image"


def test_mirage_set_is_small_and_well_formed(splits, mirage_set):
    train = splits.train
    assert mirage_set.kind == "forest" and mirage_set.sampling == "uniform"
    assert mirage_set.class_counts().min() >= 1
    assert mirage_set.num_bytes() * 10 <= full_set_bytes(train)  # at least 10x smaller than the full split
    assert mirage_set.provenance["distill_seconds"] < 5 and mirage_set.provenance["method"] == "mirage"
    # Supports are real counts: a tree-set's trees all occur in exactly `count` training graphs of its class.
    interner = TreeInterner()
    codes = tree_codes(train, 2, interner)
    owner = train.graph_of_node()
    transactions = [set(codes[owner == g].tolist()) for g in range(len(train))]
    forests = mirage_set.graphs
    parent = {child: target for child, target in zip(*forests.edge_index.tolist(), strict=True)}
    edge_label = dict(zip(forests.edge_index[0].tolist(), forests.edge_labels.tolist(), strict=True))
    for i in range(len(mirage_set)):
        first, stop = int(forests.node_ptr[i]), int(forests.node_ptr[i + 1])
        roots = [n for n in range(first, stop) if mirage_set.root_mask[n]] + [stop]
        trees = set()
        for root, end in zip(roots[:-1], roots[1:], strict=True):
            tree = _tree(
                forests.node_labels[root:end].tolist(),
                [-1] + [parent[n] - root for n in range(root + 1, end)],
                [-1] + [edge_label[n] for n in range(root + 1, end)],
            )
            trees.add(explicit_tree_code(tree, interner))
        label = int(mirage_set.labels[i])
        support = sum(1 for t, y in zip(transactions, train.labels.tolist(), strict=True) if y == label and trees <= t)
        assert support == int(mirage_set.counts[i]) >= 0.5 * int((train.labels == label).sum())
    # Budgets cap the set: ipc per class, or a share of the bytes.
    capped = Mirage(MirageConfig(**MUTAG_MIRAGE)).condense(train, Budget(ipc=2), seed=0)
    assert capped.class_counts().tolist() == [2, 2]
    small = Mirage(MirageConfig(**MUTAG_MIRAGE)).condense(train, Budget(fraction=0.02), seed=0)
    assert small.num_bytes() <= 0.02 * full_set_bytes(train) and len(small) < len(mirage_set)
    # Dropping tree-sets shared with the other class (the NCI1 scripts) leaves MUTAG's minority class empty.
    with pytest.raises(ValueError, match=r"class\(es\) \[0\] .* lower the support"):
        Mirage(MirageConfig(hops=2, support=0.5, drop_shared=True)).condense(train, Budget(fraction=1.0), seed=0)


def test_selectors_respect_byte_budget(splits):
    train = splits.train
    cap = int(0.05 * full_set_bytes(train))
    for method in (RandomGraphs(), HerdingGraphs()):
        chosen = method.condense(train, Budget(fraction=0.05), seed=0)
        assert chosen.num_bytes() <= cap and chosen.class_counts().min() >= 1
        assert chosen.num_bytes() > cap * 0.6  # the budget is used, not wasted
    per_class = RandomGraphs().condense(train, Budget(ipc=3), seed=0)
    assert per_class.class_counts().tolist() == [3, 3]
    assert len(FullGraphs().condense(train, Budget(ipc=1), seed=0)) == len(train)
    # Herding keeps the running mean of the kept points nearest the mean (2): 1, then 4 (mean 2.5), ...
    features = torch.tensor([[1.0], [10.0], [4.0], [-7.0]])
    assert herding_order(features, torch.arange(4)).tolist() == [0, 2, 3, 1]


def test_modality_is_checked():
    assert dataset_modality("mutag") == "graph" and set(list_datasets(modality="graph")) == {"mutag", "tu"}
    with pytest.raises(ValueError, match="works on graph datasets"):
        resolve_cell(CellSpec(method="mirage", dataset="digits", protocol="fast", seed=0, ipc=1))
    with pytest.raises(ValueError, match="works on image datasets"):
        resolve_cell(CellSpec(method="dm", dataset="mutag", protocol="graph", seed=0, ipc=1))
    with pytest.raises(
        ValueError, match="protocol 'fast' evaluates image sets.*valid graph protocols: graph, graph_fast"
    ):
        resolve_cell(CellSpec(method="mirage", dataset="mutag", protocol="fast", seed=0, fraction=0.1))


# -- records -------------------------------------------------------------------------------------


def test_model_result_roc_auc_is_optional_and_checked():
    plain = ModelResult.from_accuracies([0.5, 0.7])
    assert "roc_auc" not in plain.to_dict()
    data = {**plain.to_dict(), "roc_auc": [0.6, 0.9]}
    assert ModelResult.from_dict(data).roc_auc == (0.6, 0.9)
    with pytest.raises(RecordError, match="roc_auc"):
        ModelResult.from_dict({**plain.to_dict(), "roc_auc": [0.6]})
    with pytest.raises(RecordError, match="roc_auc"):
        ModelResult.from_dict({**plain.to_dict(), "roc_auc": [0.6, 1.5]})


# -- benchmark cells -----------------------------------------------------------------------------

SMOKE = GraphProtocol(name="graph_smoke_test", version=1, models=("gin",), num_models=1, epochs=15, hidden=16)


def test_graph_cells_write_records_and_table_rows(tmp_path):
    specs = [
        CellSpec(method=m, dataset="mutag", protocol=SMOKE, seed=0, fraction=0.05)
        for m in ("mirage", "random_graphs", "full_graphs")
    ]
    outcomes = [run_cell(spec, results_dir=tmp_path, device="cpu") for spec in specs]
    assert not any(o.skipped for o in outcomes)
    mirage, random_graphs, full = (o.record for o in outcomes)
    assert mirage.family == "distillation" and mirage.fraction == 0.05 and full.fraction is None
    assert mirage.costs.set_bytes * 10 <= full.costs.set_bytes and mirage.costs.distill_seconds > 0
    assert random_graphs.costs.set_bytes <= 0.05 * full.costs.set_bytes
    assert len(mirage.results["gin"].roc_auc) == 1 and mirage.protocol_config["set_kind"] == "forest"
    assert (tmp_path / mirage.set_path).is_file()
    assert GraphSet.load(tmp_path / mirage.set_path).num_bytes() == mirage.costs.set_bytes
    assert run_cell(specs[0], results_dir=tmp_path, device="cpu").skipped
    loaded = load_records(tmp_path)
    assert not loaded.problems and len(loaded.records) == 3
    table = build_table(loaded.records)
    row = table[table["method"] == "mirage"].iloc[0]
    assert row["roc_auc_mean"] == mirage.results["gin"].roc_auc[0]
    assert row["gain_vs_random"] == mirage.results["gin"].mean - random_graphs.results["gin"].mean
    assert "ROC-AUC (%)" in to_markdown(table) and "*random_graphs*" in to_markdown(table)


# -- Mirage against random graphs at the same bytes ------------------------------------------------


def _gin_mirage_vs_random(seeds: range) -> dict[str, float]:
    """Mean test accuracy and ROC-AUC of GIN on Mirage and on random graphs at Mirage's exact byte size."""
    protocol = dataclasses.replace(get_protocol("graph_fast"), models=("gin",), num_models=1)
    scores: dict[str, list[float]] = {"mirage_acc": [], "mirage_auc": [], "random_acc": [], "random_auc": []}
    for seed in seeds:
        train, val, test = load_dataset("mutag", seed=seed)
        mirage = create_method("mirage").condense(train, Budget(fraction=0.1), seed=seed)
        same_bytes = Budget(fraction=mirage.num_bytes() / full_set_bytes(train))
        random_graphs = create_method("random_graphs").condense(train, same_bytes, seed=seed)
        assert random_graphs.num_bytes() <= mirage.num_bytes()
        for name, graph_set in (("mirage", mirage), ("random", random_graphs)):
            result = evaluate_set(graph_set, test, protocol, val=val, seed=seed).per_model["gin"]
            scores[f"{name}_acc"].append(result.accuracies[0])
            scores[f"{name}_auc"].append(result.roc_aucs[0])
    return {key: sum(values) / len(values) for key, values in scores.items()}


def test_mirage_gin_ranks_graphs_as_well_as_random_graphs_at_the_same_bytes():
    # Measured with the validation-chosen support 0.4 (graph_fast, GIN, 1 run per seed; seeds 0-2):
    # Mirage ROC-AUC 0.847 vs random 0.852, accuracy 0.648 vs 0.648. On three MUTAG splits the two are
    # within noise (the support 0.5 read off test gave 0.866 vs 0.838); Mirage's trees rank test
    # graphs far above chance (0.5) at the bytes of a few whole graphs.
    means = _gin_mirage_vs_random(range(3))
    assert means["mirage_auc"] >= 0.8 and means["mirage_acc"] >= 0.6
    assert means["mirage_auc"] >= means["random_auc"] - 0.02


@pytest.mark.slow
def test_mirage_gin_beats_random_graphs_over_ten_splits():
    # Measured with the validation-chosen support 0.4 over seeds 0-9: ROC-AUC 0.893 vs 0.875,
    # accuracy 0.661 vs 0.672 (the support 0.5 read off test gave 0.916 vs 0.878 and 0.667 vs 0.661).
    means = _gin_mirage_vs_random(range(10))
    assert means["mirage_auc"] > means["random_auc"]
    assert means["mirage_acc"] >= means["random_acc"] - 0.02


def test_graph_configs_name_registered_entries():
    assert set(list_protocols(modality="graph")) == {"graph", "graph_fast"}
    for stem in ("mutag", "tu"):
        assert yaml.safe_load((CONFIGS / "dataset" / f"{stem}.yaml").read_text())["name"] in DATASETS
    assert get_protocol("graph").models == ("gcn", "gin", "gat")


def test_epoch_sampling_uniform_and_by_support(mirage_set):
    generator = torch.Generator().manual_seed(0)
    uniform = epoch_order(mirage_set, generator)
    assert sorted(uniform.tolist()) == list(range(len(mirage_set)))  # every tree-set once per epoch
    weighted = dataclasses.replace(mirage_set, sampling="freq", counts=torch.ones(len(mirage_set), dtype=torch.long))
    weighted.counts[0] = 1000
    drawn = epoch_order(weighted, generator)
    assert len(drawn) == len(mirage_set) and (drawn == 0).float().mean() > 0.8
