""":class:`GraphSet`, what a graph method produces, and the byte budgets measured in its serialization.

A set holds real graphs (a selection) or Mirage's computation-tree forests (directed child -> parent
edges, a root mask, the original degree of every tree node and the support count of every
tree-set). Its size is the length of :meth:`GraphSet.to_bytes` (see :mod:`data.graphs._format`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from data.files import write_bytes_atomic
from data.graphs._forest import forest_parents
from data.graphs._format import SAMPLINGS, Sampling, SetFields, decode, encode
from data.graphs.dataset import GraphDataset
from data.synthetic import Budget
from data.untrusted import read_limited, refusing


@dataclass
class GraphSet:
    """A compressed graph training set: selected real graphs or Mirage computation-tree forests.

    Attributes:
        graphs: the training units. For ``kind="graphs"`` real undirected graphs (both directions
            stored); for ``kind="forest"`` one forest per tree-set with directed child -> parent
            edges.
        kind: ``graphs`` or ``forest``.
        root_mask: bool ``N``: the nodes whose embeddings the readout combines (forest roots);
            ``None`` means every node (real graphs).
        node_degrees: the original graph degree of every forest node (exact GCN normalisation on
            trees); ``None`` for real graphs.
        counts: support count per tree-set (``G``), ``None`` for real graphs.
        sampling: ``uniform`` (each unit once per epoch, shuffled) or ``freq`` (units drawn with
            probability proportional to ``counts``).
        budget: the budget the set was made for.
        provenance: method, config, dataset fingerprint, seed, versions, distillation seconds.
    """

    graphs: GraphDataset
    kind: Literal["graphs", "forest"] = "graphs"
    root_mask: Tensor | None = None
    node_degrees: Tensor | None = None
    counts: Tensor | None = None
    sampling: Sampling = "uniform"
    budget: Budget = field(default_factory=Budget)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.graphs)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return self.graphs.num_classes

    @property
    def labels(self) -> Tensor:
        """Class per training unit."""
        return self.graphs.labels

    def class_counts(self) -> Tensor:
        """Training units per class."""
        return self.graphs.class_counts()

    def validate(self) -> None:
        """Raise ``ValueError`` for a set that cannot be trained on as it claims."""
        g = self.graphs
        if len(g) == 0:
            raise ValueError("the set holds no graphs")
        if self.kind not in ("graphs", "forest"):
            raise ValueError(f"kind must be 'graphs' or 'forest', got {self.kind!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if g.labels.min() < 0 or g.labels.max() >= g.num_classes:
            raise ValueError(f"labels outside [0, {g.num_classes})")
        if g.num_nodes and (g.node_labels.min() < 0 or g.node_labels.max() >= g.num_node_labels):
            raise ValueError(f"node labels outside [0, {g.num_node_labels})")
        if g.num_edges and (g.edge_labels.min() < 0 or g.edge_labels.max() >= max(g.num_edge_labels, 1)):
            raise ValueError(f"edge labels outside [0, {g.num_edge_labels})")
        if g.num_edges and (g.edge_index.min() < 0 or g.edge_index.max() >= g.num_nodes):
            raise ValueError("edge_index refers to nodes that do not exist")
        graph_of_node = g.graph_of_node()
        if g.num_edges and not bool((graph_of_node[g.edge_index[0]] == graph_of_node[g.edge_index[1]]).all()):
            raise ValueError("an edge joins two different graphs")
        if self.kind == "forest":
            if self.root_mask is None or self.node_degrees is None or self.counts is None:
                raise ValueError("a forest set needs root_mask, node_degrees and counts")
            if len(self.root_mask) != g.num_nodes or len(self.node_degrees) != g.num_nodes:
                raise ValueError("root_mask and node_degrees need one value per node")
            if len(self.counts) != len(g) or bool((self.counts < 1).any()):
                raise ValueError("counts need one positive support per tree-set")
            roots_per_graph = torch.bincount(graph_of_node[self.root_mask], minlength=len(g))
            if bool((roots_per_graph == 0).any()):
                raise ValueError("every tree-set needs at least one root")
            forest_parents(g, self.root_mask)
        elif self.sampling == "freq" and self.counts is None:
            raise ValueError("sampling='freq' needs counts")

    # -- compact serialization ----------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The canonical compact serialization; its length is the set's size in bytes.

        Layout: magic, a fixed binary header (version, kind, sampling, class and vocabulary counts,
        units, nodes; no provenance), one 6-byte descriptor per array, then raw little-endian
        arrays, each in the smallest unsigned integer type that holds its values.

        * Real graphs: node and undirected-edge counts per graph, node labels, each undirected
          edge once (``u < v``, local node ids), edge labels, graph labels.
        * Forests (Mirage): the *distinct* trees once (node counts, node labels, the parent of
          every non-root node in breadth-first order, the label of its edge to the parent, the
          original node degrees), then every tree-set as its tree count, tree ids, class and
          support count. Trees repeated across tree-sets are stored once (a dictionary code).
        """
        return encode(self._fields())

    def _fields(self) -> SetFields:
        """The fields :func:`data.graphs._format.encode` stores."""
        return SetFields(
            graphs=self.graphs,
            kind=self.kind,
            sampling=self.sampling,
            root_mask=self.root_mask,
            node_degrees=self.node_degrees,
            counts=self.counts,
        )

    def num_bytes(self) -> int:
        """Size of :meth:`to_bytes` (the set's size in the leaderboard)."""
        return len(self.to_bytes())

    @classmethod
    def from_bytes(cls, raw: bytes, *, name: str = "graphs", source: str | os.PathLike[str] = "<bytes>") -> GraphSet:
        """Rebuild a set from :meth:`to_bytes` (no code runs: a binary header and raw arrays).

        Raises:
            BadFileError: the bytes are not a valid graph set, naming ``source`` and the reason.
        """
        with refusing(source, "graph set"):
            # GraphSet, not cls, as before the split: decoding always built plain sets.
            result = GraphSet(**decode(raw, name=name)._asdict())
            result.validate()
        return result

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_bytes` whole (``data.files.write_bytes_atomic``); returns the path."""
        return write_bytes_atomic(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GraphSet:
        """Read a set written by :meth:`save`.

        Raises:
            FileNotFoundError: there is no file at ``path``.
            BadFileError: the file is not a graph set of this format; nothing from it is loaded.
        """
        return cls.from_bytes(read_limited(path, what="graph set"), source=path)


def graph_set_of(graphs: GraphDataset, *, budget: Budget, provenance: dict[str, Any] | None = None) -> GraphSet:
    """Wrap real graphs (a selection or the whole split) as a :class:`GraphSet`."""
    result = GraphSet(graphs=graphs, kind="graphs", budget=budget, provenance=provenance or {})
    result.validate()
    return result


def full_set_bytes(train: GraphDataset) -> int:
    """Bytes of the whole training split in the :meth:`GraphSet.to_bytes` serialization."""
    return GraphSet(graphs=train, kind="graphs").num_bytes()


def byte_budget(train: GraphDataset, budget: Budget) -> int | None:
    """The byte cap a graph budget sets: ``fraction`` x the full training split's bytes.

    For graph datasets a ``fraction`` budget is a share of the training set's *bytes* (graphs and
    tree-forests differ too much in size for a count to be fair); ``ipc`` budgets are counts of
    graphs (or tree-sets) per class and set no byte cap (``None``).
    """
    if budget.fraction is None:
        return None
    return int(budget.fraction * full_set_bytes(train))
