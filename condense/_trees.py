"""Computation trees and their canonical codes (Mirage internals).

The depth-``L`` computation tree of node ``v`` is the unrolling of ``v``'s neighbourhood as an
``L``-layer message-passing GNN sees it: every tree node at depth ``d < L`` gets one child per
graph neighbour, the node it was reached from included. Two rooted trees with node labels and
child-edge labels get the same code iff they are isomorphic. A code is an interned integer of
``(label, sorted((edge_label, child_code), ...))``; since child codes are themselves canonical,
sorting makes the multiset canonical (the AHU scheme with integers instead of strings).

Computing the codes of all depth-``L`` trees of a graph is exactly ``L`` rounds of
Weisfeiler-Lehman refinement in which a node's new colour is its label and the multiset of
``(edge label, neighbour colour)``; no explicit tree is built (:func:`tree_codes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from data.graphs import GraphDataset

Code = tuple[int, tuple[tuple[int, int], ...]]


class TreeInterner:
    """Assigns consecutive integer ids to canonical rooted labelled trees."""

    def __init__(self) -> None:
        self._ids: dict[Code, int] = {}
        self.entries: list[Code] = []

    def __len__(self) -> int:
        return len(self.entries)

    def intern(self, label: int, children: list[tuple[int, int]]) -> int:
        """The id of the tree with root ``label`` and ``(edge_label, child_id)`` children."""
        key: Code = (int(label), tuple(sorted(children)))
        found = self._ids.get(key)
        if found is None:
            found = len(self.entries)
            self._ids[key] = found
            self.entries.append(key)
        return found

    def tree_size(self, code: int) -> int:
        """Nodes of the tree ``code``."""
        return 1 + sum(self.tree_size(child) for _, child in self.entries[code][1])


@dataclass(frozen=True)
class ExplicitTree:
    """A rooted tree as arrays; node 0 is the root and ``parent[0] == -1``.

    Attributes:
        labels: node label per tree node.
        parent: parent tree node (``-1`` for the root); parents come before children.
        edge_labels: label of the edge to the parent (``-1`` for the root).
        degrees: degree in the original graph of the graph node each tree node copies.
    """

    labels: list[int]
    parent: list[int]
    edge_labels: list[int]
    degrees: list[int]


def adjacency(graphs: GraphDataset) -> list[list[tuple[int, int]]]:
    """Neighbour lists ``[(neighbour, edge_label), ...]`` per node (global ids), in edge order."""
    neighbours: list[list[tuple[int, int]]] = [[] for _ in range(graphs.num_nodes)]
    for u, v, label in zip(
        graphs.edge_index[0].tolist(), graphs.edge_index[1].tolist(), graphs.edge_labels.tolist(), strict=True
    ):
        neighbours[u].append((v, label))
    return neighbours


def tree_codes(graphs: GraphDataset, depth: int, interner: TreeInterner) -> Tensor:
    """The code of every node's depth-``depth`` computation tree (``N``), by WL refinement."""
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    labels = graphs.node_labels.tolist()
    neighbours = adjacency(graphs)
    codes = [interner.intern(label, []) for label in labels]
    for _ in range(depth):
        codes = [interner.intern(labels[v], [(e, codes[u]) for u, e in neighbours[v]]) for v in range(len(labels))]
    return torch.tensor(codes, dtype=torch.long)


def computation_tree(neighbours: list[list[tuple[int, int]]], labels: list[int], root: int, depth: int) -> ExplicitTree:
    """Unroll node ``root`` to ``depth`` (breadth first; children include the node it came from)."""
    tree_labels, parent, edge_labels, degrees = [labels[root]], [-1], [-1], [len(neighbours[root])]
    frontier = [(root, 0)]  # (graph node, tree node)
    for _ in range(depth):
        next_frontier = []
        for graph_node, tree_node in frontier:
            for neighbour, edge_label in neighbours[graph_node]:
                tree_labels.append(labels[neighbour])
                parent.append(tree_node)
                edge_labels.append(edge_label)
                degrees.append(len(neighbours[neighbour]))
                next_frontier.append((neighbour, len(tree_labels) - 1))
        frontier = next_frontier
    return ExplicitTree(tree_labels, parent, edge_labels, degrees)


def explicit_tree_code(tree: ExplicitTree, interner: TreeInterner) -> int:
    """The canonical code of an explicit tree (bottom-up AHU; parents precede children)."""
    children: list[list[tuple[int, int]]] = [[] for _ in tree.labels]
    codes = [0] * len(tree.labels)
    for node in range(len(tree.labels) - 1, -1, -1):
        codes[node] = interner.intern(tree.labels[node], children[node])
        if tree.parent[node] >= 0:
            children[tree.parent[node]].append((tree.edge_labels[node], codes[node]))
    return codes[0]
