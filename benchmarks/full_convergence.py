"""How long the ``full`` reference must train to be the ceiling, chosen on the validation split.

The ``full`` row trains the whole training split for the protocol's ``full_data_epochs``. Too few
epochs and a small set trained for the protocol's (longer) ``recipe.epochs`` can beat it, so the
ceiling sits below the floor. For each candidate epoch count this trains the protocol's models
on the whole training split and scores them on the validation split (never on test), and prints
JSON: the mean validation accuracy per candidate and the smallest candidate within
``--tolerance`` points of the best one (the converged value)::

    python benchmarks/full_convergence.py --dataset digits --protocol fast --epochs 100 200 300 500
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

from condense import create_method
from data import load_dataset
from data.synthetic import Budget
from evaluation.protocols import evaluate_set, get_protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--protocol", default="fast")
    parser.add_argument("--epochs", type=int, nargs="+", default=[100, 200, 300, 500])
    parser.add_argument("--num-models", type=int, default=None, help="models per candidate (default: the protocol's)")
    parser.add_argument("--tolerance", type=float, default=0.5, help="points below the best that count as converged")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    protocol = get_protocol(args.protocol)
    if args.num_models is not None:
        protocol = dataclasses.replace(protocol, num_models=args.num_models)
    train, val, _ = load_dataset(args.dataset)
    whole = create_method("full").condense(train, Budget(ipc=1), seed=args.seed)
    started = time.perf_counter()
    rows = []
    for epochs in args.epochs:
        candidate = dataclasses.replace(protocol, full_data_epochs=epochs)
        result = evaluate_set(whole, val, candidate, seed=args.seed, train=train, val=val)
        accuracies = [a for model in result.per_model.values() for a in model.accuracies]
        rows.append({"full_data_epochs": epochs, "val_accuracy": statistics.fmean(accuracies), "runs": len(accuracies)})
    best = max(row["val_accuracy"] for row in rows)
    converged = min(row["full_data_epochs"] for row in rows if row["val_accuracy"] >= best - args.tolerance / 100)
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "protocol": args.protocol,
                "candidates": rows,
                "converged_full_data_epochs": converged,
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
