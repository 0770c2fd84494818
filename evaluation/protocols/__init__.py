"""Evaluation protocols: named, versioned recipes (``configs/protocol/*.yaml``) and :func:`evaluate_set`.

One entry point evaluates any compressed set under any protocol of its modality::

    from evaluation.protocols import evaluate_set, get_protocol
    result = evaluate_set(synthetic, test, get_protocol("fast"), seed=0, train=train, val=val)
    result.per_model["convnet3"].accuracies
"""

from __future__ import annotations

from typing import Any

from evaluation.protocols.base import (
    EvaluationProtocol,
    EvaluationResult,
    Execution,
    ModelResult,
    changed_fields,
    derived_name,
)
from evaluation.protocols.graph import GraphModelResult, GraphProtocol, evaluate_graph_set
from evaluation.protocols.image import ImageModelResult, ImageProtocol, rs2_schedule
from evaluation.protocols.registry import (
    PROTOCOL_TYPES,
    PROTOCOLS,
    derive_protocol,
    get_protocol,
    list_protocols,
    protocol_from_config,
    register_protocol,
)


def evaluate_set(compressed: Any, test: Any, protocol: EvaluationProtocol, **options: Any) -> EvaluationResult:
    """Train every evaluation model of ``protocol`` on ``compressed``; test each once on ``test``.

    ``options`` are :meth:`EvaluationProtocol.evaluate`'s: ``seed`` (required), ``device``,
    ``progress``, ``train`` (image protocols' soft labels need it for the teacher), ``val`` (graph
    protocols report the epoch of the best validation score), ``parallel`` (a torchrun group) and
    ``execution`` (:class:`Execution`: vectorized or compiled training, same results).
    """
    return protocol.evaluate(compressed, test, **options)


__all__ = [
    "PROTOCOLS",
    "PROTOCOL_TYPES",
    "EvaluationProtocol",
    "EvaluationResult",
    "Execution",
    "GraphModelResult",
    "GraphProtocol",
    "ImageModelResult",
    "ImageProtocol",
    "ModelResult",
    "changed_fields",
    "derive_protocol",
    "derived_name",
    "evaluate_graph_set",
    "evaluate_set",
    "get_protocol",
    "list_protocols",
    "protocol_from_config",
    "register_protocol",
    "rs2_schedule",
]
