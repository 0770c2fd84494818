"""Accuracy of sets distilled with each numeric setting of the real-image passes, as JSON.

For every seed and setting (``real_precision/real_memory_format``) the synthesizer distils a set,
which a hard-label protocol (fp32) evaluates on the **validation** split; the summary gives
each setting's accuracy mean and std over the seeds and its distillation seconds per iteration.
"Equal accuracy" means the settings' means differ by less than one std.

    python benchmarks/real_pass_numerics.py --method digits/dm --ipc 10 --iterations 200 --seeds 0 1 2
    python benchmarks/real_pass_numerics.py --method digits/dsa --ipc 1 --iterations 100 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from condense import create_method, method_options  # noqa: E402
from data import load_dataset  # noqa: E402
from data.synthetic import Budget  # noqa: E402
from evaluation.protocols import get_protocol  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="digits/dm", help="a synthesizer with real passes, or its config")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--protocol", default="fast")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=["fp32/contiguous", "bf16/contiguous"])
    args = parser.parse_args()
    name, options = method_options(args.method)
    if args.iterations is not None:
        options["iterations"] = args.iterations
    protocol = get_protocol(args.protocol)
    train, val, _test = load_dataset(args.dataset, seed=0)
    runs: dict[str, list[dict[str, float]]] = {setting: [] for setting in args.settings}
    for seed in args.seeds:
        for setting in args.settings:
            precision, memory_format = setting.split("/")
            method = create_method(
                name, **{**options, "real_precision": precision, "real_memory_format": memory_format}
            )
            synthetic = method.condense(train, Budget(ipc=args.ipc), seed=seed)
            result = protocol.evaluate(synthetic, val, seed=seed)
            accuracies = [a for m in result.per_model.values() for a in m.accuracies]
            row = {
                "seed": seed,
                "val_accuracy": statistics.fmean(accuracies),
                "seconds_per_iteration": float(synthetic.provenance["distillation"]["seconds_per_iteration"]),
            }
            runs[setting].append(row)
            print(json.dumps({"setting": setting, **row}), file=sys.stderr, flush=True)
    summary = {}
    for setting, rows in runs.items():
        accuracies = [r["val_accuracy"] for r in rows]
        summary[setting] = {
            "val_accuracy_mean": statistics.fmean(accuracies),
            "val_accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "seconds_per_iteration": statistics.fmean(r["seconds_per_iteration"] for r in rows),
        }
    print(
        json.dumps(
            {
                "method": args.method,
                "dataset": args.dataset,
                "ipc": args.ipc,
                "iterations": options.get("iterations"),
                "protocol": protocol.name,
                "seeds": args.seeds,
                "threads": torch.get_num_threads(),
                "summary": summary,
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
