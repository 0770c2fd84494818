"""Seconds per iteration of DM and DC/DSA against plain per-class loops that do what the official
code does, measured back to back in one process, printed as JSON.

The plain loops follow ``main_DM.py`` and ``main.py`` of VICO-UoE/DatasetCondensation (written
here, not copied): a fresh ConvNet each iteration; per class, a random real batch, siamese DSA,
then (DM) the squared distance of the mean embeddings of the real and synthetic images, or (DC)
the layer-wise distance of the real and synthetic gradients, all in NCHW fp32; one image update
per iteration (DC: per outer step, then the inner network training on the synthetic set). The
suite runs its own ``dm``/``dsa`` synthesizers with each ``--settings`` value of
``real_precision/real_memory_format``. Rounds alternate the variants, so the machine's drift
hits all alike; each variant's figure is its median over the rounds, after one untimed
iteration of each.

    python benchmarks/matching_speed.py --method dm --ipc 1 10 --iterations 5 --rounds 3
    python benchmarks/matching_speed.py --method dsa --ipc 1 --iterations 3 --rounds 3
    python benchmarks/matching_speed.py --method dsa --ipc 1 --iterations 1 --rounds 2 \
        --settings fp32/contiguous fp32/contiguous/batched
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from condense import create_method  # noqa: E402
from condense._augment import siamese_augment  # noqa: E402
from condense.dc import gradient_distance, loop_schedule  # noqa: E402
from data import load_dataset  # noqa: E402
from data.numerics import bf16_is_fast  # noqa: E402
from data.synthetic import Budget  # noqa: E402
from evaluation.augment import dsa_augment, strategy_for  # noqa: E402
from evaluation.models import create_model  # noqa: E402

DEFAULT_SETTINGS = ("fp32/contiguous", "bf16/contiguous", "bf16/channels_last")


def plain_loop_seconds(method: str, train, ipc: int, iterations: int, seed: int) -> float:
    """Mean seconds per iteration of the plain official-style loop."""
    generator = torch.Generator().manual_seed(seed)
    classes = [train.images[train.labels == c] for c in range(train.num_classes)]
    synthetic = torch.cat([images[:ipc] for images in classes]).clone().requires_grad_(True)
    labels = torch.arange(train.num_classes).repeat_interleave(ipc)
    dm = method == "dm"
    optimizer_img = torch.optim.SGD([synthetic], lr=1.0 if dm else 0.1, momentum=0.5)
    strategy = strategy_for(train.flip)
    outer_loop, inner_loop = loop_schedule(ipc)
    model = "convnet3"
    seconds = []
    for _ in range(iterations):
        started = time.perf_counter()
        net = create_model(
            model, in_channels=train.image_shape[0], num_classes=train.num_classes, image_size=train.image_shape[1:]
        )
        net.train()
        if dm:
            net.requires_grad_(False)
            loss = torch.zeros(())
            for c, images in enumerate(classes):
                real = images[torch.randperm(len(images), generator=generator)[:256]]
                seed_c = int(torch.randint(2**31 - 1, (1,), generator=generator))
                real, syn = siamese_augment(real, synthetic[c * ipc : (c + 1) * ipc], strategy, seed_c)
                real_mean = net.embed(real).detach().mean(dim=0)
                loss = loss + ((real_mean - net.embed(syn).mean(dim=0)) ** 2).sum()
            optimizer_img.zero_grad()
            loss.backward()
            optimizer_img.step()
        else:
            params = list(net.parameters())
            optimizer_net = torch.optim.SGD(params, lr=0.01)
            for outer in range(outer_loop):
                loss = torch.zeros(())
                for c, images in enumerate(classes):
                    real = images[torch.randperm(len(images), generator=generator)[:256]]
                    seed_c = int(torch.randint(2**31 - 1, (1,), generator=generator))
                    syn = synthetic[c * ipc : (c + 1) * ipc]
                    real, syn = siamese_augment(real, syn, strategy, seed_c)
                    real_loss = F.cross_entropy(net(real), torch.full((len(real),), c))
                    real_grads = [g.detach() for g in torch.autograd.grad(real_loss, params)]
                    syn_loss = F.cross_entropy(net(syn), labels[c * ipc : (c + 1) * ipc])
                    syn_grads = torch.autograd.grad(syn_loss, params, create_graph=True)
                    loss = loss + gradient_distance(syn_grads, real_grads, "ours")
                optimizer_img.zero_grad()
                loss.backward()
                optimizer_img.step()
                if outer == outer_loop - 1:
                    break
                images_syn = synthetic.detach()
                for _ in range(inner_loop):
                    order = torch.randperm(len(images_syn), generator=generator)
                    for first in range(0, len(order), 256):
                        index = order[first : first + 256]
                        inputs = dsa_augment(images_syn[index], strategy, generator)
                        step_loss = F.cross_entropy(net(inputs), labels[index])
                        optimizer_net.zero_grad()
                        step_loss.backward()
                        optimizer_net.step()
        seconds.append(time.perf_counter() - started)
    return statistics.fmean(seconds)


def suite_seconds(method: str, train, ipc: int, iterations: int, seed: int, setting: str) -> float:
    """Mean seconds per iteration of the suite's synthesizer (setup excluded).

    ``setting`` is ``PRECISION/FORMAT``, for dsa optionally ``PRECISION/FORMAT/batched``
    (the classes' real gradients in one vectorized pass, ``batch_classes``).
    """
    precision, memory_format, *rest = setting.split("/")
    options = {"batch_classes": True} if rest == ["batched"] else {}
    synthesizer = create_method(
        method,
        iterations=iterations,
        model="convnet3",
        real_precision=precision,
        real_memory_format=memory_format,
        **options,
    )
    synthetic = synthesizer.condense(train, Budget(ipc=ipc), seed=seed)
    return float(synthetic.provenance["distillation"]["seconds_per_iteration"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("dm", "dsa"), default="dm")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--iterations", type=int, default=3, help="iterations per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--settings",
        nargs="+",
        default=list(DEFAULT_SETTINGS),
        help="real_precision/real_memory_format, for dsa optionally with /batched (batch_classes)",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train, _val, _test = load_dataset(args.dataset, seed=0)
    cases = []
    for ipc in args.ipc:
        times: dict[str, list[float]] = {"plain": [], **{s: [] for s in args.settings}}
        # One untimed iteration of every variant first: kernel selection and allocator warm-up.
        plain_loop_seconds(args.method, train, ipc, 1, args.seed)
        for setting in args.settings:
            suite_seconds(args.method, train, ipc, 1, args.seed, setting)
        for round_index in range(args.rounds):
            times["plain"].append(plain_loop_seconds(args.method, train, ipc, args.iterations, args.seed + round_index))
            for setting in args.settings:
                times[setting].append(
                    suite_seconds(args.method, train, ipc, args.iterations, args.seed + round_index, setting)
                )
            print(
                json.dumps({"ipc": ipc, "round": round_index, **{k: v[-1] for k, v in times.items()}}),
                file=sys.stderr,
                flush=True,
            )
        medians = {name: statistics.median(values) for name, values in times.items()}
        cases.append(
            {
                "ipc": ipc,
                "seconds_per_iteration": medians,
                "speedup_over_plain": {
                    name: medians["plain"] / value for name, value in medians.items() if name != "plain"
                },
                "all_rounds": times,
            }
        )
    print(
        json.dumps(
            {
                "method": args.method,
                "dataset": args.dataset,
                "iterations_per_round": args.iterations,
                "rounds": args.rounds,
                "threads": torch.get_num_threads(),
                "bf16_native": bf16_is_fast("cpu"),
                "cases": cases,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
