"""The layout of a computation-tree forest: the parent of every tree node, checked.

Both :meth:`data.graphs.GraphSet.validate` and the serialization in :mod:`data.graphs._format`
need it, so it lives below both of them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from data.graphs.dataset import GraphDataset


def forest_parents(graphs: GraphDataset, root_mask: Tensor) -> tuple[list[int], list[int]]:
    """Parent and edge label of every forest node (``-1`` for roots); checks the forest layout.

    A forest keeps every tree contiguous, root first, each non-root node with exactly one edge
    (to its parent, which comes earlier in the same tree).

    Args:
        graphs: the forests, one per tree-set, with directed child -> parent edges.
        root_mask: bool ``N``, true at the root of every tree.

    Raises:
        ValueError: when the edges do not form such a forest.
    """
    g = graphs
    parent = [-1] * g.num_nodes
    edge_label = [-1] * g.num_nodes
    for child, target, label in zip(
        g.edge_index[0].tolist(), g.edge_index[1].tolist(), g.edge_labels.tolist(), strict=True
    ):
        if parent[child] != -1 or root_mask[child] or target >= child:
            raise ValueError("a forest needs one edge per non-root node, to an earlier parent, none from a root")
        parent[child], edge_label[child] = target, label
    for node in range(g.num_nodes):
        if not root_mask[node] and parent[node] == -1:
            raise ValueError(f"forest node {node} is neither a root nor has a parent")
    tree_start = torch.cummax(
        torch.where(root_mask, torch.arange(g.num_nodes), torch.zeros(g.num_nodes, dtype=torch.long)), 0
    ).values.tolist()
    for node in range(g.num_nodes):
        if parent[node] != -1 and tree_start[parent[node]] != tree_start[node]:
            raise ValueError("a forest edge joins two trees")
    return parent, edge_label
