"""The compact binary serialization of a graph set (layout: :meth:`data.graphs.GraphSet.to_bytes`).

This module works on :class:`SetFields`, the stored fields of a set, rather than on
:class:`data.graphs.GraphSet` itself, so that ``graphset.py`` can import it without a circle. It
also owns the code tables of the header: the position of a kind or sampling in ``_KINDS`` /
``SAMPLINGS`` is its code on disk, so those tuples may only grow at the end.
"""

from __future__ import annotations

import io
import struct
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from data.graphs._forest import forest_parents
from data.graphs.dataset import GraphDataset, ptr_from_sizes

Sampling = Literal["uniform", "freq"]
SAMPLINGS = ("uniform", "freq")

GRAPHSET_MAGIC = b"CBGS"
GRAPHSET_VERSION = 1
_KINDS = ("graphs", "forest")
_ARRAYS = (
    "node_counts",
    "edge_counts",
    "node_labels",
    "edges",
    "edge_labels",
    "labels",
    "node_degrees",
    "counts",
    "members",
)
_HEADER = "<BBBHHHII"


class SetFields(NamedTuple):
    """What the serialization keeps of a graph set: all but its budget and provenance.

    Attributes:
        graphs: the training units (see :class:`data.graphs.GraphSet`).
        kind: ``graphs`` or ``forest``.
        sampling: ``uniform`` or ``freq``.
        root_mask: bool ``N`` forest roots; ``None`` for real graphs.
        node_degrees: the original degree of every forest node; ``None`` for real graphs.
        counts: support count per unit; ``None`` where there is none.
    """

    graphs: GraphDataset
    kind: Literal["graphs", "forest"]
    sampling: Sampling
    root_mask: Tensor | None
    node_degrees: Tensor | None
    counts: Tensor | None


def encode(fields: SetFields) -> bytes:
    """The canonical compact bytes of ``fields`` (magic, header, array descriptors, raw arrays)."""
    g = fields.graphs
    arrays = _forest_arrays(fields) if fields.kind == "forest" else _graph_arrays(g)
    if fields.kind == "graphs" and fields.counts is not None:
        arrays["counts"] = _compact(fields.counts.numpy())
    buffer = io.BytesIO()
    buffer.write(GRAPHSET_MAGIC)
    buffer.write(
        struct.pack(
            _HEADER,
            GRAPHSET_VERSION,
            _KINDS.index(fields.kind),
            SAMPLINGS.index(fields.sampling),
            g.num_classes,
            g.num_node_labels,
            g.num_edge_labels,
            len(g),
            g.num_nodes,
        )
    )
    buffer.write(struct.pack("<B", len(arrays)))
    for name, array in arrays.items():
        buffer.write(struct.pack("<BBI", _ARRAYS.index(name), array.dtype.itemsize, array.size))
    for array in arrays.values():
        buffer.write(array.tobytes())
    return buffer.getvalue()


#: Most nodes a decoded graph set may expand to (MUTAG's training split has about 3,000).
MAX_DECODED_NODES = 50_000_000
#: The arrays each kind of set stores; ``counts`` is optional for real graphs.
_REQUIRED = {
    "graphs": {"node_counts", "edge_counts", "node_labels", "edges", "edge_labels", "labels"},
    "forest": {
        "node_counts",
        "node_labels",
        "edges",
        "edge_labels",
        "node_degrees",
        "edge_counts",
        "members",
        "labels",
        "counts",
    },
}


