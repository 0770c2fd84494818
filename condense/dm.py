"""Distribution matching: DM (Zhao & Bilen, WACV 2023).

Each iteration samples a freshly initialized network (frozen) and moves the synthetic images so
that, per class, the mean embedding of the (siamese-augmented) synthetic images matches the
mean embedding of a batch of real images of the class. No bi-level optimization, no network
training. Follows ``main_DM.py`` of VICO-UoE/DatasetCondensation.

IDM (partitioned images, a trained model queue, a CE regularizer) is :mod:`condense.idm`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from condense._config import InitKind, RealPassConfig
from condense._networks import class_means, has_batchnorm
from condense._run import DistillationRun
from condense._synthesizer import Synthesizer
from data.methods import register_method
from data.numerics import FP32, Numerics


@dataclass(frozen=True)
class DMConfig(RealPassConfig):
    """DM with the official defaults (``main_DM.py`` and the VICO readme commands).

    Attributes:
        iterations: image updates, one fresh network each (``Iteration=20000``).
        lr_img: image learning rate, SGD momentum 0.5 (1.0 for IPC 1/10/50; the readme uses 10
            for IPC >= 100 on CIFAR-10, set it explicitly there).
        batch_real: real images per class and iteration (256).
        init: ``real``.
        dsa_strategy: ``auto`` (``color_crop_cutout_flip_scale_rotate``, no flip on digits).
        real_precision, real_memory_format: numerics of the real-image passes
            (:class:`condense._config.RealPassConfig`).
    """

    iterations: int = 20000
    lr_img: float = 1.0
    momentum_img: float = 0.5
    batch_real: int = 256
    init: InitKind = "real"
    dsa_strategy: str = "auto"


def augmented_class_batches(run: DistillationRun) -> tuple[list[Tensor], list[Tensor]]:
    """Per class: a real batch and the class's synthetic images, siamese-augmented alike."""
    reals, synthetics = [], []
    for label in range(run.num_classes):
        real = run.sampler.sample(label, run.config.batch_real)
        real, synthetic = run.siamese(real, run.images[run.class_slice(label)])
        reals.append(real)
        synthetics.append(synthetic)
    return reals, synthetics


#: Maps a network and a batch to one or more feature tensors (first dimension: the images).
Features = Callable[[nn.Module, Tensor], list[Tensor]]


def real_class_means(
    net: nn.Module, reals: list[Tensor], features: Features, *, joint: bool, numerics: Numerics = FP32
) -> list[Tensor]:
    """Per-class means (``K x D`` each, fp32) of every feature of the real batches, without gradients.

    ``joint`` forwards all classes as one batch (BatchNorm networks: the reference mixes the
    classes in the BN statistics); otherwise one class at a time (less memory, same result).
    ``numerics`` sets the passes' precision and layout (the network's weights keep theirs).
    """
    device = reals[0].device
    with torch.no_grad(), numerics.autocast(device):
        if joint:
            labels = torch.cat([torch.full((len(r),), c, device=r.device) for c, r in enumerate(reals)])
            return [class_means(f.float(), labels, len(reals)) for f in features(net, numerics.batch(torch.cat(reals)))]
        per_class = [
            [f.reshape(len(real), -1).float().mean(dim=0) for f in features(net, numerics.batch(real))]
            for real in reals
        ]
        return [torch.stack(column) for column in zip(*per_class, strict=True)]


def synthetic_class_means(
    net: nn.Module, run: DistillationRun, synthetics: list[Tensor], features: Features
) -> list[Tensor]:
    """Per-class means of every feature of the (augmented) synthetic images, with gradients."""
    return [class_means(f, run.labels, run.num_classes) for f in features(net, torch.cat(synthetics))]


def embedding(net: nn.Module, images: Tensor) -> list[Tensor]:
    """The penultimate features (``net.embed``), the quantity DM matches."""
    return [net.embed(images)]


@register_method("dm")
class DM(Synthesizer):
    """Distribution matching: per-class MSE between mean embeddings of random networks, with DSA."""

    config_class = DMConfig
    config: DMConfig

    def synthesize(self, run: DistillationRun) -> None:
        optimizer_img = run.image_optimizer()

        def step(iteration: int) -> float:
            net = run.network(iteration)
            net.train()
            net.requires_grad_(False)
            reals, synthetics = augmented_class_batches(run)
            (real_means,) = real_class_means(
                net, reals, embedding, joint=has_batchnorm(net), numerics=self.config.real_numerics
            )
            (synthetic_means,) = synthetic_class_means(net, run, synthetics, embedding)
            loss = ((real_means - synthetic_means) ** 2).sum()
            optimizer_img.zero_grad(set_to_none=True)
            loss.backward()
            optimizer_img.step()
            return float(loss.detach())

        run.loop(step)
