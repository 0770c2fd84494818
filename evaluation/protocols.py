"""Named, versioned evaluation protocols and :func:`evaluate_set`.

A protocol is a fixed recipe, not per-method tuning: the evaluation models, how many are
trained per set, the optimizer schedule, the augmentation, and how many epochs the whole
dataset (the ``full`` reference) is trained for. Only the final-epoch test accuracy is used.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from data import ImageDataset, Registry
from data.seeding import derive_seed, make_generator, seeded_torch
from data.synthetic import SyntheticSet
from evaluation.augment import DSAParams, dsa_augment, strategy_for
from evaluation.models import create_model
from evaluation.train import EpochSampler, TrainRecipe, accuracy, train_classifier

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Protocol:
    """A fixed evaluation recipe.

    Attributes:
        name: registry name, recorded with every result.
        version: bumped whenever the recipe changes, so old records are not mixed with new.
        models: evaluation model registry names.
        num_models: freshly initialized models trained per evaluation model and set.
        recipe: optimizer and schedule for compressed sets.
        full_data_epochs: epochs for the whole training set (the ``full`` reference row).
        augmentation: ``"dsa"`` (per-image DSA, no flip on digits) or ``"none"``.
        use_learned_lr: train with a set's learned learning rate when it has one.
        description: one line for reports.
    """

    name: str
    version: int
    models: tuple[str, ...]
    num_models: int
    recipe: TrainRecipe
    full_data_epochs: int
    augmentation: Literal["dsa", "none"] = "dsa"
    use_learned_lr: bool = True
    description: str = ""

    def config_dict(self) -> dict[str, Any]:
        """JSON-able resolved recipe (stored in every record)."""
        data = dataclasses.asdict(self)
        data["models"] = list(self.models)
        return data


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def register_protocol(protocol: Protocol) -> Protocol:
    """Add ``protocol`` to the registry under its name."""
    return PROTOCOLS.register(protocol.name, protocol)  # type: ignore[return-value]


def get_protocol(name: str) -> Protocol:
    """The registered protocol ``name`` (unknown names list the valid ones)."""
    return PROTOCOLS.get(name)


def list_protocols() -> list[str]:
    """Registered protocol names."""
    return PROTOCOLS.names()


CROSS_ARCH_MODELS = ("mlp", "lenet", "alexnet", "vgg11", "resnet18")

register_protocol(
    Protocol(
        name="classic",
        version=1,
        models=("convnet3",),
        num_models=5,
        recipe=TrainRecipe(epochs=1000, lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=256),
        full_data_epochs=100,
        augmentation="dsa",
        description="DC/DSA/DM/MTT convention: ConvNet-3, SGD 0.01 m0.9 wd5e-4, batch 256, "
        "1000 epochs with DSA, lr x0.1 at half-way, final-epoch accuracy, 5 models",
    )
)
register_protocol(
    Protocol(
        name="cross_arch",
        version=1,
        models=CROSS_ARCH_MODELS,
        num_models=5,
        recipe=TrainRecipe(epochs=1000, lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=256),
        full_data_epochs=100,
        augmentation="dsa",
        description="the classic recipe on MLP, LeNet, AlexNet, VGG-11 and ResNet-18",
    )
)
register_protocol(
    Protocol(
        name="fast",
        version=1,
        models=("convnet3",),
        num_models=3,
        recipe=TrainRecipe(epochs=300, lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=256),
        full_data_epochs=100,
        augmentation="dsa",
        description="classic scaled down for CPU smoke runs and CI: 300 epochs (100 on the whole "
        "set), 3 models; never compared with the other protocols",
    )
)


@dataclass(frozen=True)
class ModelResult:
    """Accuracies of the ``num_models`` models of one architecture trained on one set."""

    model: str
    accuracies: tuple[float, ...]
    seconds: float
    lr: float
    used_learned_lr: bool


@dataclass(frozen=True)
class EvaluationResult:
    """All evaluation models of a protocol on one set."""

    protocol: str
    per_model: dict[str, ModelResult]
    seconds: float
    epochs: int


def evaluate_set(
    synthetic: SyntheticSet,
    test: ImageDataset,
    protocol: Protocol,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> EvaluationResult:
    """Train every evaluation model of ``protocol`` on ``synthetic``; test each once at the end.

    Each of the ``num_models`` models gets its own seed derived from ``seed``, the model name and
    its index, so two runs of the same cell give the same accuracies.
    """
    synthetic.validate(image_shape=test.image_shape, check_budget=False)
    device = torch.device(device)
    epochs = protocol.full_data_epochs if synthetic.budget.is_full else protocol.recipe.epochs
    sampler_factory = None
    if synthetic.sampler is not None:
        epochs, sampler_factory = rs2_schedule(synthetic, protocol)
    lr = protocol.recipe.lr
    used_learned_lr = protocol.use_learned_lr and synthetic.learned_lr is not None
    if used_learned_lr:
        lr = float(synthetic.learned_lr)  # type: ignore[arg-type]
    recipe = dataclasses.replace(protocol.recipe, epochs=epochs, lr=lr)
    augment = None
    if protocol.augmentation == "dsa":
        strategy, params = strategy_for(test.name), DSAParams()

        def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            return dsa_augment(batch, strategy, generator, shared=False, params=params)

    start = time.perf_counter()
    per_model: dict[str, ModelResult] = {}
    for model_name in protocol.models:
        accuracies = []
        model_start = time.perf_counter()
        for index in range(protocol.num_models):
            model_seed = derive_seed("evaluate", seed, model_name, index)
            with seeded_torch(model_seed, device):
                model = create_model(
                    model_name,
                    in_channels=test.image_shape[0],
                    num_classes=synthetic.num_classes,
                    image_size=test.image_shape[1:],
                )
            generator = make_generator(model_seed, "cpu")
            train_classifier(
                model,
                synthetic.images,
                synthetic.labels,
                recipe,
                generator=generator,
                augment=augment,
                sampler=sampler_factory() if sampler_factory is not None else None,
                device=device,
                progress=progress,
                description=f"{protocol.name}:{model_name}#{index}",
            )
            accuracies.append(accuracy(model, test.images, test.labels, device=device))
            logger.info("%s %s #%d: test accuracy %.4f", protocol.name, model_name, index, accuracies[-1])
        per_model[model_name] = ModelResult(
            model=model_name,
            accuracies=tuple(accuracies),
            seconds=time.perf_counter() - model_start,
            lr=lr,
            used_learned_lr=used_learned_lr,
        )
    return EvaluationResult(
        protocol=protocol.name, per_model=per_model, seconds=time.perf_counter() - start, epochs=epochs
    )


def rs2_schedule(synthetic: SyntheticSet, protocol: Protocol) -> tuple[int, Callable[[], EpochSampler]]:
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
