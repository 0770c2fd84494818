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
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from data import ImageDataset, Registry
from data.seeding import derive_seed, make_generator, seeded_torch
from data.synthetic import SyntheticSet
from data.zca import whiten_like
from evaluation.augment import DSAParams, dsa_augment, strategy_for
from evaluation.kd.soft import SoftLabelConfig, evaluate_soft
from evaluation.kd.trainer import StudentRecipe
from evaluation.models import create_model
from evaluation.parallel import DataParallel, single_or
from evaluation.teachers import TeacherConfig
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
        soft: soft-label training (label source, criterion, teacher, optimizer); ``None`` for the
            hard-label protocols. With it, ``augmentation`` is ``soft.augmentation``.
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
    soft: SoftLabelConfig | None = None

    def config_dict(self) -> dict[str, Any]:
        """JSON-able resolved recipe (stored in every record)."""
        data = dataclasses.asdict(self)
        data["models"] = list(self.models)
        # Hard-label protocols keep their record layout; soft ones record the label source etc.
        data.pop("soft")
        if self.soft is not None:
            data["soft"] = self.soft.config_dict()
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


# -- soft-label protocols (evaluation.kd.soft) ---------------------------------------------------
#: The soft protocols' teacher: ConvNet-3 trained on the whole training split (cached).
SOFT_TEACHER = TeacherConfig(model="convnet3", epochs=50, lr=0.05, batch_size=64, augmentation="dsa")
#: AdamW 1e-3, weight decay 0.01, cosine (SRe2L/RDED/DD-Ranking), batch 64 so small sets get steps.
SOFT_RECIPE = TrainRecipe(epochs=300, lr=1e-3, momentum=0.9, weight_decay=0.01, batch_size=64)
_SOFT_LABELS = SoftLabelConfig(
    label_source="online", criterion="kl", temperature=1.0, scale_t2=False, augmentation="dsa", teachers=(SOFT_TEACHER,)
)
#: Pruning + KD (Ben-Baruch et al.): alpha by kept fraction, higher on smaller subsets. The paper's
#: exact rule could not be read; this table is a stated default, to be swept.
PRUNE_KD_ALPHA_TABLE = ((0.1, 0.9), (0.3, 0.75), (0.5, 0.5), (1.0, 0.5))
_PRUNE_KD_LABELS = SoftLabelConfig(
    label_source="online",
    criterion="kd",
    temperature=4.0,
    scale_t2=True,
    kd_alpha_table=PRUNE_KD_ALPHA_TABLE,
    augmentation="dsa",
    optimizer="sgd",
    schedule="step",
    teachers=(SOFT_TEACHER,),
)
_SOFT_VARIANTS: dict[str, tuple[SoftLabelConfig, TrainRecipe, str]] = {
    "soft": (_SOFT_LABELS, SOFT_RECIPE, "online teacher labels on every DSA batch, KL at T=1 without T^2"),
    "soft_stored": (
        dataclasses.replace(_SOFT_LABELS, label_source="stored"),
        SOFT_RECIPE,
        "one stored soft label per image (the set's own, or the teacher's on the clean image)",
    ),
    "soft_replay": (
        dataclasses.replace(_SOFT_LABELS, label_source="replay"),
        SOFT_RECIPE,
        "FKD/SRe2L replay: stored per-epoch orders, augmentation seeds and teacher logits (fp16)",
    ),
    "soft_static": (
        dataclasses.replace(_SOFT_LABELS, label_source="stored", augmentation="mixup", mix_alpha=0.8, temperature=30.0),
        SOFT_RECIPE,
        "INFER's static labels: one stored label per image, Mixup (alpha 0.8) with linearly interpolated labels, "
        "KL at T=30 (official 400 epochs)",
    ),
    "soft_hard": (
        dataclasses.replace(_SOFT_LABELS, label_source="hard", criterion="ce"),
        SOFT_RECIPE,
        "the soft recipe with hard labels and CE (DD-Ranking's hard-label row)",
    ),
    "soft_noaug": (
        dataclasses.replace(_SOFT_LABELS, augmentation="none"),
        SOFT_RECIPE,
        "the soft protocol without augmentation (DD-Ranking's ARS)",
    ),
    "soft_prune_kd": (
        _PRUNE_KD_LABELS,
        TrainRecipe(epochs=300, lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=256),
        "pruning + KD: (1-alpha) CE + alpha T^2 KL at T=4, alpha by kept fraction, SGD, DSA",
    ),
    "soft_prune_kd_small": (
        dataclasses.replace(_PRUNE_KD_LABELS, teachers=(dataclasses.replace(SOFT_TEACHER, model="convnetw32"),)),
        TrainRecipe(epochs=300, lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=256),
        "soft_prune_kd with a small teacher (ConvNet-3 of width 32)",
    ),
    "soft_prune_ce": (
        dataclasses.replace(_PRUNE_KD_LABELS, label_source="hard", criterion="ce"),
        TrainRecipe(epochs=300, lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=256),
        "the soft_prune_kd recipe with hard labels (alpha 0): its CE control",
    ),
}
for _name, (_labels, _recipe, _text) in _SOFT_VARIANTS.items():
    register_protocol(
        Protocol(
            name=_name,
            version=1,
            models=("convnet3",),
            num_models=3,
            recipe=_recipe,
            full_data_epochs=50,
            augmentation="dsa" if _labels.augmentation == "dsa" else "none",
            use_learned_lr=False,
            description=f"{_text}; ConvNet-3, {_recipe.epochs} epochs (50 on the whole set), 3 models",
            soft=_labels,
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
    #: Soft-label protocols: label source, teachers, label bytes, ``provenance`` (teacher cost).
    details: dict[str, Any] = field(default_factory=dict)


def evaluate_set(
    synthetic: SyntheticSet,
    test: ImageDataset,
    protocol: Protocol,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
    train: ImageDataset | None = None,
    val: ImageDataset | None = None,
    parallel: DataParallel | None = None,
) -> EvaluationResult:
    """Train every evaluation model of ``protocol`` on ``synthetic``; test each once at the end.

    Each of the ``num_models`` models gets its own seed derived from ``seed``, the model name and
    its index, so two runs of the same cell give the same accuracies. Soft-label protocols need
    ``train`` (the whole training split) to build their teacher(s); ``val`` only measures them.
    Under ``parallel`` (the ranks of a ``torchrun`` group, all calling this with the same set) every
    model is trained data-parallel with the same recipe and batches (:mod:`evaluation.parallel`).
    """
    synthetic.validate(image_shape=test.image_shape, check_budget=False)
    # A set distilled on ZCA-whitened images carries its transform: every split gets the same one.
    test = whiten_like(synthetic.extras, test)
    train = None if train is None else whiten_like(synthetic.extras, train)
    val = None if val is None else whiten_like(synthetic.extras, val)
    # Parametrized sets (IDM's partitions) train on their decoded images.
    synthetic = synthetic.decoded()
    device = torch.device(device)
    if protocol.soft is not None:
        return _evaluate_soft_protocol(
            synthetic,
            test,
            protocol,
            seed=seed,
            device=device,
            progress=progress,
            train=train,
            val=val,
            parallel=parallel,
        )
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
            model = single_or(parallel).prepare(model, device)
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
                parallel=parallel,
            )
            accuracies.append(accuracy(model, test.images, test.labels, device=device, parallel=parallel))
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


def _evaluate_soft_protocol(
    synthetic: SyntheticSet,
    test: ImageDataset,
    protocol: Protocol,
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
    )
    kept_fraction = len(synthetic) / len(train) if train is not None else 1.0
    if synthetic.budget.fraction is not None:
        kept_fraction = synthetic.budget.fraction
    start = time.perf_counter()
    result = evaluate_soft(
        synthetic.images,
        synthetic.labels,
        num_classes=synthetic.num_classes,
        dataset_name=test.name,
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
        name: ModelResult(
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
