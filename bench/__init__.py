"""The benchmark application: cells, the runner, the record builder and the Hydra app.

``condense-bench`` (:mod:`bench.cli`) is the command line; the same cells run from Python::

    from bench import CellSpec, run_cell
    outcome = run_cell(CellSpec(method="dm", dataset="digits", protocol="fast", seed=0, ipc=1),
                       results_dir="results")

The library packages (``data``, ``evaluation``, ``baselines``, ``condense``) never import this one;
it is the only package that imports Hydra (in :mod:`bench.cli` and :mod:`bench.schemas`).
"""

from bench.cell import Cell, CellSpec, cell_key, resolve_cell
from bench.modality import MODALITIES, Modality, get_modality
from bench.record import build_record
from bench.runner import CellOutcome, run_cell

__all__ = [
    "MODALITIES",
    "Cell",
    "CellOutcome",
    "CellSpec",
    "Modality",
    "build_record",
    "cell_key",
    "get_modality",
    "resolve_cell",
    "run_cell",
]
