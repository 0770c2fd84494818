"""GCN, GIN and GAT for graph classification in plain PyTorch (no compiled extensions).

Messages flow along ``edge_index`` from source to target (``x_j -> x_i``), so one code path
serves real undirected graphs (both directions stored) and Mirage's computation-tree forests
(child -> parent edges only): after ``k <= L`` layers the root of a depth-``L`` tree holds the
embedding its node has in the original graph (exactly for GIN and GAT; for GCN when the forest
carries the original node degrees, which :class:`GraphBatch` passes as ``degrees``).

The readout (``sum`` or ``mean``) combines the nodes of ``root_mask`` (all nodes when ``None``)
of every graph, then dropout and a linear classifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from data import Registry
from data.graphs import GraphDataset, GraphSet, gather_ranges

Readout = Literal["sum", "mean"]


@dataclass(frozen=True)
class GraphBatch:
    """Graphs collated for a forward pass (one disjoint union).

    Attributes:
        node_labels: node label per node.
        edge_index: ``2 x E`` (source, target).
        edge_labels: label per edge.
        batch: graph index of every node.
        num_graphs: graphs in the batch.
        root_mask: nodes the readout combines (``None``: all).
        degrees: node degree for GCN normalisation (``None``: in-degree in ``edge_index``).
    """

    node_labels: Tensor
    edge_index: Tensor
    edge_labels: Tensor
    batch: Tensor
    num_graphs: int
    root_mask: Tensor | None = None
    degrees: Tensor | None = None

    def to(self, device: torch.device | str) -> GraphBatch:
        """The batch on ``device``."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return GraphBatch(
            self.node_labels.to(device),
            self.edge_index.to(device),
            self.edge_labels.to(device),
            self.batch.to(device),
            self.num_graphs,
            move(self.root_mask),
            move(self.degrees),
        )


def collate(source: GraphDataset | GraphSet, indices: Tensor | None = None) -> GraphBatch:
    """Collate the graphs at ``indices`` (all when ``None``) of a dataset or a set into one batch."""
    graphs = source.graphs if isinstance(source, GraphSet) else source
    index = torch.arange(len(graphs)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    sub = graphs.subset(index)
    root_mask = degrees = None
    if isinstance(source, GraphSet) and (source.root_mask is not None or source.node_degrees is not None):
        node_idx, _, _ = gather_ranges(graphs.node_ptr, index)
        root_mask = None if source.root_mask is None else source.root_mask[node_idx]
        degrees = None if source.node_degrees is None else source.node_degrees[node_idx]
    return GraphBatch(
        node_labels=sub.node_labels,
        edge_index=sub.edge_index,
        edge_labels=sub.edge_labels,
        batch=sub.graph_of_node(),
        num_graphs=len(sub),
        root_mask=root_mask,
        degrees=degrees,
    )


def _in_degree(edge_index: Tensor, num_nodes: int) -> Tensor:
    return torch.bincount(edge_index[1], minlength=num_nodes)


class GINLayer(nn.Module):
    """GIN with edge labels (GINE): ``MLP((1 + eps) h_i + sum_j relu(h_j + E(e_ji)))``."""

    def __init__(self, hidden: int, num_edge_labels: int) -> None:
        super().__init__()
        self.edge_embedding = nn.Embedding(max(num_edge_labels, 1), hidden)
        self.eps = nn.Parameter(torch.zeros(1))
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))

    def forward(self, h: Tensor, batch: GraphBatch) -> Tensor:
        source, target = batch.edge_index
        messages = torch.relu(h[source] + self.edge_embedding(batch.edge_labels))
        aggregated = torch.zeros_like(h).index_add_(0, target, messages)
        return self.mlp((1 + self.eps) * h + aggregated)


class GCNLayer(nn.Module):
    """GCN (Kipf & Welling) with a self loop and edge labels added to messages.

    ``h_i' = W sum_{j in N(i) + i} (h_j + E(e_ji)) / sqrt(d_i d_j)`` with ``d = degree + 1``.
    """

    def __init__(self, hidden: int, num_edge_labels: int) -> None:
        super().__init__()
        self.edge_embedding = nn.Embedding(max(num_edge_labels, 1), hidden)
        self.linear = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, batch: GraphBatch) -> Tensor:
        source, target = batch.edge_index
        degree = batch.degrees if batch.degrees is not None else _in_degree(batch.edge_index, len(h))
        scale = (degree.to(h.dtype) + 1).rsqrt()
        messages = (h[source] + self.edge_embedding(batch.edge_labels)) * (scale[source] * scale[target]).unsqueeze(1)
        aggregated = (h * (scale * scale).unsqueeze(1)).index_add_(0, target, messages)
        return self.linear(aggregated)


