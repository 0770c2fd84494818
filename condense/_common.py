"""Shared machinery of the learned synthesizers (matching methods now, trajectory matching later).

One place for what DC, DSA, DM, DataDAM (and MTT-style methods) share:

* :class:`ClassBatchSampler`: random real batches of one class (the reference ``get_images``);
* :func:`initial_images`: the synthetic set's starting point, Gaussian noise or random real
  images of each class, seeded;
* :func:`sample_network`: a freshly initialized network from the model registry under a derived
  seed (the reference re-seeds from the clock instead);
* :func:`siamese_augment`: DSA with the same op and parameters on the real and the synthetic
  batch (two generators in the same state), differentiable with respect to the synthetic pixels;
* :class:`DistillationRun`: the loop with tqdm progress, periodic checkpoints of the set and a
  NaN/divergence guard (:class:`DivergenceError`);
* :class:`Synthesizer`: the :class:`~data.methods.Method` base that turns ``condense`` into
  ``distill`` and packages the result with provenance.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from data import ImageDataset
from data.methods import Family, Method, MethodConfig
from data.provenance import ResourceMeter
from data.seeding import derive_seed, make_generator, seeded_torch
from data.synthetic import Budget, SyntheticSet
from evaluation.augment import DSAParams, dsa_augment, parse_strategy, strategy_for
from evaluation.models import create_model

logger = logging.getLogger(__name__)

InitKind = Literal["noise", "real"]

#: Config fields that say where and how often to write checkpoints, not what is computed: kept
#: out of :meth:`Synthesizer.config_dict` (so out of provenance and the benchmark cell key).
CHECKPOINT_FIELDS = frozenset({"checkpoint_dir", "checkpoint_every"})


class DivergenceError(FloatingPointError):
    """The distillation loss or the synthetic images became NaN/Inf or exploded."""


# ---------------------------------------------------------------------------------------------
# Configuration and seeds


@dataclass(frozen=True)
class SynthesizerConfig(MethodConfig):
    """Fields shared by every learned synthesizer (subclasses set the official defaults).

    Attributes:
        model: registry name of the network the matching is done through.
        iterations: outer iterations (synthetic-image updates, or outer rounds for DC).
        lr_img: learning rate of the synthetic images (SGD).
        momentum_img: momentum of the image optimizer.
        batch_real: real images sampled per class and iteration.
        init: ``"noise"`` (standard normal in normalized space) or ``"real"`` (random images of
            the class).
        dsa_strategy: ``"auto"`` (the reference strategy for the dataset: no flip on digits),
            ``"none"`` (no augmentation) or underscore-joined op names.
        checkpoint_dir: folder for periodic checkpoints of the set (``None``: none written).
        checkpoint_every: iterations between checkpoints (0: only the final set).
    """

    model: str = "convnet3"
    iterations: int = 1000
    lr_img: float = 0.1
    momentum_img: float = 0.5
    batch_real: int = 256
    init: InitKind = "real"
    dsa_strategy: str = "auto"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if not (self.lr_img > 0 and math.isfinite(self.lr_img)):
            raise ValueError(f"lr_img must be a positive number, got {self.lr_img}")
        if self.batch_real < 1:
            raise ValueError(f"batch_real must be positive, got {self.batch_real}")
        if self.init not in ("noise", "real"):
            raise ValueError(f"init must be 'noise' or 'real', got {self.init!r}")
        if self.dsa_strategy not in ("auto", "none"):
            parse_strategy(self.dsa_strategy)
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")


def resolve_strategy(dsa_strategy: str, dataset_name: str) -> str | None:
    """The DSA strategy to use (``None`` for no augmentation)."""
    if dsa_strategy == "none":
        return None
    if dsa_strategy == "auto":
        return strategy_for(dataset_name)
    return dsa_strategy


class SeedStream:
    """Successive 31-bit seeds drawn from a local generator (for per-class DSA draws)."""

    def __init__(self, seed: int) -> None:
        self._generator = torch.Generator().manual_seed(seed)

    def next(self) -> int:
        """The next seed."""
        return int(torch.randint(0, 2**31 - 1, (1,), generator=self._generator))


# ---------------------------------------------------------------------------------------------
# Real batches, initialization, networks, siamese augmentation


class ClassBatchSampler:
    """Random batches of real images of one class, drawn without replacement within a batch.

    The images live on ``device`` once; the draws come from a CPU generator so a seed gives the
    same batches on every device. A class with fewer images than asked for yields all of them
    (the reference ``np.random.permutation(indices)[:n]``).
    """

    def __init__(self, train: ImageDataset, device: torch.device, generator: torch.Generator) -> None:
        self.images = train.images.to(device)
        self.labels = train.labels.to(device)
        self.num_classes = train.num_classes
        self._members = [train.class_indices(c) for c in range(train.num_classes)]
        self._all = torch.arange(len(train))
        self._generator = generator
        self._device = device

    def count(self, label: int, n: int) -> int:
        """How many images :meth:`sample` returns for ``label``."""
        return min(n, len(self._members[label]))

    def sample(self, label: int, n: int) -> Tensor:
        """``min(n, available)`` random images of class ``label``."""
        members = self._members[label]
        if len(members) == 0:
            raise ValueError(f"class {label} has no training images")
        order = torch.randperm(len(members), generator=self._generator)[:n]
        return self.images[members[order].to(self._device)]

    def sample_any(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` random images of any class and their labels."""
        order = torch.randperm(len(self._all), generator=self._generator)[:n].to(self._device)
        return self.images[order], self.labels[order]


