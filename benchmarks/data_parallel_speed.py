"""Images per second of one student's soft-label training, one process against a torchrun group.

Trains an evaluation model under a soft protocol's labels (an online teacher on every augmented
batch) on the first ``--images`` training images, as a cell's evaluation does, and prints JSON
from rank 0: seconds, images per second, world size, device. Compare::

    python benchmarks/data_parallel_speed.py --dataset fashion_mnist --threads 2
    torchrun --standalone --nproc_per_node 2 benchmarks/data_parallel_speed.py --dataset fashion_mnist --threads 1

On GPUs, ``--device cuda`` takes the GPU ``LOCAL_RANK`` under torchrun.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from data import load_dataset
from data.devices import describe_device
from data.seeding import make_generator, seeded_torch
from evaluation.kd.soft import train_soft_student
from evaluation.kd.trainer import StudentRecipe
from evaluation.models import create_model
from evaluation.parallel import close, from_environment, single_or
from evaluation.protocols import get_protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", default="convnet_bn", help="student and teacher (untrained: speed only)")
    parser.add_argument("--protocol", default="soft", help="a soft protocol: its labels and augmentation")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    parallel = from_environment(device)
    group = single_or(parallel)
    labels_config = get_protocol(args.protocol).soft
    if labels_config is None:
        raise SystemExit(f"protocol {args.protocol!r} is not a soft-label protocol")
    train, _, _ = load_dataset(args.dataset, seed=0)
    images, labels = train.images[: args.images], train.labels[: args.images]
    shape = tuple(train.image_shape)

    def network(seed: int) -> torch.nn.Module:
        with seeded_torch(seed, "cpu"):
            return create_model(args.model, in_channels=shape[0], num_classes=train.num_classes, image_size=shape[1:])

    teacher = network(1).to(device).eval()
    student = group.prepare(network(2), device)
    recipe = StudentRecipe(epochs=args.epochs, optimizer="adamw", lr=1e-3, batch_size=args.batch_size)
    group.barrier()
    start = time.perf_counter()
    train_soft_student(
        student,
        images,
        labels,
        labels_config,
        recipe,
        generator=make_generator(0, "cpu"),
        num_classes=train.num_classes,
        flip=train.flip,
        teacher=teacher,
        device=device,
        parallel=parallel,
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    group.barrier()
    seconds = time.perf_counter() - start
    if group.is_main:
        print(
            json.dumps(
                {
                    "dataset": args.dataset,
                    "model": args.model,
                    "protocol": args.protocol,
                    "images": len(images),
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "world_size": group.world_size,
                    "device": describe_device(device),
                    "seconds": round(seconds, 2),
                    "images_per_second": round(len(images) * args.epochs / seconds, 1),
                }
            )
        )
    close(parallel)


if __name__ == "__main__":
    main()
