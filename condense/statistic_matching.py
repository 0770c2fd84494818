"""Multi-backbone statistic matching (G-VBSM, CVPR 2024; EDC, NeurIPS 2024).

G-VBSM recovers images from the statistics of several trained networks ("observers") at once,
one observer per iteration in turn. Every BatchNorm and every convolution of the observer is
hooked, in ``named_modules`` order:

* a BatchNorm layer compares the channel mean and (biased) variance of its input with its running
  statistics;
* a convolution compares the same two moments of its input, plus the *patch* moments: the input
  resized (bilinear) to sides that are multiples of 4, cut into 4x4 blocks, and the mean and
  variance over (batch, channels, block pixels) of every block position, with statistics of the
  real data measured in one pass over the augmented training set (:func:`observer_statistics`,
  batch-size-weighted averages of the per-batch moments).

Each term is the L2 distance of a reference to the batch moment in "score-distillation" form:
``s_hat = s_ema + s - sg(s)`` with ``s_ema <- m s_ema + (1 - m) s`` (no gradient, ``m`` the
``momentum``), so its value is the running average and its gradient that of the current batch
(:class:`StatisticMatcher`). A convolution's term is dropped (zero) with probability
``drop_rate``. EDC adds soft category-aware matching: with ``class_weight`` ``a`` every term is
``(1 - a) d(global) + a d(class)``, where the class reference averages the per-class statistics
(means over the class's images of their per-image moments) over the batch's targets.

G-VBSM's data densification (:func:`densification_loss`) keeps the images of one class spread
out: the eigenvalues ``l`` of the class's Gram matrix (images pooled to 32x32, flattened) are
pulled towards their own softened distribution, ``KL(softmax(sg(l) / tau) || softmax(l))``.

Follows ``recover/utils.py`` (``BNFeatureHook``, ``ConvFeatureHook``) and
``recover/data_synthesis_with_svd_with_db_with_all_statistic.py`` of
shaoshitong/G_VBSM_Dataset_Condensation and ``recover/{utils,recover}.py`` of shaoshitong/EDC.
Differences: the per-class patch statistics are stored under their own names (EDC's files swap
the patch mean and variance on saving), and the statistics pass augments with
:func:`evaluation.augment.random_crop_flip` (zero padding in normalized space).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file
from torch import Tensor, nn

from condense.recover import LayerHooks, channel_moments
from data import ImageDataset
from data.cache import build_once, cache_dir
from data.seeding import derive_seed, make_generator
from data.untrusted import BadFileError, read_limited
from evaluation.augment import crop_padding, random_crop_flip
from evaluation.teachers import Teacher, cache_key

logger = logging.getLogger(__name__)

#: Side of the square blocks whose moments are the patch statistics.
PATCH_BLOCK = 4
#: Bump when the statistics change, so old cache entries are not reused.
STATISTICS_FORMAT_VERSION = 1
#: The cache file's entry holding the seconds the pass took.
SECONDS_KEY = "seconds"


def hooked_layers(net: nn.Module) -> list[nn.Module]:
    """Every BatchNorm and convolution of ``net``, in ``named_modules`` order (the reference's)."""
    return [m for m in net.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Conv2d))]


def _is_bn(layer: nn.Module) -> bool:
    return isinstance(layer, nn.modules.batchnorm._BatchNorm)


def _blocks(x: Tensor) -> tuple[Tensor, int, int]:
    """``x`` resized (bilinear) to sides that are multiples of 4, as ``n x c x u x 4 x v x 4``."""
    n, c, h, w = x.shape
    height, width = math.ceil(h / PATCH_BLOCK) * PATCH_BLOCK, math.ceil(w / PATCH_BLOCK) * PATCH_BLOCK
    if (height, width) != (h, w):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    u, v = height // PATCH_BLOCK, width // PATCH_BLOCK
    return x.reshape(n, c, u, PATCH_BLOCK, v, PATCH_BLOCK), u, v


