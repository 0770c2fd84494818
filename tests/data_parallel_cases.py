"""Training runs compared between one process and a ``torchrun`` group (tests/test_data_parallel.py).

Run under torchrun it joins the group (Gloo, CPU) and saves each rank's trained weights and
accuracies to ``$OUT/rank<r>.pt``; imported, :func:`run_cases` gives the single-process ones.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import torch

from data import load_dataset
from data.seeding import make_generator, seeded_torch
from evaluation.augment import dsa_augmenter
from evaluation.kd.soft import build_replay_store, train_soft_student
from evaluation.kd.trainer import StudentRecipe
from evaluation.models import create_model
from evaluation.parallel import DataParallel, close, from_environment, single_or
from evaluation.protocols import get_protocol
from evaluation.train import TrainRecipe, accuracy, train_classifier

#: 97 images in batches of 32: three even batches and a last batch of one, which every rank trains whole.
NUM_IMAGES = 97
BATCH = 32


def _student(model: str, seed: int, shape: tuple[int, ...], parallel: DataParallel | None) -> torch.nn.Module:
    with seeded_torch(seed, "cpu"):
        network = create_model(model, in_channels=shape[0], num_classes=10, image_size=shape[1:])
    return single_or(parallel).prepare(network, "cpu")


def run_cases(parallel: DataParallel | None) -> dict[str, object]:
    """Hard-label and soft-label (online, replay, stored with CutMix) training of a BatchNorm ConvNet."""
    torch.set_num_threads(1)
    train, _, test = load_dataset("digits", seed=0)
    images, labels = train.images[:NUM_IMAGES], train.labels[:NUM_IMAGES]
    shape = tuple(train.image_shape)
    out: dict[str, object] = {}

    model = _student("convnet_bn", 1, shape, parallel)
    augment = dsa_augmenter(train.flip)
    stats = train_classifier(
        model,
        images,
        labels,
        TrainRecipe(epochs=3, lr=0.01, batch_size=BATCH),
        generator=make_generator(2, "cpu"),
        augment=augment,
        parallel=parallel,
    )
    out["hard"] = {k: v.clone() for k, v in model.state_dict().items()}
    out["hard_loss"] = stats.final_loss
    out["hard_accuracy"] = accuracy(model, test.images, test.labels, parallel=parallel)

    with seeded_torch(3, "cpu"):
        teacher = create_model("convnet_bn", in_channels=shape[0], num_classes=10, image_size=shape[1:]).eval()
    # SGD: with an untrained teacher the KL gradients are near zero, where AdamW's normalization
    # turns summation-order noise into full-size steps and the comparison would measure that noise.
    recipe = StudentRecipe(epochs=2, optimizer="sgd", lr=0.05, batch_size=BATCH, schedule="cosine")
    protocol_labels = get_protocol("soft").soft
    assert protocol_labels is not None
    for source, augmentation in (("online", "dsa"), ("replay", "cutmix"), ("stored", "mixup")):
        config = dataclasses.replace(protocol_labels, label_source=source, augmentation=augmentation)
        student = _student("convnet_bn", 4, shape, parallel)
        replay = stored = None
        if source == "replay":
            replay = build_replay_store(
                teacher,
                images,
                config,
                recipe,
                generator=make_generator(5, "cpu"),
                flip=train.flip,
                parallel=parallel,
            )
            out["replay_logits"] = torch.cat(replay.logits)
        if source == "stored":
            with torch.no_grad():
                stored = teacher(images)
        loss = train_soft_student(
            student,
            images,
            labels,
            config,
            recipe,
            generator=make_generator(5, "cpu"),
            num_classes=10,
            flip=train.flip,
            teacher=teacher,
            stored_logits=stored,
            replay=replay,
            parallel=parallel,
        )
        out[source] = {k: v.clone() for k, v in student.state_dict().items()}
        out[f"{source}_loss"] = loss
    return out


if __name__ == "__main__":
    group = from_environment("cpu")
    assert group is not None, "run under torchrun with --nproc_per_node >= 2"
    results = run_cases(group)
    torch.save(results, Path(os.environ["OUT"]) / f"rank{group.rank}.pt", pickle_protocol=2)
    close(group)
    sys.exit(0)
