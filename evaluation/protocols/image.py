"""Image protocols: train the evaluation models on a compressed image set, test once at the end.

A protocol is a fixed recipe, not per-method tuning: the evaluation models, how many are
trained per set, the optimizer schedule, the augmentation, and how many epochs the whole
dataset (the ``full`` reference) is trained for. Only the final-epoch test accuracy is used.
The recipes are data (``configs/protocol/*.yaml``); this module runs them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from data import ImageDataset
from data.numerics import MEMORY_FORMATS, PRECISIONS, Numerics
from data.seeding import derive_seed, make_generator, seeded_torch
from data.synthetic import SyntheticSet
from data.zca import whiten_like
from evaluation.augment import dsa_augmenter
from evaluation.kd.soft import SoftLabelConfig, evaluate_soft
from evaluation.kd.trainer import StudentRecipe
from evaluation.models import create_model
from evaluation.parallel import DataParallel, single_or
from evaluation.protocols.base import EvaluationProtocol, EvaluationRequest, EvaluationResult, ModelResult
from evaluation.train import EpochSampler, TrainRecipe, accuracy, train_classifier
from evaluation.vectorized import can_vectorize, train_classifiers_vectorized

logger = logging.getLogger(__name__)

#: How an image protocol reports a model: its last epoch, or its best test checkpoint.
REPORTS = ("final", "best_test")


@dataclass(frozen=True, kw_only=True)
class ImageProtocol(EvaluationProtocol):
    """A fixed evaluation recipe for image sets (hard labels, or soft labels with ``soft``).

    Attributes:
        recipe: optimizer and schedule for compressed sets (SGD with one step decay; with
            ``soft``, ``soft.optimizer`` and ``soft.schedule`` replace SGD and the step).
        full_data_epochs: epochs for the whole training set (the ``full`` reference row).
        augmentation: ``"dsa"`` (per-image DSA, no flip on digits) or ``"none"``.
        use_learned_lr: train with a set's learned learning rate when it has one.
        soft: soft-label training (label source, criterion, teacher, optimizer); ``None`` for the
            hard-label protocols. With it, ``augmentation`` is ``soft.augmentation``.
        report: ``final``: the test accuracy after the last epoch (the fair protocols);
            ``best_test``: the best test accuracy over the checkpoints every ``test_every`` epochs
            and the last, a selection on the test set that some papers report. Such a protocol
            replays a paper's number for comparison and is never used for ranking.
        test_every: epochs between the test checkpoints of ``best_test``.
        precision: ``fp32``, or ``bf16`` autocast of the forward passes (weights, optimizer
            state and losses stay fp32); a protocol fixes one, recorded in every record.
        memory_format: ``contiguous`` (NCHW) or ``channels_last`` (NHWC) for the models and
            batches; changes speed only, up to float summation order.
    """

    modality: ClassVar[str] = "image"

    recipe: TrainRecipe
    full_data_epochs: int
    augmentation: Literal["dsa", "none"] = "dsa"
    use_learned_lr: bool = True
    soft: SoftLabelConfig | None = None
    report: Literal["final", "best_test"] = "final"
    test_every: int = 0
    precision: Literal["fp32", "bf16"] = "fp32"
    memory_format: Literal["contiguous", "channels_last"] = "contiguous"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.precision not in PRECISIONS or self.memory_format not in MEMORY_FORMATS:
            raise ValueError(
                f"protocol {self.name!r}: precision must be one of {', '.join(PRECISIONS)} and memory_format one of "
                f"{', '.join(MEMORY_FORMATS)}; got {self.precision!r}, {self.memory_format!r}"
            )
        if self.soft is not None and not self.numerics.is_default:
            raise NotImplementedError(
                f"protocol {self.name!r}: soft-label training runs fp32 in the contiguous layout only "
                "(bf16 and channels_last for the KD trainers are open work of issue 20)"
            )
        if self.report not in REPORTS:
            raise ValueError(f"protocol {self.name!r}: unknown report {self.report!r}; valid: {', '.join(REPORTS)}")
        if self.report == "best_test" and (self.test_every < 1 or self.soft is not None):
            raise ValueError(
                f"protocol {self.name!r}: report best_test needs test_every >= 1 and hard labels (no soft)"
            )

    @property
    def numerics(self) -> Numerics:
        """The precision and memory layout every evaluation model trains and tests with."""
        return Numerics(precision=self.precision, memory_format=self.memory_format)

    @property
    def selects_on_test(self) -> bool:
        """Whether the reported accuracy was chosen on the test set (never ranked)."""
        return self.report == "best_test"

    def config_dict(self) -> dict[str, Any]:
        """JSON-able resolved recipe (stored in every record); hard-label protocols have no ``soft``."""
        data = super().config_dict()
        if self.soft is None:
            data.pop("soft")
        else:  # the soft protocols older than some fields keep their identity
            data["soft"] = self.soft.identity_dict()
        if self.report == "final":  # the fair protocols' records keep their layout
            data.pop("report")
            data.pop("test_every")
        return data

    def run(self, synthetic: SyntheticSet, request: EvaluationRequest) -> EvaluationResult:
        """Train every evaluation model on ``synthetic``; test each once at the end.

        Each of the ``num_models`` models gets its own seed derived from ``seed``, the model name and
        its index, so two runs of the same cell give the same accuracies. Soft-label protocols need
        ``train`` (the whole training split) to build their teacher(s); ``val`` only measures them.
        Under ``parallel`` (the ranks of a ``torchrun`` group, all calling this with the same set) every
        model is trained data-parallel with the same recipe and batches (:mod:`evaluation.parallel`).
        """
        test, train, val, seed = request.test, request.train, request.val, request.seed
        device, progress, parallel = request.device, request.progress, request.parallel
        synthetic.validate(image_shape=test.image_shape, check_budget=False)
        # A set distilled on ZCA-whitened images carries its transform: every split gets the same one.
        test = whiten_like(synthetic.extras, test)
        train = None if train is None else whiten_like(synthetic.extras, train)
        val = None if val is None else whiten_like(synthetic.extras, val)
        # Parametrized sets (IDM's partitions) train on their decoded images.
        synthetic = synthetic.decoded()
        if self.soft is not None:
            return _evaluate_soft_protocol(
                synthetic,
                test,
                self,
                seed=seed,
                device=device,
                progress=progress,
                train=train,
                val=val,
                parallel=parallel,
            )
        epochs = self.full_data_epochs if synthetic.budget.is_full else self.recipe.epochs
        sampler_factory = None
        if synthetic.sampler is not None:
            epochs, sampler_factory = rs2_schedule(synthetic, self)
        lr = self.recipe.lr
        used_learned_lr = self.use_learned_lr and synthetic.learned_lr is not None
        if used_learned_lr:
            lr = float(synthetic.learned_lr)  # type: ignore[arg-type]
        recipe = dataclasses.replace(self.recipe, epochs=epochs, lr=lr)
        augment = dsa_augmenter(test.flip) if self.augmentation == "dsa" else None

        start = time.perf_counter()
        per_model: dict[str, ModelResult] = {}
        vectorized_models, compiled_models = [], []
        for model_name in self.models:
            model_start = time.perf_counter()
            seeds = [derive_seed("evaluate", seed, model_name, index) for index in range(self.num_models)]
            models = []
            for model_seed in seeds:
                with seeded_torch(model_seed, device):
                    model = create_model(
                        model_name,
                        in_channels=test.image_shape[0],
                        num_classes=synthetic.num_classes,
                        image_size=test.image_shape[1:],
                    )
                models.append(single_or(parallel).prepare(model, device))
            generators = [make_generator(model_seed, "cpu") for model_seed in seeds]
            checkpoints = [
                _TestCheckpoints(model, test, self.test_every, device, parallel, self.numerics)
                if self.selects_on_test
                else None
                for model in models
            ]
            execution = request.execution
            compile_models = execution.compile and parallel is None
            if compile_models:
                for model in models:
                    model.compile()
                compiled_models.append(model_name)
            options = dict(recipe=recipe, augment=augment, device=device, numerics=self.numerics)
            vectorize = execution.vectorize and parallel is None and len(models) > 1
            unvectorizable = can_vectorize(models[0]) if vectorize else None
            if unvectorizable is not None:
                logger.info("%s: %s trains sequentially: %s", self.name, model_name, unvectorizable)
                vectorize = False
            if vectorize:
                train_classifiers_vectorized(
                    models,
                    synthetic.images,
                    synthetic.labels,
                    generators=generators,
                    samplers=[sampler_factory() for _ in models] if sampler_factory is not None else None,
                    on_epoch_end=_record_all(checkpoints) if self.selects_on_test else None,
                    description=f"{self.name}:{model_name}",
                    **options,
                )
                vectorized_models.append(model_name)
            else:
                for index, (model, generator, checkpoint) in enumerate(
                    zip(models, generators, checkpoints, strict=True)
                ):
                    train_classifier(
                        model,
                        synthetic.images,
                        synthetic.labels,
                        generator=generator,
                        sampler=sampler_factory() if sampler_factory is not None else None,
                        progress=progress,
                        description=f"{self.name}:{model_name}#{index}",
                        parallel=parallel,
                        on_epoch_end=checkpoint.record if checkpoint is not None else None,
                        **options,
                    )
            accuracies = []
            for index, (model, checkpoint) in enumerate(zip(models, checkpoints, strict=True)):
                final = accuracy(
                    model, test.images, test.labels, device=device, parallel=parallel, numerics=self.numerics
                )
                accuracies.append(final if checkpoint is None else max(final, checkpoint.best))
                logger.info("%s %s #%d: test accuracy %.4f", self.name, model_name, index, accuracies[-1])
            per_model[model_name] = ImageModelResult(
                model=model_name,
                accuracies=tuple(accuracies),
                seconds=time.perf_counter() - model_start,
                lr=lr,
                used_learned_lr=used_learned_lr,
            )
        details = {
            name: models
            for name, models in (("vectorized_models", vectorized_models), ("compiled_models", compiled_models))
            if models
        }
        return EvaluationResult(
            protocol=self.name,
            per_model=per_model,
            seconds=time.perf_counter() - start,
            epochs=epochs,
            details=details,
        )


def _record_all(checkpoints: list[_TestCheckpoints | None]) -> Callable[[int], None]:
    def record(epoch: int) -> None:
        for checkpoint in checkpoints:
            if checkpoint is not None:
                checkpoint.record(epoch)

    return record


@dataclass
class _TestCheckpoints:
    """The best test accuracy of a model at every ``every``-th epoch (``report=best_test``)."""

    model: torch.nn.Module
    test: ImageDataset
    every: int
    device: Any
    parallel: Any
    numerics: Numerics
    best: float = 0.0

    def record(self, epoch: int) -> None:
        if (epoch + 1) % self.every == 0:
            score = accuracy(
                self.model,
                self.test.images,
                self.test.labels,
                device=self.device,
                parallel=self.parallel,
                numerics=self.numerics,
            )
            self.best = max(self.best, score)
            self.model.train()


@dataclass(frozen=True)
class ImageModelResult(ModelResult):
    """The runs of one model on an image set, and the learning rate they trained with."""

    lr: float = 0.0
    used_learned_lr: bool = False


def _evaluate_soft_protocol(
    synthetic: SyntheticSet,
    test: ImageDataset,
    protocol: ImageProtocol,
    *,
    seed: int,
    device: torch.device,
    progress: bool,
    train: ImageDataset | None,
    val: ImageDataset | None,
    parallel: DataParallel | None = None,
) -> EvaluationResult:
    """A soft-label protocol: see :mod:`evaluation.kd.soft` (RS2 samplers are not supported)."""
    soft = protocol.soft
    assert soft is not None
    if synthetic.sampler is not None:
        raise ValueError(f"protocol {protocol.name!r} does not support training-time samplers (rs2)")
    epochs = protocol.full_data_epochs if synthetic.budget.is_full else protocol.recipe.epochs
    r = protocol.recipe
    recipe = StudentRecipe(
        epochs=epochs,
        optimizer=soft.optimizer,
        lr=r.lr,
        momentum=r.momentum,
        weight_decay=r.weight_decay,
        batch_size=r.batch_size,
        schedule=soft.schedule,
        decay_at=r.decay_at,
        decay_factor=r.decay_factor,
        cosine_stretch=soft.cosine_stretch,
        decay_all_parameters=soft.decay_all_parameters,
    )
    kept_fraction = len(synthetic) / len(train) if train is not None else 1.0
    if synthetic.budget.fraction is not None:
        kept_fraction = synthetic.budget.fraction
    start = time.perf_counter()
    result = evaluate_soft(
        synthetic.images,
        synthetic.labels,
        num_classes=synthetic.num_classes,
        flip=test.flip,
        test=test,
        config=soft,
        recipe=recipe,
        models=protocol.models,
        num_models=protocol.num_models,
        seed=seed,
        kept_fraction=min(kept_fraction, 1.0),
        train=train,
        val=val,
        device=device,
        progress=progress,
        parallel=parallel,
    )
    per_model = {
        name: ImageModelResult(
            model=name, accuracies=accs, seconds=result.seconds[name], lr=recipe.lr, used_learned_lr=False
        )
        for name, accs in result.accuracies.items()
    }
    return EvaluationResult(
        protocol=protocol.name,
        per_model=per_model,
        seconds=time.perf_counter() - start,
        epochs=epochs,
        details=result.details,
    )


def rs2_schedule(synthetic: SyntheticSet, protocol: ImageProtocol) -> tuple[int, Callable[[], EpochSampler]]:
    """Rounds and per-round sampler for RS2 (repeated random sampling without replacement).

    Each round trains on ``per_round`` images taken from a running permutation of the whole
    pool, reshuffled only when it is used up, so every image is seen before any repeats.
    ``equal_epochs`` trains as many rounds as the protocol's epochs for a set of that size;
    ``equal_iterations`` as many optimizer steps as the whole-data run (the RS2/CCS setting).
    """
    spec = synthetic.sampler or {}
    per_round = int(spec["per_round"])
    pool = len(synthetic)
    if not 0 < per_round <= pool:
        raise ValueError(f"rs2 per_round must be in [1, {pool}], got {per_round}")
    batch = protocol.recipe.batch_size
    if spec.get("schedule", "equal_epochs") == "equal_iterations":
        full_steps = protocol.full_data_epochs * math.ceil(pool / batch)
        rounds = math.ceil(full_steps / math.ceil(per_round / batch))
    elif spec.get("schedule", "equal_epochs") == "equal_epochs":
        rounds = protocol.recipe.epochs
    else:
        raise ValueError(f"unknown rs2 schedule {spec.get('schedule')!r}; valid: equal_epochs, equal_iterations")

    def factory() -> EpochSampler:
        state: dict[str, Tensor] = {"order": torch.empty(0, dtype=torch.long)}

        def sample(epoch: int, generator: torch.Generator) -> Tensor:
            if len(state["order"]) < per_round:
                # Top up with a fresh permutation of the images not already waiting, so no
                # round repeats an image and every image is used once per pass.
                fresh = torch.randperm(pool, generator=generator)
                fresh = fresh[~torch.isin(fresh, state["order"])]
                state["order"] = torch.cat([state["order"], fresh])
            chosen, state["order"] = state["order"][:per_round], state["order"][per_round:]
            return chosen

        return sample

    return rounds, factory
