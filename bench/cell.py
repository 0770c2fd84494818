"""A benchmark cell: what the user asks for (:class:`CellSpec`) and what it resolves to (:class:`Cell`).

A cell is (method and its config, dataset, budget, protocol, seed). Resolving it builds the
method and the protocol, checks that method, dataset and protocol belong to one modality and that
the budget suits the method, and computes the cell key once: 16 hex characters of the SHA-256 of
the canonical identity. A cell whose record exists is skipped, so a killed sweep re-runs only
what is missing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from bench.modality import Modality, get_modality
from condense import create_method, list_methods
from data import check_dataset_options, dataset_modality, list_datasets
from data.methods import Method
from data.synthetic import BUDGET_POLICIES, Budget, BudgetError
from evaluation.protocols import EvaluationProtocol, get_protocol, list_protocols

#: Dataset options that say where files are, not what the data is: kept out of the cell key.
LOCATION_OPTIONS = frozenset({"root", "download"})


@dataclass(frozen=True)
class CellSpec:
    """Everything that defines one benchmark cell.

    Attributes:
        method: method registry name.
        dataset: dataset registry name.
        protocol: a registered protocol's name, or a protocol (a changed or new one).
        seed: the cell seed.
        ipc: images (graphs) per class, or ``None``.
        fraction: kept share of the training set, or ``None`` (exclusive with ``ipc``).
        method_options: the method's options (defaults where absent).
        dataset_options: the dataset's options (``root``, ``val_fraction``, ...).
        budget_policy: ``error`` refuses an ``ipc`` above a class's size; ``cap`` keeps the whole
            class instead (selection methods) and records the capped counts.
    """

    method: str
    dataset: str
    protocol: str | EvaluationProtocol
    seed: int
    ipc: int | None = None
    fraction: float | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    budget_policy: str = "error"

    @property
    def protocol_name(self) -> str:
        """The protocol's name (a changed protocol's derived name)."""
        return self.protocol if isinstance(self.protocol, str) else self.protocol.name

    def describe(self) -> str:
        """``method=... dataset=... ipc=... protocol=... seed=...`` for logs."""
        budget = f"ipc={self.ipc}" if self.fraction is None else f"fraction={self.fraction}"
        return f"method={self.method} dataset={self.dataset} {budget} protocol={self.protocol_name} seed={self.seed}"


@dataclass(frozen=True)
class Cell:
    """A resolved cell: the built method and protocol, its modality, budget, identity and key."""

    spec: CellSpec
    method: Method
    protocol: EvaluationProtocol
    modality: Modality
    budget: Budget
    identity: dict[str, Any]
    key: str


def resolve_cell(spec: CellSpec) -> Cell:
    """Build and check everything ``spec`` names; raises ``ValueError`` before any work.

    Raises:
        ValueError: an unknown method, dataset, protocol or option (each listing the valid
            choices), a method, dataset and protocol of different modalities, or a budget the
            method cannot take.
    """
    method = create_method(spec.method, **spec.method_options)
    protocol = spec.protocol if isinstance(spec.protocol, EvaluationProtocol) else get_protocol(spec.protocol)
    modality = get_modality(dataset_modality(spec.dataset))
    check_modalities(method, protocol, spec.dataset, modality)
    check_dataset_options(spec.dataset, spec.dataset_options)
    budget = Budget(ipc=spec.ipc, fraction=spec.fraction) if method.uses_budget else Budget()
    if method.uses_budget and budget.is_full:
        raise ValueError(f"method {spec.method!r} needs a budget: set ipc=N or fraction=F ({modality.budget_meaning})")
    if spec.budget_policy not in BUDGET_POLICIES:
        raise BudgetError(f"unknown budget_policy {spec.budget_policy!r}; valid: {', '.join(BUDGET_POLICIES)}")
    if spec.budget_policy == "cap" and method.family == "distillation":
        raise BudgetError(
            f"budget_policy=cap keeps whole classes, which only selection methods can do; {spec.method!r} "
            "learns ipc images of every class: give an ipc no class falls below"
        )
    identity = {
        "method": spec.method,
        "method_config": method.config_dict(),
        "dataset": spec.dataset,
        "dataset_options": {k: v for k, v in sorted(spec.dataset_options.items()) if k not in LOCATION_OPTIONS},
        "ipc": budget.ipc,
        "fraction": budget.fraction,
        "protocol": protocol.name,
        "protocol_version": protocol.version,
        "seed": spec.seed,
    }
    if spec.budget_policy != "error":
        # A capped cell is not the cell its ipc names (kept out of the key otherwise).
        identity["budget_policy"] = spec.budget_policy
    if protocol.derived_from is not None:
        # A changed protocol: its whole recipe is part of what the cell is.
        identity["protocol_config"] = protocol.config_dict()
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    key = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return Cell(spec, method, protocol, modality, budget, identity, key)


def cell_key(spec: CellSpec) -> str:
    """The cell key of ``spec`` (see :func:`resolve_cell`)."""
    return resolve_cell(spec).key


def check_modalities(method: Method, protocol: EvaluationProtocol, dataset: str, modality: Modality) -> None:
    """Raise unless method, protocol and dataset are of one modality; the message lists what fits."""
    kind = modality.name
    article = "an" if kind[0] in "aeiou" else "a"
    if method.modality != kind:
        raise ValueError(
            f"method {method.name!r} works on {method.modality} datasets "
            f"({', '.join(list_datasets(modality=method.modality))}); {dataset!r} is {article} {kind} dataset "
            f"({kind} methods: {', '.join(list_methods(modality=kind))})"
        )
    if protocol.modality != kind:
        raise ValueError(
            f"protocol {protocol.name!r} evaluates {protocol.modality} sets; {dataset!r} is {article} {kind} dataset "
            f"(valid {kind} protocols: {', '.join(list_protocols(modality=kind))})"
        )
