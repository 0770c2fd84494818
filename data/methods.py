"""The one method registry shared by synthesizers (``condense``) and selectors (``baselines``).

Every method has a typed config dataclass with its official defaults; ``create_method(name,
**overrides)`` builds it, checking each option against the dataclass's annotations. A method
turns a training set and a :class:`Budget` into a compressed set through :meth:`Method.condense`.

The registry fills itself on first use: it imports the suite's method packages (``condense``,
``baselines``) and loads every method that an installed package declares in the entry-point group
``condense_bench.methods``, e.g. in that package's ``pyproject.toml``::

    [project.entry-points."condense_bench.methods"]
    my_method = "my_package.methods:MyMethod"   # a Method subclass, registered as "my_method"

A plugin method runs in sweeps, records and tables like a built-in one.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch

from data._registry import Registry
from data._typed import build_typed
from data.image import ImageDataset
from data.provenance import ResourceMeter, method_provenance
from data.synthetic import Budget, SyntheticSet

Family = Literal["distillation", "selection", "reference"]


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base of every method config (methods subclass it with their own typed fields).

    ``added_fields`` names fields added after records of the method existed: at their default they
    are left out of :meth:`Method.config_dict`, so the cell keys of those records stay valid.
    """

    added_fields: ClassVar[frozenset[str]] = frozenset()


class Method(ABC):
    """A dataset compression method.

    Subclasses set ``name``, ``family``, ``label_type`` and ``config_class`` (filled in by
    :func:`register_method`) and implement :meth:`condense`.
    """

    name: ClassVar[str] = ""
    family: ClassVar[Family] = "distillation"
    label_type: ClassVar[Literal["hard", "soft"]] = "hard"
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    #: methods whose result does not depend on the budget (``full``) are run once per dataset.
    uses_budget: ClassVar[bool] = True
    #: The data a method works on: ``image`` datasets or ``graph`` datasets (``data.graphs``).
    modality: ClassVar[Literal["image", "graph"]] = "image"

    def __init__(self, config: MethodConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()

    @abstractmethod
    def condense(
        self,
        train: ImageDataset,
        budget: Budget,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> SyntheticSet:
        """Compress ``train`` to ``budget``; returns a validated set with provenance."""

    def config_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON-able data (added fields only when changed)."""
        data = dataclasses.asdict(self.config)
        defaults = {f.name: f.default for f in dataclasses.fields(self.config)}
        for name in self.config.added_fields:
            if data[name] == defaults[name]:
                data.pop(name)
        return data

    def provenance(self, train: ImageDataset, seed: int, meter: ResourceMeter) -> dict[str, Any]:
        """The provenance block of a set this method made from ``train`` (see ``method_provenance``)."""
        return method_provenance(
            method=self.name,
            config=self.config_dict(),
            dataset=train.name,
            fingerprint=train.fingerprint(),
            seed=seed,
            meter=meter,
        )


#: Entry-point group under which installed packages declare their methods.
METHOD_ENTRY_POINTS = "condense_bench.methods"


def _method_class(name: str, declared: Any) -> type[Method]:
    """A plugin's declared object as a method class registered under ``name``."""
    if not (isinstance(declared, type) and issubclass(declared, Method)):
        raise TypeError(f"method plugin {name!r} must name a Method subclass, got {declared!r}")
    if declared.name and declared.name != name:
        raise ValueError(f"method plugin {name!r} names a class already registered as {declared.name!r}")
    declared.name = name
    return declared


METHODS: Registry[type[Method]] = Registry(
    "method", providers=("condense", "baselines"), entry_point_group=METHOD_ENTRY_POINTS, adapt=_method_class
)


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: register a :class:`Method` subclass under ``name``."""

    def _register(cls: type[Method]) -> type[Method]:
        cls.name = name
        METHODS.register(name, cls)
        return cls

    return _register


def build_method(name: str, **overrides: Any) -> Method:
    """Instantiate method ``name`` with its default config updated by ``overrides``.

    Raises:
        ValueError: unknown method (lists the valid ones), unknown option (lists the fields), or
            an option of the wrong type (names it: ``method.iterations must be an integer``).
    """
    cls = METHODS.get(name)
    return cls(build_typed(cls.config_class, overrides, path="method", owner=f"method {name!r}"))
