"""One distillation run: its state, the loop with progress and checkpoints, and the divergence guard."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from condense._augment import siamese_augment
from condense._config import SynthesizerConfig
from condense._data import ClassBatchSampler, SeedStream
from condense._networks import sample_network
from data import ImageDataset
from data.seeding import derive_seed
from data.synthetic import Budget, SyntheticSet
from evaluation.augment import DSAParams

logger = logging.getLogger(__name__)


class DivergenceError(FloatingPointError):
    """The distillation loss or the synthetic images became NaN/Inf or exploded."""


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
