"""The graph evaluation protocol: train GNNs on a (distilled) graph set, select on validation, test once.

For every evaluation model (GCN, GIN, GAT) and each of ``num_models`` runs (seeds derived from
the cell seed), a fresh model is trained with Adam on the set for ``epochs`` epochs. After every
epoch it is scored on the validation split; the epoch with the best validation score (ROC-AUC for
two classes, else accuracy; the first best on ties) gives the reported test accuracy and ROC-AUC.
The test split never influences a choice. Training on a Mirage forest sums (or averages) the root
embeddings of each tree-set; validation and test use the real graphs with all nodes pooled.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor

from data.graphs import GraphDataset, GraphSet
from data.seeding import derive_seed, make_generator, seeded_torch
from evaluation.gnn import GraphBatch, Readout, collate, create_gnn
from evaluation.protocols.base import EvaluationProtocol, EvaluationRequest, EvaluationResult, ModelResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class GraphProtocol(EvaluationProtocol):
    """A fixed graph evaluation recipe.

    Attributes:
        models: graph model names (``gcn``, ``gin``, ``gat``).
        num_models: runs per model and set (each its own derived seed).
        epochs: training epochs on compressed sets.
        full_data_epochs: training epochs on the whole training split.
        lr: Adam learning rate.
        weight_decay: Adam (coupled L2) weight decay.
        batch_size: training units per step.
        hidden: hidden width.
        layers: message-passing layers (at most Mirage's ``hops`` for exact root embeddings).
        dropout: dropout before the classifier.
        readout: ``sum`` or ``mean``.
    """

    modality: ClassVar[str] = "graph"

    models: tuple[str, ...] = ("gcn", "gin", "gat")
    num_models: int = 5
    epochs: int = 300
    full_data_epochs: int = 300
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.5
    readout: Readout = "sum"

    def run(self, compressed: GraphSet, request: EvaluationRequest) -> EvaluationResult:
        """See :func:`evaluate_graph_set` (``val`` is required; ``train`` is not used)."""
        if request.val is None:
            raise ValueError(f"graph protocol {self.name!r} selects the epoch on the validation split: pass val=")
        if request.parallel is not None and request.parallel.world_size > 1:
            raise ValueError(f"graph protocol {self.name!r} runs in one process, not data-parallel (torchrun)")
        return evaluate_graph_set(
            compressed,
            request.val,
            request.test,
            self,
            seed=request.seed,
            device=request.device,
            progress=request.progress,
        )


@dataclass(frozen=True)
class GraphModelResult(ModelResult):
    """The runs of one graph model: test accuracy and ROC-AUC at each run's best validation epoch."""

    roc_aucs: tuple[float, ...] = ()
    best_epochs: tuple[int, ...] = ()

    def metrics(self) -> dict[str, tuple[float, ...]]:
        """The test ROC-AUC of every run (when every run has one: both classes in the test split)."""
        return {"roc_auc": self.roc_aucs} if all(math.isfinite(v) for v in self.roc_aucs) else {}


def scores(model: torch.nn.Module, batch: GraphBatch, labels: Tensor) -> tuple[float, float]:
    """``(accuracy, ROC-AUC)`` of ``model`` on a collated split (AUC: one-vs-rest macro for >2 classes)."""
    model.eval()
    with torch.no_grad():
        probabilities = torch.softmax(model(batch), dim=1).cpu()
    accuracy = float((probabilities.argmax(1) == labels).double().mean())
    return accuracy, roc_auc(probabilities, labels)


def roc_auc(probabilities: Tensor, labels: Tensor) -> float:
    """ROC-AUC of class probabilities (``nan`` when the labels hold a single class)."""
    y = labels.numpy()
    if len(np.unique(y)) < 2:
        return math.nan
    p = probabilities.double().numpy()
    if p.shape[1] == 2:
        return float(roc_auc_score(y, p[:, 1]))
    return float(roc_auc_score(y, p, multi_class="ovr", labels=list(range(p.shape[1]))))


def epoch_order(graph_set: GraphSet, generator: torch.Generator) -> Tensor:
    """The training units of one epoch: a shuffle (``uniform``) or draws proportional to support."""
    n = len(graph_set)
    if graph_set.sampling == "freq":
        assert graph_set.counts is not None
        return torch.multinomial(graph_set.counts.double(), n, replacement=True, generator=generator)
    return torch.randperm(n, generator=generator)


def train_graph_model(
    name: str,
    graph_set: GraphSet,
    val: GraphDataset,
    test: GraphDataset,
    protocol: GraphProtocol,
    *,
    epochs: int,
    seed: int,
    device: torch.device,
) -> tuple[float, float, int]:
    """Train one model; ``(test accuracy, test ROC-AUC, epoch)`` at the best validation epoch."""
    graphs = graph_set.graphs
    with seeded_torch(seed, device):
        model = create_gnn(
            name,
            num_node_labels=graphs.num_node_labels,
            num_edge_labels=graphs.num_edge_labels,
            num_classes=graphs.num_classes,
            hidden=protocol.hidden,
            layers=protocol.layers,
            dropout=protocol.dropout,
            readout=protocol.readout,
        ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay)
    generator = make_generator(seed)
    val_batch, test_batch = collate(val).to(device), collate(test).to(device)
    cached = None if len(graph_set) > protocol.batch_size else collate(graph_set).to(device)
    labels = graphs.labels.to(device)
    best = (-math.inf, -math.inf)
    result = (math.nan, math.nan, -1)
    for epoch in range(epochs):
        model.train()
        order = epoch_order(graph_set, generator)
        for start in range(0, len(order), protocol.batch_size):
            chosen = order[start : start + protocol.batch_size]
            if cached is not None and graph_set.sampling == "uniform":
                batch, targets = cached, labels  # the whole set in one step: order does not matter
            else:
                batch, targets = collate(graph_set, chosen).to(device), labels[chosen.to(device)]
            # Dropout draws from the global RNG: seed it per step so runs are reproducible.
            with seeded_torch(derive_seed(seed, epoch, start), device):
                loss = torch.nn.functional.cross_entropy(model(batch), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        val_accuracy, val_auc = scores(model, val_batch, val.labels)
        key = (val_auc if graphs.num_classes == 2 and not math.isnan(val_auc) else val_accuracy, val_accuracy)
        if key > best:
            best = key
            test_accuracy, test_auc = scores(model, test_batch, test.labels)
            result = (test_accuracy, test_auc, epoch)
    return result


def evaluate_graph_set(
    graph_set: GraphSet,
    val: GraphDataset,
    test: GraphDataset,
    protocol: GraphProtocol,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> EvaluationResult:
    """Train every model of ``protocol`` ``num_models`` times on ``graph_set``; test at the best validation epoch."""
    graph_set.validate()
    device = torch.device(device)
    epochs = protocol.full_data_epochs if graph_set.budget.is_full and graph_set.kind == "graphs" else protocol.epochs
    start = time.perf_counter()
    per_model: dict[str, GraphModelResult] = {}
    for name in protocol.models:
        model_start = time.perf_counter()
        runs = [
            train_graph_model(
                name,
                graph_set,
                val,
                test,
                protocol,
                epochs=epochs,
                seed=derive_seed("evaluate-graph", seed, name, index),
                device=device,
            )
            for index in range(protocol.num_models)
        ]
        per_model[name] = GraphModelResult(
            model=name,
            accuracies=tuple(r[0] for r in runs),
            roc_aucs=tuple(r[1] for r in runs),
            best_epochs=tuple(r[2] for r in runs),
            seconds=time.perf_counter() - model_start,
        )
        logger.info(
            "%s %s: test accuracy %s, ROC-AUC %s",
            protocol.name,
            name,
            [round(a, 4) for a in per_model[name].accuracies],
            [round(a, 4) for a in per_model[name].roc_aucs],
        )
    return EvaluationResult(protocol.name, per_model, time.perf_counter() - start, epochs)