def decode(raw: bytes, *, name: str = "graphs") -> SetFields:
    """The fields stored by :func:`encode`; the graphs get ``name`` and split ``train``.

    The layout is checked before anything is built: the header, one descriptor per known array,
    the array lengths against each other and against the bytes present, and how many nodes the
    set expands to.

    Raises:
        ValueError: the bytes are not a graph set of this format, naming what is wrong.
    """
    header_size = 4 + struct.calcsize(_HEADER) + 1
    if len(raw) < header_size or raw[:4] != GRAPHSET_MAGIC:
        raise ValueError("not a condense-bench graph set (bad magic)")
    if not 1 <= raw[4] <= GRAPHSET_VERSION:
        raise ValueError(f"graph set format version {raw[4]} is not one this suite reads (1 to {GRAPHSET_VERSION})")
    offset = header_size - 1
    _, kind_code, sampling_code, num_classes, num_node_labels, num_edge_labels, num_units, _ = struct.unpack(
        _HEADER, raw[4:offset]
    )
    if kind_code >= len(_KINDS) or sampling_code >= len(SAMPLINGS):
        raise ValueError(f"unknown set kind {kind_code} or sampling {sampling_code}")
    if num_classes < 1:
        raise ValueError("a graph set needs at least one class")
    kind = _KINDS[kind_code]
    (count,) = struct.unpack("<B", raw[offset : offset + 1])
    offset += 1
    if len(raw) < offset + 6 * count:
        raise ValueError(f"truncated: {count} array descriptors need {6 * count} bytes")
    layout = []
    for _ in range(count):
        code, itemsize, size = struct.unpack("<BBI", raw[offset : offset + 6])
        offset += 6
        if code >= len(_ARRAYS) or itemsize not in (1, 2, 4, 8):
            raise ValueError(f"unknown array code {code} or item size {itemsize}")
        layout.append((_ARRAYS[code], itemsize, size))
    names = [array_name for array_name, _, _ in layout]
    if len(set(names)) != len(names):
        raise ValueError(f"an array is stored twice ({names})")
    missing = _REQUIRED[kind] - set(names)
    extra = set(names) - _REQUIRED[kind] - ({"counts"} if kind == "graphs" else set())
    if missing or extra:
        raise ValueError(f"a {kind} set stores {sorted(_REQUIRED[kind])}, got {sorted(names)}")
    arrays: dict[str, Tensor] = {}
    for array_name, itemsize, size in layout:
        if offset + itemsize * size > len(raw):
            raise ValueError(f"truncated: array {array_name} needs {itemsize * size} bytes, {len(raw) - offset} left")
        array = np.frombuffer(raw, dtype=np.dtype(f"<u{itemsize}"), count=size, offset=offset)
        if itemsize == 8 and size and int(array.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"array {array_name} holds values beyond int64")
        arrays[array_name] = torch.from_numpy(array.astype(np.int64))
        offset += array.nbytes
    if offset != len(raw):
        raise ValueError(f"graph set has {len(raw) - offset} trailing bytes")
    _check_lengths(kind, arrays, num_units)
    meta = {
        "num_classes": num_classes,
        "num_node_labels": num_node_labels,
        "num_edge_labels": num_edge_labels,
        "name": name,
        "split": "train",
    }
    sampling = SAMPLINGS[sampling_code]
    if kind == "forest":
        return _forests_from_arrays(arrays, meta, sampling)
    return _graphs_from_arrays(arrays, meta, sampling)


def _check_lengths(kind: str, arrays: dict[str, Tensor], num_units: int) -> None:
    """Raise ``ValueError`` unless the stored arrays fit together (before any graph is built)."""

    def expect(array_name: str, length: int) -> None:
        if len(arrays[array_name]) != length:
            raise ValueError(f"array {array_name} has {len(arrays[array_name])} values, expected {length}")

    node_counts, edge_counts = arrays["node_counts"], arrays["edge_counts"]
    for array_name in ("edge_counts", "labels", *(("counts",) if "counts" in arrays else ())):
        expect(array_name, num_units)
    nodes = int(node_counts.sum())
    if kind == "graphs":
        expect("node_counts", num_units)
        edges = int(edge_counts.sum())
        expect("node_labels", nodes)
        expect("edges", 2 * edges)
        expect("edge_labels", edges)
        if nodes > MAX_DECODED_NODES:
            raise ValueError(f"the set claims {nodes} nodes, more than the {MAX_DECODED_NODES} allowed")
        return
    trees = len(node_counts)
    if trees == 0 or bool((node_counts < 1).any()):
        raise ValueError("a forest set needs trees of at least one node")
    expect("node_labels", nodes)
    expect("node_degrees", nodes)
    expect("edges", nodes - trees)
    expect("edge_labels", nodes - trees)
    members = arrays["members"]
    expect("members", int(edge_counts.sum()))
    if len(members) and int(members.max()) >= trees:
        raise ValueError(f"a tree-set refers to tree {int(members.max())} of {trees}")
    expanded = int(node_counts[members].sum()) if len(members) else 0
    if expanded > MAX_DECODED_NODES:
        raise ValueError(f"the set expands to {expanded} nodes, more than the {MAX_DECODED_NODES} allowed")
    if nodes > trees:
        # The parent of every non-root node is an earlier node of its own tree (breadth-first order).
        children = torch.cat([torch.arange(1, size) for size in node_counts.tolist()])
        if bool((arrays["edges"] >= children).any()):
            raise ValueError("a tree node's parent does not come before it")


