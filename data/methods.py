"""The one method registry shared by synthesizers (``condense``) and selectors (``baselines``).

Every method has a typed config dataclass with its official defaults; ``create_method(name,
**overrides)`` builds it. A method turns a training set and a :class:`Budget` into a
:class:`SyntheticSet` through :meth:`Method.condense`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch

from data._registry import Registry
from data.image import ImageDataset
from data.provenance import ResourceMeter, method_provenance
from data.synthetic import Budget, SyntheticSet

Family = Literal["distillation", "selection", "reference"]


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base of every method config (methods subclass it with their own typed fields)."""


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
        """The resolved config as plain JSON-able data."""
        return dataclasses.asdict(self.config)

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


METHODS: Registry[type[Method]] = Registry("method")


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
        ValueError: unknown method (lists the valid ones) or unknown option (lists the fields).
    """
    cls = METHODS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        valid = ", ".join(sorted(fields)) or "(none)"
        raise ValueError(f"method {name!r} has no option(s) {', '.join(unknown)}; valid options: {valid}")
    return cls(cls.config_class(**overrides))
