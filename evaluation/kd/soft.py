"""Soft-label training of compressed sets (the SRe2L/CDA/RDED/DATM/DD-Ranking conventions).

Label sources (:attr:`SoftLabelConfig.label_source`):

* ``hard``: the set's integer labels (argmax of soft ones), cross-entropy.
* ``stored``: one soft label per image, fixed under augmentation (DD-Ranking mode ``S``, DATM).
  A set with soft labels uses its own; a hard-label set gets the teacher's prediction on each
  un-augmented image, once. Their bytes are counted in the set's size.
* ``online``: the teacher (or the ensemble's mean logits) labels every augmented batch; the
  same augmented tensor goes to teacher and student (DD-Ranking ``M``, RDED, SRe2L-CIFAR).
* ``replay``: FKD/SRe2L relabel: per epoch, the batch order, each batch's augmentation seed
  (which fixes its DSA draws, crop/flip and mix partner, lambda and box) and the teacher's
  logits (fp16) are generated once and stored, then every student replays them without a
  teacher (no PyTorch fetcher patch: the loop reads the stored orders). The store's bytes are
  counted in the set's size. With ``label_pruning_ratio`` r (LPLD, Xiao & He, NeurIPS 2024) only
  the first ``floor((1 - r) S)`` of the ``S`` batches are stored, and each student epoch draws its
  batches uniformly with replacement from that pool (``batch_to_epoch`` of the official
  ``train_FKD_label_pruning_batch.py``, each epoch's last batch replaced by the one before it).

Criteria: ``ce`` (hard), ``kl`` (``KL(p_t^T || p_s^T)``), ``sce`` (``-sum p_t^T log p_s^T``),
``mse_gt`` (G-VBSM/EDC: ``mse_weight MSE(s, t) + ce_weight CE``), and ``kd`` (pruning + KD:
``(1 - alpha) CE + alpha KL``, alpha a function of the kept fraction). ``T^2`` multiplies the
KL/SCE only when ``scale_t2`` is set (DD pipelines leave it off). Augmentation: ``none``,
``dsa`` (per image), ``mixup`` or ``cutmix`` (targets mixed with the same lambda), after an
optional per-image transform (``image_transform``: FKD's ``RandomResizedCrop`` and flip, with
EDC's ``RandAugment`` before them). With ``ema_decay`` the student's parameters are averaged
after every step and the average is what gets tested (EDC; the BatchNorm buffers stay the live
model's, as the reference's swap leaves them).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data import ImageDataset
from data.seeding import derive_seed, make_generator, seeded_torch
from evaluation.augment import DSAParams, dsa_augment, randaugment, random_resized_crop_flip, strategy_for
from evaluation.kd.trainer import StudentRecipe, run_epochs
from evaluation.models import create_model
from evaluation.parallel import DataParallel, single_or
from evaluation.teachers import TeacherConfig, charge_teachers, load_or_train_teachers
from evaluation.train import accuracy

LabelSource = Literal["hard", "stored", "online", "replay"]
Criterion = Literal["ce", "kl", "sce", "mse_gt", "kd"]
SoftAugmentation = Literal["none", "dsa", "mixup", "cutmix"]
ImageTransform = Literal["none", "crop_flip", "randaugment_crop_flip"]
LABEL_SOURCES = ("hard", "stored", "online", "replay")
CRITERIA = ("ce", "kl", "sce", "mse_gt", "kd")
AUGMENTATIONS = ("none", "dsa", "mixup", "cutmix")
IMAGE_TRANSFORMS = ("none", "crop_flip", "randaugment_crop_flip")
SCHEDULES = ("step", "cosine", "epoch_cosine", "constant")


@dataclass(frozen=True)
class SoftLabelConfig:
    """How a soft-label protocol labels and trains.

    Attributes:
        label_source: ``hard``, ``stored``, ``online`` or ``replay`` (see the module docstring).
        criterion: ``ce``, ``kl``, ``sce``, ``mse_gt`` or ``kd``.
        temperature: softmax temperature of ``kl``/``sce``/``kd`` (both sides).
        scale_t2: multiply the KL/SCE term by ``T^2``.
        mse_weight: ``mse_gt``'s weight on the logit MSE.
        ce_weight: ``mse_gt``'s weight on the ground-truth CE.
        kd_alpha: ``kd``'s constant alpha (``None``: use ``kd_alpha_table``).
        kd_alpha_table: ``kd``'s alpha by kept fraction, ``((fraction, alpha), ...)``, linearly
            interpolated and held constant past the ends.
        augmentation: ``none``, ``dsa``, ``mixup`` or ``cutmix``.
        mix_alpha: Beta(mix_alpha, mix_alpha) for the mixing lambda.
        optimizer: ``sgd`` or ``adamw`` (lr, momentum, weight decay, batch, epochs come from the
            protocol's recipe).
        schedule: ``step``, ``cosine`` (per step), ``epoch_cosine`` (per epoch, stretched by
            ``cosine_stretch``) or ``constant``.
        teachers: the teacher, or several (an ensemble of mean logits).
        label_pruning_ratio: LPLD's r, the share of the replay store's batches pruned away
            (``replay`` only; 0 keeps all, 0.975 is LPLD's 40x).
        image_transform: per-image transform before ``augmentation``: ``crop_flip``
            (``RandomResizedCrop`` with ``crop_scale``, then a flip where the dataset allows; FKD's
            relabel of SRe2L/G-VBSM), ``randaugment_crop_flip`` (EDC: ``RandAugment`` first) or ``none``.
        crop_scale: the area range of those crops.
        ema_decay: test the exponential moving average of the student's parameters, updated after
            every step with this decay (EDC's 0.99); 0 tests the student itself.
        cosine_stretch: ``epoch_cosine``'s ``zeta``: the lr is ``lr (1 + cos(pi e / (zeta E))) / 2`` at
            epoch ``e`` of ``E`` (EDC's smoothed schedule: 2; G-VBSM: 1).
        decay_all_parameters: weight decay on every parameter; false exempts the one-dimensional
            ones (biases, norm weights), as the FKD trainers' ``get_parameters`` does.
    """

    label_source: LabelSource = "online"
    criterion: Criterion = "kl"
    temperature: float = 1.0
    scale_t2: bool = False
    mse_weight: float = 1.0
    ce_weight: float = 0.0
    kd_alpha: float | None = None
    kd_alpha_table: tuple[tuple[float, float], ...] = ()
    augmentation: SoftAugmentation = "cutmix"
    mix_alpha: float = 1.0
    optimizer: Literal["sgd", "adamw"] = "adamw"
    schedule: Literal["step", "cosine", "epoch_cosine", "constant"] = "cosine"
    teachers: tuple[TeacherConfig, ...] = (TeacherConfig(),)
    label_pruning_ratio: float = 0.0
    image_transform: ImageTransform = "none"
    crop_scale: tuple[float, float] = (0.08, 1.0)
    ema_decay: float = 0.0
    cosine_stretch: float = 1.0
    decay_all_parameters: bool = True

    def __post_init__(self) -> None:
        for name, value, valid in (
            ("label_source", self.label_source, LABEL_SOURCES),
            ("criterion", self.criterion, CRITERIA),
            ("augmentation", self.augmentation, AUGMENTATIONS),
            ("image_transform", self.image_transform, IMAGE_TRANSFORMS),
            ("schedule", self.schedule, SCHEDULES),
        ):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        if (self.label_source == "hard") != (self.criterion == "ce"):
            raise ValueError("criterion 'ce' goes with label_source 'hard' and only with it")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.criterion == "kd" and self.kd_alpha is None and not self.kd_alpha_table:
            raise ValueError("criterion 'kd' needs kd_alpha or kd_alpha_table")
        alphas = [self.kd_alpha] if self.kd_alpha is not None else []
        alphas += [a for _, a in self.kd_alpha_table]
        if any(not 0 <= a <= 1 for a in alphas):
            raise ValueError(f"kd alphas must be in [0, 1], got {alphas}")
        if self.label_source != "hard" and not self.teachers:
            raise ValueError(f"label_source {self.label_source!r} needs at least one teacher")
        if not 0 <= self.label_pruning_ratio < 1:
            raise ValueError(f"label_pruning_ratio is a share in [0, 1), got {self.label_pruning_ratio}")
        if self.label_pruning_ratio > 0 and self.label_source != "replay":
            raise ValueError(
                f"label_pruning_ratio prunes a replay store; label_source is {self.label_source!r}, not 'replay'"
            )
        if self.image_transform != "none" and self.augmentation == "dsa":
            raise ValueError("image_transform crops before a mix; with augmentation 'dsa' (its own crops) use 'none'")
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not (math.isfinite(self.cosine_stretch) and self.cosine_stretch > 0):
            raise ValueError(f"cosine_stretch must be positive, got {self.cosine_stretch}")

    def alpha_for(self, kept_fraction: float) -> float | None:
        """The ``kd`` weight at ``kept_fraction`` (``None`` for the other criteria)."""
        if self.criterion != "kd":
            return None
        if self.kd_alpha is not None:
            return float(self.kd_alpha)
        table = sorted(self.kd_alpha_table)
        fractions = [f for f, _ in table]
        return float(np.interp(kept_fraction, fractions, [a for _, a in table]))

    def config_dict(self) -> dict[str, Any]:
        """JSON-able resolved config (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def identity_dict(self) -> dict[str, Any]:
        """:meth:`config_dict` without the fields added after soft protocols had records, where they
        hold their defaults (so those protocols keep their identity and cell keys)."""
        defaults = SoftLabelConfig(teachers=self.teachers).config_dict()
        return {
            name: value
            for name, value in self.config_dict().items()
            if not (name in ADDED_SOFT_FIELDS and value == defaults[name])
        }


#: Soft-label fields added after protocols that use them had records (left out of identities at their defaults).
ADDED_SOFT_FIELDS = frozenset(
    {"label_pruning_ratio", "image_transform", "crop_scale", "ema_decay", "cosine_stretch", "decay_all_parameters"}
)


# ---------------------------------------------------------------------------------------------
# Criteria


def soft_label_loss(
    config: SoftLabelConfig,
    student_logits: Tensor,
    teacher_logits: Tensor | None,
    target_probs: Tensor,
    *,
    alpha: float | None = None,
) -> Tensor:
    """The criterion of ``config`` on one batch.

    Args:
        config: the soft-label config.
        student_logits: ``B x K``.
        teacher_logits: ``B x K`` teacher logits (or log-probabilities); ``None`` for ``ce``.
        target_probs: ``B x K`` ground-truth one-hot rows, mixed like the images.
        alpha: ``kd``'s weight.
    """
    log_p_student = F.log_softmax(student_logits, dim=1)
    hard_ce = -(target_probs * log_p_student).sum(1).mean()
    if config.criterion == "ce":
        return hard_ce
    assert teacher_logits is not None
    if config.criterion == "mse_gt":
        return config.mse_weight * F.mse_loss(student_logits, teacher_logits) + config.ce_weight * hard_ce
    t = config.temperature
    scale = t * t if config.scale_t2 else 1.0
    log_q_student = F.log_softmax(student_logits / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=1)
    p_teacher = log_p_teacher.exp()
    if config.criterion == "sce":
        return scale * -(p_teacher * log_q_student).sum(1).mean()
    kl = scale * (p_teacher * (log_p_teacher - log_q_student)).sum(1).mean()
    if config.criterion == "kl":
        return kl
    assert alpha is not None
    return (1 - alpha) * hard_ce + alpha * kl


def probabilities_as_logits(labels: Tensor) -> Tensor:
    """Stored soft labels as logits: log-probabilities for probability rows, else unchanged."""
    rows_are_probs = bool((labels >= 0).all()) and torch.allclose(
        labels.sum(1), torch.ones(len(labels), dtype=labels.dtype), atol=1e-3
    )
    return labels.clamp_min(1e-8).log() if rows_are_probs else labels


# ---------------------------------------------------------------------------------------------
# Augmentation of one batch (a local generator per batch makes it replayable)


@dataclass(frozen=True)
class MixParams:
    """Which image each one is mixed with, and its weight (``lam`` of the original)."""

    partner: Tensor
    lam: float


def augment_batch(
    images: Tensor,
    config: SoftLabelConfig,
    generator: torch.Generator,
    flip: bool,
    normalization: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, MixParams | None]:
    """The per-image transform, then DSA, mixup or CutMix of ``images``, all randomness drawn from ``generator``.

    ``normalization`` (the dataset's per-channel mean and std) is needed by ``RandAugment``, which
    works on pixels in ``[0, 1]``.
    """
    if config.image_transform == "randaugment_crop_flip":
        if normalization is None:
            raise ValueError("image_transform 'randaugment_crop_flip' needs the dataset's mean and std")
        images = randaugment(images, generator, mean=normalization[0], std=normalization[1])
    if config.image_transform != "none":
        images = random_resized_crop_flip(images, generator, scale=config.crop_scale, flip=flip)
    if config.augmentation == "none":
        return images, None
    if config.augmentation == "dsa":
        return dsa_augment(images, strategy_for(flip), generator, shared=False, params=DSAParams()), None
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    lam = float(rng.beta(config.mix_alpha, config.mix_alpha))
    partner = torch.randperm(len(images), generator=generator).to(images.device)
    if config.augmentation == "mixup":
        return lam * images + (1 - lam) * images[partner], MixParams(partner, lam)
    _, _, h, w = images.shape
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    mixed = images.clone()
    mixed[:, :, top:bottom, left:right] = images[partner][:, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    return mixed, MixParams(partner, lam)


def _mix(values: Tensor, mix: MixParams | None) -> Tensor:
    return values if mix is None else mix.lam * values + (1 - mix.lam) * values[mix.partner]


# ---------------------------------------------------------------------------------------------
# Replay store


@dataclass
class ReplayStore:
    """Per-epoch batch orders, per-batch augmentation seeds and teacher logits (fp16).

    Batches are numbered epoch by epoch (``batch_id = epoch * batches_per_epoch + position``).
    A pruned store (LPLD) holds the first ``len(seeds)`` of ``total_batches`` batches, and the
    orders of the epochs they come from.
    """

    orders: list[Tensor]
    seeds: list[int]
    logits: list[Tensor]
    batch_size: int = 0
    batches_per_epoch: int = 0
    total_batches: int = 0

    @property
    def pruned(self) -> bool:
        """Whether some batches were pruned away (the students then draw from the pool)."""
        return len(self.seeds) < self.total_batches

    def num_bytes(self) -> int:
        """Bytes of the stored labels and the parameters that replay them."""
        logits = sum(t.numel() * t.element_size() for t in self.logits)
        return logits + 8 * len(self.seeds) + sum(4 * len(o) for o in self.orders)

    def batch_indices(self, batch_id: int) -> Tensor:
        """The image indices of stored batch ``batch_id``."""
        epoch, position = divmod(batch_id, self.batches_per_epoch)
        return self.orders[epoch][position * self.batch_size : (position + 1) * self.batch_size]

    def student_schedule(self, epochs: int, generator: torch.Generator) -> tuple[list[Tensor], list[int]]:
        """Each student epoch's image order and the stored batch of each step.

        Unpruned: the stored epochs in turn. Pruned: per epoch, ``batches_per_epoch`` batches drawn
        uniformly with replacement from the pool, a draw of an epoch's last (possibly short) batch
        replaced by the batch before it, as the official code does (with one batch per epoch there
        is no shorter batch to avoid, and none is replaced).
        """
        if not self.pruned:
            return self.orders[:epochs], list(range(len(self.seeds)))
        orders, schedule = [], []
        for _ in range(epochs):
            ids = [int(i) for i in torch.randint(len(self.seeds), (self.batches_per_epoch,), generator=generator)]
            if self.batches_per_epoch > 1:
                ids = [i - 1 if (i + 1) % self.batches_per_epoch == 0 else i for i in ids]
            orders.append(torch.cat([self.batch_indices(i) for i in ids]))
            schedule.extend(ids)
        return orders, schedule


@torch.no_grad()
def build_replay_store(
    teacher: nn.Module,
    images: Tensor,
    config: SoftLabelConfig,
    recipe: StudentRecipe,
    *,
    generator: torch.Generator,
    flip: bool,
    device: torch.device | str = "cpu",
    parallel: DataParallel | None = None,
    normalization: tuple[Tensor, Tensor] | None = None,
) -> ReplayStore:
    """Draw what a student's loop would draw from ``generator`` and store the teacher's outputs.

    Under ``parallel`` each rank labels its part of every batch and the parts are gathered, so
    every rank holds the whole store.
    """
    parallel = single_or(parallel)
    device = torch.device(device)
    teacher.to(device).eval()
    images = images.to(device)
    batches_per_epoch = math.ceil(len(images) / recipe.batch_size)
    total = recipe.epochs * batches_per_epoch
    kept = int((1 - config.label_pruning_ratio) * total)
    if kept < 1:
        raise ValueError(
            f"label_pruning_ratio {config.label_pruning_ratio} keeps none of the {total} batches "
            f"({recipe.epochs} epochs x {batches_per_epoch}); lower it"
        )
    store = ReplayStore([], [], [], recipe.batch_size, batches_per_epoch, total)
    for _ in range(recipe.epochs):
        if len(store.seeds) == kept:
            break
        order = torch.randperm(len(images), generator=generator)
        store.orders.append(order)
        for first in range(0, len(images), recipe.batch_size):
            if len(store.seeds) == kept:
                break
            batch_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            inputs, _ = augment_batch(
                images[order[first : first + recipe.batch_size].to(device)],
                config,
                make_generator(batch_seed),
                flip,
                normalization,
            )
            store.seeds.append(batch_seed)
            logits = parallel.gather_parts(teacher(parallel.local(inputs)), len(inputs))
            store.logits.append(logits.to(torch.float16).cpu())
    return store


# ---------------------------------------------------------------------------------------------
# One student


def train_soft_student(
    student: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: SoftLabelConfig,
    recipe: StudentRecipe,
    *,
    generator: torch.Generator,
    num_classes: int,
    flip: bool,
    teacher: nn.Module | None = None,
    stored_logits: Tensor | None = None,
    replay: ReplayStore | None = None,
    alpha: float | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    parallel: DataParallel | None = None,
    normalization: tuple[Tensor, Tensor] | None = None,
) -> float:
    """Train ``student`` in place under ``config``; returns the final loss.

    ``labels`` are the integer ground truth; ``teacher`` is needed for ``online``,
    ``stored_logits`` (``N x K``) for ``stored`` and ``replay`` (from :func:`build_replay_store`
    with a generator in the state ``generator`` is in now) for ``replay``. Under ``parallel``
    (torchrun) every batch is augmented and mixed whole, then each rank labels and trains on its
    part; ``student`` must have been through ``parallel.prepare``. ``normalization`` is the
    dataset's ``(mean, std)`` (``RandAugment`` needs it). With ``config.ema_decay`` the student
    ends holding the average of its parameters.
    """
    parallel = single_or(parallel)
    device = torch.device(device)
    student.to(device).train()
    images, labels = images.to(device), labels.to(device)
    one_hot = F.one_hot(labels, num_classes).float()
    source = config.label_source
    if source == "online" and teacher is None:
        raise ValueError("label_source 'online' needs a teacher")
    if source == "stored" and stored_logits is None:
        raise ValueError("label_source 'stored' needs stored_logits")
    if source == "replay" and replay is None:
        raise ValueError("label_source 'replay' needs a replay store")
    if teacher is not None:
        teacher.to(device).eval()
    # Stored labels become logits once, then mix linearly (INFER's val_static.py interpolates the
    # stored logits, lam * t_i + (1 - lam) * t_j, and only then applies the temperature).
    stored = probabilities_as_logits(stored_logits.to(device)) if stored_logits is not None else None
    counter = {"step": 0}
    orders = schedule = None
    if replay is not None and source == "replay":
        orders, schedule = replay.student_schedule(recipe.epochs, generator)

    def step(epoch: int, batch: Tensor) -> Tensor:
        batch = batch.to(device)
        stored_batch = schedule[counter["step"]] if schedule is not None else None
        if stored_batch is not None:
            batch_seed = replay.seeds[stored_batch]  # type: ignore[union-attr]
        else:
            batch_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        inputs, mix = augment_batch(images[batch], config, make_generator(batch_seed), flip, normalization)
        inputs, targets = parallel.local(inputs), parallel.local(_mix(one_hot[batch], mix))
        teacher_logits: Tensor | None = None
        if source == "online":
            with torch.no_grad():
                teacher_logits = teacher(inputs)  # type: ignore[misc]
        elif source == "replay":
            teacher_logits = parallel.local(replay.logits[stored_batch]).to(device).float()  # type: ignore[union-attr,index]
        elif source == "stored":
            teacher_logits = parallel.local(_mix(stored[batch], mix))  # type: ignore[index]
        counter["step"] += 1
        return soft_label_loss(config, student(inputs), teacher_logits, targets, alpha=alpha)

    parameters = [p for p in student.parameters() if p.requires_grad]
    average = ParameterAverage(parameters, config.ema_decay) if config.ema_decay else None
    stats = run_epochs(
        parameters,
        recipe,
        len(images),
        generator,
        step,
        progress=progress,
        description=f"soft:{source}",
        orders=orders,
        parallel=parallel,
        after_step=average.update if average is not None else None,
    )
    if average is not None:
        average.copy_to(parameters)
    return stats.final_loss


class ParameterAverage:
    """An exponential moving average of parameters, ``a <- d a + (1 - d) p`` after every step (EDC's ``EMAMODEL``)."""

    def __init__(self, parameters: Sequence[Tensor], decay: float) -> None:
        self.decay = decay
        self.parameters = list(parameters)
        self.averages = [p.detach().clone() for p in self.parameters]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the parameters' current values into the averages."""
        torch._foreach_lerp_(self.averages, [p.detach() for p in self.parameters], 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, parameters: Sequence[Tensor]) -> None:
        """Overwrite ``parameters`` with the averages."""
        for parameter, average in zip(parameters, self.averages, strict=True):
            parameter.copy_(average)


# ---------------------------------------------------------------------------------------------
# A whole protocol evaluation


@dataclass
class SoftEvaluation:
    """Accuracies per evaluation model and what the labelling used."""

    accuracies: dict[str, tuple[float, ...]]
    seconds: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


def evaluate_soft(
    images: Tensor,
    labels: Tensor,
    *,
    num_classes: int,
    flip: bool,
    test: ImageDataset,
    config: SoftLabelConfig,
    recipe: StudentRecipe,
    models: Sequence[str],
    num_models: int,
    seed: int,
    kept_fraction: float,
    train: ImageDataset | None = None,
    val: ImageDataset | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    parallel: DataParallel | None = None,
) -> SoftEvaluation:
    """Train ``num_models`` students of every model on a set under ``config``; test each once.

    Args:
        images: the set's images.
        labels: integer labels or a soft-label matrix (probabilities).
        num_classes: classes.
        flip: whether DSA may flip (the dataset's :attr:`~data.ImageDataset.flip`).
        test: the test split, touched only for the final accuracies.
        config: the soft-label config.
        recipe: the students' optimizer and schedule.
        models: evaluation model registry names.
        num_models: students per model.
        seed: the cell seed.
        kept_fraction: the set's share of the training set (``kd``'s alpha).
        train: the whole training split, to build teachers (needed unless ``hard``).
        val: the validation split (teacher accuracy recorded beside it).
        device: where to train.
        progress: progress bars.
        parallel: the torchrun group training each student together (``None``: one process).
    """
    parallel = single_or(parallel)
    device = torch.device(device)
    source = config.label_source
    normalization = (torch.tensor(test.mean), torch.tensor(test.std))
    hard_labels = labels.argmax(1) if labels.is_floating_point() else labels.long()
    details: dict[str, Any] = {"label_source": source, "criterion": config.criterion, "label_bytes": 0}
    teacher: nn.Module | None = None
    needs_teacher = source in ("online", "replay") or (source == "stored" and not labels.is_floating_point())
    if needs_teacher:
        if train is None:
            raise ValueError(f"label_source {source!r} needs the training split to build its teacher(s)")
        teacher, members = load_or_train_teachers(
            config.teachers, train, val=val, test=test, device=device, progress=progress
        )
        details["teachers"] = [member.describe() for member in members]
        details["provenance"] = {}
        charge_teachers(details["provenance"], members)
    stored_logits = None
    if source == "stored":
        if labels.is_floating_point():
            stored_logits = probabilities_as_logits(labels.float())
        else:
            with torch.no_grad():
                assert teacher is not None
                teacher.eval()
                stored_logits = torch.cat(
                    [teacher(images[i : i + 1024].to(device)).cpu() for i in range(0, len(images), 1024)]
                )
            # Stored as one float32 probability row per image, as a soft-label set holds them.
            details["label_bytes"] = stored_logits.numel() * 4
    replay = None
    if source == "replay":
        assert teacher is not None
        replay = build_replay_store(
            teacher,
            images,
            config,
            recipe,
            generator=make_generator(derive_seed("replay", seed), "cpu"),
            flip=flip,
            device=device,
            parallel=parallel,
            normalization=normalization,
        )
        details["label_bytes"] = replay.num_bytes()
        if replay.pruned:
            details["label_pruning_ratio"] = config.label_pruning_ratio
            details["stored_batches"] = len(replay.seeds)
            details["total_batches"] = replay.total_batches
    alpha = config.alpha_for(kept_fraction)
    details["kd_alpha"] = alpha
    details["kept_fraction"] = kept_fraction

    accuracies: dict[str, tuple[float, ...]] = {}
    seconds: dict[str, float] = {}
    for model_name in models:
        started = time.perf_counter()
        values = []
        for index in range(num_models):
            model_seed = derive_seed("evaluate", seed, model_name, index)
            with seeded_torch(model_seed, device):
                student = create_model(
                    model_name, in_channels=images.shape[1], num_classes=num_classes, image_size=tuple(images.shape[2:])
                )
            student = parallel.prepare(student, device)
            # Replay students share the stored orders and augmentations (as SRe2L's do).
            generator = make_generator(model_seed, "cpu")
            train_soft_student(
                student,
                images,
                hard_labels,
                config,
                recipe,
                generator=generator,
                num_classes=num_classes,
                flip=flip,
                teacher=teacher,
                stored_logits=stored_logits,
                replay=replay,
                alpha=alpha,
                device=device,
                progress=progress,
                parallel=parallel,
                normalization=normalization,
            )
            values.append(accuracy(student, test.images, test.labels, device=device, parallel=parallel))
        accuracies[model_name] = tuple(values)
        seconds[model_name] = time.perf_counter() - started
    return SoftEvaluation(accuracies=accuracies, seconds=seconds, details=details)
