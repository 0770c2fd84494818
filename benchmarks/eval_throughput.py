"""Images per second of the protocol's training loop against a bare PyTorch loop.

Both train the same evaluation model on the same images for the same number of epochs; the
protocol loop adds per-image DSA (as the protocols do) unless ``--no-augment``. Prints JSON.

    python benchmarks/eval_throughput.py --dataset digits --images 500 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from data import load_dataset
from data.seeding import make_generator, seeded_torch
from evaluation.augment import dsa_augment, strategy_for
from evaluation.models import create_model
from evaluation.train import TrainRecipe, train_classifier


def bare_loop(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, recipe: TrainRecipe, device: torch.device
) -> float:
    """A minimal SGD loop with the same optimizer and batch size; returns seconds."""
    model.to(device).train()
    images, labels = images.to(device), labels.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    generator = torch.Generator().manual_seed(0)
    _sync(device)
    start = time.perf_counter()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(images), generator=generator).to(device)
        for first in range(0, len(images), recipe.batch_size):
            batch = order[first : first + recipe.batch_size]
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    _sync(device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", default="convnet3")
    parser.add_argument("--images", type=int, default=512, help="training images (first N of train)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-augment", action="store_true", help="time the protocol loop without DSA")
    args = parser.parse_args()

    device = torch.device(args.device)
    train, _, _ = load_dataset(args.dataset, seed=0)
    images, labels = train.images[: args.images], train.labels[: args.images]
    recipe = TrainRecipe(epochs=args.epochs, batch_size=args.batch_size)
    strategy = strategy_for(train.flip)

    def build() -> torch.nn.Module:
        with seeded_torch(0, device):
            return create_model(
                args.model,
                in_channels=train.image_shape[0],
                num_classes=train.num_classes,
                image_size=train.image_shape[1:],
            )

    augment = None if args.no_augment else (lambda batch, gen: dsa_augment(batch, strategy, gen))
    # Warm-up so that one-time allocation and kernel selection are not timed.
    bare_loop(build(), images, labels, TrainRecipe(epochs=1, batch_size=args.batch_size), device)
    bare_seconds = bare_loop(build(), images, labels, recipe, device)
    protocol_stats = train_classifier(
        build(), images, labels, recipe, generator=make_generator(0), augment=augment, device=device
    )
    seen = len(images) * args.epochs
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "model": args.model,
                "device": str(device),
                "threads": torch.get_num_threads(),
                "images": len(images),
                "epochs": args.epochs,
                "augment": "none" if args.no_augment else f"dsa:{strategy}",
                "bare_images_per_second": round(seen / bare_seconds, 1),
                "protocol_images_per_second": round(seen / protocol_stats.seconds, 1),
                "protocol_over_bare": round(bare_seconds / protocol_stats.seconds, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
