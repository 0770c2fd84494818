"""Recovering images from a trained teacher's batch-norm statistics (SRe2L, CDA, INFER).

The shared machinery of the decoupled methods:

* :class:`BNStatisticsHook`: forward hooks on every BatchNorm layer of a teacher that compare the
  mean and (biased) variance of the current batch with the layer's running statistics,
  ``||mu_l(x) - mu_l^BN||_2 + ||var_l(x) - var_l^BN||_2`` (SRe2L's ``BNFeatureHook``);
* :func:`recover`: the optimization of those methods: Adam (betas 0.5, 0.9) with a cosine lr
  without warm-up, per step a random crop (``RandomResizedCrop`` with a scale range that may
  follow a curriculum, or a padded ``RandomCrop``), a random flip and a random roll jitter, the
  loss ``CE(f(x), y) + r_bn * sum_l w_l BN_l`` with the first BN layer weighted up, and clipping
  of the pixels to the valid range after each step. Several teachers take turns, one per
  iteration, each with its own matcher (G-VBSM/EDC's observers and their statistic hooks,
  :mod:`condense.statistic_matching`), and a method may add a loss on the augmented batch
  (G-VBSM's data densification);
* :func:`crop_curriculum`: CDA's easy-to-hard schedule of the crop's lower scale;
* :func:`class_bn_statistics`: LPLD's class-aware BN statistics of a teacher (one eval-mode pass
  over the augmented training set), which class-wise recovery matches instead of the running ones;
* :func:`teacher_config`: a method's squeeze fields as a cached teacher's config (see
  :mod:`evaluation.teachers`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data import ImageDataset
from data.image import clamp_to_bounds
from evaluation.models import create_model, list_models
from evaluation.teachers import TeacherConfig

CurriculumKind = Literal["cosine", "linear", "step"]
CURRICULA = ("cosine", "linear", "step")


def channel_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and biased variance over (batch, height, width) of every channel."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)
    return flat.mean(1), flat.var(1, unbiased=False)


class LayerHooks:
    """Forward hooks on some layers of a network, each leaving one matching term per forward pass.

    Subclasses implement :meth:`_hook`, which stores layer ``index``'s term in :attr:`terms`;
    :meth:`loss` weighs them. Use it as a context manager (or call :meth:`remove`) so the hooks do
    not outlive the recovery.
    """

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        self.layers = list(layers)
        self.terms: list[Tensor | None] = [None] * len(self.layers)
        self._handles = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(self.layers)]

    def _hook(self, index: int) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        raise NotImplementedError

    def loss(self, first_multiplier: float = 10.0) -> Tensor:
        """``sum_l w_l term_l`` of the last forward pass, ``w_1 = first_multiplier``, others 1."""
        if any(t is None for t in self.terms):
            raise RuntimeError("no forward pass has been recorded yet")
        weights = [first_multiplier] + [1.0] * (len(self.terms) - 1)
        return sum(w * t for w, t in zip(weights, self.terms, strict=True))  # type: ignore[misc,return-value]

    def remove(self) -> None:
        """Detach the hooks from the network."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> LayerHooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class BNStatisticsHook(LayerHooks):
    """Per BatchNorm layer of ``net``: the distance of the batch statistics to the running ones.

    After every forward pass :attr:`terms` holds one scalar per layer, in module order.
    ``reference`` replaces the running statistics by other ``(mean, var)`` per layer (LPLD: one
    class's, :func:`class_bn_statistics`).

    Raises:
        ValueError: ``net`` has no BatchNorm layer (there would be nothing to match).
    """

    def __init__(self, net: nn.Module, reference: Sequence[tuple[Tensor, Tensor]] | None = None) -> None:
        layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not layers:
            raise ValueError(
                f"recovering from batch-norm statistics needs a teacher with BatchNorm layers; "
                f"{type(net).__name__} has none (use a *_bn model, e.g. convnet_bn or resnet18_bn)"
            )
        if reference is not None and len(reference) != len(layers):
            raise ValueError(f"{len(reference)} reference statistics for {len(layers)} BatchNorm layers")
        self.reference = reference
        super().__init__(layers)

    def _hook(self, index: int) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            mean, var = channel_moments(inputs[0])
            if self.reference is None:
                running_mean, running_var = module.running_mean, module.running_var  # type: ignore[union-attr]
            else:
                running_mean, running_var = self.reference[index]
            self.terms[index] = torch.norm(running_mean - mean, 2) + torch.norm(running_var - var, 2)

        return hook


