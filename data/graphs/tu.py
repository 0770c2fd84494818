"""The TU graph-kernel dataset format: the reader, the grakel copy of MUTAG and the downloader.

``mutag`` is found inside the installed ``grakel`` wheel (``grakel/tests/data/MUTAG``, located with
:func:`importlib.util.find_spec`, never imported); other TU datasets are downloaded only on request.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import torch

from data.graphs.dataset import GraphDataset, ptr_from_sizes

logger = logging.getLogger(__name__)

TU_URL = "https://www.chrsmrrs.com/graphkerneldatasets/{name}.zip"


def _read_ints(path: Path, columns: int | None = None) -> np.ndarray:
    text = path.read_text().replace(",", " ")
    values = np.array(text.split(), dtype=np.int64)
    return values if columns is None else values.reshape(-1, columns)


def _read_floats(path: Path) -> np.ndarray:
    rows = [line.replace(",", " ").split() for line in path.read_text().splitlines() if line.strip()]
    return np.array(rows, dtype=np.float32)


def read_tu(folder: str | os.PathLike[str], name: str | None = None) -> GraphDataset:
    """Read a TU-format dataset folder (``<name>_A.txt``, ``_graph_indicator``, ``_graph_labels``, ...).

    Node ids and graph ids in the files are 1-based. Node and edge labels (optional files) are
    remapped to ``0..K-1`` by sorted value; graph labels likewise (``class_names`` keeps the
    originals). Edges are made undirected: each unordered pair once in each direction, with the
    label of its first occurrence; self-loops are dropped.

    Args:
        folder: the folder with the files.
        name: the dataset prefix of the files (default: the folder name).
    """
    root = Path(folder)
    name = name or root.name

    def part(suffix: str) -> Path:
        return root / f"{name}_{suffix}.txt"

    for required in ("A", "graph_indicator", "graph_labels"):
        if not part(required).is_file():
            raise FileNotFoundError(f"TU dataset {name!r}: {part(required)} is missing")
    pairs = _read_ints(part("A"), 2) - 1
    graph_of = _read_ints(part("graph_indicator")) - 1
    raw_graph_labels = _read_ints(part("graph_labels"))
    num_nodes, num_graphs = len(graph_of), len(raw_graph_labels)
    if graph_of.min() < 0 or graph_of.max() >= num_graphs or np.any(np.diff(graph_of) < 0):
        raise ValueError(f"TU dataset {name!r}: graph_indicator must be sorted ids in 1..{num_graphs}")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= num_nodes):
        raise ValueError(f"TU dataset {name!r}: _A.txt refers to nodes outside 1..{num_nodes}")
    if part("node_labels").is_file():
        raw_node = _read_ints(part("node_labels"), None).reshape(num_nodes, -1)[:, 0]
        node_vocab, node_labels = np.unique(raw_node, return_inverse=True)
    else:
        node_vocab, node_labels = np.zeros(1), np.zeros(num_nodes, dtype=np.int64)
    if part("edge_labels").is_file():
        raw_edge = _read_ints(part("edge_labels"), None).reshape(len(pairs), -1)[:, 0]
        edge_vocab, edge_label_rows = np.unique(raw_edge, return_inverse=True)
    else:
        edge_vocab, edge_label_rows = np.zeros(1), np.zeros(len(pairs), dtype=np.int64)
    attributes = None
    if part("node_attributes").is_file():
        attributes = torch.from_numpy(_read_floats(part("node_attributes")).reshape(num_nodes, -1))

    # Undirected, deduplicated, both directions, grouped by graph.
    label_of_pair: dict[tuple[int, int], int] = {}
    for (u, v), label in zip(pairs.tolist(), edge_label_rows.tolist(), strict=True):
        if u == v:
            continue
        if graph_of[u] != graph_of[v]:
            raise ValueError(f"TU dataset {name!r}: edge ({u + 1}, {v + 1}) joins two graphs")
        label_of_pair.setdefault((min(u, v), max(u, v)), int(label))
    undirected = np.array(sorted(label_of_pair), dtype=np.int64).reshape(-1, 2)
    und_labels = np.array([label_of_pair[tuple(p)] for p in undirected.tolist()], dtype=np.int64)
    src = np.concatenate([undirected[:, 0], undirected[:, 1]])
    dst = np.concatenate([undirected[:, 1], undirected[:, 0]])
    edge_labels = np.concatenate([und_labels, und_labels])
    order = np.lexsort((dst, src, graph_of[src])) if len(src) else np.zeros(0, dtype=np.int64)
    src, dst, edge_labels = src[order], dst[order], edge_labels[order]

    class_values, labels = np.unique(raw_graph_labels, return_inverse=True)
    node_counts = np.bincount(graph_of, minlength=num_graphs)
    edge_counts = np.bincount(graph_of[src], minlength=num_graphs) if len(src) else np.zeros(num_graphs, np.int64)
    return GraphDataset(
        node_labels=torch.from_numpy(node_labels.astype(np.int64)),
        edge_index=torch.from_numpy(np.stack([src, dst]).astype(np.int64)),
        edge_labels=torch.from_numpy(edge_labels.astype(np.int64)),
        node_ptr=ptr_from_sizes(torch.from_numpy(node_counts)),
        edge_ptr=ptr_from_sizes(torch.from_numpy(edge_counts)),
        labels=torch.from_numpy(labels.astype(np.int64)),
        num_classes=len(class_values),
        num_node_labels=len(node_vocab),
        num_edge_labels=len(edge_vocab),
        name=name.lower(),
        class_names=tuple(str(v) for v in class_values.tolist()),
        node_attributes=attributes,
    )


def grakel_data_folder(dataset: str = "MUTAG") -> Path | None:
    """``grakel/tests/data/<dataset>`` of an installed grakel wheel, found without importing grakel."""
    try:
        spec = importlib.util.find_spec("grakel")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "tests" / "data" / dataset
        if (folder / f"{dataset}_A.txt").is_file():
            return folder
    return None


def download_tu(name: str, root: Path) -> Path:
    """Fetch ``<name>.zip`` from the TU collection into ``root/<name>`` (needs internet)."""
    target = root / name
    url = TU_URL.format(name=name)
    logger.info("downloading %s to %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - fixed https URL
            payload = response.read()
    except OSError as error:
        raise FileNotFoundError(f"could not download TU dataset {name!r} from {url}: {error}") from None
    root.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        for member in archive.namelist():
            if member.startswith("/") or ".." in Path(member).parts:
                raise ValueError(f"refusing unsafe path {member!r} in {url}")
        archive.extractall(root)
    return target
