"""TESLA: the constant-memory gradient against MTT's full unroll, its memory, batching and a digits run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from condense import create_method
from condense._networks import sample_network
from condense.experts import ParameterLayout
from condense.mtt import Unroll, chunk_batches, functional_unroll, parameter_matching_loss
from condense.tesla import constant_memory_gradients
from data.provenance import SavedTensorMeter
from data.seeding import make_generator
from evaluation.augment import dsa_augment, strategy_for


def _unroll(
    digits, steps: int, *, augment: bool = True, batch: int = 10, dtype: torch.dtype = torch.float32
) -> tuple[Unroll, torch.Tensor]:
    train = digits[0]
    net = sample_network("convnetd1", train, 0).to(dtype)
    layout = ParameterLayout.of(net)
    start = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    target = start + 0.05 * torch.randn(start.shape, generator=make_generator(1)).to(dtype)
    images = torch.cat([train.images[train.class_indices(c)[:2]] for c in range(10)]).to(dtype).requires_grad_(True)
    strategy = strategy_for(train.flip)

    def dsa(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return dsa_augment(x, strategy, g, shared=False)

    unroll = Unroll(
        net=net,
        layout=layout,
        start=start,
        target=target,
        targets=torch.arange(10).repeat_interleave(2),
        batches=chunk_batches(len(images), batch, steps, make_generator(2)),
        augment=dsa if augment else None,
        generator=make_generator(3),
    )
    return unroll, images


def _mtt_gradients(unroll: Unroll, images: torch.Tensor, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    generator = make_generator(3)
    end = functional_unroll(
        unroll.net,
        unroll.layout,
        unroll.start,
        images,
        unroll.targets,
        lr,
        unroll.batches,
        augment=unroll.augment,
        generator=generator,
    )
    loss = parameter_matching_loss(end, unroll.start, unroll.target)
    image_grad, lr_grad = torch.autograd.grad(loss, [images, lr])
    return image_grad, lr_grad


def _tesla_gradients(unroll: Unroll, images: torch.Tensor, lr: torch.Tensor, mode: str):
    images.grad = lr.grad = None
    unroll.generator = make_generator(3)
    loss, backward = constant_memory_gradients(unroll, images, lr, image_gradient=mode)
    backward()
    return loss, images.grad.clone(), lr.grad.clone()


def test_one_student_step_gives_mtts_gradients_exactly(digits) -> None:
    """In float64 the two gradients agree to 1e-5 relative (float32 rounding alone is about 1e-4)."""
    unroll, images = _unroll(digits, 1, dtype=torch.float64)
    lr = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    mtt_images, mtt_lr = _mtt_gradients(unroll, images, lr)
    loss, tesla_images, tesla_lr = _tesla_gradients(unroll, images, lr, "exact")
    torch.testing.assert_close(tesla_images, mtt_images, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(tesla_lr, mtt_lr, rtol=1e-5, atol=1e-12)
    assert mtt_images.abs().sum() > 0
    # The official code's gradient is half the formula; the lr's is not affected.
    _, official_images, official_lr = _tesla_gradients(unroll, images, lr, "official")
    torch.testing.assert_close(official_images, tesla_images / 2)
    torch.testing.assert_close(official_lr, tesla_lr)


def test_many_steps_drop_the_cross_step_terms_of_the_full_unroll(digits) -> None:
    """With several steps TESLA's image gradient leaves out how earlier images move later
    parameters (terms of order lr^2), and its lr gradient holds G fixed: close to MTT's at the
    official initial lr 0.01, far at 0.05."""
    cosines = {}
    for lr_value in (0.01, 0.05):
        unroll, images = _unroll(digits, 6)
        lr = torch.tensor(lr_value, requires_grad=True)
        mtt_images, mtt_lr = _mtt_gradients(unroll, images, lr)
        _, tesla_images, tesla_lr = _tesla_gradients(unroll, images, lr, "exact")
        cosines[lr_value] = float(F.cosine_similarity(tesla_images.flatten(), mtt_images.flatten(), dim=0))
        if lr_value == 0.01:
            assert abs(float(tesla_lr) - float(mtt_lr)) / abs(float(mtt_lr)) < 0.05
    assert 0.99 < cosines[0.01] < 1 - 1e-6 and cosines[0.05] < 0.9, cosines


def test_memory_holds_one_steps_graph_whatever_the_number_of_steps(digits) -> None:
    """The bytes autograd keeps alive at once: TESLA's stay flat in syn_steps, MTT's grow."""

    def peak_saved_bytes(run) -> int:
        with SavedTensorMeter() as meter:
            run()
        return meter.peak_bytes

    peaks = {}
    for steps in (10, 40):
        unroll, images = _unroll(digits, steps, augment=False)
        lr = torch.tensor(0.05, requires_grad=True)

        def tesla(unroll: Unroll = unroll, images: torch.Tensor = images, lr: torch.Tensor = lr) -> None:
            _, backward = constant_memory_gradients(unroll, images, lr)
            backward()

        def mtt(unroll: Unroll = unroll, images: torch.Tensor = images, lr: torch.Tensor = lr) -> None:
            end = functional_unroll(unroll.net, unroll.layout, unroll.start, images, unroll.targets, lr, unroll.batches)
            parameter_matching_loss(end, unroll.start, unroll.target).backward()

        peaks[steps] = (peak_saved_bytes(tesla), peak_saved_bytes(mtt))
    (tesla_10, mtt_10), (tesla_40, mtt_40) = peaks[10], peaks[40]
    assert tesla_40 <= 1.1 * tesla_10, peaks
    assert mtt_40 > 3 * mtt_10, peaks


def test_batches_are_the_last_chunks_of_fresh_permutations() -> None:
    batches = chunk_batches(10, 4, 4, make_generator(0))
    permutation = torch.randperm(10, generator=make_generator(0))
    assert [len(b) for b in batches] == [2, 4, 4, 2]  # chunks of 4, 4, 2: the short one is popped first
    assert torch.equal(batches[0], permutation[8:]) and torch.equal(batches[2], permutation[:4])
    assert [len(b) for b in chunk_batches(10, None, 2, make_generator(0))] == [10, 10]


def test_options_are_checked() -> None:
    # The digits runs (learned lr, beating random) are the trajectory methods' tests in test_trajectory.py.
    with pytest.raises(ValueError, match="image_gradient must be one of"):
        create_method("tesla", image_gradient="double")
    assert create_method("tesla").config.image_gradient == "official"
