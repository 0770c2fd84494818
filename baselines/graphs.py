"""Graph baselines at the same budget as a graph distiller: random graphs, herding, the full split.

Budgets for graph datasets (see :func:`data.graphs.byte_budget`): ``ipc`` keeps that many graphs
per class; ``fraction`` keeps graphs up to that share of the full training split's *bytes*, each
class getting its share of the bytes in proportion to its size, so a selection can be compared
with a Mirage set at the same byte budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from data.graphs import GraphDataset, GraphMethod, GraphSet, byte_budget, graph_set_of
from data.methods import Family, MethodConfig, register_method
from data.provenance import ResourceMeter
from data.seeding import make_generator, seeded_torch
from data.synthetic import Budget
from evaluation.gnn import collate, create_gnn

#: Bytes of one graph in the compact serialization when every array fits ``uint8`` (an estimate;
#: the final size is checked exactly).
_PER_GRAPH_OVERHEAD = 3


def _graph_costs(train: GraphDataset) -> Tensor:
    """Approximate serialized bytes per graph: nodes, 3 per undirected edge, counts and label."""
    undirected = (train.edge_ptr[1:] - train.edge_ptr[:-1]) // 2
    return train.graph_sizes() + 3 * undirected + _PER_GRAPH_OVERHEAD


def take_in_order(train: GraphDataset, orders: list[Tensor], budget: Budget) -> Tensor:
    """Keep graphs from each class's preference ``orders`` until the budget is used (sorted indices).

    ``ipc``: the first ``ipc`` of every class. ``fraction``: walk each class's order and keep every
    graph that still fits its class's share of the byte cap; then drop the last kept graphs of the
    largest class until the exact serialized size fits the cap.
    """
    if budget.is_full:
        return torch.arange(len(train))
    cap = byte_budget(train, budget)
    if cap is None:
        counts = budget.per_class_counts(train.class_counts())
        return torch.sort(torch.cat([order[: int(counts[c])] for c, order in enumerate(orders)])).values
    costs = _graph_costs(train)
    header = GraphSet(graphs=train.subset([]), kind="graphs").num_bytes()
    shares = train.class_counts().double() / len(train) * (cap - header)
    kept: list[list[int]] = []
    for c, order in enumerate(orders):
        used, chosen = 0, []
        for index in order.tolist():
            if used + int(costs[index]) <= shares[c]:
                chosen.append(index)
                used += int(costs[index])
        kept.append(chosen)
    while True:
        indices = torch.sort(torch.tensor([i for chosen in kept for i in chosen], dtype=torch.long)).values
        if len(indices) and GraphSet(graphs=train.subset(indices), kind="graphs").num_bytes() <= cap:
            return indices
        largest = max(range(len(kept)), key=lambda c: len(kept[c]))
        if len(kept[largest]) <= 1:
            raise ValueError(f"cannot fit one graph per class into {cap} bytes; raise the budget")
        kept[largest].pop()


class GraphSelector(GraphMethod):
    """A graph method that keeps real training graphs."""

    family: ClassVar[Family] = "selection"

    def preference(self, train: GraphDataset, *, seed: int, device: torch.device | str) -> list[Tensor]:
        """Every class's graph indices, most preferred first."""
        raise NotImplementedError

    def condense(  # type: ignore[override]
        self,
        train: GraphDataset,
        budget: Budget,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> GraphSet:
        """Select graphs by :meth:`preference` under ``budget``; returns the validated set."""
        budget = budget if self.uses_budget else Budget()  # the whole split, whatever was asked
        with ResourceMeter(torch.device(device)) as meter:
            indices = take_in_order(train, self.preference(train, seed=seed, device=device), budget)
        result = graph_set_of(train.subset(indices), budget=budget, provenance=self.provenance(train, seed, meter))
        return result


@dataclass(frozen=True)
class RandomGraphsConfig(MethodConfig):
    """Random graphs have no options."""


@register_method("random_graphs")
class RandomGraphs(GraphSelector):
    """Uniformly random real graphs of every class at the budget (Mirage's "Random" rows)."""

    config_class = RandomGraphsConfig

    def preference(self, train: GraphDataset, *, seed: int, device: torch.device | str) -> list[Tensor]:
        generator = make_generator(seed)
        orders = []
        for c in range(train.num_classes):
            members = train.class_indices(c)
            orders.append(members[torch.randperm(len(members), generator=generator)])
        return orders


@dataclass(frozen=True)
class HerdingGraphsConfig(MethodConfig):
    """Herding on the readout of a fixed, randomly initialised GNN (seeded by the cell seed).

    Attributes:
        embed_model: graph model whose untrained sum-readout embedding is herded.
        hidden: its width.
        layers: its message-passing layers.
    """

    embed_model: str = "gin"
    hidden: int = 128
    layers: int = 2


@register_method("herding_graphs")
class HerdingGraphs(GraphSelector):
    """Herding (Welling 2009): per class, greedily keep the graph that brings the running mean of
    the kept embeddings closest to the class mean."""

    config_class = HerdingGraphsConfig

    def embeddings(self, train: GraphDataset, *, seed: int, device: torch.device | str) -> Tensor:
        """Sum-readout embeddings of a seeded untrained GNN (``G x hidden``)."""
        config: HerdingGraphsConfig = self.config  # type: ignore[assignment]
        with seeded_torch(seed, device):
            model = create_gnn(
                config.embed_model,
                num_node_labels=train.num_node_labels,
                num_edge_labels=train.num_edge_labels,
                num_classes=train.num_classes,
                hidden=config.hidden,
                layers=config.layers,
            ).to(device)
        model.eval()
        with torch.no_grad():
            return model.embed(collate(train).to(device)).double().cpu()

    def preference(self, train: GraphDataset, *, seed: int, device: torch.device | str) -> list[Tensor]:
        features = self.embeddings(train, seed=seed, device=device)
        return [
            herding_order(features[train.class_indices(c)], train.class_indices(c)) for c in range(train.num_classes)
        ]


def herding_order(features: Tensor, indices: Tensor) -> Tensor:
    """``indices`` in herding order of their ``features`` (Welling's argmin rule)."""
    mean = features.mean(0)
    chosen: list[int] = []
    available = torch.ones(len(features), dtype=torch.bool)
    running = torch.zeros_like(mean)
    for step in range(len(features)):
        candidate_means = (running.unsqueeze(0) + features) / (step + 1)
        distance = (candidate_means - mean).norm(dim=1)
        distance[~available] = torch.inf
        best = int(torch.argmin(distance))
        chosen.append(best)
        available[best] = False
        running += features[best]
    return indices[torch.tensor(chosen, dtype=torch.long)]


@dataclass(frozen=True)
class FullGraphsConfig(MethodConfig):
    """The whole training split has no options."""


@register_method("full_graphs")
class FullGraphs(GraphSelector):
    """The whole training split: the upper bound, run once per (dataset, protocol, seed)."""

    family: ClassVar[Family] = "reference"
    config_class = FullGraphsConfig
    uses_budget: ClassVar[bool] = False

    def preference(self, train: GraphDataset, *, seed: int, device: torch.device | str) -> list[Tensor]:
        return [train.class_indices(c) for c in range(train.num_classes)]