def class_labels(num_classes: int, ipc: int, device: torch.device | str = "cpu") -> Tensor:
    """``[0]*ipc + [1]*ipc + ...``: the class-major label layout of every synthetic set here."""
    return torch.arange(num_classes, device=device).repeat_interleave(ipc)


def initial_images(train: ImageDataset, ipc: int, init: InitKind, generator: torch.Generator) -> Tensor:
    """Starting synthetic images, class-major (``ipc`` per class), on the CPU.

    Args:
        train: the training set.
        ipc: images per class.
        init: ``"noise"``: standard normal pixels (in normalized space, as the reference);
            ``"real"``: ``ipc`` distinct random training images of each class.
        generator: the source of randomness.

    Raises:
        ValueError: ``init="real"`` and some class has fewer than ``ipc`` images.
    """
    if init == "noise":
        return torch.randn((train.num_classes * ipc, *train.image_shape), generator=generator)
    if init != "real":
        raise ValueError(f"unknown init {init!r}; valid: noise, real")
    chunks = []
    for label in range(train.num_classes):
        members = train.class_indices(label)
        if len(members) < ipc:
            raise ValueError(
                f"init='real' needs {ipc} images of class {label} but the training set has {len(members)}; "
                "use init='noise' or a smaller ipc"
            )
        chunks.append(train.images[members[torch.randperm(len(members), generator=generator)[:ipc]]])
    return torch.cat(chunks).clone()


def sample_network(
    model: str, train: ImageDataset, seed: int, device: torch.device | str = "cpu", **options: Any
) -> nn.Module:
    """A freshly initialized ``model`` for ``train``'s images, built under ``seed``.

    The caller's global RNG is left as it was (:func:`data.seeding.seeded_torch`).
    """
    with seeded_torch(seed, device):
        net = create_model(
            model,
            in_channels=train.image_shape[0],
            num_classes=train.num_classes,
            image_size=train.image_shape[1:],
            **options,
        )
    return net.to(device)


