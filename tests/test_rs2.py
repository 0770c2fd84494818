"""RS2: per-round subsets without replacement, the two schedules, and a real run on digits."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import baselines.rs2  # noqa: F401 - registers rs2
from condense import create_method
from data.synthetic import Budget
from evaluation.protocols import evaluate_set, get_protocol, rs2_schedule


def test_rounds_never_repeat_an_image_within_a_pass(digits):
    train, _, _ = digits
    synthetic = create_method("rs2").condense(train, Budget(fraction=0.25), seed=0)
    per_round = synthetic.sampler["per_round"]
    assert per_round == int(Budget(fraction=0.25).per_class_counts(train.class_counts()).sum())
    rounds, factory = rs2_schedule(synthetic, get_protocol("fast"))
    sample = factory()
    generator = torch.Generator().manual_seed(0)
    seen: list[torch.Tensor] = []
    for epoch in range(12):
        chosen = sample(epoch, generator)
        assert len(chosen) == per_round and len(torch.unique(chosen)) == per_round
        seen.append(chosen)
    first_pass = torch.cat(seen)[: len(train)]
    assert len(torch.unique(first_pass)) == len(train)  # every image once before any repeats
    assert rounds == get_protocol("fast").recipe.epochs


def test_equal_iterations_matches_the_whole_data_step_count(digits):
    train, _, _ = digits
    protocol = get_protocol("fast")
    synthetic = create_method("rs2", schedule="equal_iterations").condense(train, Budget(fraction=0.1), seed=0)
    rounds, _ = rs2_schedule(synthetic, protocol)
    batch = protocol.recipe.batch_size
    full_steps = protocol.full_data_epochs * -(-len(train) // batch)
    steps_per_round = -(-synthetic.sampler["per_round"] // batch)
    assert rounds * steps_per_round >= full_steps > (rounds - 1) * steps_per_round


def test_rs2_trains_on_digits(digits):
    train, _, test = digits
    protocol = get_protocol("fast")
    short = dataclasses.replace(protocol, num_models=1, recipe=dataclasses.replace(protocol.recipe, epochs=60))
    synthetic = create_method("rs2").condense(train, Budget(ipc=10), seed=0)
    result = evaluate_set(synthetic, test, short, seed=0)
    assert result.epochs == 60
    assert result.per_model["convnet3"].accuracies[0] > 0.6  # chance is 0.1


def test_unknown_schedule_is_refused(digits):
    train, _, _ = digits
    with pytest.raises(ValueError, match="equal_iterations"):
        create_method("rs2", schedule="nosuch").condense(train, Budget(ipc=1), seed=0)
