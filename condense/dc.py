"""Gradient matching: DC (Zhao, Mopuri & Bilen, ICLR 2021) and DSA (Zhao & Bilen, ICML 2021).

The synthetic images are learned so that the gradient of the classification loss on them
matches the gradient on real images of the same class, through freshly initialized networks
that are trained on the synthetic set between matching steps (the outer/inner loops).
Follows ``main.py`` of VICO-UoE/DatasetCondensation; DSA is DC plus siamese augmentation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from condense._config import InitKind, RealPassConfig
from condense._networks import has_batchnorm, set_batchnorm_eval
from condense._run import DistillationRun
from condense._synthesizer import Synthesizer
from data.methods import register_method
from data.numerics import FP32, Numerics
from data.seeding import make_generator
from evaluation.augment import dsa_augment

logger = logging.getLogger(__name__)

Distance = Literal["ours", "mse", "cos"]

#: The reference ``get_loops``: images per class -> (outer_loop, inner_loop).
LOOP_SCHEDULE: dict[int, tuple[int, int]] = {
    1: (1, 1),
    10: (10, 50),
    20: (20, 25),
    30: (30, 20),
    40: (40, 15),
    50: (50, 10),
}


def loop_schedule(ipc: int) -> tuple[int, int]:
    """The reference (outer_loop, inner_loop) for ``ipc``.

    The reference defines IPC 1, 10, 20, 30, 40 and 50 only (and exits otherwise); other IPCs
    take the entry of the nearest defined IPC (ties go to the smaller), with a log message.
    """
    if ipc in LOOP_SCHEDULE:
        return LOOP_SCHEDULE[ipc]
    nearest = min(LOOP_SCHEDULE, key=lambda k: (abs(k - ipc), k))
    logger.info("no reference loop schedule for ipc=%d; using the one of ipc=%d", ipc, nearest)
    return LOOP_SCHEDULE[nearest]


def layerwise_distance(real_grad: Tensor, synthetic_grad: Tensor) -> Tensor:
    """The reference ``distance_wb`` of one parameter tensor.

    Conv kernels ``out x in x h x w`` become ``out x (in*h*w)`` rows, linear weights stay
    ``out x in``; the distance is the sum over rows of ``1 - cos(real_row, syn_row)`` (eps 1e-6
    in the denominator). 1-D tensors (biases, normalization weights) count 0.
    """
    if real_grad.ndim <= 1:
        return real_grad.new_zeros(())
    rows_real = real_grad.reshape(real_grad.shape[0], -1)
    rows_syn = synthetic_grad.reshape(synthetic_grad.shape[0], -1)
    cosine = (rows_real * rows_syn).sum(dim=-1) / (rows_real.norm(dim=-1) * rows_syn.norm(dim=-1) + 1e-6)
    return (1 - cosine).sum()


def gradient_distance(synthetic_grads: Sequence[Tensor], real_grads: Sequence[Tensor], metric: Distance) -> Tensor:
    """The reference ``match_loss``: ``ours`` (layer-wise, above), ``mse`` or ``cos`` over all gradients."""
    if metric == "ours":
        distances = [layerwise_distance(r, s) for s, r in zip(synthetic_grads, real_grads, strict=True)]
        return torch.stack(distances).sum()
    flat_syn = torch.cat([g.reshape(-1) for g in synthetic_grads])
    flat_real = torch.cat([g.reshape(-1) for g in real_grads])
    if metric == "mse":
        return ((flat_syn - flat_real) ** 2).sum()
    if metric == "cos":
        return 1 - (flat_syn * flat_real).sum() / (flat_syn.norm() * flat_real.norm() + 1e-6)
    raise ValueError(f"unknown distance {metric!r}; valid: ours, mse, cos")


def per_class_gradients(
    net: nn.Module,
    params: list[nn.Parameter],
    batches: list[Tensor],
    targets: list[Tensor],
    numerics: Numerics = FP32,
    device: torch.device | str = "cpu",
) -> list[list[Tensor]]:
    """The gradients of ``params`` of each batch's mean cross-entropy, in one vectorized pass.

    ``torch.func.vmap`` over the classes of ``grad`` of a functional call: the per-class loop's
    gradients up to float rounding, for networks whose batches do not interact (instance or
    group norm, or BatchNorm in eval mode). The batches must have one size.
    """
    name_of = {id(p): name for name, p in net.named_parameters()}
    if any(id(p) not in name_of for p in params):
        raise ValueError("params must be parameters of net")
    names = [name_of[id(p)] for p in params]
    frozen = {name: p.detach() for name, p in net.named_parameters() if name not in names}
    buffers = dict(net.named_buffers())

    def loss(trained: dict[str, Tensor], images: Tensor, labels: Tensor) -> Tensor:
        with numerics.autocast(device):
            logits = functional_call(net, ({**trained, **frozen}, buffers), (images,))
        return F.cross_entropy(logits.float(), labels)

    trained = {name: p.detach() for name, p in zip(names, params, strict=True)}
    stacked = vmap(grad(loss), in_dims=(None, 0, 0))(trained, torch.stack(batches), torch.stack(targets))
    return [[stacked[name][c] for name in names] for c in range(len(batches))]


@dataclass(frozen=True)
class DCConfig(RealPassConfig):
    """DC with the official defaults (``main.py --method DC``; the same for MNIST/FMNIST/CIFAR).

    Attributes:
        iterations: outer iterations (``Iteration=1000``); each samples a fresh network.
        lr_img: image learning rate (0.1), SGD momentum 0.5.
        lr_net: learning rate of the inner-loop network updates (0.01; SGD without momentum,
            as VICO; the older PatrickZH code used momentum 0.5).
        batch_real: real images per class for the real gradient (256).
        batch_train: batch size of the inner-loop network training on the synthetic set (256).
        init: ``noise`` for DC.
        distance: ``ours`` (layer-wise 1 - cosine, 1-D parameters ignored), ``mse`` or ``cos``.
        outer_loop: matching steps per network (``None``: the reference schedule per IPC).
        inner_loop: network-training epochs between matching steps (``None``: the schedule).
        bn_images_per_class: real images per class used to set BatchNorm statistics before each
            matching step, after which BN is frozen (BatchNorm networks only; reference 16).
        dsa_strategy: ``none`` for DC (no augmentation anywhere).
        batch_classes: compute the real gradients of all classes in one vectorized pass
            (``torch.func.vmap`` of the per-class gradient) instead of one class at a time; the
            same gradients up to float rounding (BN is frozen before matching, so nothing couples
            the classes). Off by default: on 2 CPU cores a DSA outer iteration at IPC 1 on
            Fashion-MNIST took 35.2 s batched against 9.7 s per class (``python
            benchmarks/matching_speed.py --method dsa --ipc 1 --iterations 1 --rounds 2
            --settings fp32/contiguous fp32/contiguous/batched``); it is meant for
            launch-bound GPUs. Classes with fewer than ``batch_real`` images fall back to the loop.
        real_precision, real_memory_format: numerics of the real batches' gradient passes
            (:class:`condense._config.RealPassConfig`).
    """

    iterations: int = 1000
    lr_img: float = 0.1
    momentum_img: float = 0.5
    lr_net: float = 0.01
    batch_real: int = 256
    batch_train: int = 256
    init: InitKind = "noise"
    distance: Distance = "ours"
    outer_loop: int | None = None
    inner_loop: int | None = None
    bn_images_per_class: int = 16
    dsa_strategy: str = "none"
    batch_classes: bool = False
    added_fields: ClassVar[frozenset[str]] = frozenset({"batch_classes"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_classes and self.real_memory_format != "contiguous":
            raise ValueError(
                "batch_classes stacks the classes' real batches; use real_memory_format=contiguous with it"
            )
        if self.distance not in ("ours", "mse", "cos"):
            raise ValueError(f"unknown distance {self.distance!r}; valid: ours, mse, cos")
        for name in ("outer_loop", "inner_loop"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive or None (the reference schedule), got {value}")


@dataclass(frozen=True)
class DSAConfig(DCConfig):
    """DSA with the official defaults: DC's (lr_img 0.1, 1000 iterations, same loops), real init, DSA.

    ``dsa_strategy="auto"`` is ``color_crop_cutout_flip_scale_rotate``, without flip on digit
    datasets (VICO readme).
    """

    init: InitKind = "real"
    dsa_strategy: str = "auto"


class GradientMatching(Synthesizer):
    """DC's outer/inner loop; DSA is the same class with augmentation switched on by its config."""

    config: DCConfig

    def synthesize(self, run: DistillationRun) -> None:
        config = self.config
        default_outer, default_inner = loop_schedule(run.ipc)
        outer_loop = config.outer_loop or default_outer
        inner_loop = config.inner_loop or default_inner
        optimizer_img = run.image_optimizer()
        inner_generator = make_generator(run.derived_seed("inner-loop"), "cpu")
        class_targets = [torch.full((n,), c, device=run.device) for c, n in self._real_counts(run)]

        def step(iteration: int) -> float:
            net = run.network(iteration)
            net.train()
            params = [p for p in net.parameters() if p.requires_grad]
            optimizer_net = torch.optim.SGD(net.parameters(), lr=config.lr_net)
            batchnorm = has_batchnorm(net)
            total = 0.0
            for outer in range(outer_loop):
                if batchnorm:
                    self._freeze_batchnorm(run, net)
                optimizer_img.zero_grad(set_to_none=True)
                pairs = [self._augmented_pair(run, label) for label in range(run.num_classes)]
                real_grads = self._real_gradients(run, net, params, [real for real, _ in pairs], class_targets)
                for label, (_, synthetic) in enumerate(pairs):
                    # Backward per class: the image gradient is that of the summed loss (the
                    # reference sums then steps once), without holding every class's graph.
                    loss = self._synthetic_distance(run, net, params, label, synthetic, real_grads[label])
                    loss.backward(inputs=[run.images])
                    total += loss.detach()
                optimizer_img.step()
                if outer == outer_loop - 1:
                    break
                net.train()
                self._train_network(run, net, optimizer_net, inner_loop, inner_generator)
            return float(total) / outer_loop

        run.loop(step)

    @staticmethod
    def _real_counts(run: DistillationRun) -> list[tuple[int, int]]:
        return [(c, run.sampler.count(c, run.config.batch_real)) for c in range(run.num_classes)]

    def _augmented_pair(self, run: DistillationRun, label: int) -> tuple[Tensor, Tensor]:
        """A random real batch of ``label`` and the class's synthetic images, siamese-augmented.

        Drawn class by class in label order, as the reference does, whether or not the real
        gradients are then batched: both forms see the same images.
        """
        real = run.sampler.sample(label, self.config.batch_real)
        return run.siamese(real, run.images[run.class_slice(label)])

    def _real_gradients(
        self,
        run: DistillationRun,
        net: nn.Module,
        params: list[nn.Parameter],
        reals: list[Tensor],
        targets: list[Tensor],
    ) -> list[list[Tensor]]:
        """Each class's gradient of the cross-entropy of its real batch (detached, fp32)."""
        numerics = self.config.real_numerics
        if self.config.batch_classes and len({len(r) for r in reals}) == 1:
            return per_class_gradients(net, params, [numerics.batch(r) for r in reals], targets, numerics, run.device)
        gradients = []
        for real, target in zip(reals, targets, strict=True):
            with numerics.autocast(run.device):
                logits = net(numerics.batch(real))
            loss = F.cross_entropy(logits.float(), target)
            gradients.append([g.detach() for g in torch.autograd.grad(loss, params)])
        return gradients

    def _synthetic_distance(
        self,
        run: DistillationRun,
        net: nn.Module,
        params: list[nn.Parameter],
        label: int,
        synthetic: Tensor,
        real_grads: list[Tensor],
    ) -> Tensor:
        """The matching distance of the class's synthetic gradient (with its graph) to the real one."""
        synthetic_loss = F.cross_entropy(net(synthetic), run.labels[run.class_slice(label)])
        synthetic_grads = torch.autograd.grad(synthetic_loss, params, create_graph=True)
        return gradient_distance(synthetic_grads, real_grads, self.config.distance)

    def _freeze_batchnorm(self, run: DistillationRun, net: nn.Module) -> None:
        """Set BN running statistics from a few real images per class, then freeze them."""
        real = torch.cat([run.sampler.sample(c, self.config.bn_images_per_class) for c in range(run.num_classes)])
        net.train()
        with torch.no_grad():
            net(real)
        set_batchnorm_eval(net)

    def _train_network(
        self,
        run: DistillationRun,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        epochs: int,
        generator: torch.Generator,
    ) -> None:
        """``epochs`` passes over the (detached) synthetic set; per-image DSA when DSA is on."""
        images = run.images.detach()
        labels = run.labels
        batch = self.config.batch_train
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=generator).to(run.device)
            for start in range(0, len(images), batch):
                index = order[start : start + batch]
                inputs = images[index]
                if run.strategy is not None:
                    inputs = dsa_augment(inputs, run.strategy, generator, shared=False, params=run.dsa_params)
                loss = F.cross_entropy(net(inputs), labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()


@register_method("dc")
class DC(GradientMatching):
    """Dataset Condensation with gradient matching (noise init, no augmentation)."""

    config_class = DCConfig


@register_method("dsa")
class DSA(GradientMatching):
    """DC with Differentiable Siamese Augmentation (real init; DSA in matching and inner loop)."""

    config_class = DSAConfig
