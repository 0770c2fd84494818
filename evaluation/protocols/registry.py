"""The protocol registry: the named protocols of ``configs/protocol/``, and protocols made in Python.

:func:`get_protocol` reads the named protocols from their YAML files on first use (no Hydra):
the files are the recipes, and the benchmark app composes the same files. A plugin may add a
protocol with :func:`register_protocol`. :func:`protocol_from_config` builds a protocol from its
plain configuration (a YAML file's contents, a Hydra config), checking every field's type;
:func:`derive_protocol` makes a changed copy under its own name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from data import Registry
from data._typed import OptionError, build_typed
from data.configs import merge
from evaluation.protocols.base import EvaluationProtocol, changed_fields, derived_name
from evaluation.protocols.graph import GraphProtocol
from evaluation.protocols.image import ImageProtocol

#: The protocol classes, by the ``modality`` field of a protocol's configuration.
PROTOCOL_TYPES: dict[str, type[EvaluationProtocol]] = {"image": ImageProtocol, "graph": GraphProtocol}
#: Fields that name a protocol rather than describe its recipe: never changed in place.
IDENTITY_FIELDS = ("name", "version", "modality", "derived_from", "changes")

PROTOCOLS: Registry[EvaluationProtocol] = Registry("protocol", providers=("evaluation.protocols._named",))


def register_protocol(protocol: EvaluationProtocol) -> EvaluationProtocol:
    """Add ``protocol`` to the registry under its name (duplicates raise)."""
    return PROTOCOLS.register(protocol.name, protocol)  # type: ignore[return-value]


def get_protocol(name: str) -> EvaluationProtocol:
    """The registered protocol ``name`` (unknown names list the valid ones)."""
    return PROTOCOLS.get(name)


def list_protocols(pattern: str = "*", *, modality: str | None = None) -> list[str]:
    """Registered protocol names, optionally of one modality (``image`` or ``graph``)."""
    return [n for n in PROTOCOLS.names(pattern) if modality is None or PROTOCOLS.get(n).modality == modality]


def protocol_from_config(config: Mapping[str, Any], *, path: str = "protocol") -> EvaluationProtocol:
    """The protocol a plain configuration describes, every field type-checked.

    Raises:
        OptionError: an unknown modality, an unknown or missing field, or a value of the wrong
            type (named as ``protocol.recipe.epochs``).
    """
    values = dict(config)
    modality = values.pop("modality", None)
    if modality not in PROTOCOL_TYPES:
        raise OptionError(f"{path}.modality must be one of {', '.join(PROTOCOL_TYPES)}, got {modality!r}")
    owner = f"protocol {values.get('name')!r}"
    return build_typed(PROTOCOL_TYPES[modality], values, path=path, owner=owner)


def derive_protocol(base: EvaluationProtocol, changes: Mapping[str, Any]) -> EvaluationProtocol:
    """``base`` with dotted fields changed (``{"num_models": 2, "recipe.epochs": 50}``).

    The result is another protocol: its name lists the changes (``fast[num_models=2]``) and it
    records what it was derived from. Changes that leave every value as it is return ``base``.

    Raises:
        OptionError: a change to an identity field, an unknown field or a value of the wrong type.
    """
    config = base.config_dict()
    # Fields a recipe leaves out of its identity at their defaults can still be changed.
    updated = EvaluationProtocol.config_dict(base)
    for dotted, value in changes.items():
        parts = dotted.split(".")
        if parts[0] in IDENTITY_FIELDS:
            raise OptionError(
                f"protocol.{dotted} cannot be changed: it names the protocol; define a new protocol "
                "in configs/protocol/<name>.yaml instead"
            )
        _check_field(updated, parts, base.name)
        nested: Any = value
        for part in reversed(parts):
            nested = {part: nested}
        updated = merge(updated, nested)
    # Typed first, so that the recorded changes are the values the recipe holds (4 -> 4.0).
    candidate = protocol_from_config({k: v for k, v in updated.items() if k not in ("derived_from", "changes")})
    real_changes = changed_fields(config, candidate.config_dict())
    if not real_changes:
        return base
    return dataclasses.replace(
        candidate, name=derived_name(base.name, real_changes), derived_from=base.name, changes=real_changes
    )


def _check_field(config: Mapping[str, Any], parts: list[str], protocol: str) -> None:
    """Raise unless ``parts`` names a field of ``config`` (a changed recipe never gains fields)."""
    node: Any = config
    for depth, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            where = ".".join(parts[:depth]) or "the recipe"
            valid = ", ".join(sorted(node)) if isinstance(node, Mapping) else "(none: it is a value)"
            raise OptionError(
                f"protocol {protocol!r} has no field protocol.{'.'.join(parts)}; fields of {where}: {valid}"
            )
        node = node[part]
