"""Dataset distillation methods, and the factory that builds any registered method.

``create_method(name, **options)`` builds any registered method, synthesizers and selectors alike
(the registry finds the selectors of ``baselines`` and the methods of installed plugins itself)::

    from data import load_dataset
    from condense import create_method
    train, val, test = load_dataset("digits", seed=0)
    synthetic = create_method("dm", iterations=200).distill(train, ipc=10, seed=0)

``method_options("digits/dm")`` reads a method preset of ``configs/method/`` (no Hydra needed).

What the synthesizers share lives once, in private modules: ``_config`` (the fields every learned
synthesizer has), ``_data`` (per-class real batches, initial images, class-major labels, seeds),
``_networks`` (seeded fresh networks, BatchNorm helpers), ``_augment`` (siamese DSA), ``_run``
(the loop with progress, checkpoints and the divergence guard) and ``_synthesizer`` (the
:class:`~data.methods.Method` bases that package a run's result with provenance).
"""

from __future__ import annotations

from typing import Any

from condense import datadam as _datadam  # noqa: F401 - registers datadam
from condense import datm as _datm  # noqa: F401 - registers datm
from condense import dc as _dc  # noqa: F401 - registers dc and dsa
from condense import dm as _dm  # noqa: F401 - registers dm
from condense import ftd as _ftd  # noqa: F401 - registers ftd
from condense import gvbsm as _gvbsm  # noqa: F401 - registers gvbsm and edc
from condense import idm as _idm  # noqa: F401 - registers idm
from condense import infer as _infer  # noqa: F401 - registers infer
from condense import mirage as _mirage  # noqa: F401 - registers mirage
from condense import mtt as _mtt  # noqa: F401 - registers mtt
from condense import ncfm as _ncfm  # noqa: F401 - registers ncfm
from condense import rded as _rded  # noqa: F401 - registers rded
from condense import selmatch as _selmatch  # noqa: F401 - registers selmatch
from condense import sre2l as _sre2l  # noqa: F401 - registers sre2l and cda
from condense import tesla as _tesla  # noqa: F401 - registers tesla
from condense.presets import method_options
from data.methods import METHODS, Method, build_method


def create_method(name: str, **options: Any) -> Method:
    """Build method ``name`` with its official defaults updated by ``options`` (each type-checked)."""
    return build_method(name, **options)


def list_methods(pattern: str = "*", *, modality: str | None = None) -> list[str]:
    """Registered method names (synthesizers, selectors, plugins), optionally of one modality."""
    return [n for n in METHODS.names(pattern) if modality is None or METHODS.get(n).modality == modality]


__all__ = ["Method", "create_method", "list_methods", "method_options"]
