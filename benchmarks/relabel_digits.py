"""SRe2L and CDA on digits under their own relabel protocol, against random under the same one.

Each cell runs through the benchmark (``run_cell``) with the scaled-down digits settings
(``method=digits/sre2l``, ``digits/cda``) and ``sre2l_relabel`` with the digits squeeze teacher
(the BN ConvNet-3 those settings train, so method and protocol share one cached teacher). Prints
JSON: the test accuracy (mean of the protocol's students) per method and seed, and the means::

    python benchmarks/relabel_digits.py --ipc 2 --seeds 0 1 2 --results /tmp/relabel_digits
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from bench import CellSpec, run_cell
from condense.presets import method_options
from condense.recover import teacher_config
from evaluation.protocols import get_protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipc", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["digits/sre2l", "digits/cda", "random"])
    parser.add_argument("--results", type=Path, default=Path("results/relabel_digits"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _, squeeze = method_options("digits/sre2l")
    teacher = teacher_config(
        squeeze["squeeze_model"], squeeze["squeeze_epochs"], squeeze["squeeze_lr"], squeeze["squeeze_batch_size"]
    )
    base = get_protocol("sre2l_relabel")
    protocol = dataclasses.replace(base, soft=dataclasses.replace(base.soft, teachers=(teacher,)))
    started = time.perf_counter()
    accuracies: dict[str, dict[int, float]] = {}
    for option in args.methods:
        name, options = method_options(option) if "/" in option else (option, {})
        for seed in args.seeds:
            spec = CellSpec(
                method=name, dataset="digits", protocol=protocol, seed=seed, ipc=args.ipc, method_options=options
            )
            record = run_cell(spec, results_dir=args.results, device="cpu", save_set=False).record
            accuracies.setdefault(option, {})[seed] = next(iter(record.results.values())).mean
    print(
        json.dumps(
            {
                "protocol": f"sre2l_relabel with teacher {teacher.model} ({teacher.epochs} epochs)",
                "ipc": args.ipc,
                "test_accuracy": accuracies,
                "mean": {option: statistics.fmean(by_seed.values()) for option, by_seed in accuracies.items()},
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
