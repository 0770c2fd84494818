"""Trajectory matching: MTT (Cazenavette et al., CVPR 2022) and the machinery FTD and DATM share.

Each iteration takes an expert (:mod:`condense.experts`), a start epoch ``t`` below
``max_start_epoch`` and the target ``t + expert_epochs``; a student starts at the expert's
parameters ``θ*_t`` and takes ``syn_steps`` SGD steps on minibatches of the (DSA-augmented)
synthetic set with a learnable learning rate; the loss is
``‖θ_N − θ*_{t+M}‖² / ‖θ*_t − θ*_{t+M}‖²`` and is backpropagated through the whole unroll into
the pixels (SGD ``lr_img``, momentum 0.5) and into the lr (SGD ``lr_lr``, momentum 0.5).

The unroll is functional: one network is built once and called with
:func:`torch.func.functional_call` on views of one flat parameter vector, so no module is rebuilt
or copied per step (the reference ``ReparamModule``). Memory grows linearly with
``syn_steps x batch_syn`` (the whole graph is kept for the backward pass).

The learned lr is stored in :attr:`SyntheticSet.learned_lr`; the evaluation protocol trains with
it and records that it did.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.func import functional_call

from condense._augment import resolve_strategy
from condense._config import InitKind, SynthesizerConfig
from condense._networks import has_batchnorm, sample_network
from condense._run import DistillationRun, DivergenceError
from condense._synthesizer import Synthesizer
from condense.experts import ExpertConfig, ExpertTrajectories, ParameterLayout, Sharpness, load_or_train_experts
from data import ImageDataset
from data.methods import register_method
from data.provenance import add_precomputed
from data.seeding import make_generator
from data.synthetic import SyntheticSet
from data.zca import ZCAWhitening, whiten_dataset
from evaluation.augment import dsa_augment
from evaluation.train import classification_loss

logger = logging.getLogger(__name__)

#: ``(batch, generator) -> augmented batch`` (differentiable), or ``None`` for none.
Augment = Callable[[Tensor, torch.Generator], Tensor] | None


# ---------------------------------------------------------------------------------------------
# The functional unroll


def minibatch_indices(n: int, batch_size: int | None, steps: int, generator: torch.Generator) -> list[Tensor]:
    """Index batches for ``steps`` student steps (the reference: consume a permutation, redraw when empty)."""
    size = n if batch_size is None else min(batch_size, n)
    batches: list[Tensor] = []
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if len(order) < size:
            order = torch.cat([order, torch.randperm(n, generator=generator)])
        batches.append(order[:size])
        order = order[size:]
    return batches


def chunk_batches(n: int, batch_size: int | None, steps: int, generator: torch.Generator) -> list[Tensor]:
    """TESLA's and SelMatch's batches: pop the last chunk of a permutation split into ``batch_size`` chunks,
    drawing a new permutation when none is left."""
    size = n if batch_size is None else min(batch_size, n)
    chunks: list[Tensor] = []
    batches = []
    for _ in range(steps):
        if not chunks:
            chunks = list(torch.split(torch.randperm(n, generator=generator), size))
        batches.append(chunks.pop())
    return batches


def functional_unroll(
    net: nn.Module,
    layout: ParameterLayout,
    start: Tensor,
    images: Tensor,
    targets: Tensor,
    lr: Tensor,
    batches: list[Tensor],
    *,
    augment: Augment = None,
    generator: torch.Generator | None = None,
    create_graph: bool = True,
) -> Tensor:
    """Plain SGD of the student from the flat parameters ``start``; returns the final flat vector.

    Step ``n``: ``θ_n = θ_{n−1} − lr · ∇_θ CE(net(θ_{n−1}; aug(x_b)), y_b)`` for ``b = batches[n]``.
    With ``create_graph`` the result is differentiable with respect to ``images``, ``targets``
    (soft labels), ``lr`` and ``start``.
    """
    params = start if start.requires_grad else start.detach().requires_grad_(True)
    for batch in batches:
        grad = student_gradient(
            net, layout, params, images, targets, batch, augment=augment, generator=generator, create_graph=create_graph
        )
        params = params - lr * grad
    return params


def student_gradient(
    net: nn.Module,
    layout: ParameterLayout,
    params: Tensor,
    images: Tensor,
    targets: Tensor,
    batch: Tensor,
    *,
    augment: Augment = None,
    generator: torch.Generator | None = None,
    create_graph: bool = True,
) -> Tensor:
    """``∇_θ CE(net(θ; aug(x_b)), y_b)`` at the flat parameters ``params`` (which require grad)."""
    index = batch.to(images.device)
    inputs = images[index]
    if augment is not None:
        if generator is None:
            raise ValueError("augment needs a generator")
        inputs = augment(inputs, generator)
    logits = functional_call(net, layout.unflatten(params), (inputs,))
    loss = classification_loss(logits, targets[index])
    (grad,) = torch.autograd.grad(loss, params, create_graph=create_graph)
    return grad


def parameter_matching_loss(student_end: Tensor, expert_start: Tensor, expert_target: Tensor) -> Tensor:
    """``‖θ_N − θ*_{t+M}‖² / ‖θ*_t − θ*_{t+M}‖²`` (the reference's two MSE sums, same #params)."""
    return ((student_end - expert_target) ** 2).sum() / ((expert_start - expert_target) ** 2).sum().clamp_min(1e-12)


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class TrajectoryConfig(SynthesizerConfig):
    """Fields shared by MTT, FTD and DATM (official MTT ``distill.py`` / ``buffer.py`` defaults).

    Attributes:
        model: the expert and student network (ConvNet-3 official).
        iterations: image updates (5000).
        lr_img: pixel learning rate, SGD momentum 0.5 (1000).
        init: ``real``.
        syn_steps: student steps per iteration, N (20).
        expert_epochs: epochs between start and target, M (3).
        max_start_epoch: exclusive upper bound of the start epoch, T+ (25).
        batch_syn: synthetic images per student step (``None``: the whole set).
        lr_lr: learning rate of the learnable student lr (1e-5), SGD momentum ``momentum_lr``.
        momentum_lr: 0.5 (official).
        lr_teacher: initial value of the learnable student lr (0.01; 0.001 for CIFAR-10 IPC 10/50).
        num_experts: experts in the buffer (100).
        expert_train_epochs: epochs each expert is trained (50).
        expert_lr: the experts' SGD learning rate (``buffer.py --lr_teacher`` 0.01).
        expert_batch: the experts' batch (256).
        expert_seed: the experts' seed (shared by all cells, whatever the distillation seed).
        expert_cache_dir: expert cache folder (``None``: ``experts`` under the cache root,
            :func:`data.cache.cache_root`); not part of the cell key.
        zca: ZCA whitening (official on CIFAR; ``data.zca``): fitted on the training set, used by the
            experts and the distillation, stored in the set so the evaluation whitens the test set.
    """

    model: str = "convnet3"
    iterations: int = 5000
    lr_img: float = 1000.0
    momentum_img: float = 0.5
    init: InitKind = "real"
    syn_steps: int = 20
    expert_epochs: int = 3
    max_start_epoch: int = 25
    batch_syn: int | None = None
    lr_lr: float = 1e-5
    momentum_lr: float = 0.5
    lr_teacher: float = 0.01
    num_experts: int = 100
    expert_train_epochs: int = 50
    expert_lr: float = 0.01
    expert_batch: int = 256
    expert_seed: int = 0
    expert_cache_dir: str | None = None
    zca: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.syn_steps < 1 or self.expert_epochs < 1 or self.max_start_epoch < 1:
            raise ValueError("syn_steps, expert_epochs and max_start_epoch must be positive")
        if self.batch_syn is not None and self.batch_syn < 1:
            raise ValueError(f"batch_syn must be positive or None, got {self.batch_syn}")
        if not (self.lr_teacher > 0 and self.lr_lr >= 0):
            raise ValueError("lr_teacher must be positive and lr_lr non-negative")
        if self.max_start_epoch - 1 + self.expert_epochs > self.expert_train_epochs:
            raise ValueError(
                f"max_start_epoch - 1 + expert_epochs = {self.max_start_epoch - 1 + self.expert_epochs} exceeds "
                f"expert_train_epochs = {self.expert_train_epochs}: the target epoch would not exist"
            )


#: Config fields that say where to cache or checkpoint, not what is computed.
LOCATION_FIELDS = frozenset({"checkpoint_dir", "checkpoint_every", "expert_cache_dir"})


@dataclass
class Unroll:
    """One iteration's student unroll: the network, the expert's start and target parameters,
    the students' targets, the index batches of its steps and their augmentation."""

    net: nn.Module
    layout: ParameterLayout
    start: Tensor
    target: Tensor
    targets: Tensor
    batches: list[Tensor]
    augment: Augment
    generator: torch.Generator


@dataclass
class TrajectoryState:
    """What one trajectory-matching run learns besides the pixels."""

    experts: ExpertTrajectories
    syn_lr: Tensor
    label_logits: Tensor | None = None
    skipped: int = 0
    start_epochs: list[int] | None = None


class TrajectorySynthesizer(Synthesizer):
    """Base of MTT/FTD/DATM: experts, the functional unroll, the learned lr in the set.

    Subclasses may override :meth:`expert_sharpness`, :meth:`prepare` (initialization, labels),
    :meth:`start_epoch_bounds`, :meth:`accept` and :meth:`after_step`.
    """

    config: TrajectoryConfig
    expert_sharpness: ClassVar[Sharpness] = "none"
    #: Whether the student may hold BatchNorm (in train mode: batch statistics; SelMatch).
    batchnorm_students: ClassVar[bool] = False
    _state: TrajectoryState | None = None

    def config_dict(self) -> dict[str, Any]:
        """The resolved config without cache and checkpoint locations."""
        return {k: v for k, v in super().config_dict().items() if k not in LOCATION_FIELDS}

    def expert_config(self, train: ImageDataset) -> ExpertConfig:
        """The experts this method's config asks for on ``train``."""
        c = self.config
        return ExpertConfig(
            model=c.model,
            num_experts=c.num_experts,
            epochs=c.expert_train_epochs,
            lr_teacher=c.expert_lr,
            batch_size=c.expert_batch,
            dsa_strategy=resolve_strategy(c.dsa_strategy, train.flip),
            sharpness=self.expert_sharpness,
            **self.sharpness_options(),
            zca=c.zca,
            seed=c.expert_seed,
            cache_dir=c.expert_cache_dir,
        )

    def sharpness_options(self) -> dict[str, Any]:
        """GSAM options of the experts (none for MTT)."""
        return {}

    def distill(
        self,
        train: ImageDataset,
        ipc: int,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> SyntheticSet:
        """Load (or train once) the experts, distill, and store the learned lr (and soft labels)."""
        zca = ZCAWhitening.fit_on_pixels(train) if self.config.zca else None
        if zca is not None:
            train = whiten_dataset(train, zca)
        experts = load_or_train_experts(train, self.expert_config(train), device=device, progress=progress)
        self._state = TrajectoryState(
            experts=experts, syn_lr=torch.tensor(self.config.lr_teacher, device=torch.device(device))
        )
        try:
            synthetic = super().distill(train, ipc, seed=seed, device=device, progress=progress)
            state = self._state
        finally:
            self._state = None
        synthetic.learned_lr = float(state.syn_lr.detach())
        check_budget = True
        if state.label_logits is not None:
            synthetic.labels = torch.softmax(state.label_logits.detach().cpu(), dim=1)
            synthetic.extras["class_labels"] = torch.arange(train.num_classes).repeat_interleave(ipc)
            if bool((synthetic.labels.argmax(dim=1) != synthetic.extras["class_labels"]).any()):
                logger.warning("%s: some learned soft labels no longer peak at their class", self.name)
                check_budget = False
        if zca is not None:
            synthetic.extras.update(zca.extras())
        synthetic.provenance["experts"] = experts.summary()
        add_precomputed(synthetic.provenance, "experts", seconds=experts.build_seconds, cache_hit=experts.cache_hit)
        synthetic.provenance["trajectory"] = {
            "learned_lr": synthetic.learned_lr,
            "skipped_updates": state.skipped,
            "soft_labels": state.label_logits is not None,
        }
        synthetic.validate(image_shape=train.image_shape, check_budget=check_budget)
        return synthetic

    # -- hooks -----------------------------------------------------------------------------------

    def prepare(self, run: DistillationRun, state: TrajectoryState) -> None:
        """Adjust the initial images/labels before the loop (MTT: nothing)."""

    def start_epoch_bounds(self, iteration: int) -> tuple[int, int]:
        """``[low, high)`` of the start epoch at ``iteration`` (MTT: ``[0, max_start_epoch)``)."""
        return 0, self.config.max_start_epoch

    def accept(self, loss: float) -> bool:
        """Whether to apply this iteration's update (DATM skips bad ones)."""
        return True

    def after_step(self, run: DistillationRun, iteration: int) -> None:
        """Called after every iteration (FTD updates its EMA)."""

    def finish(self, run: DistillationRun) -> None:
        """Called after the loop (FTD swaps in the EMA images)."""

    def extra_optimizers(self, state: TrajectoryState) -> list[torch.optim.Optimizer]:
        """Optimizers stepped with the images (DATM: the soft labels)."""
        return []

    # -- the loop --------------------------------------------------------------------------------

    def targets(self, run: DistillationRun, state: TrajectoryState) -> Tensor:
        """Training targets of the synthetic images (hard labels; DATM: softmax of learned logits)."""
        return run.labels

    def student_batches(self, n: int, generator: torch.Generator) -> list[Tensor]:
        """The index batches of one iteration's ``syn_steps`` student steps."""
        return minibatch_indices(n, self.config.batch_syn, self.config.syn_steps, generator)

    def match(self, unroll: Unroll, run: DistillationRun, state: TrajectoryState) -> tuple[float, Callable[[], None]]:
        """One iteration's loss and the call that puts its gradients into the images and the lr
        (run only if :meth:`accept` takes the loss): MTT back-propagates through the whole unroll."""
        end = functional_unroll(
            unroll.net,
            unroll.layout,
            unroll.start,
            run.images,
            unroll.targets,
            state.syn_lr,
            unroll.batches,
            augment=unroll.augment,
            generator=unroll.generator,
        )
        loss = parameter_matching_loss(end, unroll.start, unroll.target)
        return float(loss.detach()), loss.backward

    def synthesize(self, run: DistillationRun) -> None:
        state = self._state
        if state is None:
            raise RuntimeError("synthesize is called through distill")
        config = self.config
        experts = state.experts
        if experts.epochs < config.max_start_epoch - 1 + config.expert_epochs:
            raise ValueError(f"the experts have {experts.epochs} epochs; too few for the configured window")
        net = sample_network(config.model, run.train, run.derived_seed("student"), run.device)
        if has_batchnorm(net) and not self.batchnorm_students:
            raise ValueError(
                f"{config.model!r} has BatchNorm; the functional unroll supports norm layers without buffers"
            )
        net.train()
        layout = experts.layout
        self.prepare(run, state)
        state.syn_lr = state.syn_lr.detach().clone().requires_grad_(True)
        optimizer_img = run.image_optimizer()
        optimizer_lr = torch.optim.SGD([state.syn_lr], lr=config.lr_lr, momentum=config.momentum_lr)
        extra = self.extra_optimizers(state)
        generator = make_generator(run.derived_seed("trajectory"), "cpu")
        expert_order: list[int] = []
        state.start_epochs = []
        strategy = run.strategy
        augment: Augment = None
        if strategy is not None:

            def augment(batch: Tensor, gen: torch.Generator) -> Tensor:
                return dsa_augment(batch, strategy, gen, shared=False, params=run.dsa_params)

        def step(iteration: int) -> float:
            if not expert_order:
                expert_order.extend(torch.randperm(len(experts), generator=generator).tolist())
            trajectory = experts.trajectories[expert_order.pop(0)]
            low, high = self.start_epoch_bounds(iteration)
            start_epoch = int(torch.randint(low, high, (1,), generator=generator))
            state.start_epochs.append(start_epoch)
            unroll = Unroll(
                net=net,
                layout=layout,
                start=trajectory[start_epoch].to(run.device),
                target=trajectory[start_epoch + config.expert_epochs].to(run.device),
                targets=self.targets(run, state),
                batches=self.student_batches(len(run.images), generator),
                augment=augment,
                generator=make_generator(run.next_dsa_seed(), "cpu"),
            )
            value, backward = self.match(unroll, run, state)
            optimizers = [optimizer_img, optimizer_lr, *extra]
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            if self.accept(value):
                backward()
                for optimizer in optimizers:
                    optimizer.step()
            else:
                state.skipped += 1
            lr_value = float(state.syn_lr.detach())
            if not (math.isfinite(lr_value) and lr_value > 0):
                raise DivergenceError(
                    f"{self.name}: the learned lr became {lr_value} at iteration {iteration}; lower lr_lr "
                    f"(now {config.lr_lr:g})"
                )
            self.after_step(run, iteration)
            return value

        run.loop(step)
        self.finish(run)


@dataclass(frozen=True)
class MTTConfig(TrajectoryConfig):
    """MTT with the official ``distill.py`` defaults (see :class:`TrajectoryConfig`)."""


@register_method("mtt")
class MTT(TrajectorySynthesizer):
    """Matching training trajectories: unrolled student vs. SGD experts, learnable lr."""

    config_class = MTTConfig
    config: MTTConfig
