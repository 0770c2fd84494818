"""Hydra structured configs: the benchmark's own options and every method's typed options.

Registering a method's config dataclass in Hydra's ConfigStore (``method_schema/<name>``) makes
the dataclass the schema of its YAML files: ``configs/method/<name>.yaml`` only extends it
(``defaults: [/method_schema/<name>@_here_, _self_]``) and presets state what they change, and a
value of the wrong type (``method.iterations=abc``) fails at composition, naming the option. A
method without a YAML file (a plugin's) is composed from its schema alone (``method/<name>``).

OmegaConf knows fewer types than the dataclasses use: ``Literal`` fields become strings (their
choices are checked when the method is built, before any work) and tuples become lists.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from condense.presets import METHOD_SCHEMA_GROUP
from data._typed import field_types
from data.configs import config_dir
from data.methods import METHODS, Method
from evaluation.protocols import PROTOCOLS


@dataclass
class BenchConfig:
    """The top-level options of ``condense-bench`` (``configs/bench.yaml`` sets their values)."""

    method: Any = MISSING
    dataset: Any = MISSING
    protocol: Any = MISSING
    ipc: Optional[int] = 10  # noqa: UP045 - OmegaConf needs typing.Optional
    fraction: Optional[float] = None  # noqa: UP045
    budget_policy: str = "error"
    presets: str = "official"
    seed: int = 0
    references: list[str] = field(default_factory=lambda: ["random"])
    device: str = "auto"
    threads: Optional[int] = None  # noqa: UP045
    vectorize_eval: bool = False
    compile_eval: bool = False
    results_dir: str = "results"
    save_sets: bool = True
    progress: bool = False
    report: bool = True
    plugins: list[str] = field(default_factory=list)


#: Top-level keys a cell reads (every other key is refused; ``hydra`` is Hydra's own).
BENCH_KEYS = frozenset(f.name for f in dataclasses.fields(BenchConfig))


def omegaconf_type(annotation: Any) -> Any:
    """The closest type OmegaConf accepts for a dataclass annotation.

    Booleans stay untyped: OmegaConf would turn ``3`` or ``"yes"`` into ``True``, where
    :func:`data._typed.build_typed` refuses anything but ``true`` and ``false``.
    """
    if annotation is bool:
        return Any
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is Literal:
        return type(arguments[0]) if len({type(a) for a in arguments}) == 1 else Any
    if origin in (Union, types.UnionType):
        kept = [a for a in arguments if a is not type(None)]
        inner = omegaconf_type(kept[0]) if len(kept) == 1 else Any
        return Optional[inner] if type(None) in arguments else inner  # noqa: UP045
    if origin in (tuple, list):
        element = arguments[0] if arguments and (origin is list or arguments[-1] is Ellipsis) else Any
        inner = omegaconf_type(element)
        return list[inner] if inner in (int, float, str) else list[Any]
    if annotation in (int, float, str):
        return annotation
    return Any


def _plain(value: Any) -> Any:
    """A default as OmegaConf stores it (tuples as lists)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def method_schema(cls: type[Method]) -> type:
    """A structured-config dataclass of ``cls``'s options, with ``name`` first and the defaults."""
    config = cls.config_class
    defaults = {f.name: f for f in dataclasses.fields(config) if f.init}
    schema_fields: list[tuple[str, Any, Any]] = [("name", str, field(default=cls.name))]
    for name, annotation in field_types(config).items():
        declared = defaults[name]
        if declared.default is not dataclasses.MISSING:
            default = _plain(declared.default)
        elif declared.default_factory is not dataclasses.MISSING:
            default = _plain(declared.default_factory())
        else:
            default = MISSING
        if isinstance(default, list):
            schema_fields.append((name, omegaconf_type(annotation), field(default_factory=lambda d=default: list(d))))
        else:
            schema_fields.append((name, omegaconf_type(annotation), field(default=default)))
    return dataclasses.make_dataclass(f"{config.__name__}Options", schema_fields)


def register_schemas() -> None:
    """Store the bench schema, every method's schema, and option nodes for what has no YAML file.

    Methods and protocols registered in Python (plugins) get an option of their own, so that
    ``method=<name>`` and ``protocol=<name>`` compose for them like for the built-in ones.
    """
    store = ConfigStore.instance()
    store.store(name="bench_schema", node=BenchConfig)
    root = config_dir()
    for name in METHODS.names():
        schema = method_schema(METHODS.get(name))
        store.store(group=METHOD_SCHEMA_GROUP, name=name, node=schema)
        if not (root / "method" / f"{name}.yaml").is_file():
            store.store(group="method", name=name, node=schema)
    for name in PROTOCOLS.names():
        if not (root / "protocol" / f"{name}.yaml").is_file():
            store.store(group="protocol", name=name, node=PROTOCOLS.get(name).config_dict())
