"""What the benchmark does differently for images and graphs, in one adapter per modality.

The runner, the record builder and the report are written once; each asks the cell's modality
for the little that differs: the compressed-set type and its file suffix, how a set is checked
against its training split, which reference methods stand for ``random`` and ``full``, what a
budget means, whether data-parallel evaluation exists, and which fields of a set and of its
evaluation the record keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from data import Registry
from data.graphs import GraphSet
from data.synthetic import SyntheticSet
from evaluation.protocols import EvaluationResult

#: What an image evaluation's details say about how it ran (``Execution``), kept in the record.
EXECUTION_DETAILS = ("vectorized_models", "compiled_models")


@dataclass(frozen=True)
class Modality:
    """The benchmark's view of one kind of data.

    Attributes:
        name: ``image`` or ``graph`` (what methods, datasets and protocols declare).
        set_type: the compressed-set class of the modality's methods.
        set_suffix: the file suffix of a saved set.
        references: reference method names of this modality, by the name a sweep uses
            (``random`` runs ``random_graphs`` on a graph dataset).
        budget_meaning: what a fraction budget keeps, for messages.
        data_parallel: whether a cell's evaluation can run data-parallel under torchrun.
        units: what a class holds, for messages (``images``, ``graphs``).
    """

    name: str
    set_type: type
    set_suffix: str
    references: Mapping[str, str] = field(default_factory=dict)
    budget_meaning: str = "a share of the training images"
    data_parallel: bool = False
    units: str = "images"

    def reference_method(self, reference: str) -> str:
        """The method that plays ``reference`` (``random``, ``full``) on this modality."""
        return self.references.get(reference, reference)

    def validate(self, compressed: Any, train: Any) -> None:
        """Raise for a set that is not this modality's, or cannot be trained on as it claims."""
        self.check_type(compressed)
        compressed.validate()

    def check_type(self, compressed: Any) -> None:
        """Raise ``TypeError`` unless ``compressed`` is this modality's set type."""
        if not isinstance(compressed, self.set_type):
            kind = type(compressed).__name__
            raise TypeError(f"a {self.name} method must return a {self.set_type.__name__}, got {kind}")

    def saves(self, compressed: Any) -> bool:
        """Whether the set is worth saving beside its record."""
        return True

    def label_type(self, compressed: Any) -> str:
        """``hard`` or ``soft``: the labels the set carries."""
        return "hard"

    def record_fields(self, compressed: Any, evaluation: EvaluationResult) -> dict[str, Any]:
        """What the record's ``protocol_config`` keeps of the set and its evaluation, beyond the recipe."""
        return {}


@dataclass(frozen=True)
class ImageModality(Modality):
    """Images: synthetic or selected images, soft labels, samplers, data-parallel evaluation."""

    def validate(self, compressed: SyntheticSet, train: Any) -> None:
        self.check_type(compressed)
        compressed.validate(image_shape=train.image_shape, check_budget=False)

    def saves(self, compressed: SyntheticSet) -> bool:
        # Pool samplers (RS2) hold the training set itself: not saved.
        return compressed.sampler is None

    def label_type(self, compressed: SyntheticSet) -> str:
        return "soft" if compressed.has_soft_labels else "hard"

    def record_fields(self, compressed: SyntheticSet, evaluation: EvaluationResult) -> dict[str, Any]:
        execution = {k: v for k, v in evaluation.details.items() if k in EXECUTION_DETAILS}
        soft_run = {k: v for k, v in evaluation.details.items() if k != "provenance" and k not in EXECUTION_DETAILS}
        return {
            "used_learned_lr": any(getattr(r, "used_learned_lr", False) for r in evaluation.per_model.values()),
            "sampler": compressed.sampler,
            **({"soft_run": soft_run} if soft_run else {}),
            **execution,
        }


@dataclass(frozen=True)
class GraphModality(Modality):
    """Graphs: selected real graphs or Mirage's tree forests; byte budgets; one process."""

    def record_fields(self, compressed: GraphSet, evaluation: EvaluationResult) -> dict[str, Any]:
        return {
            "sampling": compressed.sampling,
            "set_kind": compressed.kind,
            "best_epochs": {n: list(getattr(r, "best_epochs", ())) for n, r in evaluation.per_model.items()},
        }


MODALITIES: Registry[Modality] = Registry("modality")
MODALITIES.register(
    "image", ImageModality(name="image", set_type=SyntheticSet, set_suffix=".safetensors", data_parallel=True)
)
MODALITIES.register(
    "graph",
    GraphModality(
        name="graph",
        set_type=GraphSet,
        set_suffix=".graphset",
        references={"random": "random_graphs", "full": "full_graphs"},
        budget_meaning="a share of the training set's bytes",
        units="graphs",
    ),
)


def get_modality(name: str) -> Modality:
    """The adapter of modality ``name``."""
    return MODALITIES.get(name)