class GATLayer(nn.Module):
    """Single-head GAT (Velickovic et al.) with a self loop; no edge features (as PyG ``GATConv``)."""

    def __init__(self, hidden: int, num_edge_labels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden, hidden, bias=False)
        self.attend_source = nn.Parameter(torch.empty(hidden))
        self.attend_target = nn.Parameter(torch.empty(hidden))
        self.bias = nn.Parameter(torch.zeros(hidden))
        bound = (6.0 / (hidden + 1)) ** 0.5
        nn.init.uniform_(self.attend_source, -bound, bound)
        nn.init.uniform_(self.attend_target, -bound, bound)

    def forward(self, h: Tensor, batch: GraphBatch) -> Tensor:
        n = len(h)
        loops = torch.arange(n, device=h.device)
        source = torch.cat([batch.edge_index[0], loops])
        target = torch.cat([batch.edge_index[1], loops])
        z = self.linear(h)
        scores = nn.functional.leaky_relu(
            (z * self.attend_source).sum(1)[source] + (z * self.attend_target).sum(1)[target], 0.2
        )
        top = torch.full((n,), float("-inf"), device=h.device, dtype=h.dtype).scatter_reduce(
            0, target, scores, reduce="amax", include_self=True
        )
        weights = torch.exp(scores - top[target])
        norm = torch.zeros(n, device=h.device, dtype=h.dtype).index_add_(0, target, weights)
        alpha = weights / norm[target]
        return torch.zeros_like(z).index_add_(0, target, z[source] * alpha.unsqueeze(1)) + self.bias


LayerFactory = Callable[[int, int], nn.Module]
GNN_LAYERS: Registry[LayerFactory] = Registry("graph model")
GNN_LAYERS.register("gcn", GCNLayer)
GNN_LAYERS.register("gin", GINLayer)
GNN_LAYERS.register("gat", GATLayer)


class GraphClassifier(nn.Module):
    """Node-label embedding, ``layers`` message-passing layers with ReLU, readout, dropout, linear."""

    def __init__(
        self,
        layer: str,
        *,
        num_node_labels: int,
        num_edge_labels: int,
        num_classes: int,
        hidden: int = 128,
        layers: int = 2,
        dropout: float = 0.5,
        readout: Readout = "sum",
    ) -> None:
        super().__init__()
        if readout not in ("sum", "mean"):
            raise ValueError(f"readout must be 'sum' or 'mean', got {readout!r}")
        factory = GNN_LAYERS.get(layer)
        self.name = layer
        self.readout = readout
        self.node_embedding = nn.Embedding(max(num_node_labels, 1), hidden)
        self.convs = nn.ModuleList(factory(hidden, num_edge_labels) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)
        self.feature_dim = hidden

    def node_embeddings(self, batch: GraphBatch) -> Tensor:
        """Node embeddings after the last layer (``N x hidden``)."""
        h = self.node_embedding(batch.node_labels)
        for conv in self.convs:
            h = torch.relu(conv(h, batch))
        return h

    def embed(self, batch: GraphBatch) -> Tensor:
        """Graph embeddings ``num_graphs x hidden`` (the readout of the last layer)."""
        h = self.node_embeddings(batch)
        mask = batch.root_mask
        index = batch.batch if mask is None else batch.batch[mask]
        values = h if mask is None else h[mask]
        pooled = torch.zeros(batch.num_graphs, h.shape[1], device=h.device, dtype=h.dtype).index_add_(0, index, values)
        if self.readout == "mean":
            counts = torch.bincount(index, minlength=batch.num_graphs).clamp(min=1).to(h.dtype)
            pooled = pooled / counts.unsqueeze(1)
        return pooled

    def forward(self, batch: GraphBatch) -> Tensor:
        """Class logits ``num_graphs x num_classes``."""
        return self.classifier(self.dropout(self.embed(batch)))


def create_gnn(
    name: str,
    *,
    num_node_labels: int,
    num_edge_labels: int,
    num_classes: int,
    hidden: int = 128,
    layers: int = 2,
    dropout: float = 0.5,
    readout: Readout = "sum",
) -> GraphClassifier:
    """Build graph classifier ``name`` (``gcn``, ``gin``, ``gat``; unknown names list the valid ones)."""
    return GraphClassifier(
        name,
        num_node_labels=num_node_labels,
        num_edge_labels=num_edge_labels,
        num_classes=num_classes,
        hidden=hidden,
        layers=layers,
        dropout=dropout,
        readout=readout,
    )


def list_gnns() -> list[str]:
    """Registered graph model names."""
    return GNN_LAYERS.names()