def crop_curriculum(
    iteration: int, iterations: int, *, kind: CurriculumKind, milestone: float, min_scale: float = 0.08
) -> float:
    """CDA's lower crop scale at ``iteration`` of ``iterations`` (the upper scale stays 1).

    Before ``milestone * iterations`` the lower scale goes from 1 (easy: whole-image crops) to
    ``min_scale``: ``cosine`` ``min + (1 - min)(1 + cos(pi i / (milestone I))) / 2``, ``linear``
    ``min + (1 - min)(1 - i / (milestone I))``, ``step`` stays at 1; afterwards ``min_scale``
    (the full range). ``milestone`` 0 is plain SRe2L.
    """
    if kind not in CURRICULA:
        raise ValueError(f"unknown curriculum {kind!r}; valid: {', '.join(CURRICULA)}")
    end = milestone * iterations
    if iteration >= end:
        return min_scale
    progress = iteration / end
    if kind == "cosine":
        return min_scale + (1.0 - min_scale) * (1.0 + math.cos(math.pi * progress)) / 2.0
    if kind == "linear":
        return min_scale + (1.0 - min_scale) * (1.0 - progress)
    return 1.0


def random_resized_crop(images: Tensor, scale: tuple[float, float], rng: random.Random) -> Tensor:
    """One ``RandomResizedCrop`` (ratio 3/4 to 4/3) for the whole batch, resized back (bilinear).

    Like torchvision's transform on a batch tensor: one box for every image; differentiable with
    respect to the pixels.
    """
    height, width = images.shape[-2:]
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        crop_w = round(math.sqrt(target * ratio))
        crop_h = round(math.sqrt(target / ratio))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top, left = rng.randint(0, height - crop_h), rng.randint(0, width - crop_w)
            break
    else:  # torchvision's fallback: the central crop
        crop_h, crop_w, top, left = height, width, 0, 0
    crop = images[..., top : top + crop_h, left : left + crop_w]
    if (crop_h, crop_w) == (height, width):
        return crop
    return F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class RecoverSettings:
    """One recovery's hyperparameters (the per-method configs carry them).

    Attributes:
        iterations: Adam steps.
        lr: Adam's base lr (cosine decay to 0 over ``iterations``, no warm-up).
        r_bn: weight of the BN-matching term.
        first_bn_multiplier: weight of the first BN layer inside that term.
        jitter: the roll is drawn from ``[0, jitter]`` pixels on both axes (SRe2L), or from
            ``[-jitter, jitter]`` with ``signed_jitter`` (LPLD).
        flip: random horizontal flip per step.
        crop: random-resized-crop per step (with ``min_scale`` or the curriculum's scale).
        min_scale: the crop's lower scale when there is no curriculum.
        curriculum: CDA's schedule of the lower scale (``None``: fixed ``min_scale``).
        milestone: share of the iterations the curriculum spans.
        signed_jitter: draw the roll from ``[-jitter, jitter]``.
        pad_crop: a ``RandomCrop`` with this much zero padding per step, one offset for the batch
            (G-VBSM: 4 on 32x32); 0 turns it off.
    """

    iterations: int
    lr: float
    r_bn: float
    first_bn_multiplier: float = 10.0
    jitter: int = 4
    flip: bool = True
    crop: bool = False
    min_scale: float = 0.08
    curriculum: CurriculumKind | None = None
    milestone: float = 0.0
    signed_jitter: bool = False
    pad_crop: int = 0

    def crop_scale(self, iteration: int) -> float:
        """The crop's lower scale at ``iteration``."""
        if self.curriculum is None:
            return self.min_scale
        return crop_curriculum(
            iteration, self.iterations, kind=self.curriculum, milestone=self.milestone, min_scale=self.min_scale
        )


@dataclass
class RecoverTrace:
    """What a recovery did, per iteration."""

    ce: list[float] = field(default_factory=list)
    bn: list[float] = field(default_factory=list)
    crop_scales: list[float] = field(default_factory=list)
    extra: list[float] = field(default_factory=list)


class Matcher(Protocol):
    """What :func:`recover` asks of a statistic-matching hook set on one teacher."""

    def loss(self, first_multiplier: float = 10.0) -> Tensor:
        """The weighted matching loss of the last forward pass."""
        ...


