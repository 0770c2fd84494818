"""G-VBSM and EDC: the statistics of the observers, the score-distillation matcher, data densification,
the statistics cache, the recover loop's turns, and digits runs of both methods."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from condense import create_method
from condense.recover import RecoverSettings, recover
from condense.statistic_matching import (
    LayerStatistics,
    StatisticMatcher,
    densification_loss,
    hooked_layers,
    load_or_compute_statistics,
    observer_statistics,
    patch_moments,
)
from data.seeding import make_generator
from data.untrusted import BadFileError
from evaluation.teachers import TeacherConfig, load_or_train_teacher


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDENSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1)
    ).eval()


def test_patch_moments_are_the_moments_of_each_4x4_block_over_batch_and_channels():
    x = torch.randn(3, 2, 8, 12)
    mean, var = patch_moments(x)
    assert mean.shape == var.shape == (2 * 3,)
    for u in range(2):
        for v in range(3):
            block = x[:, :, 4 * u : 4 * u + 4, 4 * v : 4 * v + 4]
            assert torch.allclose(mean[u * 3 + v], block.mean(), atol=1e-6)
            assert torch.allclose(var[u * 3 + v], block.var(unbiased=False), atol=1e-6)
    # Sides that are not multiples of 4 are resized (bilinear) up to the next multiple first.
    odd = torch.randn(2, 1, 6, 7)
    resized = F.interpolate(odd, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(patch_moments(odd)[0], patch_moments(resized)[0])


def test_observer_statistics_weight_the_batches_and_keep_the_running_bn_statistics():
    net = small_net()
    net[1].running_mean.copy_(torch.tensor([0.1, 0.2, 0.3]))
    images, labels = torch.randn(10, 1, 8, 8), torch.tensor([0, 1] * 5)
    stats = observer_statistics(
        net, images, labels, 2, generator=make_generator(0), flip=False, class_wise=True, batch_size=4
    )
    assert len(stats) == len(hooked_layers(net)) == 3
    conv, bn, conv2 = stats
    assert torch.equal(bn.mean, net[1].running_mean) and bn.patch_mean is None
    assert conv.is_conv and conv2.is_conv and conv.class_mean.shape == (2, 1) and conv2.class_patch_var.shape == (2, 4)
    # Replay the pass: the same order and crops, each batch's moments weighted by its share of the images.
    generator = make_generator(0)
    order = torch.randperm(10, generator=generator)
    from evaluation.augment import random_crop_flip

    means, class_sums = torch.zeros(1), torch.zeros(2, 1)
    for first in range(0, 10, 4):
        index = order[first : first + 4]
        batch = random_crop_flip(images[index], generator, padding=1, flip=False)
        means += batch.mean((0, 2, 3)) * len(index) / 10
        class_sums.index_add_(0, labels[index], batch.mean((2, 3)))
    assert torch.allclose(conv.mean, means, atol=1e-6)
    assert torch.allclose(conv.class_mean, class_sums / 5, atol=1e-6)


def test_the_smoothed_statistic_has_the_ema_value_and_the_current_batch_gradient():
    conv = nn.Conv2d(1, 2, 1, bias=False).eval()
    reference = LayerStatistics(
        mean=torch.zeros(1), var=torch.ones(1), patch_mean=torch.zeros(4), patch_var=torch.ones(4)
    )
    matcher = StatisticMatcher(conv, [reference], momentum=0.8, drop_rate=0.0, class_weight=0.0, rng=random.Random(0))
    first = torch.randn(4, 1, 8, 8)
    conv(first)
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    conv(x)
    with torch.no_grad():
        ema = [0.8 * a + 0.2 * b for a, b in zip(moments(first), moments(x), strict=True)]
    expected = sum(
        torch.norm(r - e)
        for r, e in zip((reference.mean, reference.var, reference.patch_mean, reference.patch_var), ema, strict=True)
    )
    loss = matcher.loss(first_multiplier=1.0)
    assert torch.allclose(loss, expected, atol=1e-5)
    loss.backward()
    # The gradient: that of sum <(e - r)/|e - r|, s(x)>, the directions fixed at the EMA values.
    y = x.detach().clone().requires_grad_(True)
    directions = [
        (e - r) / torch.norm(e - r)
        for r, e in zip((reference.mean, reference.var, reference.patch_mean, reference.patch_var), ema, strict=True)
    ]
    sum((d * m).sum() for d, m in zip(directions, moments(y), strict=True)).backward()
    assert torch.allclose(x.grad, y.grad, atol=1e-5)
    matcher.remove()


def moments(x: torch.Tensor) -> list[torch.Tensor]:
    from condense.recover import channel_moments

    return [*channel_moments(x), *patch_moments(x)]


def test_conv_terms_drop_with_their_probability_and_bn_terms_never():
    net = small_net()
    stats = observer_statistics(
        net,
        torch.randn(8, 1, 8, 8),
        torch.zeros(8, dtype=torch.long),
        1,
        generator=make_generator(0),
        flip=False,
        class_wise=False,
    )
    always = StatisticMatcher(net, stats, momentum=0.0, drop_rate=0.999, class_weight=0.0, rng=random.Random(1))
    net(torch.randn(4, 1, 8, 8))
    conv_terms, bn_term = [always.terms[0], always.terms[2]], always.terms[1]
    assert all(float(t.detach()) == 0.0 for t in conv_terms) and float(bn_term.detach()) > 0
    always.remove()
    never = StatisticMatcher(net, stats, momentum=0.0, drop_rate=0.0, class_weight=0.0, rng=random.Random(1))
    net(torch.randn(4, 1, 8, 8))
    assert all(float(t.detach()) > 0 for t in never.terms)
    never.remove()


def test_category_aware_matching_averages_the_batch_classes_statistics():
    conv = nn.Conv2d(1, 1, 1, bias=False).eval()
    stats = LayerStatistics(
        mean=torch.zeros(1), var=torch.ones(1), patch_mean=torch.zeros(4), patch_var=torch.ones(4),
        class_mean=torch.tensor([[1.0], [3.0]]), class_var=torch.tensor([[1.0], [1.0]]),
        class_patch_mean=torch.zeros(2, 4), class_patch_var=torch.ones(2, 4),
    )  # fmt: skip
    matcher = StatisticMatcher(conv, [stats], momentum=0.0, drop_rate=0.0, class_weight=0.5, rng=random.Random(0))
    matcher.set_targets(torch.tensor([0, 1, 1, 1]))  # class mean reference: (1 + 3 + 3 + 3) / 4 = 2.5
    x = torch.randn(4, 1, 8, 8)
    conv(x)
    s = moments(x)  # a convolution's terms measure its input
    global_term = sum(
        torch.norm(r - m) for r, m in zip((stats.mean, stats.var, stats.patch_mean, stats.patch_var), s, strict=True)
    )
    class_term = sum(
        torch.norm(r - m)
        for r, m in zip((torch.tensor([2.5]), torch.ones(1), torch.zeros(4), torch.ones(4)), s, strict=True)
    )
    assert torch.allclose(matcher.loss(1.0), 0.5 * global_term + 0.5 * class_term, atol=1e-5)
    with pytest.raises(ValueError, match="class-wise statistics"):
        StatisticMatcher(conv, [LayerStatistics(torch.zeros(1), torch.ones(1), torch.zeros(4), torch.ones(4))],
                         momentum=0.0, drop_rate=0.0, class_weight=0.5, rng=random.Random(0))  # fmt: skip


def test_densification_equals_the_reference_eigvals_form_in_value_and_gradient():
    torch.manual_seed(0)
    images = torch.randn(6, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    loss = densification_loss(images, labels, tau=4.0, pool=4)
    loss.backward()
    ours = images.grad.clone()
    images.grad = None
    flat = F.adaptive_avg_pool2d(images, 4).reshape(6, -1)
    reference = 0.0
    for label in (0, 1):
        rows = flat[labels == label]
        eigenvalues = torch.linalg.eigvals(rows @ rows.t()).real
        reference = reference + nn.KLDivLoss(reduction="sum")(
            eigenvalues.log_softmax(-1), (eigenvalues / 4.0).softmax(-1).detach()
        )
    reference.backward()
    assert torch.allclose(loss, reference) and torch.allclose(ours, images.grad, atol=1e-8)
    assert float(loss.detach()) > 0


def test_statistics_are_cached_with_their_cost_and_a_foreign_file_is_refused(cache, digits):
    train, _, _ = digits
    teacher = load_or_train_teacher(TeacherConfig(model="convnetd1", epochs=1, augmentation="crop_flip"), train)
    first = load_or_compute_statistics(teacher, train, class_wise=True)
    files = list((cache / "statistics").glob("*.safetensors"))
    assert len(files) == 1 and not first.cache_hit and first.seconds > 0
    again = load_or_compute_statistics(teacher, train, class_wise=True)
    assert again.cache_hit and again.seconds == first.seconds  # the pass's cost is charged to every use
    assert all(
        torch.equal(a.mean, b.mean) and torch.equal(a.class_patch_var, b.class_patch_var)
        for a, b in zip(first.layers, again.layers, strict=True)
    )
    from condense.statistic_matching import _read_statistics

    with pytest.raises(BadFileError, match="do not fit"):
        _read_statistics(files[0], hooked_layers(small_net()), class_wise=True)
    files[0].write_bytes(b"not safetensors")
    rebuilt = load_or_compute_statistics(teacher, train, class_wise=True)  # refused, then measured again
    assert not rebuilt.cache_hit and torch.equal(rebuilt.layers[0].mean, first.layers[0].mean)


def test_recover_takes_turns_through_the_teachers_across_batches():
    calls: list[int] = []

    class Counting(nn.Module):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index, self.linear = index, nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(self.index)
            return self.linear(x.flatten(1))

    class Zero:
        def loss(self, first_multiplier: float = 10.0) -> torch.Tensor:
            return torch.zeros(())

    teachers = [Counting(i) for i in range(3)]
    settings = RecoverSettings(iterations=4, lr=0.1, r_bn=1.0, jitter=0, flip=False)
    recover(
        teachers, torch.randn(2, 1, 2, 2), torch.tensor([0, 1]), settings, seed=0, matchers=[Zero()] * 3, first_turn=4
    )
    assert calls == [1, 2, 0, 1]


@pytest.mark.parametrize("name", ["gvbsm", "edc"])
def test_a_digits_recovery_matches_the_statistics_better_and_gives_a_valid_set(name, digits, cache):
    train, _, _ = digits
    method = create_method(name, iterations=30, squeeze_epochs=2, observers=["convnet_bn", "convnetd1"], jitter=0)
    synthetic = method.distill(train, ipc=2, seed=0)
    synthetic.validate(image_shape=train.image_shape, check_budget=True)
    summary = synthetic.provenance["distillation"]
    assert summary["steps"] == 30
    assert summary["statistic_last"] < summary["statistic_first"]
    assert summary["ce_last"] < summary["ce_first"]
    assert [o["model"] for o in synthetic.provenance["observers"]] == ["convnet_bn", "convnetd1"]
    charged = synthetic.provenance["precomputed"]
    assert set(charged) == {"teacher", "statistics"} and charged["statistics"]["seconds"] > 0
    assert (summary["densification_first"] is None) == (name == "edc")