def patch_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and biased variance over (batch, channels, block pixels) of every 4x4 block position."""
    blocks, u, v = _blocks(x)
    rows = blocks.permute(2, 4, 0, 1, 3, 5).reshape(u * v, -1)
    return rows.mean(1), rows.var(1, unbiased=False)


def _per_image_moments(x: Tensor, patches: bool) -> list[Tensor]:
    """Per image: channel mean and variance over (H, W), and (``patches``) per-block moments."""
    moments = [x.mean((2, 3)), x.var((2, 3), unbiased=False)]
    if patches:
        blocks, u, v = _blocks(x)
        rows = blocks.permute(0, 2, 4, 1, 3, 5).reshape(len(x), u * v, -1)
        moments += [rows.mean(2), rows.var(2, unbiased=False)]
    return moments


@dataclass(frozen=True)
class LayerStatistics:
    """The real-data reference of one hooked layer.

    Attributes:
        mean, var: channel moments (BatchNorm: its running statistics; convolution: the data pass).
        patch_mean, patch_var: per-block moments of a convolution's input (``None`` for BatchNorm).
        class_mean, class_var: ``classes x channels``, each class's mean of its images' per-image
            channel moments (``None`` when the pass was not class-wise).
        class_patch_mean, class_patch_var: ``classes x blocks``, likewise for the block moments.
    """

    mean: Tensor
    var: Tensor
    patch_mean: Tensor | None = None
    patch_var: Tensor | None = None
    class_mean: Tensor | None = None
    class_var: Tensor | None = None
    class_patch_mean: Tensor | None = None
    class_patch_var: Tensor | None = None

    @property
    def is_conv(self) -> bool:
        return self.patch_mean is not None

    @property
    def class_wise(self) -> bool:
        return self.class_mean is not None

    def tensors(self) -> dict[str, Tensor]:
        """The fields that are set, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def to(self, device: torch.device | str) -> LayerStatistics:
        return LayerStatistics(**{name: value.to(device) for name, value in self.tensors().items()})


