"""Seconds per iteration and peak memory of the trajectory-matching unroll against ``syn_steps``, as JSON.

One iteration = the functional unroll of ``syn_steps`` student steps on the synthetic set (DSA,
``batch_syn`` images per step) from an expert snapshot, the normalized parameter loss and the
backward pass into the pixels and the lr: what MTT/FTD/DATM do per iteration (``--method mtt``),
or TESLA's constant-memory form of it (``--method tesla``: a forward pass without a graph, then
one step's graph at a time). Expert loading is excluded; a fresh network stands in for the expert,
so no experts are trained here.

Memory: ``graph_bytes`` is the most bytes autograd holds saved for backward passes at any one time
(device independent; what grows with ``syn_steps`` in MTT and not in TESLA), ``peak_bytes`` is
``torch.cuda.max_memory_allocated`` on CUDA, or the peak RSS increase of a fresh process per case
on CPU, both measured over the first iteration (later ones reuse the allocator's memory).

    python benchmarks/trajectory_speed.py                                  # fashion_mnist, ipc 1
    python benchmarks/trajectory_speed.py --dataset digits --model convnetd2 --steps 5 10 20
    python benchmarks/trajectory_speed.py --method mtt tesla --steps 10 20 40
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run_case(
    method: str, dataset: str, model: str, ipc: int, syn_steps: int, batch_syn: int | None, repeats: int, device: str
) -> dict[str, Any]:
    """Time ``repeats`` unrolled iterations (after one warm-up) in this process."""
    import torch

    from condense._networks import sample_network
    from condense.experts import ParameterLayout
    from condense.mtt import Unroll, functional_unroll, minibatch_indices, parameter_matching_loss
    from condense.tesla import constant_memory_gradients
    from data import load_dataset
    from data.provenance import ResourceMeter, SavedTensorMeter
    from data.seeding import make_generator
    from evaluation.augment import dsa_augment, strategy_for

    dev = torch.device(device)
    train, _, _ = load_dataset(dataset, seed=0)
    net = sample_network(model, train, 0, dev)
    layout = ParameterLayout.of(net)
    start = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    target = start + 0.01 * torch.randn(start.shape, generator=make_generator(1, "cpu")).to(dev)
    images = torch.cat([train.images[train.class_indices(c)[:ipc]] for c in range(train.num_classes)]).to(dev)
    images.requires_grad_(True)
    labels = torch.arange(train.num_classes, device=dev).repeat_interleave(ipc)
    lr = torch.tensor(0.01, device=dev, requires_grad=True)
    strategy = strategy_for(train.flip)
    generator = make_generator(0, "cpu")
    saved = SavedTensorMeter()

    def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return dsa_augment(x, strategy, g, shared=False)

    def one_iteration() -> None:
        batches = minibatch_indices(len(images), batch_syn, syn_steps, generator)
        if method == "tesla":
            unroll = Unroll(net, layout, start, target, labels, batches, augment, generator)
            _, backward = constant_memory_gradients(unroll, images, lr)
            backward()
        else:
            end = functional_unroll(
                net, layout, start, images, labels, lr, batches, augment=augment, generator=generator
            )
            parameter_matching_loss(end, start, target).backward()
        images.grad = None
        lr.grad = None

    def iteration(count_graph: bool) -> None:
        if count_graph:
            with saved:
                one_iteration()
        else:
            one_iteration()

    with ResourceMeter(dev) as meter:  # first iteration of a fresh process: its peak memory
        iteration(count_graph=True)  # also the saved-tensor size of one iteration
    started = time.perf_counter()
    for _ in range(repeats):
        iteration(count_graph=False)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = (time.perf_counter() - started) / repeats
    return {
        "method": method,
        "dataset": dataset,
        "model": model,
        "ipc": ipc,
        "syn_steps": syn_steps,
        "batch_syn": batch_syn if batch_syn is not None else len(images),
        "parameters": layout.numel,
        "seconds_per_iteration": seconds,
        "graph_bytes": saved.peak_bytes,
        "peak_bytes": meter.peak_memory_bytes,
        "memory_kind": meter.memory_kind,
        "device": device,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", nargs="+", choices=("mtt", "tesla"), default=["mtt"])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--model", default="convnet3")
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--batch-syn", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:  # one case in this (fresh) process
        result = run_case(
            args.method[0], args.dataset, args.model, args.ipc, args.steps[0], args.batch_syn, args.repeats, args.device
        )
        print(json.dumps(result))
        return
    results = []
    for method in args.method:
        for steps in args.steps:
            command = [sys.executable, __file__, "--case", "--method", method, "--dataset", args.dataset]
            command += ["--model", args.model, "--ipc", str(args.ipc), "--steps", str(steps)]
            command += ["--repeats", str(args.repeats), "--device", args.device]
            if args.batch_syn is not None:
                command += ["--batch-syn", str(args.batch_syn)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(output.strip().splitlines()[-1]))
    print(json.dumps({"platform": platform.platform(), "cases": results}, indent=2))


if __name__ == "__main__":
    main()