def _compact(values: np.ndarray) -> np.ndarray:
    """``values`` as the smallest unsigned little-endian integer type that holds them."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    if values.size and values.min() < 0:
        raise ValueError("compact arrays hold non-negative integers only")
    top = int(values.max()) if values.size else 0
    for dtype in ("<u1", "<u2", "<u4"):
        if top <= np.iinfo(np.dtype(dtype)).max:
            return values.astype(dtype)
    return values.astype("<u8")


def _graph_arrays(g: GraphDataset) -> dict[str, np.ndarray]:
    """Real graphs: counts per graph, node labels, each undirected edge once (local ids), labels."""
    source, target = g.edge_index
    owner = g.graph_of_node()[source]
    keep = source < target
    start = g.node_ptr[:-1][owner[keep]]
    local = torch.stack([source[keep] - start, target[keep] - start])
    return {
        "node_counts": _compact(g.graph_sizes().numpy()),
        "edge_counts": _compact(np.bincount(owner[keep].numpy(), minlength=len(g))),
        "node_labels": _compact(g.node_labels.numpy()),
        "edges": _compact(local.numpy().reshape(-1)),
        "edge_labels": _compact(g.edge_labels[keep].numpy()),
        "labels": _compact(g.labels.numpy()),
    }


def _forest_arrays(fields: SetFields) -> dict[str, np.ndarray]:
    """Forests: the distinct trees once (parent form), then every tree-set as tree ids."""
    g = fields.graphs
    assert fields.root_mask is not None and fields.node_degrees is not None and fields.counts is not None
    parent_of, edge_label_of = forest_parents(g, fields.root_mask)
    roots = torch.nonzero(fields.root_mask, as_tuple=True)[0].tolist() + [g.num_nodes]
    tree_ids: dict[bytes, int] = {}
    tree_parts: list[tuple[np.ndarray, ...]] = []
    members: list[int] = []
    owner = g.graph_of_node()
    trees_per_set = torch.bincount(owner[fields.root_mask], minlength=len(g)).numpy()
    for first, stop in zip(roots[:-1], roots[1:], strict=True):
        parents = np.asarray(parent_of[first + 1 : stop], dtype=np.int64) - first
        parts = (
            g.node_labels[first:stop].numpy(),
            parents,
            np.asarray(edge_label_of[first + 1 : stop], dtype=np.int64),
            fields.node_degrees[first:stop].numpy(),
        )
        key = b"|".join(part.astype(np.int64).tobytes() for part in parts)
        if key not in tree_ids:
            tree_ids[key] = len(tree_parts)
            tree_parts.append(parts)
        members.append(tree_ids[key])
    return {
        "node_counts": _compact(np.array([len(p[0]) for p in tree_parts])),
        "node_labels": _compact(np.concatenate([p[0] for p in tree_parts])),
        "edges": _compact(np.concatenate([p[1] for p in tree_parts])),
        "edge_labels": _compact(np.concatenate([p[2] for p in tree_parts])),
        "node_degrees": _compact(np.concatenate([p[3] for p in tree_parts])),
        "edge_counts": _compact(trees_per_set),
        "members": _compact(np.array(members)),
        "labels": _compact(g.labels.numpy()),
        "counts": _compact(fields.counts.numpy()),
    }


def _graphs_from_arrays(arrays: dict[str, Tensor], meta: dict[str, Any], sampling: Sampling) -> SetFields:
    """Real graphs back from :func:`_graph_arrays`: both directions of every edge, grouped by graph."""
    node_counts, edge_counts = arrays["node_counts"], arrays["edge_counts"]
    node_ptr = ptr_from_sizes(node_counts)
    edge_graph = torch.repeat_interleave(torch.arange(len(node_counts)), edge_counts)
    edges = arrays["edges"].view(2, -1) + node_ptr[:-1][edge_graph]
    both = torch.cat([edges, edges.flip(0)], dim=1)
    both_labels = torch.cat([arrays["edge_labels"], arrays["edge_labels"]])
    graph_of_edge = torch.cat([edge_graph, edge_graph])
    order = torch.from_numpy(np.lexsort((both[1].numpy(), both[0].numpy(), graph_of_edge.numpy())))
    graphs = GraphDataset(
        node_labels=arrays["node_labels"],
        edge_index=both[:, order],
        edge_labels=both_labels[order],
        node_ptr=node_ptr,
        edge_ptr=ptr_from_sizes(2 * edge_counts),
        labels=arrays["labels"],
        **meta,
    )
    return SetFields(
        graphs=graphs,
        kind="graphs",
        sampling=sampling,
        root_mask=None,
        node_degrees=None,
        counts=arrays.get("counts"),
    )


def _forests_from_arrays(arrays: dict[str, Tensor], meta: dict[str, Any], sampling: Sampling) -> SetFields:
    """Forests back from :func:`_forest_arrays`: each tree-set's trees copied out of the distinct trees."""
    tree_sizes = arrays["node_counts"].tolist()
    tree_start = [0, *np.cumsum(tree_sizes).tolist()]
    labels, parents, edge_labels, degrees = (
        arrays["node_labels"].tolist(),
        arrays["edges"].tolist(),
        arrays["edge_labels"].tolist(),
        arrays["node_degrees"].tolist(),
    )
    node_labels, src, dst, e_labels, node_degrees, roots, node_counts, edge_counts = [], [], [], [], [], [], [], []
    members = iter(arrays["members"].tolist())
    for trees in arrays["edge_counts"].tolist():
        start_nodes, start_edges = len(node_labels), len(src)
        for _ in range(trees):
            tree = next(members)
            first, size = tree_start[tree], tree_sizes[tree]
            offset = len(node_labels)
            node_labels.extend(labels[first : first + size])
            node_degrees.extend(degrees[first : first + size])
            roots.extend([True] + [False] * (size - 1))
            edge_first = first - tree  # every earlier tree has one edge fewer than nodes
            for child in range(1, size):
                src.append(offset + child)
                dst.append(offset + parents[edge_first + child - 1])
                e_labels.append(edge_labels[edge_first + child - 1])
        node_counts.append(len(node_labels) - start_nodes)
        edge_counts.append(len(src) - start_edges)
    graphs = GraphDataset(
        node_labels=torch.tensor(node_labels, dtype=torch.long),
        edge_index=torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
        edge_labels=torch.tensor(e_labels, dtype=torch.long),
        node_ptr=ptr_from_sizes(torch.tensor(node_counts, dtype=torch.long)),
        edge_ptr=ptr_from_sizes(torch.tensor(edge_counts, dtype=torch.long)),
        labels=arrays["labels"],
        **meta,
    )
    return SetFields(
        graphs=graphs,
        kind="forest",
        sampling=sampling,
        root_mask=torch.tensor(roots, dtype=torch.bool),
        node_degrees=torch.tensor(node_degrees, dtype=torch.long),
        counts=arrays["counts"],
    )
