""":class:`GraphMethod`, the base class of the methods that compress graph datasets."""

from __future__ import annotations

from typing import ClassVar, Literal

from data.methods import Method


class GraphMethod(Method):
    """A method that compresses a :class:`GraphDataset` into a :class:`GraphSet`: its
    :meth:`~data.methods.Method.condense` takes a graph training split and returns a graph set.

    ``modality = "graph"`` tells the benchmark to run it on graph datasets only (every other method
    is ``"image"``, :class:`data.methods.Method`'s default).
    """

    modality: ClassVar[Literal["image", "graph"]] = "graph"
