"""Method presets of ``configs/method/`` read without Hydra: the same values ``method=<option>`` composes.

Official per-setting presets live at ``configs/method/<method>/<dataset>_ipc<N>.yaml`` (the values the
method's paper, README or scripts give for that dataset and IPC); :func:`official_preset` finds one,
:func:`official_presets` lists them all.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from data.configs import config_dir, read_option
from data.methods import METHODS

#: The config group of the methods' schemas (their dataclass defaults).
METHOD_SCHEMA_GROUP = "method_schema"

#: The file stem of an official per-setting preset: ``<dataset>_ipc<N>``.
_SETTING = re.compile(r"(?P<dataset>[a-z0-9_]+)_ipc(?P<ipc>[1-9][0-9]*)")


def method_defaults(name: str) -> dict[str, Any]:
    """``{"name": name, **defaults}`` of method ``name``'s config dataclass, as plain data."""
    config = METHODS.get(name).config_class()
    return {"name": name, **json.loads(json.dumps(dataclasses.asdict(config)))}


def _schema(option: str) -> dict[str, Any] | None:
    group, _, name = option.partition("/")
    if group == METHOD_SCHEMA_GROUP:
        return method_defaults(name)
    if group == "method" and name in METHODS:
        return method_defaults(name)  # a method without a YAML file (a plugin's)
    return None


def method_options(option: str) -> tuple[str, dict[str, Any]]:
    """The registry name and options of a ``configs/method`` option, e.g. ``"digits/dm"``::

    name, options = method_options("digits/dm")
    synthetic = create_method(name, **options).distill(train, ipc=1, seed=0)
    """
    options = read_option(f"method/{option}", missing=_schema)
    return str(options.pop("name")), options


def official_preset(method: str, dataset: str, ipc: int, *, root: Path | None = None) -> str | None:
    """The option of ``method``'s official preset for ``dataset`` at ``ipc``, or ``None`` when none is published.

    ``official_preset("mtt", "cifar10", 10) == "mtt/cifar10_ipc10"``, for ``method=mtt/cifar10_ipc10``
    or :func:`method_options`.

    Args:
        root: the config folder (default :func:`data.configs.config_dir`).

    Raises:
        ValueError: ``method`` is not a registered method (the message lists the valid ones).
    """
    METHODS.get(method)
    option = f"{method}/{dataset}_ipc{ipc}"
    return option if ((root or config_dir()) / "method" / f"{option}.yaml").is_file() else None


def official_presets(*, root: Path | None = None) -> list[tuple[str, str, int]]:
    """``(method, dataset, ipc)`` of every official per-setting preset, sorted.

    Folders that are not a method's (``digits/``, scaled-down settings) and per-dataset presets
    without an IPC (Mirage's ``mirage/nci1``: its budget is a support threshold) are not listed.
    """
    folder = (root or config_dir()) / "method"
    found = []
    for path in folder.glob("*/*.yaml"):
        match = _SETTING.fullmatch(path.stem)
        if match is not None and path.parent.name in METHODS:
            found.append((path.parent.name, match["dataset"], int(match["ipc"])))
    return sorted(found)
