"""What every evaluation protocol is and returns, whatever the data (images or graphs).

A protocol is a named, versioned recipe: the evaluation models, how many are trained per set,
and how they are trained. Its whole recipe lives in ``configs/protocol/<name>.yaml``; a protocol
whose fields were changed (from the command line, or with :func:`derive_protocol`) is a different
protocol with its own name (``fast[num_models=2]``), never mixed with the named one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from evaluation.parallel import DataParallel

#: A derived protocol's name lists its changes while this short; longer lists become a hash.
MAX_DERIVED_NAME = 80


@dataclass(frozen=True, kw_only=True)
class EvaluationProtocol(ABC):
    """A fixed evaluation recipe.

    Attributes:
        name: registry name (or derived name), recorded with every result.
        version: bumped whenever the recipe changes, so old records are not mixed with new.
        models: evaluation model registry names.
        num_models: freshly initialized models trained per evaluation model and set.
        description: one line for reports.
        derived_from: the named protocol this one changes (``None`` for a named protocol).
        changes: the changed fields of ``derived_from``, dotted name -> value.
    """

    #: The data the protocol evaluates on: ``image`` or ``graph``.
    modality: ClassVar[str] = ""

    name: str
    version: int
    models: tuple[str, ...]
    num_models: int
    description: str = ""
    derived_from: str | None = None
    changes: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError(f"protocol {self.name!r} needs at least one evaluation model")
        if self.num_models < 1:
            raise ValueError(f"protocol {self.name!r}: num_models must be >= 1, got {self.num_models}")
        if self.version < 1:
            raise ValueError(f"protocol {self.name!r}: version must be >= 1, got {self.version}")

    def config_dict(self) -> dict[str, Any]:
        """JSON-able resolved recipe (stored in every record)."""
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        for key in ("derived_from", "changes"):
            if data[key] is None:
                data.pop(key)
        return {"modality": self.modality, **data}

    def evaluate(
        self,
        compressed: Any,
        test: Any,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: bool = False,
        train: Any = None,
        val: Any = None,
        parallel: DataParallel | None = None,
        execution: Execution | None = None,
    ) -> EvaluationResult:
        """Train every evaluation model on ``compressed``; test each once on ``test``.

        Args:
            compressed: the set (the protocol's modality's set type).
            test: the test split, touched only for the final scores.
            seed: the cell seed (every model's seed derives from it).
            device: where to train.
            progress: progress bars.
            train: the whole training split (soft labels: the teacher's data).
            val: the validation split (graphs: the epoch is selected on it).
            parallel: the torchrun group training each model together (``None``: one process).
            execution: how the models train where the protocol supports it (:class:`Execution`;
                ``None``: one by one, eager): the same results up to float rounding.
        """
        request = EvaluationRequest(
            test, seed, torch.device(device), progress, train, val, parallel, execution or Execution()
        )
        return self.run(compressed, request)

    @abstractmethod
    def run(self, compressed: Any, request: EvaluationRequest) -> EvaluationResult:
        """What :meth:`evaluate` does for this kind of protocol."""


@dataclass(frozen=True)
class Execution:
    """How a protocol's models are run, never what they compute: every choice here gives the
    default's results up to float rounding, so none is part of a protocol's identity or a cell's
    key (like ``device``). The hard-label image protocols honour them; the others ignore them.

    Attributes:
        vectorize: train a model's ``num_models`` runs as one vectorized model
            (:mod:`evaluation.vectorized`).
        compile: ``torch.compile`` each model before training and testing it (TorchInductor;
            compiles once per architecture and input shape, then reuses the kernels). Not with
            ``vectorize``, nor under torchrun.
    """

    vectorize: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.vectorize and self.compile:
            raise ValueError("vectorize and compile cannot be combined; choose one")


@dataclass(frozen=True)
class EvaluationRequest:
    """What an evaluation is asked to use (see :meth:`EvaluationProtocol.evaluate`)."""

    test: Any
    seed: int
    device: torch.device
    progress: bool = False
    train: Any = None
    val: Any = None
    parallel: DataParallel | None = None
    execution: Execution = Execution()


@dataclass(frozen=True)
class ModelResult:
    """The ``num_models`` runs of one evaluation model on one set.

    Attributes:
        model: the evaluation model's registry name.
        accuracies: final test accuracy of every run (fractions).
        seconds: wall time of all runs.
    """

    model: str
    accuracies: tuple[float, ...]
    seconds: float

    def metrics(self) -> dict[str, tuple[float, ...]]:
        """Further per-run test metrics beside accuracy (one value per run), by name."""
        return {}


@dataclass(frozen=True)
class EvaluationResult:
    """All evaluation models of a protocol on one set.

    Attributes:
        protocol: the protocol's name.
        per_model: each evaluation model's runs.
        seconds: wall time of the whole evaluation.
        epochs: training epochs of each run.
        details: what the evaluation used beyond the recipe (soft labels: label source, teachers,
            label bytes; ``provenance``: the cost of cached products such as teachers).
    """

    protocol: str
    per_model: Mapping[str, ModelResult]
    seconds: float
    epochs: int
    details: dict[str, Any] = field(default_factory=dict)


def derived_name(base: str, changes: Mapping[str, Any]) -> str:
    """``base[field=value,...]``, or ``base[N changes #hash]`` when that would be long."""
    listed = ",".join(f"{key}={_compact(value)}" for key, value in sorted(changes.items()))
    if len(listed) <= MAX_DERIVED_NAME:
        return f"{base}[{listed}]"
    digest = hashlib.sha256(json.dumps(dict(changes), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{base}[{len(changes)} changes #{digest}]"


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def changed_fields(base: Mapping[str, Any], changed: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The dotted fields whose values differ between two recipes (mappings compared key by key)."""
    differences: dict[str, Any] = {}
    for key in sorted(set(base) | set(changed)):
        name = f"{prefix}{key}"
        old, new = base.get(key), changed.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            differences.update(changed_fields(old, new, prefix=f"{name}."))
        elif old != new:
            differences[name] = new
    return differences