def has_batchnorm(net: nn.Module) -> bool:
    """True when ``net`` holds a BatchNorm layer (running statistics mix the batch)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def set_batchnorm_eval(net: nn.Module) -> None:
    """Freeze the running statistics of every BatchNorm layer (the rest stays as it is)."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def siamese_augment(
    real: Tensor, synthetic: Tensor, strategy: str | None, seed: int, params: DSAParams = DSAParams()
) -> tuple[Tensor, Tensor]:
    """DSA with the same op and the same parameters on both batches (and on every image).

    Two CPU generators seeded alike drive the two :func:`~evaluation.augment.dsa_augment` calls,
    so the transforms are identical; gradients flow through the op into ``synthetic``.
    ``strategy=None`` returns the batches unchanged.
    """
    if strategy is None:
        return real, synthetic
    real_out = dsa_augment(real, strategy, make_generator(seed, "cpu"), shared=True, params=params)
    synthetic_out = dsa_augment(synthetic, strategy, make_generator(seed, "cpu"), shared=True, params=params)
    return real_out, synthetic_out


def class_means(features: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Per-class mean rows of ``features`` (``num_classes x D``; labels index the classes)."""
    flat = features.reshape(len(features), -1)
    sums = torch.zeros(num_classes, flat.shape[1], dtype=flat.dtype, device=flat.device).index_add(0, labels, flat)
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).to(flat.dtype)
    return sums / counts.unsqueeze(1)


# ---------------------------------------------------------------------------------------------
# The loop: progress, checkpoints, divergence guard


@dataclass
class DivergenceGuard:
    """Stops a run whose loss or images turn NaN/Inf, or whose loss explodes.

    A loss above ``factor`` times the largest of the first ``warmup`` losses counts as exploded.
    """

    method: str
    lr_img: float
    factor: float = 1e4
    warmup: int = 10
    _reference: float = 0.0
    _seen: int = 0

    def check(self, iteration: int, loss: float, images: Tensor) -> None:
        """Raise :class:`DivergenceError` with what happened and what to change."""
        hint = f"lower lr_img (now {self.lr_img:g}) or check the data normalization"
        if not math.isfinite(loss):
            raise DivergenceError(f"{self.method}: the matching loss became {loss} at iteration {iteration}; {hint}")
        if not bool(torch.isfinite(images).all()):
            raise DivergenceError(
                f"{self.method}: the synthetic images hold NaN/Inf after iteration {iteration}; {hint}"
            )
        if self._seen < self.warmup:
            self._reference = max(self._reference, abs(loss))
            self._seen += 1
        elif self._reference > 0 and abs(loss) > self.factor * self._reference:
            raise DivergenceError(
                f"{self.method}: the matching loss exploded to {loss:.4g} at iteration {iteration} "
                f"({self.factor:g}x the early losses, {self._reference:.4g}); {hint}"
            )


@dataclass
class DistillationRun:
    """The state of one distillation: data, synthetic images, seeds, loop helpers.

    Built by :meth:`Synthesizer.distill`; the method's ``synthesize`` reads it and updates
    ``images`` (a leaf tensor with ``requires_grad``) through :meth:`image_optimizer` and
    :meth:`loop`.
    """

    method: str
    config: SynthesizerConfig
    train: ImageDataset
    ipc: int
    seed: int
    device: torch.device
    progress: bool
    images: Tensor
    labels: Tensor
    sampler: ClassBatchSampler
    strategy: str | None
    dsa_params: DSAParams = field(default_factory=DSAParams)
    losses: list[float] = field(default_factory=list)
    iteration_seconds: list[float] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    _dsa_seeds: SeedStream | None = None

    @property
    def num_classes(self) -> int:
        """Classes of the training set."""
        return self.train.num_classes

    def class_slice(self, label: int) -> slice:
        """Rows of ``images`` that belong to class ``label``."""
        return slice(label * self.ipc, (label + 1) * self.ipc)

    def derived_seed(self, *parts: object) -> int:
        """A seed derived from the run seed and ``parts`` (stable across processes)."""
        return derive_seed("distill", self.seed, *parts)

    def network(self, iteration: int, *, model: str | None = None, **options: Any) -> nn.Module:
        """A fresh network for ``iteration``, the same for every method run with this seed."""
        seed = self.derived_seed("network", model or self.config.model, iteration)
        return sample_network(model or self.config.model, self.train, seed, self.device, **options)

    def next_dsa_seed(self) -> int:
        """The next seed of the run's DSA stream."""
        if self._dsa_seeds is None:
            self._dsa_seeds = SeedStream(self.derived_seed("dsa"))
        return self._dsa_seeds.next()

    def siamese(self, real: Tensor, synthetic: Tensor) -> tuple[Tensor, Tensor]:
        """:func:`siamese_augment` with the run's strategy and the next seed of its stream."""
        if self.strategy is None:
            return real, synthetic
        return siamese_augment(real, synthetic, self.strategy, self.next_dsa_seed(), self.dsa_params)

    def image_optimizer(self) -> torch.optim.Optimizer:
        """SGD with momentum on the synthetic images (the reference ``optimizer_img``)."""
        return torch.optim.SGD([self.images], lr=self.config.lr_img, momentum=self.config.momentum_img)

    def synthetic_set(self, provenance: dict[str, Any] | None = None) -> SyntheticSet:
        """The current images as a set (detached, on the CPU)."""
        return SyntheticSet(
            images=self.images.detach().cpu().clone(),
            labels=self.labels.detach().cpu().clone(),
            num_classes=self.num_classes,
            mean=self.train.mean,
            std=self.train.std,
            budget=Budget(ipc=self.ipc),
            provenance=provenance or {},
        )

    def checkpoint(self, iteration: int) -> Path | None:
        """Write the current set to ``checkpoint_dir`` (when configured); returns the path."""
        if self.config.checkpoint_dir is None:
            return None
        name = f"{self.method}_{self.train.name}_ipc{self.ipc}_seed{self.seed}_it{iteration:06d}.safetensors"
        provenance = {"method": self.method, "checkpoint_iteration": iteration, "seed": self.seed}
        path = self.synthetic_set(provenance).save(Path(self.config.checkpoint_dir) / name)
        self.checkpoints.append(path)
        logger.info("%s: checkpoint at iteration %d -> %s", self.method, iteration, path)
        return path

    def loop(self, step: Callable[[int], float], iterations: int | None = None) -> list[float]:
        """Run ``step(iteration) -> loss`` for every iteration with progress, checkpoints and the guard.

        Returns the losses (also appended to :attr:`losses`).

        Raises:
            DivergenceError: the loss or the images became NaN/Inf, or the loss exploded.
        """
        total = self.config.iterations if iterations is None else iterations
        guard = DivergenceGuard(self.method, self.config.lr_img)
        every = self.config.checkpoint_every
        bar = tqdm(range(total), desc=f"{self.method} ipc={self.ipc}", disable=not self.progress, leave=False)
        for iteration in bar:
            started = time.perf_counter()
            loss = float(step(iteration))
            self.iteration_seconds.append(time.perf_counter() - started)
            guard.check(iteration, loss, self.images.detach())
            self.losses.append(loss)
            if self.progress and iteration % 10 == 0:
                bar.set_postfix(loss=f"{loss:.4g}")
            if every and (iteration + 1) % every == 0 and iteration + 1 < total:
                self.checkpoint(iteration + 1)
            if iteration % max(total // 10, 1) == 0:
                logger.debug("%s iteration %d/%d: loss %.6g", self.method, iteration, total, loss)
        if total:
            self.checkpoint(total)
        return self.losses


# ---------------------------------------------------------------------------------------------
# The Method base


class IPCDistiller(Method):
    """A distillation method under an IPC budget: :meth:`condense` checks the budget and calls
    :meth:`distill`, which subclasses implement."""

    family: ClassVar[Family] = "distillation"

    def condense(
        self,
        train: ImageDataset,
        budget: Budget,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> SyntheticSet:
        """``distill(train, budget.ipc, ...)``.

        Raises:
            ValueError: a fraction (or full) budget: distillation methods take an ipc budget.
        """
        if budget.ipc is None:
            raise ValueError(
                f"distillation methods take an ipc budget (e.g. Budget(ipc=10)); {self.name!r} got {budget.describe()}"
            )
        return self.distill(train, budget.ipc, seed=seed, device=device, progress=progress)

    @abstractmethod
    def distill(
        self,
        train: ImageDataset,
        ipc: int,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> SyntheticSet:
        """``ipc`` images per class of ``train``; returns a validated set with provenance."""


class Synthesizer(IPCDistiller):
    """A method that learns synthetic images (``family = "distillation"``) under an IPC budget.

    Subclasses set ``config_class`` (a :class:`SynthesizerConfig` with the official defaults)
    and implement :meth:`synthesize`; :meth:`distill` builds the run, meters it and packages the
    result with provenance.
    """

    config: SynthesizerConfig

    def config_dict(self) -> dict[str, Any]:
        """The resolved config without the checkpoint location fields."""
        return {k: v for k, v in dataclasses.asdict(self.config).items() if k not in CHECKPOINT_FIELDS}

    def distill(
        self,
        train: ImageDataset,
        ipc: int,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> SyntheticSet:
        """Learn ``ipc`` synthetic images per class of ``train``; returns a validated set with provenance."""
        Budget(ipc=ipc)  # validates ipc
        device = torch.device(device)
        config = self.config
        with ResourceMeter(device) as meter:
            images = self.initial_images(train, ipc, make_generator(derive_seed("distill", seed, "init"), "cpu"))
            run = DistillationRun(
                method=self.name,
                config=config,
                train=train,
                ipc=ipc,
                seed=seed,
                device=device,
                progress=progress,
                images=images.to(device).requires_grad_(True),
                labels=class_labels(train.num_classes, ipc, device),
                sampler=ClassBatchSampler(train, device, make_generator(derive_seed("distill", seed, "real"), "cpu")),
                strategy=resolve_strategy(config.dsa_strategy, train.name),
            )
            logger.info(
                "%s: distilling %s at ipc=%d (%d iterations, %s init, dsa=%s) on %s",
                self.name,
                train.name,
                ipc,
                config.iterations,
                config.init,
                run.strategy,
                device,
            )
            self.synthesize(run)
        provenance = self.provenance(train, seed, meter)
        provenance["distillation"] = {
            "iterations": len(run.losses),
            "dsa_strategy": run.strategy,
            "loss_first": run.losses[0] if run.losses else None,
            "loss_last": run.losses[-1] if run.losses else None,
            "loss_curve": _summarize_curve(run.losses),
            "seconds_per_iteration": (
                sum(run.iteration_seconds) / len(run.iteration_seconds) if run.iteration_seconds else None
            ),
        }
        synthetic = run.synthetic_set(provenance)
        synthetic.validate(image_shape=train.image_shape, check_budget=True)
        return synthetic

    def initial_images(self, train: ImageDataset, ipc: int, generator: torch.Generator) -> Tensor:
        """The stored images the run starts from (:func:`initial_images` with the config's init)."""
        return initial_images(train, ipc, self.config.init, generator)

    @abstractmethod
    def synthesize(self, run: DistillationRun) -> None:
        """Update ``run.images`` in place (through ``run.loop``)."""


def _summarize_curve(losses: list[float], points: int = 20) -> list[float]:
    """Mean loss over ``points`` equal chunks of the run (a compact learning curve)."""
    if not losses:
        return []
    chunks = min(points, len(losses))
    size = len(losses) / chunks
    return [
        float(sum(losses[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)]))
        / max(int((i + 1) * size) - int(i * size), 1)
        for i in range(chunks)
    ]
