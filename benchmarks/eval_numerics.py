"""Accuracy and wall time of a hard-label protocol's evaluation under each numeric setting, as JSON.

For every seed, a random IPC-``N`` set of the training split is evaluated by the protocol (all of
its models, the same seeds) once per numeric setting, back to back, and tested on the
**validation** split (a setting is chosen on validation, never on test). The summary gives each
setting's accuracy mean and std over the seeds (each seed: the mean over the protocol's models),
its seconds, and its speed-up over fp32 in the contiguous layout measured in the same run.

    python benchmarks/eval_numerics.py --dataset fashion_mnist --ipc 10 --seeds 0 1 2
    python benchmarks/eval_numerics.py --dataset digits --ipc 10 --seeds 0 --epochs 20   # a quick look
    python benchmarks/eval_numerics.py --seeds 0 1 2 --settings fp32/contiguous fp32/contiguous/compiled \
        bf16/contiguous/compiled

A compiled setting's seconds include its compilations (into a fresh cache, in the first seed), as
a first run pays them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from condense import create_method  # noqa: E402
from data import load_dataset  # noqa: E402
from data.numerics import MEMORY_FORMATS, PRECISIONS, bf16_is_fast  # noqa: E402
from data.synthetic import Budget  # noqa: E402
from evaluation.protocols import Execution, get_protocol  # noqa: E402

DEFAULT_SETTINGS = ("fp32/contiguous", "bf16/contiguous", "bf16/channels_last")


def parse_setting(text: str) -> str:
    parts = text.split("/")
    if (
        len(parts) not in (2, 3)
        or parts[0] not in PRECISIONS
        or parts[1] not in MEMORY_FORMATS
        or parts[2:]
        not in (
            [],
            ["compiled"],
        )
    ):
        raise argparse.ArgumentTypeError(
            f"a setting is PRECISION/MEMORY_FORMAT[/compiled] with precision in {PRECISIONS} and format in "
            f"{MEMORY_FORMATS}"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--protocol", default="fast", help="a hard-label image protocol")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override the protocol's epochs (a quick look)")
    parser.add_argument(
        "--settings",
        type=parse_setting,
        nargs="+",
        default=list(DEFAULT_SETTINGS),
        help="PRECISION/MEMORY_FORMAT, optionally /compiled (torch.compile, Execution(compile=True))",
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if any(setting.endswith("/compiled") for setting in args.settings):
        # A cold compilation cache, so the compiled figures include what a first run pays.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-"))

    base = get_protocol(args.protocol)
    if base.soft is not None:
        parser.error(f"{args.protocol} is a soft-label protocol; numeric settings apply to the hard-label ones")
    if args.epochs is not None:
        base = dataclasses.replace(base, recipe=dataclasses.replace(base.recipe, epochs=args.epochs))
    runs: dict[str, list[dict[str, float]]] = {setting: [] for setting in args.settings}
    for seed in args.seeds:
        train, val, _test = load_dataset(args.dataset, seed=0)
        selected = create_method("random").condense(train, Budget(ipc=args.ipc), seed=seed)
        for setting in args.settings:
            precision, memory_format, *compiled = setting.split("/")
            protocol = dataclasses.replace(base, precision=precision, memory_format=memory_format)
            started = time.perf_counter()
            result = protocol.evaluate(selected, val, seed=seed, execution=Execution(compile=bool(compiled)))
            seconds = time.perf_counter() - started
            accuracies = [a for model in result.per_model.values() for a in model.accuracies]
            runs[setting].append({"seed": seed, "val_accuracy": statistics.fmean(accuracies), "seconds": seconds})
            print(
                json.dumps(
                    {
                        "seed": seed,
                        "setting": setting,
                        **runs[setting][-1],
                    }
                ),
                flush=True,
            )

    reference = sum(r["seconds"] for r in runs["fp32/contiguous"]) if "fp32/contiguous" in runs else None
    summary = {}
    for name, rows in runs.items():
        accuracies = [r["val_accuracy"] for r in rows]
        seconds = sum(r["seconds"] for r in rows)
        summary[name] = {
            "val_accuracy_mean": statistics.fmean(accuracies),
            "val_accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "seconds": seconds,
            "speedup_over_fp32_contiguous": reference / seconds if reference else None,
        }
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "ipc": args.ipc,
                "protocol": base.name,
                "epochs": base.recipe.epochs,
                "num_models": base.num_models,
                "seeds": args.seeds,
                "threads": torch.get_num_threads(),
                "bf16_native": bf16_is_fast("cpu"),
                "summary": summary,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
