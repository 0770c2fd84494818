"""Golden tests of the KD loss registry, the soft-label criteria and the feature hooks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data.seeding import make_generator, seeded_torch
from evaluation.kd import (
    FeatureHooks,
    KDBatch,
    SoftLabelConfig,
    create_kd_loss,
    dkd_parts,
    kl_divergence,
    list_kd_losses,
    soft_label_loss,
)
from evaluation.kd.losses import _projector
from evaluation.models import create_model


def _fixed_logits(batch: int = 64, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    student = torch.randn(batch, classes, generator=g, dtype=torch.float64) * 3
    teacher = torch.randn(batch, classes, generator=g, dtype=torch.float64) * 3
    targets = torch.randint(0, classes, (batch,), generator=g)
    return student, teacher, targets


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _np_ce(student: np.ndarray, targets: np.ndarray) -> float:
    return float(-np.log(_np_softmax(student)[np.arange(len(targets)), targets]).mean())


def _np_kl(student: np.ndarray, teacher: np.ndarray, t: float) -> np.ndarray:
    p, q = _np_softmax(teacher / t), _np_softmax(student / t)
    return (p * (np.log(p) - np.log(q))).sum(1)


def test_registry_lists_and_rejects() -> None:
    assert {"kd", "dkd", "fitnet", "at", "rkd", "crd", "nkd"} <= set(list_kd_losses())
    with pytest.raises(ValueError, match="valid kd methods: .*dkd.*kd"):
        create_kd_loss("hinton")
    with pytest.raises(ValueError, match="no option.*alpha.*valid options: .*ce_weight.*kd_weight"):
        create_kd_loss("kd", alpha=0.9)
    with pytest.raises(ValueError, match="kd_weight"):
        create_kd_loss("kd", kd_weight=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        create_kd_loss("dkd", temperature=0.0)
    # Weights are explicit and recorded, T^2 included.
    config = create_kd_loss("kd").config_dict()
    assert config == {
        "name": "kd",
        "ce_weight": 0.1,
        "kd_weight": 0.9,
        "temperature": 4.0,
        "scale_t2": True,
        "logit_standardization": False,
    }


def test_dkd_decomposition_is_kl() -> None:
    student, teacher, targets = _fixed_logits()
    for t in (1.0, 4.0):
        tckd, nckd = dkd_parts(student, teacher, targets, t)
        p_target = F.softmax(teacher / t, dim=1).gather(1, targets[:, None]).squeeze(1)
        kl = kl_divergence(student, teacher, t)
        torch.testing.assert_close(kl, tckd + (1 - p_target) * nckd, atol=1e-10, rtol=0)


def test_dkd_masking_trick_equals_explicit_renormalization() -> None:
    student, teacher, targets = _fixed_logits()
    t = 4.0
    _, nckd = dkd_parts(student, teacher, targets, t)
    s, te, y = student.numpy(), teacher.numpy(), targets.numpy()
    expected = []
    for i in range(len(y)):
        keep = np.arange(s.shape[1]) != y[i]
        expected.append(_np_kl(s[i : i + 1, keep], te[i : i + 1, keep], t)[0])
    np.testing.assert_allclose(nckd.numpy(), np.array(expected), atol=1e-10)


def test_soft_ce_minus_kl_is_teacher_entropy() -> None:
    student, teacher, targets = _fixed_logits()
    one_hot = F.one_hot(targets, 10).double()
    for t in (1.0, 4.0):
        sce = soft_label_loss(SoftLabelConfig(criterion="sce", temperature=t), student, teacher, one_hot)
        kl = soft_label_loss(SoftLabelConfig(criterion="kl", temperature=t), student, teacher, one_hot)
        p = F.softmax(teacher / t, dim=1)
        entropy = -(p * p.log()).sum(1).mean()
        assert float(sce - kl) == pytest.approx(float(entropy), abs=1e-10)


def test_hinton_kd_against_direct_computation() -> None:
    student, teacher, targets = _fixed_logits()
    s, te, y = student.numpy(), teacher.numpy(), targets.numpy()
    terms = create_kd_loss("kd")(KDBatch(student, teacher, targets))
    assert float(terms["ce"]) == pytest.approx(0.1 * _np_ce(s, y), rel=1e-10)
    assert float(terms["kd"]) == pytest.approx(0.9 * 16 * _np_kl(s, te, 4.0).mean(), rel=1e-10)
    plain = create_kd_loss("kd", ce_weight=0.0, kd_weight=1.0, temperature=2.0, scale_t2=False)
    terms = plain(KDBatch(student, teacher, targets))
    assert float(terms["ce"]) == 0.0
    assert float(terms["kd"]) == pytest.approx(_np_kl(s, te, 2.0).mean(), rel=1e-10)
    # Logit standardization z-scores both sides before the temperature.
    standardized = create_kd_loss("kd", logit_standardization=True, temperature=2.0, scale_t2=False, kd_weight=1.0)
    z = lambda a: (a - a.mean(1, keepdims=True)) / a.std(1, ddof=1, keepdims=True)  # noqa: E731
    value = float(standardized(KDBatch(student, teacher, targets))["kd"])
    assert value == pytest.approx(_np_kl(z(s), z(te), 2.0).mean(), rel=1e-6)


def test_dkd_against_direct_computation_and_warmup() -> None:
    student, teacher, targets = _fixed_logits()
    s, te, y = student.numpy(), teacher.numpy(), targets.numpy()
    t, alpha, beta = 4.0, 1.0, 8.0
    ps, pt = _np_softmax(s / t), _np_softmax(te / t)
    rows = np.arange(len(y))
    bs = np.stack([ps[rows, y], 1 - ps[rows, y]], 1)
    bt = np.stack([pt[rows, y], 1 - pt[rows, y]], 1)
    tckd = (bt * (np.log(bt) - np.log(bs))).sum(1).mean()
    mask = np.ones_like(s, dtype=bool)
    mask[rows, y] = False
    qs = _np_softmax(s[mask].reshape(len(y), -1) / t)
    qt = _np_softmax(te[mask].reshape(len(y), -1) / t)
    nckd = (qt * (np.log(qt) - np.log(qs))).sum(1).mean()
    loss = create_kd_loss("dkd")
    terms = loss(KDBatch(student, teacher, targets, epoch=30))
    assert float(terms["kd"]) == pytest.approx(t * t * (alpha * tckd + beta * nckd), rel=1e-8)
    assert float(terms["ce"]) == pytest.approx(_np_ce(s, y), rel=1e-10)
    # mdistiller's min(epoch / 20, 1) with epochs from 1: the 10th epoch (index 9) weighs 1/2, the first 1/20.
    half = loss(KDBatch(student, teacher, targets, epoch=9))
    assert float(half["kd"]) == pytest.approx(0.5 * float(terms["kd"]), rel=1e-10)
    first = loss(KDBatch(student, teacher, targets, epoch=0))
    assert float(first["kd"]) == pytest.approx(float(terms["kd"]) / 20, rel=1e-10)


def test_nkd_against_direct_computation() -> None:
    student, teacher, targets = _fixed_logits()
    s, te, y = student.numpy(), teacher.numpy(), targets.numpy()
    rows = np.arange(len(y))
    target_term = -(_np_softmax(te)[rows, y] * np.log(_np_softmax(s)[rows, y]))
    mask = np.ones_like(s, dtype=bool)
    mask[rows, y] = False
    t, gamma = 2.0, 1.5
    qs = _np_softmax(s[mask].reshape(len(y), -1) / t)
    qt = _np_softmax(te[mask].reshape(len(y), -1) / t)
    non_target = (qt * np.log(qs)).sum(1)
    expected = (target_term - gamma * t * t * non_target).mean()
    terms = create_kd_loss("nkd", temperature=t)(KDBatch(student, teacher, targets))
    assert float(terms["kd"]) == pytest.approx(expected, rel=1e-8)


def test_soft_label_criteria_against_direct_computation() -> None:
    student, teacher, targets = _fixed_logits()
    s, te, y = student.numpy(), teacher.numpy(), targets.numpy()
    one_hot = F.one_hot(targets, 10).double()
    ce = soft_label_loss(SoftLabelConfig(label_source="hard", criterion="ce"), student, None, one_hot)
    assert float(ce) == pytest.approx(_np_ce(s, y), rel=1e-10)
    kl = soft_label_loss(SoftLabelConfig(criterion="kl", temperature=4.0, scale_t2=True), student, teacher, one_hot)
    assert float(kl) == pytest.approx(16 * _np_kl(s, te, 4.0).mean(), rel=1e-10)
    mse = soft_label_loss(SoftLabelConfig(criterion="mse_gt", mse_weight=2.0, ce_weight=0.5), student, teacher, one_hot)
    assert float(mse) == pytest.approx(2.0 * ((s - te) ** 2).mean() + 0.5 * _np_ce(s, y), rel=1e-10)
    config = SoftLabelConfig(criterion="kd", temperature=4.0, scale_t2=True, kd_alpha_table=((0.1, 0.9), (0.5, 0.5)))
    assert config.alpha_for(0.1) == pytest.approx(0.9)
    assert config.alpha_for(0.3) == pytest.approx(0.7)
    assert config.alpha_for(0.05) == pytest.approx(0.9) and config.alpha_for(1.0) == pytest.approx(0.5)
    kd = soft_label_loss(config, student, teacher, one_hot, alpha=0.7)
    assert float(kd) == pytest.approx(0.3 * _np_ce(s, y) + 0.7 * 16 * _np_kl(s, te, 4.0).mean(), rel=1e-10)
    with pytest.raises(ValueError, match="valid: hard, stored, online, replay"):
        SoftLabelConfig(label_source="teacher")
    with pytest.raises(ValueError, match="kd_alpha"):
        SoftLabelConfig(criterion="kd")


def _features(batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(batch, 8, 4, 4, generator=g), torch.randn(batch, 6, 2, 2, generator=g)


def test_at_against_direct_computation() -> None:
    fs, ft = _features()
    loss = create_kd_loss("at", student_layers=("a",), teacher_layers=("b",))
    logits = torch.zeros(len(fs), 10)
    terms = loss(KDBatch(logits, logits, torch.zeros(len(fs), dtype=torch.long), {"a": fs}, {"b": ft}))
    pooled = F.adaptive_avg_pool2d(fs, (2, 2)).numpy()
    a_s = (pooled**2).mean(1).reshape(len(fs), -1)
    a_t = (ft.numpy() ** 2).mean(1).reshape(len(ft), -1)
    a_s /= np.linalg.norm(a_s, axis=1, keepdims=True)
    a_t /= np.linalg.norm(a_t, axis=1, keepdims=True)
    assert float(terms["kd"]) == pytest.approx(1000 * ((a_s - a_t) ** 2).mean(), rel=1e-5)


def _np_smooth_l1(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a - b)
    return float(np.where(d < 1, 0.5 * d**2, d - 0.5).mean())


def test_rkd_against_direct_computation() -> None:
    g = torch.Generator().manual_seed(3)
    fs, ft = torch.randn(12, 5, generator=g, dtype=torch.float64), torch.randn(12, 7, generator=g, dtype=torch.float64)
    loss = create_kd_loss("rkd")
    logits = torch.zeros(12, 10, dtype=torch.float64)
    path = "classifier:input"
    terms = loss(KDBatch(logits, logits, torch.zeros(12, dtype=torch.long), {path: fs}, {path: ft}))

    def distances(x: np.ndarray) -> np.ndarray:
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        return d / d[d > 0].mean()

    def angles(x: np.ndarray) -> np.ndarray:
        e = x[None, :, :] - x[:, None, :]
        e = e / np.maximum(np.linalg.norm(e, axis=2, keepdims=True), 1e-12)
        return np.einsum("ijk,ilk->ijl", e, e).ravel()

    s, t = fs.numpy(), ft.numpy()
    expected = 25 * _np_smooth_l1(distances(s), distances(t)) + 50 * _np_smooth_l1(angles(s), angles(t))
    assert float(terms["kd"]) == pytest.approx(expected, rel=1e-6)


def test_fitnet_projects_and_matches_mse() -> None:
    fs, ft = _features()  # a 4x4 student map onto a 2x2 teacher map
    loss = create_kd_loss("fitnet", student_layer="a", teacher_layer="b")
    loss.prepare({"a": fs}, {"b": ft}, num_samples=100)
    conv, norm, _ = loss.projector
    # mdistiller's ConvReg for a student twice the teacher's height: 3x3 stride-2 conv, BN, ReLU.
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (2, 2), (1, 1))
    assert sum(p.numel() for p in loss.parameters()) == 8 * 6 * 9 + 6 + 2 * 6
    logits = torch.zeros(len(fs), 10)
    terms = loss(KDBatch(logits, logits, torch.zeros(len(fs), dtype=torch.long), {"a": fs}, {"b": ft}))
    mapped = F.conv2d(fs, conv.weight, conv.bias, stride=2, padding=1)
    projected = F.relu(F.batch_norm(mapped, None, None, norm.weight, norm.bias, training=True, eps=norm.eps))
    assert float(terms["kd"].detach()) == pytest.approx(100 * float(((projected - ft) ** 2).mean().detach()), rel=1e-5)
    terms["kd"].backward()
    assert conv.weight.grad is not None and float(conv.weight.grad.abs().sum()) > 0
    # Half the teacher's height: a transposed conv; a smaller map than a valid conv can reach: refused.
    assert isinstance(_projector(ft, fs)[0], torch.nn.ConvTranspose2d)
    with pytest.raises(ValueError, match="no regressor"):
        _projector(torch.zeros(2, 8, 2, 3), torch.zeros(2, 6, 3, 2))


def test_crd_memory_bank_sized_to_set_and_loss_direct() -> None:
    g = torch.Generator().manual_seed(5)
    fs, ft = torch.randn(8, 12, generator=g), torch.randn(8, 20, generator=g)
    path = "classifier:input"
    loss = create_kd_loss("crd", feat_dim=4, nce_k=3, nce_t=0.5, seed=11)
    loss.prepare({path: fs}, {path: ft}, num_samples=30)
    assert tuple(loss.memory_student.shape) == (30, 4) and tuple(loss.memory_teacher.shape) == (30, 4)
    memory_s, memory_t = loss.memory_student.clone(), loss.memory_teacher.clone()
    indices = torch.arange(8) * 3
    # Replay the generator: 2 x 30 x 4 initial memories, then the negatives.
    replay = torch.Generator().manual_seed(11)
    torch.rand(2, 30, 4, generator=replay)
    negatives = torch.randint(0, 29, (8, 3), generator=replay)
    negatives = negatives + (negatives >= indices[:, None]).long()
    assert not bool((negatives == indices[:, None]).any())
    logits = torch.zeros(8, 10)
    terms = loss(KDBatch(logits, logits, torch.zeros(8, dtype=torch.long), {path: fs}, {path: ft}, indices=indices))
    vs = F.normalize(loss.embed_student(fs), dim=1)
    vt = F.normalize(loss.embed_teacher(ft), dim=1)
    contrast = torch.cat([indices[:, None], negatives], 1)
    ls = torch.einsum("bkd,bd->bk", memory_t[contrast], vs) / 0.5
    lt = torch.einsum("bkd,bd->bk", memory_s[contrast], vt) / 0.5
    expected = -(F.log_softmax(ls, 1)[:, 0].mean() + F.log_softmax(lt, 1)[:, 0].mean())
    assert float(terms["kd"]) == pytest.approx(0.8 * float(expected), rel=1e-5)
    updated = F.normalize(0.5 * memory_s[indices] + 0.5 * vs.detach(), dim=1)
    torch.testing.assert_close(loss.memory_student[indices], updated)
    untouched = torch.ones(30, dtype=torch.bool)
    untouched[indices] = False
    torch.testing.assert_close(loss.memory_student[untouched], memory_s[untouched])


def test_crd_negatives_come_from_other_classes() -> None:
    """RepDistiller's default mode='exact': an anchor's negatives are entries of the other classes."""
    g = torch.Generator().manual_seed(5)
    fs, ft = torch.randn(8, 12, generator=g), torch.randn(8, 20, generator=g)
    path = "classifier:input"
    labels = torch.arange(30) % 3
    loss = create_kd_loss("crd", feat_dim=4, nce_k=50, seed=11)
    loss.prepare({path: fs}, {path: ft}, num_samples=30, labels=labels)
    indices = torch.arange(30)
    negatives = loss.negatives(indices)
    assert negatives.shape == (30, 20)  # capped at the smallest other-class pool (30 - 10)
    assert not bool((labels[negatives] == labels[indices][:, None]).any())
    assert set(negatives[0].tolist()) <= set(torch.nonzero(labels != 0).flatten().tolist())
    with pytest.raises(ValueError, match="labels for"):
        loss.prepare({path: fs}, {path: ft}, num_samples=30, labels=labels[:5])


def test_hooks_return_named_layer_outputs() -> None:
    with seeded_torch(0):
        model = create_model("convnetw32", in_channels=1, num_classes=10, image_size=(8, 8))
    x = torch.randn(5, 1, 8, 8, generator=make_generator(0))
    with FeatureHooks(model, ["features.1", "classifier:input", "features.0.conv"]) as hooks:
        logits = model(x)
    maps = model.feature_maps(x)
    torch.testing.assert_close(hooks.features["features.1"], maps[1])
    torch.testing.assert_close(hooks.features["classifier:input"], model.embed(x))
    torch.testing.assert_close(hooks.features["features.0.conv"], model.features[0].conv(x))
    torch.testing.assert_close(model.classifier(hooks.features["classifier:input"]), logits)
    # Removed after the block: a new forward pass does not touch the captured tensors.
    before = hooks.features["features.1"]
    model(x * 2)
    assert hooks.features["features.1"] is before
    with pytest.raises(ValueError, match="no module 'features.9'.*valid paths.*features.0"):
        FeatureHooks(model, ["features.9"])


@pytest.mark.parametrize("name", list_kd_losses())
def test_every_loss_trains_a_student_step(name: str) -> None:
    """Every registered loss runs inside the trainer (hooks, prepare, backward) and stays finite."""
    from evaluation.kd import StudentRecipe, distill_student

    with seeded_torch(0):
        teacher = create_model("convnetw32", in_channels=1, num_classes=10, image_size=(8, 8))
        student = create_model("convnetw32", in_channels=1, num_classes=10, image_size=(8, 8))
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(48, 1, 8, 8, generator=g), torch.randint(0, 10, (48,), generator=g)
    before = [p.detach().clone() for p in student.parameters()]
    stats = distill_student(
        student,
        teacher,
        images,
        labels,
        create_kd_loss(name),
        StudentRecipe(epochs=2, batch_size=16),
        generator=make_generator(0),
    )
    assert math.isfinite(stats.final_loss) and stats.steps == 6
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))
