"""Knowledge-distillation losses behind one registry, each with explicit weights.

The libraries disagree on what "alpha" means (torchdistill's ``KDLoss(alpha=0.9)`` is
``0.9 CE + 0.1 T^2 KL``; RepDistiller's "KD 0.9" is ``0.1 CE + 0.9 T^2 KL``), so every config
here names ``ce_weight`` and ``kd_weight``, and the logit losses state their ``temperature``
and whether the ``T^2`` factor is applied (``scale_t2``). A loss returns a dict of weighted
terms (``{"ce": ..., "kd": ...}``); the training loss is their sum.

``create_kd_loss("dkd", beta=6.0)`` builds a loss; :func:`list_kd_losses` names them. Feature
losses name the layers they read by module path (see :mod:`evaluation.kd.hooks`); losses with
trainable parts (FitNet's projector, CRD's embeddings and memory bank) are built lazily by
:meth:`KDLoss.prepare` from the first batch's feature shapes and the size of the training set.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data import Registry

__all__ = [
    "ATConfig",
    "CRDConfig",
    "DKDConfig",
    "FitNetConfig",
    "KDBatch",
    "KDConfig",
    "KDLoss",
    "KDLossConfig",
    "KD_LOSSES",
    "NKDConfig",
    "RKDConfig",
    "create_kd_loss",
    "dkd_parts",
    "kl_divergence",
    "list_kd_losses",
    "register_kd_loss",
    "standardize_logits",
]


# ---------------------------------------------------------------------------------------------
# Shared logit functions


def standardize_logits(logits: Tensor, eps: float = 1e-7) -> Tensor:
    """Z-score every row of ``logits`` (logit standardization, Sun et al. CVPR'24)."""
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)
    return (logits - mean) / (std + eps)


def kl_divergence(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Per-sample ``KL(softmax(t/T) || softmax(s/T))`` (no ``T^2`` factor)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)