@torch.no_grad()
def observer_statistics(
    net: nn.Module,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    generator: torch.Generator,
    flip: bool,
    class_wise: bool,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> list[LayerStatistics]:
    """One pass of ``net`` (eval mode) over the augmented training set; the reference of every hooked layer.

    The batches follow a random order (``generator``); each image is randomly cropped (an eighth
    of the side as zero padding) and flipped where ``flip`` (the reference's CIFAR training
    transform). A convolution's moments are the batch-size-weighted mean of the per-batch
    moments; a BatchNorm layer's are its running statistics. With ``class_wise`` every layer also
    gets per-class means of the per-image moments (EDC).
    """
    net.eval()
    layers = hooked_layers(net)
    count = len(images)
    sums: list[list[Tensor] | None] = [None] * len(layers)
    class_sums: list[list[Tensor] | None] = [None] * len(layers)
    class_counts = torch.zeros(num_classes, device=device)
    batch_labels: dict[str, Tensor] = {}

    def hook(index: int) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def accumulate(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            x = inputs[0].float()
            conv = not _is_bn(module)
            if conv:
                weighted = [m * (len(x) / count) for m in (*channel_moments(x), *patch_moments(x))]
                sums[index] = (
                    weighted if sums[index] is None else [a + b for a, b in zip(sums[index], weighted, strict=True)]
                )  # type: ignore[arg-type]
            if class_wise:
                per_image = _per_image_moments(x, patches=conv)
                per_class = [
                    torch.zeros(num_classes, *m.shape[1:], device=m.device).index_add_(0, batch_labels["y"], m)
                    for m in per_image
                ]
                current = class_sums[index]
                class_sums[index] = (
                    per_class if current is None else [a + b for a, b in zip(current, per_class, strict=True)]
                )

        return accumulate

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    padding = crop_padding(images.shape[2:])
    try:
        order = torch.randperm(count, generator=generator)
        for first in range(0, count, batch_size):
            index = order[first : first + batch_size]
            batch = random_crop_flip(images[index], generator, padding=padding, flip=flip).to(device)
            batch_labels["y"] = labels[index].to(device)
            class_counts.index_add_(0, batch_labels["y"], torch.ones(len(index), device=device))
            net(batch)
    finally:
        for handle in handles:
            handle.remove()
    statistics = []
    for index, layer in enumerate(layers):
        values: dict[str, Tensor] = {}
        if _is_bn(layer):
            values["mean"], values["var"] = layer.running_mean.clone(), layer.running_var.clone()  # type: ignore[union-attr]
        else:
            values["mean"], values["var"], values["patch_mean"], values["patch_var"] = sums[index]  # type: ignore[misc]
        if class_wise:
            # A class absent from the training split keeps zeros (its images are never recovered).
            per_class = [s / class_counts.clamp_min(1).view(-1, *([1] * (s.dim() - 1))) for s in class_sums[index]]  # type: ignore[union-attr]
            names = ("class_mean", "class_var", "class_patch_mean", "class_patch_var")
            values.update(zip(names, per_class, strict=False))  # BatchNorm layers: no patch moments
        statistics.append(LayerStatistics(**values))
    return statistics


# ---------------------------------------------------------------------------------------------
# The cache of the statistics (one file per observer, statistics settings and dataset)


def _statistics_key(teacher: Teacher, train: ImageDataset, class_wise: bool, batch_size: int) -> str:
    payload = {
        "teacher": cache_key(teacher.config, train),
        "class_wise": class_wise,
        "batch_size": batch_size,
        "version": STATISTICS_FORMAT_VERSION,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return f"{train.name}_{teacher.config.model}_{digest}"


@dataclass(frozen=True)
class ObserverStatistics:
    """An observer's statistics and what measuring them cost (charged to every use, hit or not)."""

    layers: list[LayerStatistics]
    seconds: float
    cache_hit: bool


def _read_statistics(path: Path, layers: Sequence[nn.Module], class_wise: bool) -> ObserverStatistics:
    """Statistics from a cache file, checked against the observer's layers (never runs code)."""
    try:
        tensors = load_safetensors_bytes(read_limited(path, what="observer statistics"))
    except Exception as error:  # noqa: BLE001 - any refusal means "not a statistics file"
        raise BadFileError(path, f"not a readable statistics file ({str(error)[:200]})") from None
    seconds = tensors.pop(SECONDS_KEY, None)
    if seconds is None or seconds.numel() != 1 or not bool(torch.isfinite(seconds).all()) or float(seconds) < 0:
        raise BadFileError(path, "no cost of the statistics pass recorded")
    statistics = []
    for index, layer in enumerate(layers):
        values = {name.split(".", 1)[1]: t for name, t in tensors.items() if name.split(".", 1)[0] == str(index)}
        channels = layer.num_features if _is_bn(layer) else layer.in_channels  # type: ignore[union-attr]
        try:
            layer_statistics = LayerStatistics(**values)
        except TypeError:
            raise BadFileError(path, f"layer {index}: fields {sorted(values)} do not fit the observer") from None
        if (
            layer_statistics.mean.shape != (channels,)
            or layer_statistics.is_conv == _is_bn(layer)
            or layer_statistics.class_wise != class_wise
            or not all(bool(torch.isfinite(t).all()) for t in values.values())
        ):
            raise BadFileError(path, f"layer {index}: the statistics do not fit the observer or are not finite")
        statistics.append(layer_statistics)
    if len(tensors) != sum(len(s.tensors()) for s in statistics):
        raise BadFileError(path, "more layers than the observer has: the statistics do not fit it")
    return ObserverStatistics(statistics, float(seconds), cache_hit=True)


def load_or_compute_statistics(
    teacher: Teacher,
    train: ImageDataset,
    *,
    class_wise: bool,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> ObserverStatistics:
    """:func:`observer_statistics` of a cached observer, cached beside it (the ``statistics`` product).

    The pass is seeded by the observer's seed, so every cell of a dataset shares it. An observer
    loaded from a user's weights file is measured every time (its weights are not in the key).
    """
    layers = hooked_layers(teacher.model)

    def compute() -> ObserverStatistics:
        started = time.perf_counter()
        generator = make_generator(derive_seed("observer-statistics", teacher.config.seed), "cpu")
        measured = observer_statistics(
            teacher.model,
            train.images,
            train.labels,
            train.num_classes,
            generator=generator,
            flip=train.flip,
            class_wise=class_wise,
            batch_size=batch_size,
            device=device,
        )
        return ObserverStatistics(measured, time.perf_counter() - started, cache_hit=False)

    if teacher.config.path is not None:
        return compute()
    folder = Path(teacher.config.cache_dir) if teacher.config.cache_dir else cache_dir("statistics")
    entry = folder / f"{_statistics_key(teacher, train, class_wise, batch_size)}.safetensors"

    def build(tmp: Path) -> None:
        measured = compute()
        tensors = {
            f"{i}.{name}": t.detach().cpu().contiguous()
            for i, s in enumerate(measured.layers)
            for name, t in s.tensors().items()
        }
        tensors[SECONDS_KEY] = torch.tensor([measured.seconds], dtype=torch.float64)
        save_file(tensors, str(tmp))

    def is_valid(path: Path) -> bool:
        _read_statistics(path, layers, class_wise)
        return True

    hit = build_once(entry, build, is_valid)
    cached = _read_statistics(entry, layers, class_wise)
    return ObserverStatistics([s.to(device) for s in cached.layers], cached.seconds, cache_hit=hit)


# ---------------------------------------------------------------------------------------------
# The matching loss of one observer


class StatisticMatcher(LayerHooks):
    """Hooks on every BatchNorm and convolution of one observer; :meth:`loss` after each forward pass.

    Args:
        net: the observer (eval mode).
        statistics: its :func:`observer_statistics`, one per :func:`hooked_layers` entry.
        momentum: the EMA rate ``m`` of the score-distillation form (G-VBSM's
            ``training-momentum``); 0 matches the current batch's moments alone.
        drop_rate: probability that a convolution's term is zero for a forward pass.
        class_weight: EDC's soft category-aware weight ``a`` (0: global statistics only).
        rng: the source of the drops.

    The EMA state lives as long as the matcher, across batches, as the reference's hooks do.
    """

    def __init__(
        self,
        net: nn.Module,
        statistics: Sequence[LayerStatistics],
        *,
        momentum: float,
        drop_rate: float,
        class_weight: float,
        rng: random.Random,
    ) -> None:
        layers = hooked_layers(net)
        if len(statistics) != len(layers):
            raise ValueError(f"{len(statistics)} layer statistics for {len(layers)} hooked layers")
        if class_weight and not all(s.class_wise for s in statistics):
            raise ValueError("category-aware matching (class_weight > 0) needs class-wise statistics")
        self.statistics = list(statistics)
        self.momentum, self.drop_rate, self.class_weight, self.rng = momentum, drop_rate, class_weight, rng
        self.ema: list[list[Tensor] | None] = [None] * len(layers)
        self.class_reference: list[list[Tensor]] | None = None
        super().__init__(layers)

    def set_targets(self, labels: Tensor) -> None:
        """The batch's classes: the class reference of every layer is the mean of their statistics."""
        if not self.class_weight:
            return
        self.class_reference = []
        for s in self.statistics:
            per_class = [s.class_mean, s.class_var] + ([s.class_patch_mean, s.class_patch_var] if s.is_conv else [])
            self.class_reference.append([t[labels].mean(0) for t in per_class])  # type: ignore[index]

    def _hook(self, index: int) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            x = inputs[0]
            conv = not _is_bn(module)
            if conv and self.drop_rate and self.rng.random() > 1.0 - self.drop_rate:
                self.terms[index] = x.new_zeros(())
                return
            moments = [*channel_moments(x), *(patch_moments(x) if conv else ())]
            with torch.no_grad():
                previous = self.ema[index]
                self.ema[index] = (
                    [m.detach() for m in moments]
                    if previous is None
                    else [
                        self.momentum * e + (1 - self.momentum) * m.detach()
                        for e, m in zip(previous, moments, strict=True)
                    ]
                )
            smoothed = [e + m - m.detach() for e, m in zip(self.ema[index], moments, strict=True)]  # type: ignore[arg-type]
            s = self.statistics[index]
            reference = [s.mean, s.var] + ([s.patch_mean, s.patch_var] if conv else [])
            term = sum(torch.norm(r - m, 2) for r, m in zip(reference, smoothed, strict=True))
            if self.class_weight:
                if self.class_reference is None:
                    raise RuntimeError("category-aware matching needs set_targets before the forward pass")
                by_class = sum(torch.norm(r - m, 2) for r, m in zip(self.class_reference[index], smoothed, strict=True))
                term = (1 - self.class_weight) * term + self.class_weight * by_class
            self.terms[index] = term  # type: ignore[assignment]

        return hook


def densification_loss(images: Tensor, labels: Tensor, *, tau: float, pool: int = 32) -> Tensor:
    """G-VBSM's data densification: per class, ``KL(softmax(sg(l) / tau) || softmax(l))`` (sum).

    ``l`` are the eigenvalues of the class's Gram matrix ``X X^T`` of its images pooled
    (``AdaptiveAvgPool2d``) to ``pool x pool`` and flattened. The reference takes the real part
    of ``torch.linalg.eigvals``; the Gram matrix is symmetric, so ``eigvalsh`` gives the same values
    (in another order, which the KL does not see) and the same gradient.
    """
    flat = F.adaptive_avg_pool2d(images, pool).flatten(1)
    total = images.new_zeros(())
    for label in labels.unique():
        rows = flat[labels == label]
        eigenvalues = torch.linalg.eigvalsh(rows @ rows.T)
        target = (eigenvalues.detach() / tau).softmax(-1)
        total = total + F.kl_div(eigenvalues.log_softmax(-1), target, reduction="sum")
    return total
