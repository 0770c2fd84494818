"""The bases of the synthesizers: an IPC budget (:class:`IPCDistiller`), learned images (:class:`Synthesizer`)."""

from __future__ import annotations

import logging
from abc import abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from condense._augment import resolve_strategy
from condense._config import CHECKPOINT_FIELDS, SynthesizerConfig
from condense._data import ClassBatchSampler, class_labels, initial_images
from condense._run import DistillationRun
from data import ImageDataset
from data.methods import Family, Method
from data.provenance import ResourceMeter
from data.seeding import derive_seed, make_generator
from data.synthetic import Budget, SyntheticSet

logger = logging.getLogger(__name__)


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
        return {k: v for k, v in super().config_dict().items() if k not in CHECKPOINT_FIELDS}

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
                strategy=resolve_strategy(config.dsa_strategy, train.flip),
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