def dkd_parts(
    student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """Per-sample TCKD and NCKD of Decoupled KD (Zhao et al. CVPR'22), without ``T^2``.

    TCKD is the KL between the binary (target, non-target) distributions; NCKD the KL between
    the distributions over the non-target classes, renormalized. They decompose the classic KD:
    ``KL = TCKD + (1 - p_t^teacher) * NCKD``.
    """
    gt_mask = F.one_hot(targets, student_logits.shape[1]).bool()
    p_student = F.softmax(student_logits / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=1)
    binary_student = torch.stack([(p_student * gt_mask).sum(1), (p_student * ~gt_mask).sum(1)], dim=1)
    binary_teacher = torch.stack([(p_teacher * gt_mask).sum(1), (p_teacher * ~gt_mask).sum(1)], dim=1)
    tckd = (binary_teacher * (binary_teacher.clamp_min(1e-12).log() - binary_student.clamp_min(1e-12).log())).sum(1)
    # Non-target distributions: mask the target logit out (the -1000 trick of mdistiller).
    masked_student = student_logits / temperature - 1000.0 * gt_mask
    masked_teacher = teacher_logits / temperature - 1000.0 * gt_mask
    log_q_student = F.log_softmax(masked_student, dim=1)
    log_q_teacher = F.log_softmax(masked_teacher, dim=1)
    nckd = (log_q_teacher.exp() * (log_q_teacher - log_q_student) * ~gt_mask).sum(1)
    return tckd, nckd


# ---------------------------------------------------------------------------------------------
# Contract


@dataclass(frozen=True)
class KDBatch:
    """What a KD loss sees for one batch.

    Attributes:
        student_logits: ``B x K`` student outputs (with gradient).
        teacher_logits: ``B x K`` teacher outputs (no gradient).
        targets: ``B`` ground-truth class indices.
        student_features: hooked student activations by module path.
        teacher_features: hooked teacher activations by module path.
        indices: positions of the batch images in the training set (CRD's memory bank).
        epoch: the current epoch, counted from 0 (warm-ups).
    """

    student_logits: Tensor
    teacher_logits: Tensor
    targets: Tensor
    student_features: Mapping[str, Tensor] = field(default_factory=dict)
    teacher_features: Mapping[str, Tensor] = field(default_factory=dict)
    indices: Tensor | None = None
    epoch: int = 0


@dataclass(frozen=True)
class KDLossConfig:
    """Base of every KD loss config.

    Attributes:
        ce_weight: weight of the cross-entropy on the ground-truth labels.
        kd_weight: weight of the distillation term.
    """

    ce_weight: float = 1.0
    kd_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("ce_weight", "kd_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        temperature = getattr(self, "temperature", 1.0)
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature}")


class KDLoss(nn.Module):
    """A distillation loss: ``forward(batch) -> {"ce": weighted CE, "kd": weighted KD, ...}``.

    Subclasses set ``config_class`` (filled by :func:`register_kd_loss` with ``name``) and
    implement :meth:`distillation_terms`. Layers read by module path are listed in
    :attr:`student_layers` / :attr:`teacher_layers`.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[KDLossConfig]] = KDLossConfig

    def __init__(self, config: KDLossConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def student_layers(self) -> tuple[str, ...]:
        """Module paths of the student activations the loss needs."""
        return ()

    @property
    def teacher_layers(self) -> tuple[str, ...]:
        """Module paths of the teacher activations the loss needs."""
        return ()

    def prepare(
        self,
        student_features: Mapping[str, Tensor],
        teacher_features: Mapping[str, Tensor],
        *,
        num_samples: int,
        labels: Tensor | None = None,
    ) -> None:
        """Build trainable parts from one batch's feature shapes (a no-op for logit losses).

        ``labels`` are the hard labels of all ``num_samples`` training images (CRD's negatives).
        """

    def distillation_terms(self, batch: KDBatch) -> dict[str, Tensor]:
        """The weighted distillation term(s), without the cross-entropy."""
        raise NotImplementedError

    def forward(self, batch: KDBatch) -> dict[str, Tensor]:
        terms = {"ce": self.config.ce_weight * F.cross_entropy(batch.student_logits, batch.targets)}
        terms.update(self.distillation_terms(batch))
        return terms

    def config_dict(self) -> dict[str, Any]:
        """The resolved config as JSON-able data (with the loss name)."""
        return {"name": self.name, **dataclasses.asdict(self.config)}


KD_LOSSES: Registry[type[KDLoss]] = Registry("kd method")


def register_kd_loss(name: str) -> Callable[[type[KDLoss]], type[KDLoss]]:
    """Class decorator: register a :class:`KDLoss` subclass under ``name``."""

    def _register(cls: type[KDLoss]) -> type[KDLoss]:
        cls.name = name
        KD_LOSSES.register(name, cls)
        return cls

    return _register


def list_kd_losses(pattern: str = "*") -> list[str]:
    """Registered KD loss names."""
    return KD_LOSSES.names(pattern)


def create_kd_loss(name: str, **config: Any) -> KDLoss:
    """Build KD loss ``name`` with its default config updated by ``config``.

    Raises:
        ValueError: unknown name (lists the valid ones) or unknown option (lists the fields).
    """
    cls = KD_LOSSES.get(name)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise ValueError(
            f"kd loss {name!r} has no option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(fields))}"
        )
    return cls(cls.config_class(**config))


# ---------------------------------------------------------------------------------------------
# Logit losses


@dataclass(frozen=True)
class KDConfig(KDLossConfig):
    """Hinton KD: ``ce_weight CE + kd_weight (T^2 if scale_t2) KL(p_t^T || p_s^T)``.

    Defaults are RepDistiller/mdistiller's CIFAR-100 ones (CE 0.1, KD 0.9, T 4 with T^2).
    ``logit_standardization`` z-scores both logits first (LS-KD: base temperature 2, KD weight 9).
    """

    ce_weight: float = 0.1
    kd_weight: float = 0.9
    temperature: float = 4.0
    scale_t2: bool = True
    logit_standardization: bool = False


def _prepare_logits(batch: KDBatch, standardize: bool) -> tuple[Tensor, Tensor]:
    if standardize:
        return standardize_logits(batch.student_logits), standardize_logits(batch.teacher_logits)
    return batch.student_logits, batch.teacher_logits


@register_kd_loss("kd")
class HintonKD(KDLoss):
    """Hinton et al. 2015, batch mean of the per-sample KL."""

    config_class = KDConfig
    config: KDConfig

    def distillation_terms(self, batch: KDBatch) -> dict[str, Tensor]:
        c = self.config
        student, teacher = _prepare_logits(batch, c.logit_standardization)
        kl = kl_divergence(student, teacher, c.temperature).mean()
        scale = c.temperature**2 if c.scale_t2 else 1.0
        return {"kd": c.kd_weight * scale * kl}


@dataclass(frozen=True)
class DKDConfig(KDLossConfig):
    """Decoupled KD: ``kd_weight * warmup * (T^2) * (alpha TCKD + beta NCKD)`` plus ``ce_weight CE``.

    mdistiller defaults: CE 1, alpha 1, beta 8 (2 for ResNet-56/110 pairs, 6 for WRN/VGG), T 4
    with T^2, a linear warm-up of the KD term over 20 epochs: ``min(epoch / 20, 1)`` with
    mdistiller's epochs counted from 1 (``engine/trainer.py``), so the first epoch already
    weighs the KD term 1/20.
    """

    ce_weight: float = 1.0
    kd_weight: float = 1.0
    alpha: float = 1.0
    beta: float = 8.0
    temperature: float = 4.0
    scale_t2: bool = True
    warmup_epochs: int = 20
    logit_standardization: bool = False


@register_kd_loss("dkd")
class DecoupledKD(KDLoss):
    """Zhao et al. CVPR'22 (TCKD + NCKD)."""

    config_class = DKDConfig
    config: DKDConfig

    def distillation_terms(self, batch: KDBatch) -> dict[str, Tensor]:
        c = self.config
        student, teacher = _prepare_logits(batch, c.logit_standardization)
        tckd, nckd = dkd_parts(student, teacher, batch.targets, c.temperature)
        # KDBatch.epoch counts from 0, mdistiller's from 1.
        warmup = min((batch.epoch + 1) / c.warmup_epochs, 1.0) if c.warmup_epochs > 0 else 1.0
        scale = c.temperature**2 if c.scale_t2 else 1.0
        return {"kd": c.kd_weight * warmup * scale * (c.alpha * tckd.mean() + c.beta * nckd.mean())}


@dataclass(frozen=True)
class NKDConfig(KDLossConfig):
    """Normalized KD (Yang et al. ICCV'23, cls_KD): target term plus renormalized non-target term.

    ``kd = kd_weight * (-t_t log s_t - gamma (T^2 if scale_t2) sum_{i != y} t^_i log s^_i)`` where
    ``t^``/``s^`` are the non-target distributions at temperature ``T``. cls_KD: gamma 1.5, T 1.
    """

    ce_weight: float = 1.0
    kd_weight: float = 1.0
    gamma: float = 1.5
    temperature: float = 1.0
    scale_t2: bool = True


@register_kd_loss("nkd")
class NormalizedKD(KDLoss):
    """NKD; the non-target mask keeps every class but the label (the fixed cls_KD #16 mask)."""

    config_class = NKDConfig
    config: NKDConfig

    def distillation_terms(self, batch: KDBatch) -> dict[str, Tensor]:
        c = self.config
        student, teacher, targets = batch.student_logits, batch.teacher_logits, batch.targets
        n, k = student.shape
        log_s = F.log_softmax(student, dim=1).gather(1, targets[:, None]).squeeze(1)
        t_target = F.softmax(teacher, dim=1).gather(1, targets[:, None]).squeeze(1)
        target_term = -(t_target * log_s)
        keep = ~F.one_hot(targets, k).bool()
        student_nt = student[keep].view(n, k - 1) / c.temperature
        teacher_nt = teacher[keep].view(n, k - 1) / c.temperature
        non_target = (F.softmax(teacher_nt, dim=1) * F.log_softmax(student_nt, dim=1)).sum(1)
        scale = c.temperature**2 if c.scale_t2 else 1.0
        return {"kd": c.kd_weight * (target_term - c.gamma * scale * non_target).mean()}


# ---------------------------------------------------------------------------------------------
# Feature losses


#: The penultimate features of every registry model: the input of its final ``Linear``.
PENULTIMATE = "classifier:input"


def _projector(student: Tensor, teacher: Tensor) -> nn.Module:
    """FitNet's regressor: mdistiller's ``ConvReg`` for maps, a Linear for vectors.

    ``ConvReg`` maps the student's map onto the teacher's shape with a conv chosen by their
    heights (3x3 stride 2 for twice the teacher's, a 4x4 stride-2 transposed conv for half of it,
    else a valid conv of ``1 + s - t``), then BatchNorm and ReLU (``mdistiller/distillers/_common.py``).
    """
    if student.ndim != 4 or teacher.ndim != 4:
        return nn.Linear(student.flatten(1).shape[1], teacher.flatten(1).shape[1])
    (s_channels, s_height, s_width), (t_channels, t_height, t_width) = student.shape[1:], teacher.shape[1:]
    conv: nn.Module
    if s_height == 2 * t_height:
        conv = nn.Conv2d(s_channels, t_channels, kernel_size=3, stride=2, padding=1)
    elif 2 * s_height == t_height:
        conv = nn.ConvTranspose2d(s_channels, t_channels, kernel_size=4, stride=2, padding=1)
    elif s_height >= t_height and s_width >= t_width:
        conv = nn.Conv2d(s_channels, t_channels, kernel_size=(1 + s_height - t_height, 1 + s_width - t_width))
    else:
        raise ValueError(
            f"fitnet: no regressor maps a {s_height}x{s_width} student map onto a {t_height}x{t_width} teacher map"
        )
    return nn.Sequential(conv, nn.BatchNorm2d(t_channels), nn.ReLU())


def _match_spatial(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Adaptive-average-pool the larger map to the smaller one's size."""
    if student.ndim != 4 or student.shape[2:] == teacher.shape[2:]:
        return student, teacher
    h = min(student.shape[2], teacher.shape[2])
    w = min(student.shape[3], teacher.shape[3])
    return F.adaptive_avg_pool2d(student, (h, w)), F.adaptive_avg_pool2d(teacher, (h, w))


@dataclass(frozen=True)
class FitNetConfig(KDLossConfig):
    """FitNet hints: ``kd_weight * MSE(projector(f_s[student_layer]), f_t[teacher_layer])``.

    Trained jointly with the CE as in mdistiller/RepDistiller (weight 100, hint on the middle
    stage); ``features.1`` is the second conv block of the registry ConvNets. No temperature:
    the term reads features, not logits.
    """

    ce_weight: float = 1.0
    kd_weight: float = 100.0
    student_layer: str = "features.1"
    teacher_layer: str = "features.1"


@register_kd_loss("fitnet")
class FitNet(KDLoss):
    """Romero et al. ICLR'15, single stage, with a learned projector."""

    config_class = FitNetConfig
    config: FitNetConfig

    def __init__(self, config: FitNetConfig) -> None:
        super().__init__(config)
        self.projector: nn.Module | None = None

    @property
    def student_layers(self) -> tuple[str, ...]:
        return (self.config.student_layer,)

    @property
    def teacher_layers(self) -> tuple[str, ...]:
        return (self.config.teacher_layer,)

    def prepare(
        self,
        student_features: Mapping[str, Tensor],
        teacher_features: Mapping[str, Tensor],
        *,
        num_samples: int,
        labels: Tensor | None = None,
    ) -> None:
        student = student_features[self.config.student_layer]
        teacher = teacher_features[self.config.teacher_layer]
        self.projector = _projector(student, teacher).to(student.device)

    def distillation_terms(self, batch: KDBatch) -> dict[str, Tensor]:
        if self.projector is None:
            raise RuntimeError("fitnet: call prepare(...) with one batch of features before training")
        student = batch.student_features[self.config.student_layer]
        teacher = batch.teacher_features[self.config.teacher_layer]
        if student.ndim != 4 or teacher.ndim != 4:
            student, teacher = student.flatten(1), teacher.flatten(1)
        return {"kd": self.config.kd_weight * F.mse_loss(self.projector(student), teacher)}


@dataclass(frozen=True)
class ATConfig(KDLossConfig):
    """Attention transfer: ``kd_weight * sum_l mean((a_s^l - a_t^l)^2)``, ``a = normalize(mean_c f^p)``.

    RepDistiller: p 2, weight 1000, over the middle stages (here the conv blocks by path).
    """

    ce_weight: float = 1.0
    kd_weight: float = 1000.0
    p: float = 2.0
    student_layers: tuple[str, ...] = ("features.0", "features.1")
    teacher_layers: tuple[str, ...] = ("features.0", "features.1")

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.student_layers) != len(self.teacher_layers) or not self.student_layers:
            raise ValueError("at: student_layers and teacher_layers must pair up (same non-zero length)")


def attention_map(features: Tensor, p: float) -> Tensor:
    """``normalize(mean_c |f|^p)`` flattened (Zagoruyko & Komodakis)."""
    return F.normalize(features.abs().pow(p).mean(1).flatten(1), dim=1)


@register_kd_loss("at")
class AttentionTransfer(KDLoss):
    """Zagoruyko & Komodakis ICLR'17."""

    config_class = ATConfig
    config: ATConfig

    @property
    def student_layers(self) -> tuple[str, ...]:
        return tuple(self.config.student_layers)

    @property
    def teacher_layers(self) -> tuple[str, ...]:
        return tuple(self.config.teacher_layers)

    def distillation_terms(self, batch: KDBatch) -> dict[str, Tensor]:
        c = self.config
        total = batch.student_logits.new_zeros(())
        for s_path, t_path in zip(c.student_layers, c.teacher_layers, strict=True):
            student, teacher = _match_spatial(batch.student_features[s_path], batch.teacher_features[t_path])
            total = total + (attention_map(student, c.p) - attention_map(teacher, c.p)).pow(2).mean()
        return {"kd": c.kd_weight * total}


@dataclass(frozen=True)
class RKDConfig(KDLossConfig):
    """Relational KD on penultimate features: ``kd_weight * (25 L_distance + 50 L_angle)``."""

    ce_weight: float = 1.0
    kd_weight: float = 1.0
    distance_weight: float = 25.0
    angle_weight: float = 50.0
    student_layer: str = PENULTIMATE
    teacher_layer: str = PENULTIMATE


def _pairwise_distances(features: Tensor, eps: float = 1e-12) -> Tensor:
    squared = features.pow(2).sum(1)
    product = features @ features.t()
    distances = (squared[:, None] + squared[None, :] - 2 * product).clamp_min(eps).sqrt()
    distances = distances.clone()
    distances[range(len(features)), range(len(features))] = 0
    return distances


def _angles(features: Tensor) -> Tensor:
    differences = F.normalize(features[None, :, :] - features[:, None, :], p=2, dim=2)
    return torch.bmm(differences, differences.transpose(1, 2)).flatten()


@register_kd_loss("rkd")
class RelationalKD(KDLoss):
    """Park et al. CVPR'19 (RepDistiller ``RKDLoss``)."""

    config_class = RKDConfig
    config: RKDConfig

    @property
    def student_layers(self) -> tuple[str, ...]:
        return (self.config.student_layer,)

    @property
    def teacher_layers(self) -> tuple[str, ...]:
        return (self.config.teacher_layer,)

    def distillation_terms(self, batch: KDBatch) -> dict[str, Tensor]:
        c = self.config
        student = batch.student_features[c.student_layer].flatten(1)
        teacher = batch.teacher_features[c.teacher_layer].flatten(1).detach()
        d_student, d_teacher = _pairwise_distances(student), _pairwise_distances(teacher)
        d_student = d_student / d_student[d_student > 0].mean()
        d_teacher = d_teacher / d_teacher[d_teacher > 0].mean()
        distance = F.smooth_l1_loss(d_student, d_teacher)
        angle = F.smooth_l1_loss(_angles(student), _angles(teacher))
        return {"kd": c.kd_weight * (c.distance_weight * distance + c.angle_weight * angle)}


@dataclass(frozen=True)
class CRDConfig(KDLossConfig):
    """Contrastive representation distillation with a memory bank sized to the training set.

    Both penultimate features are embedded to ``feat_dim`` and L2-normalized; each sample is
    contrasted, at temperature ``nce_t``, against its own memory entry of the other network
    (positive) and ``nce_k`` entries of the other classes (negatives: RepDistiller's default
    ``mode='exact'`` draws them from ``cls_negative[target]``), at most as many as the smallest
    such pool holds, drawn uniformly with replacement; without labels (a library call that
    gives none) they come from every other entry. Memories are updated with momentum
    ``nce_momentum``. RepDistiller: weight 0.8, 128-d, K 16384, T 0.07,
    m 0.5. This is the softmax (InfoNCE) form of the objective, not RepDistiller's NCE with a
    constant partition estimate. ``seed`` drives the negative sampling.
    """

    ce_weight: float = 1.0
    kd_weight: float = 0.8
    feat_dim: int = 128
    nce_k: int = 16384
    nce_t: float = 0.07
    nce_momentum: float = 0.5
    student_layer: str = PENULTIMATE
    teacher_layer: str = PENULTIMATE
    seed: int = 0


@register_kd_loss("crd")
class ContrastiveRD(KDLoss):
    """Tian et al. ICLR'20; needs ``batch.indices`` (positions in the training set)."""

    config_class = CRDConfig
    config: CRDConfig

    def __init__(self, config: CRDConfig) -> None:
        super().__init__(config)
        self.embed_student: nn.Module | None = None
        self.embed_teacher: nn.Module | None = None
        self._labels: Tensor | None = None
        self._generator = torch.Generator().manual_seed(config.seed)

    @property
    def student_layers(self) -> tuple[str, ...]:
        return (self.config.student_layer,)

    @property
    def teacher_layers(self) -> tuple[str, ...]:
        return (self.config.teacher_layer,)

    def prepare(
        self,
        student_features: Mapping[str, Tensor],
        teacher_features: Mapping[str, Tensor],
        *,
        num_samples: int,
        labels: Tensor | None = None,
    ) -> None:
        c = self.config
        student = student_features[c.student_layer].flatten(1)
        teacher = teacher_features[c.teacher_layer].flatten(1)
        device = student.device
        self.embed_student = nn.Linear(student.shape[1], c.feat_dim).to(device)
        self.embed_teacher = nn.Linear(teacher.shape[1], c.feat_dim).to(device)
        bound = 1.0 / math.sqrt(c.feat_dim / 3)
        init = torch.rand(2, num_samples, c.feat_dim, generator=self._generator) * 2 * bound - bound
        self.register_buffer("memory_student", F.normalize(init[0], dim=1).to(device))
        self.register_buffer("memory_teacher", F.normalize(init[1], dim=1).to(device))
        self._labels = None if labels is None else labels.detach().long().cpu().reshape(-1)
        if self._labels is not None and len(self._labels) != num_samples:
            raise ValueError(f"crd: {len(self._labels)} labels for {num_samples} memory entries")

    def negatives(self, indices: Tensor) -> Tensor:
        """``len(indices) x k`` negative memory entries of each anchor (see :class:`CRDConfig`)."""
        n = len(self.memory_student)  # type: ignore[arg-type]
        indices = indices.cpu()
        if self._labels is None:
            k = max(1, min(self.config.nce_k, n - 1))
            # Uniform entries other than the sample itself: shift draws in [0, n-1) past the index.
            drawn = torch.randint(0, max(n - 1, 1), (len(indices), k), generator=self._generator)
            return (drawn + (drawn >= indices[:, None]).long()).clamp(max=n - 1)
        labels = self._labels
        counts = torch.bincount(labels)
        k = max(1, min(self.config.nce_k, n - int(counts.max())))
        result = torch.empty(len(indices), k, dtype=torch.long)
        anchor_labels = labels[indices]
        for label in anchor_labels.unique().tolist():
            rows = torch.nonzero(anchor_labels == label).flatten()
            pool = torch.nonzero(labels != label).flatten()
            result[rows] = pool[torch.randint(0, len(pool), (len(rows), k), generator=self._generator)]
        return result

    def distillation_terms(self, batch: KDBatch) -> dict[str, Tensor]:
        c = self.config
        if self.embed_student is None or self.embed_teacher is None:
            raise RuntimeError("crd: call prepare(...) with one batch of features before training")
        if batch.indices is None:
            raise ValueError("crd needs the batch's dataset indices (KDBatch.indices)")
        memory_student: Tensor = self.memory_student  # type: ignore[assignment]
        memory_teacher: Tensor = self.memory_teacher  # type: ignore[assignment]
        indices = batch.indices.to(memory_student.device)
        v_student = F.normalize(self.embed_student(batch.student_features[c.student_layer].flatten(1)), dim=1)
        v_teacher = F.normalize(self.embed_teacher(batch.teacher_features[c.teacher_layer].flatten(1)), dim=1)
        negatives = self.negatives(indices).to(indices.device)
        contrast = torch.cat([indices[:, None], negatives], dim=1)
        # Student anchors against teacher memories and teacher anchors against student memories.
        logits_student = torch.bmm(memory_teacher[contrast].detach(), v_student[:, :, None]).squeeze(2) / c.nce_t
        logits_teacher = torch.bmm(memory_student[contrast].detach(), v_teacher[:, :, None]).squeeze(2) / c.nce_t
        zeros = torch.zeros(len(indices), dtype=torch.long, device=indices.device)
        loss = F.cross_entropy(logits_student, zeros) + F.cross_entropy(logits_teacher, zeros)
        with torch.no_grad():
            m = c.nce_momentum
            memory_student[indices] = F.normalize(m * memory_student[indices] + (1 - m) * v_student.detach(), dim=1)
            memory_teacher[indices] = F.normalize(m * memory_teacher[indices] + (1 - m) * v_teacher.detach(), dim=1)
        return {"kd": c.kd_weight * loss}
