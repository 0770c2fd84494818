"""FP-growth (Han, Pei & Yin, 2000): all frequent itemsets of a list of transactions.

Written here to keep the suite free of a dependency for ~100 lines; checked against a brute-force
count in the tests.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence


class _Node:
    __slots__ = ("item", "count", "parent", "children", "link")

    def __init__(self, item: Hashable | None, parent: _Node | None) -> None:
        self.item = item
        self.count = 0
        self.parent = parent
        self.children: dict[Hashable, _Node] = {}
        self.link: _Node | None = None


class ItemsetLimitError(RuntimeError):
    """More frequent itemsets than the caller allowed (raise the support threshold)."""


def _build_tree(
    paths: Iterable[tuple[Sequence[Hashable], int]], min_support: int
) -> tuple[_Node, dict[Hashable, list[_Node]], dict[Hashable, int]]:
    """The FP-tree of weighted ``paths`` keeping items with support >= ``min_support``."""
    paths = list(paths)
    support: dict[Hashable, int] = defaultdict(int)
    for items, weight in paths:
        for item in items:
            support[item] += weight
    frequent = {item: count for item, count in support.items() if count >= min_support}
    # Canonical order: descending support, ties by item (items must be mutually comparable).
    rank = {item: index for index, item in enumerate(sorted(frequent, key=lambda i: (-frequent[i], i)))}
    root = _Node(None, None)
    nodes: dict[Hashable, list[_Node]] = defaultdict(list)
    for items, weight in paths:
        node = root
        for item in sorted((i for i in set(items) if i in rank), key=rank.__getitem__):
            child = node.children.get(item)
            if child is None:
                child = _Node(item, node)
                node.children[item] = child
                nodes[item].append(child)
            child.count += weight
            node = child
    return root, nodes, frequent


def fp_growth(
    transactions: Iterable[Iterable[Hashable]],
    min_support: int,
    *,
    max_size: int | None = None,
    max_itemsets: int | None = None,
) -> dict[tuple[Hashable, ...], int]:
    """Every itemset contained in at least ``min_support`` transactions, with its support.

    Args:
        transactions: sets (or iterables; duplicates are ignored) of comparable items.
        min_support: absolute minimum support count (>= 1).
        max_size: longest itemset to report (``None``: no limit).
        max_itemsets: raise :class:`ItemsetLimitError` past this many itemsets.

    Returns:
        ``{sorted item tuple: support}`` for all frequent itemsets (subsets included).
    """
    if min_support < 1:
        raise ValueError(f"min_support must be >= 1, got {min_support}")
    result: dict[tuple[Hashable, ...], int] = {}
    _, nodes, frequent = _build_tree(((tuple(set(t)), 1) for t in transactions), min_support)
    _mine(nodes, frequent, (), min_support, max_size, max_itemsets, result)
    return result


def _mine(
    nodes: dict[Hashable, list[_Node]],
    frequent: dict[Hashable, int],
    suffix: tuple[Hashable, ...],
    min_support: int,
    max_size: int | None,
    max_itemsets: int | None,
    result: dict[tuple[Hashable, ...], int],
) -> None:
    for item in sorted(frequent, key=lambda i: (frequent[i], i)):
        itemset = (item, *suffix)
        result[tuple(sorted(itemset))] = frequent[item]
        if max_itemsets is not None and len(result) > max_itemsets:
            raise ItemsetLimitError(f"more than {max_itemsets} frequent itemsets at support {min_support}")
        if max_size is not None and len(itemset) >= max_size:
            continue
        # Conditional pattern base: the prefix path of every node of ``item``, weighted by its count.
        base = []
        for node in nodes[item]:
            path = []
            parent = node.parent
            while parent is not None and parent.item is not None:
                path.append(parent.item)
                parent = parent.parent
            if path:
                base.append((path, node.count))
        if not base:
            continue
        _, sub_nodes, sub_frequent = _build_tree(base, min_support)
        if sub_frequent:
            _mine(sub_nodes, sub_frequent, itemset, min_support, max_size, max_itemsets, result)
