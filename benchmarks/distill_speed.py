"""Seconds per outer iteration and peak memory of the matching synthesizers, printed as JSON.

Each (method, ipc) case runs in a fresh Python process. ``peak_memory_bytes`` is what
:class:`data.provenance.ResourceMeter` records for the distillation (``peak_memory_kind`` says
which: the rise of the resident set above its level at the start on CPU, or
``torch.cuda.max_memory_allocated`` on CUDA); ``baseline_rss_bytes`` is the process's peak
after loading the dataset, before distilling. Seconds per iteration is the mean wall time of
the loop's iterations (setup and initialization excluded); for the decoupled methods (SRe2L,
CDA, INFER) it is the distillation time over all recovery steps, and ``teacher_seconds`` is
the squeeze (zero on a cache hit); G-VBSM and EDC time their recovery steps alone (the squeeze
of their observers is ``teacher_seconds``, the statistics pass ``statistics_seconds``, both
zero on a cache hit). RDED has no iterations: only its time is reported. One
DC/DSA outer iteration at IPC 10 holds 10 matching steps and 9 x 50 inner epochs (minutes on a
CPU), hence one iteration by default.

    python benchmarks/distill_speed.py                      # fashion_mnist, ipc 1 and 10
    python benchmarks/distill_speed.py --dataset digits --iterations 5
    python benchmarks/distill_speed.py --dataset digits --methods digits/sre2l rded --ipc 10 --iterations 100
    python benchmarks/distill_speed.py --dataset digits --methods digits/ncfm digits/tesla digits/gvbsm digits/edc \
        --ipc 10 --iterations 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_METHODS = ("dc", "dsa", "dm", "datadam")


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_case(dataset: str, method: str, ipc: int, iterations: int, device: str, seed: int) -> dict[str, Any]:
    """Distill once in this process and report its speed and memory."""
    from condense import create_method, method_options
    from data import load_dataset
    from data.devices import resolve_device
    from data.synthetic import Budget

    torch_device = resolve_device(device)
    train, _val, _test = load_dataset(dataset, seed=seed)
    name, options = method_options(method)  # a registered name or a config such as digits/sre2l
    if "iterations" in options:
        options["iterations"] = iterations
    synthesizer = create_method(name, **options)
    baseline = _peak_rss_bytes()
    started = time.perf_counter()
    synthetic = synthesizer.condense(train, Budget(ipc=ipc), seed=seed, device=torch_device)
    wall = time.perf_counter() - started
    provenance = synthetic.provenance
    summary = provenance.get("distillation", {})
    per_iteration = summary.get("seconds_per_iteration")
    if per_iteration is None and summary.get("steps"):
        per_iteration = provenance["distill_seconds"] / summary["steps"]
    return {
        "method": method,
        "ipc": ipc,
        "iterations": options.get("iterations"),
        "seconds_per_iteration": per_iteration,
        "distill_seconds": provenance["distill_seconds"],
        "wall_seconds": wall,
        "teacher_seconds": provenance.get("precomputed", {}).get("teacher", {}).get("seconds"),
        "teacher_cache_hit": provenance.get("precomputed", {}).get("teacher", {}).get("cache_hit"),
        "statistics_seconds": provenance.get("precomputed", {}).get("statistics", {}).get("seconds"),
        "peak_memory_bytes": provenance["peak_memory_bytes"],
        "peak_memory_kind": provenance["peak_memory_kind"],
        "baseline_rss_bytes": baseline,
        "device": provenance["device"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion_mnist", help="registered dataset (default: fashion_mnist)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), help="methods or configs (digits/sre2l)")
    parser.add_argument("--ipc", nargs="+", type=int, default=[1, 10], help="images per class (default: 1 10)")
    parser.add_argument("--iterations", type=int, default=1, help="outer iterations per case (default: 1)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)  # one case, in this process
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.single:
        case = run_case(args.dataset, args.methods[0], args.ipc[0], args.iterations, args.device, args.seed)
        print(json.dumps(case))
        return
    results = []
    for method in args.methods:
        for ipc in args.ipc:
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--single",
                f"--dataset={args.dataset}",
                f"--methods={method}",
                f"--ipc={ipc}",
                f"--iterations={args.iterations}",
                f"--device={args.device}",
                f"--seed={args.seed}",
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
            if done.returncode != 0:
                results.append({"method": method, "ipc": ipc, "error": done.stderr.strip().splitlines()[-1:]})
                continue
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    import torch

    report = {
        "dataset": args.dataset,
        "iterations": args.iterations,
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "machine": platform.machine(),
        "results": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
