"""Vectorized against sequential evaluation of one set: seconds, peak memory and accuracies, as JSON.

A random IPC-``N`` set is evaluated by a hard-label protocol twice per round, its models trained
one by one and then as one vectorized model (``vectorize_eval``); rounds alternate so drift hits
both alike, and each figure is the median over the rounds. The accuracies (validation split)
show that the two train the same models.

    python benchmarks/eval_vectorized.py --dataset digits --ipc 1 10 --epochs 50 --rounds 2
    python benchmarks/eval_vectorized.py --dataset fashion_mnist --ipc 10 --epochs 20 --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from condense import create_method  # noqa: E402
from data import load_dataset  # noqa: E402
from data.devices import describe_device, resolve_device  # noqa: E402
from data.provenance import ResourceMeter  # noqa: E402
from data.synthetic import Budget  # noqa: E402
from evaluation.protocols import get_protocol  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--protocol", default="fast")
    parser.add_argument("--epochs", type=int, default=50, help="the protocol's epochs for this measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    protocol = get_protocol(args.protocol)
    protocol = dataclasses.replace(protocol, recipe=dataclasses.replace(protocol.recipe, epochs=args.epochs))
    train, val, _test = load_dataset(args.dataset, seed=0)
    cases = []
    for ipc in args.ipc:
        selected = create_method("random").condense(train, Budget(ipc=ipc), seed=0)
        protocol.evaluate(selected, val, seed=0, device=device, vectorize=True)  # warm-up, untimed
        runs: dict[str, list[dict[str, object]]] = {"sequential": [], "vectorized": []}
        for _ in range(args.rounds):
            for name, vectorize in (("sequential", False), ("vectorized", True)):
                with ResourceMeter(device) as meter:
                    result = protocol.evaluate(selected, val, seed=0, device=device, vectorize=vectorize)
                accuracies = [a for m in result.per_model.values() for a in m.accuracies]
                runs[name].append(
                    {
                        "seconds": meter.seconds,
                        "peak_memory_bytes": meter.peak_memory_bytes,
                        "val_accuracies": accuracies,
                    }
                )
        seconds = {name: statistics.median(r["seconds"] for r in rows) for name, rows in runs.items()}  # type: ignore[misc]
        cases.append(
            {
                "ipc": ipc,
                "images": len(selected),
                "seconds": seconds,
                "speedup_vectorized": seconds["sequential"] / seconds["vectorized"],
                "peak_memory_bytes": {name: max(r["peak_memory_bytes"] for r in rows) for name, rows in runs.items()},  # type: ignore[type-var]
                "val_accuracies": {name: rows[-1]["val_accuracies"] for name, rows in runs.items()},
            }
        )
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "protocol": protocol.name,
                "num_models": protocol.num_models,
                "device": describe_device(device),
                "threads": torch.get_num_threads(),
                "rounds": args.rounds,
                "cases": cases,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