def pad_crop(images: Tensor, padding: int, rng: random.Random) -> Tensor:
    """``RandomCrop(size, padding)`` with zero padding, one offset for the whole batch (differentiable)."""
    height, width = images.shape[-2:]
    padded = F.pad(images, (padding, padding, padding, padding))
    top, left = rng.randint(0, 2 * padding), rng.randint(0, 2 * padding)
    return padded[..., top : top + height, left : left + width]


def recover(
    teacher: nn.Module | Sequence[nn.Module],
    parameter: Tensor,
    labels: Tensor,
    settings: RecoverSettings,
    *,
    seed: int,
    compose: Callable[[Tensor], Tensor] | None = None,
    bounds: tuple[Tensor, Tensor] | None = None,
    trace: RecoverTrace | None = None,
    bn_reference: Sequence[tuple[Tensor, Tensor]] | None = None,
    matchers: Sequence[Matcher] | None = None,
    first_turn: int = 0,
    extra_loss: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> Tensor:
    """Optimize ``parameter`` so the teacher classifies ``compose(parameter)`` as ``labels`` with real statistics.

    Args:
        teacher: a network in eval mode (frozen), or several that take turns, one per iteration.
        parameter: the leaf to optimize: the images themselves (SRe2L/CDA) or a compensator
            (INFER), cloned, not modified.
        labels: the class of every composed image.
        settings: the hyperparameters.
        seed: seeds the crops, flips and jitter.
        compose: ``parameter -> images`` (default: the identity).
        bounds: per-channel pixel bounds to clip ``parameter`` to after every step (``None``: no
            clipping, e.g. a compensator, which is clipped once added to its images).
        trace: collects the per-iteration CE, matching loss, extra loss and crop scale.
        bn_reference: the ``(mean, var)`` per BN layer to match instead of the running
            statistics (class-wise recovery: the class's).
        matchers: one hook set per teacher whose :meth:`Matcher.loss` is the matching term
            (default: a :class:`BNStatisticsHook` per teacher, made and removed here).
        first_turn: the turn of the first iteration: iteration ``i`` uses teacher
            ``(first_turn + i) % len(teachers)`` (G-VBSM's turn counter runs across batches).
        extra_loss: ``(augmented images, labels) -> loss`` added to every iteration's loss, already
            weighted (G-VBSM's data densification).

    Returns:
        The optimized ``parameter`` (detached).
    """
    teachers = [teacher] if isinstance(teacher, nn.Module) else list(teacher)
    for net in teachers:
        net.eval()
    compose = compose or (lambda p: p)
    rng = random.Random(seed)
    parameter = parameter.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([parameter], lr=settings.lr, betas=(0.5, 0.9), eps=1e-8)
    with ExitStack() as stack:
        if matchers is None:
            matchers = [stack.enter_context(BNStatisticsHook(net, bn_reference)) for net in teachers]
        if len(matchers) != len(teachers):
            raise ValueError(f"{len(matchers)} matchers for {len(teachers)} teachers")
        for iteration in range(settings.iterations):
            turn = (first_turn + iteration) % len(teachers)
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * (1 + math.cos(math.pi * iteration / settings.iterations)) * settings.lr
            images = compose(parameter)
            scale = settings.crop_scale(iteration)
            if settings.crop:
                images = random_resized_crop(images, (scale, 1.0), rng)
            if settings.pad_crop:
                images = pad_crop(images, settings.pad_crop, rng)
            if settings.jitter:
                low = -settings.jitter if settings.signed_jitter else 0
                shifts = (rng.randint(low, settings.jitter), rng.randint(low, settings.jitter))
                images = torch.roll(images, shifts=shifts, dims=(2, 3))
            if settings.flip and rng.random() < 0.5:
                images = torch.flip(images, dims=(3,))
            logits = teachers[turn](images)
            ce = F.cross_entropy(logits, labels)
            matching = matchers[turn].loss(settings.first_bn_multiplier)
            loss = ce + settings.r_bn * matching
            extra = extra_loss(images, labels) if extra_loss is not None else None
            if extra is not None:
                loss = loss + extra
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if bounds is not None:
                with torch.no_grad():
                    parameter.copy_(clamp_to_bounds(parameter, bounds))
            if trace is not None:
                trace.ce.append(float(ce.detach()))
                trace.bn.append(float(matching.detach()))
                trace.crop_scales.append(scale if settings.crop else 1.0)
                if extra is not None:
                    trace.extra.append(float(extra.detach()))
            if not torch.isfinite(loss.detach()):
                raise FloatingPointError(
                    f"recovery diverged at iteration {iteration} (loss {float(loss):.4g}); lower lr or r_bn"
                )
    return parameter.detach()


@torch.no_grad()
def class_bn_statistics(
    teacher: nn.Module,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    generator: torch.Generator,
    batch_size: int = 256,
    momentum: float = 0.1,
    crop: bool = True,
    flip: bool = True,
    device: torch.device | str = "cpu",
) -> list[tuple[Tensor, Tensor]]:
    """LPLD's class-aware BN statistics: per BN layer, ``(mean, var)`` of shape ``classes x channels``.

    One pass of the teacher in eval mode over the training set in a random order (``generator``),
    each image random-resized-cropped (scale 0.08 to 1) and flipped as the official
    ``forward_once.py``'s training transform; for every class present in a batch, ``mu_c <- (1 - m)
    mu_c + m mean_c`` and ``var_c`` likewise with the batch's biased variance of that class
    (``ClassAwareBatchNorm2d``, ``m`` = BN's momentum 0.1), starting from 0 and 1.
    """
    teacher.eval()
    layers = [m for m in teacher.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        raise ValueError("class-wise BN statistics need a teacher with BatchNorm layers")
    stats = [
        (
            torch.zeros(num_classes, layer.num_features, device=device),
            torch.ones(num_classes, layer.num_features, device=device),
        )
        for layer in layers
    ]
    current: dict[str, Tensor] = {}

    def hook(index: int) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def update(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            x, batch_labels = inputs[0], current["labels"]
            means, variances = stats[index]
            for label in batch_labels.unique().tolist():
                rows = x[batch_labels == label]
                means[label] = (1 - momentum) * means[label] + momentum * rows.mean(dim=(0, 2, 3))
                variances[label] = (1 - momentum) * variances[label] + momentum * rows.var(
                    dim=(0, 2, 3), unbiased=False
                )

        return update

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
    try:
        order = torch.randperm(len(images), generator=generator)
        for first in range(0, len(images), batch_size):
            index = order[first : first + batch_size]
            if crop:
                batch = torch.cat([random_resized_crop(images[i : i + 1], (0.08, 1.0), rng) for i in index.tolist()])
            else:
                batch = images[index].clone()
            if flip:
                flips = torch.tensor([rng.random() < 0.5 for _ in range(len(batch))])
                batch[flips] = torch.flip(batch[flips], dims=(3,))
            current["labels"] = labels[index].to(device)
            teacher(batch.to(device))
    finally:
        for handle in handles:
            handle.remove()
    return stats


@torch.no_grad()
def bn_distance(teacher: nn.Module, images: Tensor, first_multiplier: float = 10.0, batch: int = 0) -> float:
    """The weighted BN-matching loss of ``images`` (one batch, or chunks of ``batch`` averaged)."""
    teacher.eval()
    chunks = [images] if not batch else list(images.split(batch))
    with BNStatisticsHook(teacher) as hook:
        values = []
        for chunk in chunks:
            teacher(chunk)
            values.append(float(hook.loss(first_multiplier)))
    return sum(values) / len(values)


def require_batchnorm(model: str, train: ImageDataset) -> None:
    """Raise ``ValueError`` before any training when ``model`` has no BatchNorm layer to recover from."""
    channels, height, width = train.image_shape
    net = create_model(model, in_channels=channels, num_classes=train.num_classes, image_size=(height, width))
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        bn_models = ", ".join(name for name in list_models() if name.endswith("_bn"))
        raise ValueError(
            f"recovering from batch-norm statistics needs a teacher with BatchNorm layers; {model!r} has none "
            f"(valid: {bn_models})"
        )


def teacher_config(
    model: str, epochs: int, lr: float, batch_size: int, weight_decay: float = 5e-4, seed: int = 0
) -> TeacherConfig:
    """A :class:`TeacherConfig` from a method config's squeeze fields (SGD m0.9, DSA)."""
    return TeacherConfig(model=model, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, seed=seed)


def class_batches(num_classes: int, batch_size: int) -> list[Sequence[int]]:
    """Classes grouped into batches of at most ``batch_size`` (SRe2L recovers one image per class per batch)."""
    classes = list(range(num_classes))
    return [classes[i : i + batch_size] for i in range(0, num_classes, batch_size)]
