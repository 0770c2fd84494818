"""Numeric settings (precision, layout) and vectorized evaluation: the same models, the same results."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from data.numerics import Numerics
from data.seeding import derive_seed, make_generator, seeded_torch
from evaluation.augment import dsa_augmenter
from evaluation.models import create_model
from evaluation.protocols import Execution, get_protocol
from evaluation.train import FINITE_CHECK_EVERY, LossWatch, TrainRecipe, accuracy, train_classifier
from evaluation.vectorized import can_vectorize, train_classifiers_vectorized


def _models(name: str, count: int, image_shape: tuple[int, ...], num_classes: int) -> list[torch.nn.Module]:
    models = []
    for index in range(count):
        with seeded_torch(derive_seed("test", name, index)):
            models.append(
                create_model(name, in_channels=image_shape[0], num_classes=num_classes, image_size=image_shape[1:])
            )
    return models


def _subset(digits, per_class: int):
    train, _val, _test = digits
    keep = torch.cat([torch.nonzero(train.labels == c).flatten()[:per_class] for c in range(train.num_classes)])
    return train.images[keep], train.labels[keep]


@pytest.mark.parametrize("model_name", ["convnet3", "convnet_bn"])
def test_vectorized_training_equals_training_one_by_one(digits, model_name: str) -> None:
    images, labels = _subset(digits, 6)  # 60 images: 2 batches of 32 per epoch, the last one short
    recipe = TrainRecipe(epochs=4, batch_size=32, decay_at=0.5)
    augment = dsa_augmenter(flip=False)
    sequential = _models(model_name, 3, digits[0].image_shape, 10)
    vectorized = _models(model_name, 3, digits[0].image_shape, 10)
    for index, model in enumerate(sequential):
        train_classifier(
            model, images, labels, recipe, generator=make_generator(index), augment=augment, description="one"
        )
    train_classifiers_vectorized(
        vectorized, images, labels, recipe, generators=[make_generator(i) for i in range(3)], augment=augment
    )
    for one, together in zip(sequential, vectorized, strict=True):
        for (name, a), (_, b) in zip(one.state_dict().items(), together.state_dict().items(), strict=True):
            if a.is_floating_point():
                torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=f"{model_name} {name}")
            else:
                assert torch.equal(a, b), name
    # The models differ from each other (their own seeds and draws), so the check above can fail.
    assert not torch.allclose(sequential[0].classifier.weight, sequential[1].classifier.weight)


def test_a_protocol_gives_the_same_accuracies_vectorized(digits) -> None:
    from condense import create_method
    from data.synthetic import Budget

    train, val, _test = digits
    selected = create_method("random").condense(train, Budget(ipc=3), seed=0)
    protocol = get_protocol("fast")
    protocol = dataclasses.replace(protocol, recipe=dataclasses.replace(protocol.recipe, epochs=8))
    sequential = protocol.evaluate(selected, val, seed=4)
    vectorized = protocol.evaluate(selected, val, seed=4, execution=Execution(vectorize=True))
    assert vectorized.details["vectorized_models"] == ["convnet3"]
    assert "vectorized_models" not in sequential.details
    # Float summation order differs (one grouped convolution): allow two validation images.
    for a, b in zip(
        vectorized.per_model["convnet3"].accuracies, sequential.per_model["convnet3"].accuracies, strict=True
    ):
        assert abs(a - b) <= 2 / len(val) + 1e-9


def test_compiled_training_equals_eager_training(digits) -> None:
    images, labels = _subset(digits, 6)
    recipe = TrainRecipe(epochs=3, batch_size=32)
    eager, compiled = (_models("mlp", 1, digits[0].image_shape, 10)[0] for _ in range(2))
    compiled.compile()
    for model in (eager, compiled):
        train_classifier(model, images, labels, recipe, generator=make_generator(0), augment=dsa_augmenter(False))
    for (name, a), (_, b) in zip(eager.state_dict().items(), compiled.state_dict().items(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    assert accuracy(compiled, images, labels) == accuracy(eager, images, labels)


def test_a_protocol_records_compiled_models_and_refuses_compile_with_vectorize(digits) -> None:
    from condense import create_method
    from data.synthetic import Budget
    from evaluation.protocols import derive_protocol

    train, val, _test = digits
    selected = create_method("random").condense(train, Budget(ipc=2), seed=0)
    protocol = derive_protocol(get_protocol("fast"), {"models": ["mlp"], "num_models": 1, "recipe.epochs": 4})
    eager = protocol.evaluate(selected, val, seed=1)
    compiled = protocol.evaluate(selected, val, seed=1, execution=Execution(compile=True))
    assert compiled.details["compiled_models"] == ["mlp"] and "compiled_models" not in eager.details
    (a,), (b,) = compiled.per_model["mlp"].accuracies, eager.per_model["mlp"].accuracies
    assert abs(a - b) <= 2 / len(val) + 1e-9
    with pytest.raises(ValueError, match="vectorize and compile cannot be combined"):
        Execution(vectorize=True, compile=True)


def test_the_loss_watch_names_the_first_broken_epoch_without_waiting_every_epoch() -> None:
    epochs = FINITE_CHECK_EVERY + 5
    watch = LossWatch("student", epochs)
    for epoch in range(FINITE_CHECK_EVERY - 1):
        watch.add(epoch, torch.tensor(1.0 if epoch != 3 else float("nan")))
    assert watch.last is None  # nothing checked yet: no wait for the device so far
    with pytest.raises(FloatingPointError, match="student: training loss became nan at epoch 3"):
        watch.add(FINITE_CHECK_EVERY - 1, torch.tensor(1.0))
    finite = LossWatch("ok", 2)
    finite.add(0, torch.tensor([1.0, 2.0]))
    finite.add(1, torch.tensor([0.5, 0.25]))
    assert finite.final_losses() == [0.5, 0.25]
    assert LossWatch("none", 0).final_losses() != LossWatch("none", 0).final_losses()  # NaN before any epoch


def test_models_that_draw_from_the_global_generator_are_not_vectorized() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    assert "Dropout" in can_vectorize(model)
    with pytest.raises(ValueError, match="cannot train Sequential vectorized"):
        train_classifiers_vectorized(
            [model, model],
            torch.zeros(4, 1, 2, 2),
            torch.zeros(4, dtype=torch.long),
            TrainRecipe(epochs=1),
            generators=[make_generator(0), make_generator(1)],
        )


def test_channels_last_changes_layout_not_results(digits) -> None:
    images, labels = _subset(digits, 4)
    recipe = TrainRecipe(epochs=3, batch_size=20)
    (plain,) = _models("convnet3", 1, digits[0].image_shape, 10)
    (nhwc,) = _models("convnet3", 1, digits[0].image_shape, 10)
    train_classifier(plain, images, labels, recipe, generator=make_generator(1))
    train_classifier(
        nhwc, images, labels, recipe, generator=make_generator(1), numerics=Numerics(memory_format="channels_last")
    )
    assert nhwc.features[1].conv.weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(plain.parameters(), nhwc.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_keeps_weights_fp32_and_trains(digits) -> None:
    train, val, _test = digits
    images, labels = _subset(digits, 10)
    (model,) = _models("convnet3", 1, train.image_shape, 10)
    bf16 = Numerics(precision="bf16")
    train_classifier(
        model, images, labels, TrainRecipe(epochs=30, batch_size=50), generator=make_generator(0), numerics=bf16
    )
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # 100 digits images, 30 epochs: well above the 10% of chance on the validation split.
    assert accuracy(model, val.images, val.labels, numerics=bf16) > 0.6


def test_numerics_are_recorded_and_part_of_the_protocol_identity() -> None:
    fast = get_protocol("fast")
    assert fast.config_dict()["precision"] == "fp32" and fast.config_dict()["memory_format"] == "contiguous"
    bf16 = dataclasses.replace(fast, precision="bf16")
    assert bf16.config_dict() != fast.config_dict()
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        dataclasses.replace(fast, precision="fp16")
    with pytest.raises(NotImplementedError, match="issue 20"):
        dataclasses.replace(get_protocol("soft"), precision="bf16")


def test_a_one_channel_batch_with_nhwc_strides_runs_in_the_chosen_layout() -> None:
    # What the reference DiffAugment crop leaves: an N x H x W x 1 view permuted back.
    batch = torch.randn(4, 8, 8, 1)[torch.arange(4)].permute(0, 3, 1, 2)
    assert batch.stride(1) == 1
    assert Numerics().batch(batch).stride() == (64, 64, 8, 1)
    assert Numerics(memory_format="channels_last").batch(batch).is_contiguous(memory_format=torch.channels_last)


def _real_batches(digits, per_class: int) -> list[torch.Tensor]:
    train = digits[0]
    return [train.images[train.labels == c][:per_class] for c in range(train.num_classes)]


def test_class_means_of_one_batched_forward_equal_the_per_class_forwards(digits) -> None:
    from condense.datadam import _AttentionFeatures
    from condense.dm import embedding, real_class_means

    reals = _real_batches(digits, 12)
    (net,) = _models("convnetd2", 1, digits[0].image_shape, 10)  # instance norm: no coupling across images
    for features in (embedding, _AttentionFeatures(1.0)):
        per_class = real_class_means(net, reals, features, joint=False)
        batched = real_class_means(net, reals, features, joint=True)
        for a, b in zip(per_class, batched, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_real_gradients_of_one_vectorized_pass_equal_the_per_class_gradients(digits) -> None:
    import torch.nn.functional as F

    from condense.dc import per_class_gradients

    reals = _real_batches(digits, 12)
    targets = [torch.full((len(r),), c) for c, r in enumerate(reals)]
    for name in ("convnetd2", "convnet_bn"):
        (net,) = _models(name, 1, digits[0].image_shape, 10)
        net.eval()  # DC freezes BatchNorm before matching
        params = list(net.parameters())
        batched = per_class_gradients(net, params, reals, targets)
        for real, target, grads in zip(reals, targets, batched, strict=True):
            expected = torch.autograd.grad(F.cross_entropy(net(real), target), params)
            for got, want in zip(grads, expected, strict=True):
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_dsa_with_batched_classes_learns_the_per_class_loops_images(digits) -> None:
    from condense import create_method
    from data.synthetic import Budget

    sets = [
        create_method("dsa", iterations=2, model="convnetd2", batch_real=16, batch_classes=batched).condense(
            digits[0], Budget(ipc=1), seed=0
        )
        for batched in (False, True)
    ]
    torch.testing.assert_close(sets[1].images, sets[0].images, rtol=1e-4, atol=1e-5)
    assert not torch.equal(
        sets[0].images,
        create_method("dsa", iterations=0, model="convnetd2").condense(digits[0], Budget(ipc=1), seed=0).images,
    )
    with pytest.raises(ValueError, match="batch_classes"):
        create_method("dc", batch_classes=True, real_memory_format="channels_last")


def test_a_bf16_real_pass_stays_close_to_fp32_and_is_in_the_method_config(digits) -> None:
    from condense import create_method
    from condense.dm import embedding, real_class_means
    from data.synthetic import Budget

    reals = _real_batches(digits, 12)
    (net,) = _models("convnetd2", 1, digits[0].image_shape, 10)
    (fp32,) = real_class_means(net, reals, embedding, joint=False)
    (bf16,) = real_class_means(net, reals, embedding, joint=False, numerics=Numerics("bf16", "channels_last"))
    assert bf16.dtype == torch.float32
    relative = (bf16 - fp32).norm() / fp32.norm()
    assert 0 < relative < 2e-2  # bf16 keeps 8 bits of mantissa: close, not equal
    dm = create_method("dm", iterations=2, model="convnetd2", real_precision="bf16")
    assert dm.config_dict()["real_precision"] == "bf16"
    dsa = create_method(
        "dsa", iterations=1, model="convnetd2", real_precision="bf16", real_memory_format="channels_last"
    )
    for method in (dm, dsa):
        synthetic = method.condense(digits[0], Budget(ipc=1), seed=0)
        assert synthetic.images.dtype == torch.float32 and torch.isfinite(synthetic.images).all()
