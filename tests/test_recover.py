"""Recovery from batch-norm statistics (SRe2L, CDA, INFER) and RDED's crop selection: the BN
hook, the recover loop, CDA's crop curriculum, INFER's budget and decoder, RDED's mosaics."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from condense import create_method
from condense.infer import base_sets_for
from condense.rded import stitch
from condense.recover import (
    BNStatisticsHook,
    RecoverSettings,
    RecoverTrace,
    bn_distance,
    class_bn_statistics,
    crop_curriculum,
    recover,
    teacher_config,
)
from data.decoders import compensated_images
from data.image import pixel_bounds
from data.synthetic import Budget, SyntheticSet
from evaluation.models import create_model
from evaluation.teachers import load_or_train_teacher

#: A small squeeze teacher for the tests (a few seconds on one core).
QUICK_SQUEEZE = {"squeeze_model": "convnet_bn", "squeeze_epochs": 5, "squeeze_lr": 0.05, "squeeze_batch_size": 64}


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDENSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def bn_teacher(digits, tmp_path_factory):
    train, _, _ = digits
    config = dataclasses.replace(teacher_config("convnet_bn", 5, 0.05, 64), cache_dir=str(tmp_path_factory.mktemp("t")))
    return load_or_train_teacher(config, train).model


def test_bn_hook_measures_the_distance_to_the_running_statistics():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    bn = net[1]
    bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    bn.running_var.copy_(torch.tensor([1.0, 2.0, 0.5, 3.0]))
    net.eval()
    x = torch.randn(6, 1, 5, 5)
    with BNStatisticsHook(net) as hook:
        net(x)
        features = net[0](x)
        mean = features.mean((0, 2, 3))
        var = features.var((0, 2, 3), unbiased=False)
        expected = torch.norm(bn.running_mean - mean) + torch.norm(bn.running_var - var)
        assert torch.allclose(hook.loss(first_multiplier=1.0), expected, atol=1e-5)
        assert torch.allclose(hook.loss(first_multiplier=10.0), 10 * expected, atol=1e-4)
    assert not bn._forward_hooks  # the context manager removed the hooks


def test_bn_hook_rejects_a_network_without_batch_norm():
    with pytest.raises(ValueError, match="BatchNorm.*convnet_bn"):
        BNStatisticsHook(create_model("convnet3", in_channels=1, num_classes=10, image_size=(8, 8)))
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(1))
    with pytest.raises(RuntimeError, match="no forward pass"):
        BNStatisticsHook(net).loss()


def test_recovered_images_match_the_teachers_statistics_far_better_than_noise(digits, bn_teacher):
    train, _, _ = digits
    settings = RecoverSettings(iterations=300, lr=0.25, r_bn=0.05, jitter=1, flip=False)
    noise = torch.randn((10, *train.image_shape), generator=torch.Generator().manual_seed(0))
    labels = torch.arange(10)
    trace = RecoverTrace()
    bounds = pixel_bounds(train.mean, train.std)
    images = recover(bn_teacher, noise, labels, settings, seed=0, bounds=bounds, trace=trace)

    assert len(trace.bn) == 300 and trace.crop_scales == [1.0] * 300
    early, late = sum(trace.bn[:20]) / 20, sum(trace.bn[-20:]) / 20
    assert late < 0.2 * early, (early, late)
    noise_loss, recovered_loss = bn_distance(bn_teacher, noise), bn_distance(bn_teacher, images)
    assert recovered_loss < 0.2 * noise_loss, (noise_loss, recovered_loss)
    assert (images >= bounds[0] - 1e-6).all() and (images <= bounds[1] + 1e-6).all()
    with torch.no_grad():
        assert (bn_teacher(images).argmax(1) == labels).float().mean() >= 0.9
    # Same seed, same images; the input is not modified in place.
    again = recover(bn_teacher, noise, labels, settings, seed=0, bounds=bounds)
    assert torch.equal(images, again) and not torch.equal(images, noise)


def test_crop_curriculum_goes_from_whole_images_to_the_full_range():
    kwargs = {"milestone": 1.0, "min_scale": 0.08}
    assert crop_curriculum(0, 100, kind="cosine", **kwargs) == pytest.approx(1.0)
    assert crop_curriculum(50, 100, kind="cosine", **kwargs) == pytest.approx(0.08 + 0.92 * 0.5)
    assert crop_curriculum(25, 100, kind="cosine", **kwargs) == pytest.approx(
        0.08 + 0.92 * (1 + math.cos(math.pi / 4)) / 2
    )
    assert crop_curriculum(25, 100, kind="linear", **kwargs) == pytest.approx(0.08 + 0.92 * 0.75)
    assert crop_curriculum(99, 100, kind="step", **kwargs) == 1.0
    # After the milestone the whole range is used; milestone 0 is plain SRe2L.
    assert crop_curriculum(60, 100, kind="cosine", milestone=0.5, min_scale=0.08) == 0.08
    assert crop_curriculum(0, 100, kind="cosine", milestone=0.0, min_scale=0.08) == 0.08
    schedule = [crop_curriculum(i, 100, kind="cosine", **kwargs) for i in range(100)]
    assert all(a >= b for a, b in zip(schedule, schedule[1:], strict=False))
    with pytest.raises(ValueError, match="valid: cosine, linear, step"):
        crop_curriculum(0, 10, kind="exp", milestone=1.0)  # type: ignore[arg-type]


def test_cda_crop_scale_follows_its_schedule_during_recovery(digits, cache):
    train, _, _ = digits
    method = create_method("cda", **QUICK_SQUEEZE, iterations=40, min_scale=0.25, jitter=1, milestone=0.5)
    synthetic = method.condense(train, Budget(ipc=1), seed=0)
    summary = synthetic.provenance["distillation"]
    assert summary["crop_scale_first"] == pytest.approx(1.0)
    assert summary["crop_scale_last"] == pytest.approx(0.25)
    settings = method.settings(train)
    assert settings.curriculum == "cosine" and settings.crop
    trace = RecoverTrace()
    teacher = load_or_train_teacher(teacher_config("convnet_bn", 5, 0.05, 64), train).model
    recover(teacher, torch.randn(10, *train.image_shape), torch.arange(10), settings, seed=0, trace=trace)
    expected = [crop_curriculum(i, 40, kind="cosine", milestone=0.5, min_scale=0.25) for i in range(40)]
    assert trace.crop_scales == pytest.approx(expected)
    assert trace.crop_scales[19] > 0.25 and trace.crop_scales[20:] == [0.25] * 20
    with pytest.raises(ValueError, match="crop must be true"):
        create_method("cda", crop=False)
    with pytest.raises(ValueError, match="method.curriculum must be one of 'cosine', 'linear', 'step'"):
        create_method("cda", curriculum="exp")


def test_sre2l_set_is_valid_and_records_the_teacher_and_the_bn_loss(digits, cache):
    train, _, _ = digits
    synthetic = create_method("sre2l", **QUICK_SQUEEZE, iterations=60, jitter=1).condense(train, Budget(ipc=2), seed=0)
    assert synthetic.images.shape == (20, *train.image_shape)
    assert synthetic.labels.tolist() == [c for c in range(10) for _ in range(2)]
    provenance = synthetic.provenance
    assert provenance["teacher"]["model"] == "convnet_bn" and provenance["precomputed"]["teacher"]["seconds"] > 0
    summary = provenance["distillation"]
    assert summary["steps"] == 120 and summary["bn_last"] < summary["bn_first"]
    stored = create_method("sre2l", **QUICK_SQUEEZE, iterations=5, relabel="stored").condense(
        train, Budget(ipc=1), seed=0
    )
    assert stored.labels.shape == (10, 10) and torch.allclose(stored.labels.sum(1), torch.ones(10))
    with pytest.raises(ValueError, match="ipc budget"):
        create_method("sre2l", **QUICK_SQUEEZE).condense(train, Budget(fraction=0.1), seed=0)


def test_class_statistics_are_each_classes_bn_input_moments_and_the_hook_matches_them():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    images, labels = torch.randn(12, 1, 6, 6), torch.tensor([0, 1, 2] * 4)
    # momentum 1 and one batch: the statistics are the class's moments of the BN input.
    ((means, variances),) = class_bn_statistics(
        net, images, labels, 3, generator=torch.Generator(), batch_size=12, momentum=1.0, crop=False, flip=False
    )
    features = net[0](images).detach()
    for label in range(3):
        rows = features[labels == label]
        torch.testing.assert_close(means[label], rows.mean((0, 2, 3)))
        torch.testing.assert_close(variances[label], rows.var((0, 2, 3), unbiased=False))
    # The default momentum moves 0/1 starting values by a tenth per batch holding the class.
    ((slow_means, slow_variances),) = class_bn_statistics(
        net, images, labels, 3, generator=torch.Generator(), batch_size=12, crop=False, flip=False
    )
    torch.testing.assert_close(slow_means, 0.1 * means)
    torch.testing.assert_close(slow_variances, 0.9 + 0.1 * variances)
    with BNStatisticsHook(net, [(means[1], variances[1])]) as hook:
        net(images[labels == 1])
        assert float(hook.loss(first_multiplier=1.0).detach()) < 1e-5
        net(images[labels == 0])
        assert float(hook.loss(first_multiplier=1.0).detach()) > 1e-3
    with pytest.raises(ValueError, match="2 reference statistics for 1 BatchNorm layers"):
        BNStatisticsHook(net, [(means[0], variances[0])] * 2)


def test_class_wise_recovery_matches_each_classes_statistics_better_than_sre2ls(digits, cache):
    """LPLD's recovery: batches of one class, BN matched to the class's statistics. Its images sit
    closer to their own class's statistics than SRe2L's images of the same classes do."""
    train, _, _ = digits
    options = {**QUICK_SQUEEZE, "iterations": 100, "jitter": 1, "batch_size": 3}
    class_wise = create_method("sre2l", **options, class_wise=True, signed_jitter=True)
    lpld = class_wise.condense(train, Budget(ipc=4), seed=0)
    sre2l = create_method("sre2l", **options).condense(train, Budget(ipc=4), seed=0)
    assert lpld.images.shape == (40, *train.image_shape) and lpld.labels.tolist() == [
        c for c in range(10) for _ in range(4)
    ]
    assert lpld.provenance["distillation"]["steps"] == 10 * 2 * 100  # chunks of 3 + 1 images per class
    assert lpld.provenance["method_config"]["class_wise"] is True
    assert "class_wise" not in sre2l.provenance["method_config"]
    teacher = load_or_train_teacher(teacher_config("convnet_bn", 5, 0.05, 64), train).model
    statistics = class_bn_statistics(
        teacher, train.images, train.labels, 10, generator=torch.Generator().manual_seed(0)
    )

    def class_distance(synthetic: SyntheticSet) -> float:
        total = 0.0
        for label in range(10):
            reference = [(m[label], v[label]) for m, v in statistics]
            with torch.no_grad(), BNStatisticsHook(teacher, reference) as hook:
                teacher(synthetic.images[synthetic.labels == label])
                total += float(hook.loss())
        return total / 10

    # Measured (seed 0): 66.4 against 79.7.
    assert class_distance(lpld) < 0.9 * class_distance(sre2l), (class_distance(lpld), class_distance(sre2l))


def test_infer_budget_formula_matches_the_official_examples():
    # CIFAR-100 with 4 teachers: ipc 10 -> 9 base sets (900 + 36 stored), ipc 50 -> 48.
    assert base_sets_for(10, 100, 4) == 9 and base_sets_for(50, 100, 4) == 48
    assert base_sets_for(1, 10, 2) == 0 and base_sets_for(2, 10, 2) == 1
    for ipc, classes, teachers in [(10, 100, 4), (50, 100, 4), (10, 10, 4), (2, 10, 2), (50, 10, 3)]:
        sets = base_sets_for(ipc, classes, teachers)
        assert sets * (classes + teachers) <= ipc * classes


def test_compensated_images_are_base_then_every_compensator_clipped():
    base = torch.zeros(6, 1, 2, 2)
    base[3:] = 1.0  # two base sets of three images
    compensators = torch.stack([torch.full((1, 2, 2), v) for v in (0.5, -0.5, 2.0, -2.0)])
    bounds = (torch.full((1, 1, 1, 1), -1.0), torch.full((1, 1, 1, 1), 1.5))
    out = compensated_images(base, compensators, 2, bounds)
    assert out.shape == (6 + 2 * 2 * 3, 1, 2, 2)
    assert torch.equal(out[:6], base)
    expected = [0.5, -0.5, 1.5, -1.0]  # set 0 + u00, set 0 + u01, set 1 + u10 (clipped), set 1 + u11
    for block, value in enumerate(expected):
        assert torch.allclose(out[6 + 3 * block : 9 + 3 * block], torch.full((3, 1, 2, 2), value))
    with pytest.raises(ValueError, match="architectures"):
        compensated_images(base, compensators[:3], 2, bounds)


def test_infer_stores_base_images_and_compensators_within_the_budget(digits, cache, tmp_path):
    train, _, _ = digits
    options = {
        "teacher_models": ["convnet_bn", "convnet_bn"],
        "teacher_epochs": 5,
        "teacher_lr": 0.05,
        "teacher_batch_size": 64,
        "iterations": 20,
        "jitter": 1,
    }
    synthetic = create_method("infer", **options).condense(train, Budget(ipc=2), seed=0)
    assert synthetic.images.shape == (10, *train.image_shape)  # one base set
    assert synthetic.extras["compensators"].shape == (2, *train.image_shape)
    assert synthetic.provenance["distillation"]["stored_images"] == 12
    synthetic.validate(image_shape=train.image_shape, check_budget=True)
    decoded = synthetic.decoded()
    assert len(decoded) == 30 and decoded.labels.shape == (30, 10)
    assert torch.isfinite(decoded.labels).all() and synthetic.extras["decoded_logits"].dtype == torch.float16
    agreement = (decoded.labels.argmax(1) == torch.arange(10).repeat(3)).float().mean()
    assert agreement == pytest.approx(synthetic.provenance["distillation"]["label_agreement"])
    # Each base image is a real training image, and the compensator bytes are counted.
    assert all((train.images == image).flatten(1).all(1).any() for image in synthetic.images)
    path = tmp_path / "infer.safetensors"
    synthetic.save(path)
    loaded = SyntheticSet.load(path)
    assert torch.equal(loaded.decoded().images, decoded.images)
    without = SyntheticSet(
        images=synthetic.images,
        labels=synthetic.labels,
        num_classes=10,
        mean=synthetic.mean,
        std=synthetic.std,
        budget=synthetic.budget,
    )
    assert synthetic.num_bytes() > without.num_bytes() + synthetic.extras["compensators"].numel() * 4
    with pytest.raises(ValueError, match="needs ipc >= 2"):
        create_method("infer", **options).condense(train, Budget(ipc=1), seed=0)
    with pytest.raises(ValueError, match="'convnet3' has none .valid: .*convnet_bn"):
        create_method("infer", **{**options, "teacher_models": ["convnet_bn", "convnet3"]}).condense(
            train, Budget(ipc=2), seed=0
        )
    with pytest.raises(ValueError, match="'mlp' has none"):
        create_method("sre2l", squeeze_model="mlp").condense(train, Budget(ipc=1), seed=0)


def test_stitch_tiles_crops_row_major():
    crops = torch.stack([torch.full((1, 2, 2), float(i)) for i in range(4)])
    (mosaic,) = stitch(crops, 2, 4, 4)
    assert mosaic.shape == (1, 4, 4)
    assert mosaic[0, :2, :2].eq(0).all() and mosaic[0, :2, 2:].eq(1).all()
    assert mosaic[0, 2:, :2].eq(2).all() and mosaic[0, 2:, 2:].eq(3).all()


def test_rded_keeps_real_crops_of_the_right_class(digits, cache):
    train, _, _ = digits
    options = {"observer_epochs": 5, "mipc": 40, "num_crop": 3}
    synthetic = create_method("rded", **options).condense(train, Budget(ipc=2), seed=0)
    assert synthetic.images.shape == (20, *train.image_shape)
    assert synthetic.labels.tolist() == [c for c in range(10) for _ in range(2)]
    synthetic.validate(image_shape=train.image_shape, check_budget=True)
    bounds = pixel_bounds(train.mean, train.std)
    assert (synthetic.images >= bounds[0] - 1e-5).all() and (synthetic.images <= bounds[1] + 1e-5).all()
    # Distinct images per class (the lowest-loss crops of distinct real images).
    for label in range(10):
        rows = synthetic.images[synthetic.labels == label].flatten(1)
        assert not torch.equal(rows[0], rows[1])
    again = create_method("rded", **options).distill(train, 2, seed=0)  # the synthesizers' call
    assert torch.equal(synthetic.images, again.images)


def test_rded_scores_crops_padded_with_the_mean_colour(digits, cache, monkeypatch):
    """The official selector pads normalized crops with 0: the dataset's mean colour, not black."""
    import condense.rded

    train, _, _ = digits
    fills = []
    original = condense.rded.pad_to

    def recording(crops, height, width, fill):
        fills.append(fill)
        return original(crops, height, width, fill)

    monkeypatch.setattr(condense.rded, "pad_to", recording)
    options = {"observer_epochs": 1, "mipc": 8, "num_crop": 2, "factor": 2}
    create_method("rded", **options).condense(train, Budget(ipc=1), seed=0)
    assert fills and all(torch.equal(fill, torch.zeros(1, 1, 1, 1)) for fill in fills)


