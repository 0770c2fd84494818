""":class:`GraphDataset`: many small labelled graphs stored concatenated, and its offset helpers.

``node_labels`` (``N``), directed ``edge_index`` (``2 x E``, global node ids, both directions of an
undirected edge, grouped by graph) with ``edge_labels`` (``E``), and the offsets ``node_ptr`` /
``edge_ptr`` (``G + 1``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class GraphDataset:
    """Labelled graphs stored concatenated (see the module docstring).

    Attributes:
        node_labels: ``int64`` categorical node label per node (``N``).
        edge_index: ``int64`` ``2 x E`` directed edges (source, target), global node ids, grouped
            by graph in graph order.
        edge_labels: ``int64`` categorical label per directed edge (``E``).
        node_ptr: ``G + 1`` node offsets; graph ``g`` owns nodes ``node_ptr[g]:node_ptr[g+1]``.
        edge_ptr: ``G + 1`` edge offsets.
        labels: ``int64`` class per graph (``G``).
        num_classes: number of classes.
        num_node_labels: size of the node-label vocabulary.
        num_edge_labels: size of the edge-label vocabulary.
        name: dataset name.
        split: ``train``, ``val``, ``test`` or ``all``.
        class_names: the original graph labels as strings, by class index.
        node_attributes: optional float ``N x d`` node attributes (read, not used by Mirage).
    """

    node_labels: Tensor
    edge_index: Tensor
    edge_labels: Tensor
    node_ptr: Tensor
    edge_ptr: Tensor
    labels: Tensor
    num_classes: int
    num_node_labels: int
    num_edge_labels: int
    name: str = "graphs"
    split: str = "all"
    class_names: tuple[str, ...] = ()
    node_attributes: Tensor | None = None
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.edge_index.ndim != 2 or self.edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must be 2 x E, got {tuple(self.edge_index.shape)}")
        if len(self.node_ptr) != len(self.labels) + 1 or len(self.edge_ptr) != len(self.labels) + 1:
            raise ValueError("node_ptr and edge_ptr need one entry per graph plus one")
        if len(self.edge_labels) != self.edge_index.shape[1]:
            raise ValueError("edge_labels needs one label per edge")
        if int(self.node_ptr[-1]) != len(self.node_labels) or int(self.edge_ptr[-1]) != len(self.edge_labels):
            raise ValueError("node_ptr/edge_ptr do not end at the node/edge counts")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_nodes(self) -> int:
        """Total nodes over all graphs."""
        return len(self.node_labels)

    @property
    def num_edges(self) -> int:
        """Total directed edges over all graphs."""
        return self.edge_index.shape[1]

    def graph_sizes(self) -> Tensor:
        """Nodes per graph."""
        return self.node_ptr[1:] - self.node_ptr[:-1]

    def graph_of_node(self) -> Tensor:
        """Graph index of every node (``N``)."""
        return torch.repeat_interleave(torch.arange(len(self)), self.graph_sizes())

    def class_indices(self, label: int) -> Tensor:
        """Indices of the graphs of class ``label``."""
        return torch.nonzero(self.labels == label, as_tuple=True)[0]

    def class_counts(self) -> Tensor:
        """Graphs per class."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def graph(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(node_labels, edge_index, edge_labels)`` of one graph with local node ids."""
        n0, n1 = int(self.node_ptr[index]), int(self.node_ptr[index + 1])
        e0, e1 = int(self.edge_ptr[index]), int(self.edge_ptr[index + 1])
        return self.node_labels[n0:n1], self.edge_index[:, e0:e1] - n0, self.edge_labels[e0:e1]

    def subset(self, indices: Tensor | Sequence[int], split: str | None = None) -> GraphDataset:
        """The graphs at ``indices`` (in that order) as a new dataset."""
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        node_idx, node_ptr, _ = gather_ranges(self.node_ptr, index)
        edge_idx, edge_ptr, edge_graph = gather_ranges(self.edge_ptr, index)
        shift = (node_ptr[:-1] - self.node_ptr[index])[edge_graph]
        return GraphDataset(
            node_labels=self.node_labels[node_idx],
            edge_index=self.edge_index[:, edge_idx] + shift,
            edge_labels=self.edge_labels[edge_idx],
            node_ptr=node_ptr,
            edge_ptr=edge_ptr,
            labels=self.labels[index],
            num_classes=self.num_classes,
            num_node_labels=self.num_node_labels,
            num_edge_labels=self.num_edge_labels,
            name=self.name,
            split=split if split is not None else self.split,
            class_names=self.class_names,
            node_attributes=None if self.node_attributes is None else self.node_attributes[node_idx],
        )

    def fingerprint(self) -> str:
        """SHA-256 of the graph arrays and labels (hex, first 16 characters)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for array in (self.node_labels, self.edge_index, self.edge_labels, self.node_ptr, self.labels):
                digest.update(array.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint


def ptr_from_sizes(sizes: Tensor) -> Tensor:
    """Offsets (``len(sizes) + 1``, from 0) of consecutive ranges with these ``sizes``."""
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sizes.long(), 0)])


def gather_ranges(ptr: Tensor, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Concatenated ranges ``ptr[i]:ptr[i+1]`` for ``i`` in ``index``: (positions, new ptr, owner)."""
    sizes = ptr[index + 1] - ptr[index]
    new_ptr = ptr_from_sizes(sizes)
    owner = torch.repeat_interleave(torch.arange(len(index)), sizes)
    positions = torch.arange(int(new_ptr[-1])) - new_ptr[:-1][owner] + ptr[index][owner]
    return positions, new_ptr, owner
