"""DSA augmentation: siamese identity, differentiability, per-image parameters, no flip on digits."""

from __future__ import annotations

import pytest
import torch

from evaluation.augment import DEFAULT_STRATEGY, NO_FLIP_STRATEGY, dsa_augment, parse_strategy, strategy_for

OPS = ["color", "crop", "cutout", "flip", "scale", "rotate"]


def batch(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("op", OPS)
def test_same_generator_state_gives_identical_transforms(op):
    real, synthetic = batch(6, seed=1), batch(2, seed=2)
    # A shared draw applied to two batches must transform them identically: feed the same image.
    probe = torch.cat([synthetic[:1], synthetic[:1]])
    out_a = dsa_augment(torch.cat([probe, real]), op, torch.Generator().manual_seed(7), shared=True)
    out_b = dsa_augment(probe, op, torch.Generator().manual_seed(7), shared=True)
    assert torch.allclose(out_a[:2], out_b, atol=1e-6)
    assert torch.allclose(out_b[0], out_b[1], atol=1e-6)


@pytest.mark.parametrize("op", OPS)
def test_gradients_reach_the_pixels(op):
    for seed in range(4):  # flip may draw "no flip"; some seed must move every pixel path
        images = batch(3).requires_grad_(True)
        out = dsa_augment(images, op, torch.Generator().manual_seed(seed), shared=False)
        (out * torch.randn_like(out)).sum().backward()
        assert images.grad is not None and torch.isfinite(images.grad).all()
        assert images.grad.abs().sum() > 0


def test_per_image_parameters_differ():
    images = batch(1).repeat(8, 1, 1, 1)
    out = dsa_augment(images, "rotate", torch.Generator().manual_seed(0), shared=False)
    assert not torch.allclose(out[0], out[1])
    shared = dsa_augment(images, "rotate", torch.Generator().manual_seed(0), shared=True)
    assert torch.allclose(shared[0], shared[1])


def test_strategies():
    assert strategy_for(False) == NO_FLIP_STRATEGY and "flip" not in parse_strategy(strategy_for(False))
    assert strategy_for(True) == DEFAULT_STRATEGY


def test_the_flip_policy_is_a_dataset_setting_not_a_name(tmp_path):
    """Digits default to no flips; digits loaded through ``imagefolder`` with ``flip=false`` keep
    that policy in every split (and hash apart from the flippable copy)."""
    from PIL import Image

    from data import load_dataset

    digits_train, _, digits_test = load_dataset("digits")
    assert digits_train.flip is False and digits_test.flip is False
    for split in ("train", "test"):
        for label in ("0", "1"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for index in range(4):
                Image.new("L", (8, 8), color=40 * index + 100 * int(label)).save(folder / f"{index}.png")
    flippable = load_dataset("imagefolder", root=tmp_path, image_size=8, val_fraction=0.25)
    kept = load_dataset("imagefolder", root=tmp_path, image_size=8, val_fraction=0.25, flip=False)
    assert flippable.train.flip is True and all(split.flip is False for split in kept)
    assert flippable.train.fingerprint() != kept.train.fingerprint()
    with pytest.raises(ValueError, match="flip must be true or false"):
        load_dataset("imagefolder", root=tmp_path, image_size=8, flip="no")
    with pytest.raises(ValueError, match="valid ops"):
        parse_strategy("color_nosuch")


def test_crop_is_an_integer_shift_with_zero_fill():
    image = torch.arange(64.0).view(1, 1, 8, 8)
    out = dsa_augment(image, "crop", torch.Generator().manual_seed(3), shared=True)
    values = set(out.flatten().tolist())
    assert values <= set(image.flatten().tolist()) | {0.0}