@pytest.mark.slow
@pytest.mark.parametrize(("option", "ipc"), [("digits/rded", 1), ("digits/infer", 10)])
def test_decoupled_method_under_soft_labels_beats_random_with_hard_labels(digits, cache, option, ipc):
    """Measured (seed 0, 3 ConvNet-3): rded IPC 1 soft 75.8% against random soft_hard 72.2% (random
    soft 71.9%); infer IPC 10 soft 98.8% against random soft_hard 97.2% (random soft 97.2%).
    sre2l and cda do not pass this check on digits (README, "Decoupled methods on digits")."""
    from condense import method_options
    from evaluation.protocols import evaluate_set, get_protocol

    train, val, test = digits

    def mean_accuracy(synthetic: SyntheticSet, protocol: str) -> float:
        result = evaluate_set(synthetic, test, get_protocol(protocol), seed=0, train=train, val=val)
        accuracies = [a for model in result.per_model.values() for a in model.accuracies]
        return sum(accuracies) / len(accuracies)

    random_set = create_method("random").condense(train, Budget(ipc=ipc), seed=0)
    name, options = method_options(option)
    condensed = create_method(name, **options).condense(train, Budget(ipc=ipc), seed=0)
    assert mean_accuracy(condensed, "soft") > mean_accuracy(random_set, "soft_hard")
