"""Method presets of ``configs/method/`` read without Hydra: the same values ``method=<option>`` composes."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from data.configs import read_option
from data.methods import METHODS

#: The config group of the methods' schemas (their dataclass defaults).
METHOD_SCHEMA_GROUP = "method_schema"


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
