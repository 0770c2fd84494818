"""One graph benchmark cell: graph dataset -> graph method -> GraphSet -> graph protocol -> record.

The cell key, the skip-if-recorded logic and the record writing are the image side's
(:mod:`condense.benchmark` dispatches here for a graph dataset); only the data, the method
interface and the protocol differ. Records carry test accuracy per model and run and, as an
extra metric, ROC-AUC (``results.<model>.roc_auc``). ``costs.set_bytes`` is the size of the set
in :meth:`data.graphs.GraphSet.to_bytes`; ``costs.num_images`` counts its training units
(graphs or tree-sets).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from condense import create_method
from data.graphs import GraphMethod, is_graph_dataset, list_graph_datasets, load_graph_dataset
from data.methods import Method
from data.provenance import describe_device
from data.synthetic import Budget
from evaluation.graph_protocol import evaluate_graph_set, get_graph_protocol
from leaderboard.records import ResultRecord, record_path, summarize_accuracies

logger = logging.getLogger(__name__)


def method_modality(method: Method | type[Method]) -> str:
    """``graph`` for graph methods, ``image`` for every other method."""
    return method.modality


def check_modality(method: Method, dataset: str) -> None:
    """Raise when a graph method meets an image dataset or an image method a graph dataset."""
    wanted = "graph" if is_graph_dataset(dataset) else "image"
    have = method_modality(method)
    if have != wanted:
        if have == "graph":
            raise ValueError(
                f"method {method.name!r} works on graph datasets ({', '.join(list_graph_datasets())}); "
                f"{dataset!r} is an image dataset"
            )
        raise ValueError(
            f"method {method.name!r} works on image datasets; {dataset!r} is a graph dataset "
            "(graph methods: mirage, random_graphs, herding_graphs, full_graphs)"
        )


def graph_cell_identity(spec: Any) -> dict[str, Any]:
    """The resolved configuration a graph cell's key hashes (validates names and options)."""
    from condense.benchmark import identity_of

    method = create_method(spec.method, **spec.method_options)
    check_modality(method, spec.dataset)
    hint = " (a share of the bytes)"
    return identity_of(spec, method, get_graph_protocol(spec.protocol), budget_hint=hint)


def run_graph_cell(
    spec: Any,
    *,
    results_dir: str | Path,
    device: torch.device,
    progress: bool = False,
    save_set: bool = True,
) -> Any:
    """Run one graph cell (the caller, ``condense.benchmark``, has found no record for it).

    Returns a :class:`condense.benchmark.CellOutcome`.
    """
    from condense.benchmark import _describe, cell_key, publish_record, record_costs, record_stamp

    results_dir = Path(results_dir)
    identity = graph_cell_identity(spec)
    key = cell_key(spec)
    path = record_path(results_dir, spec.dataset, spec.method, key)

    started = time.perf_counter()
    method = create_method(spec.method, **spec.method_options)
    assert isinstance(method, GraphMethod)
    protocol = get_graph_protocol(spec.protocol)
    budget = Budget(ipc=identity["ipc"], fraction=identity["fraction"])
    logger.info("graph cell %s: %s on %s", key, _describe(spec), describe_device(device))
    train, val, test = load_graph_dataset(spec.dataset, seed=spec.seed, **spec.dataset_options)
    graph_set = method.condense(train, budget, seed=spec.seed, device=device, progress=progress)
    graph_set.validate()
    set_bytes = graph_set.num_bytes()
    set_path = None
    if save_set and method.family != "reference":
        set_path = graph_set.save(results_dir / "sets" / spec.dataset / spec.method / f"{key}.graphset")

    evaluation = evaluate_graph_set(graph_set, val, test, protocol, seed=spec.seed, device=device, progress=progress)
    provenance = graph_set.provenance
    results: dict[str, Any] = {}
    for name, result in evaluation.per_model.items():
        entry: dict[str, Any] = {"accuracies": list(result.accuracies), **summarize_accuracies(result.accuracies)}
        if all(math.isfinite(v) for v in result.roc_aucs):
            entry["roc_auc"] = list(result.roc_aucs)
        results[name] = entry
    record = ResultRecord.from_dict(
        {
            "schema": "condense-bench/record",
            "schema_version": 1,
            "cell_key": key,
            "method": spec.method,
            "family": method.family,
            "label_type": "hard",
            "method_config": identity["method_config"],
            "dataset": spec.dataset,
            "dataset_fingerprint": train.fingerprint(),
            "ipc": identity["ipc"],
            "fraction": identity["fraction"],
            "protocol": protocol.name,
            "protocol_config": {
                **protocol.config_dict(),
                "epochs_run": evaluation.epochs,
                "sampling": graph_set.sampling,
                "set_kind": graph_set.kind,
                "best_epochs": {n: list(r.best_epochs) for n, r in evaluation.per_model.items()},
            },
            "seed": spec.seed,
            "results": results,
            "costs": record_costs(
                provenance, eval_seconds=evaluation.seconds, set_bytes=set_bytes, num_items=len(graph_set)
            ),
            **record_stamp(device, results_dir, set_path),
        }
    )
    return publish_record(record, results_dir, key, path, started)


#: The graph counterparts of the image references (the floor and the ceiling of every table).
GRAPH_REFERENCES = {"random": "random_graphs", "full": "full_graphs"}


def reference_for_dataset(reference: str, dataset: str) -> str:
    """The reference method to run beside a cell: ``random``/``full`` become their graph versions on graphs."""
    return GRAPH_REFERENCES.get(reference, reference) if is_graph_dataset(dataset) else reference
