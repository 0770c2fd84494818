"""Dataset distillation methods and the benchmark entry point.

``create_method(name, **options)`` builds any registered method, synthesizers and selectors alike::

    from data import load_dataset
    from condense import create_method
    train, val, test = load_dataset("digits", seed=0)
    synthetic = create_method("random").condense(train, Budget(ipc=10), seed=0)
"""

from __future__ import annotations

from typing import Any

import baselines  # noqa: F401 - registers the selectors in the shared method registry
from data.methods import METHODS, Method, build_method


def create_method(name: str, **options: Any) -> Method:
    """Build method ``name`` with its official defaults updated by ``options``."""
    return build_method(name, **options)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names (synthesizers and selectors)."""
    return METHODS.names(pattern)


__all__ = ["Method", "create_method", "list_methods"]
from condense import datadam as _datadam  # noqa: E402,F401 - registers datadam
from condense import datm as _datm  # noqa: E402,F401 - registers datm
from condense import dc as _dc  # noqa: E402,F401 - registers dc and dsa
from condense import dm as _dm  # noqa: E402,F401 - registers dm
from condense import ftd as _ftd  # noqa: E402,F401 - registers ftd
from condense import idm as _idm  # noqa: E402,F401 - registers idm
from condense import infer as _infer  # noqa: E402,F401 - registers infer
from condense import mirage as _mirage  # noqa: E402,F401 - registers mirage
from condense import mtt as _mtt  # noqa: E402,F401 - registers mtt
from condense import rded as _rded  # noqa: E402,F401 - registers rded
from condense import sre2l as _sre2l  # noqa: E402,F401 - registers sre2l and cda
