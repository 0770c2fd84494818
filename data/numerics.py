"""Numeric settings of a training or forward pass: precision (fp32 or bf16 autocast) and memory layout.

A protocol or a synthesizer holds one :class:`Numerics`; the training loops enter
:meth:`Numerics.autocast` around forward passes and pass models and batches through
:meth:`Numerics.model` and :meth:`Numerics.batch`. Weights, optimizer state, losses and the
synthetic images stay fp32 under bf16 autocast (convolutions and matrix products run in bf16,
reductions and normalization statistics in fp32), so a set or record never holds bf16 numbers.

Channels-last on 1-channel batches: a ``N x 1 x H x W`` tensor is both contiguous and
channels-last, and which layout the network runs in follows its strides. A batch that went
through a permute (the reference DiffAugment crop indexes an ``N x H x W x C`` view and permutes
back) carries channels-last strides, so the whole network runs NHWC; :meth:`Numerics.batch` makes
the choice explicit instead of leaving it to whichever augmentation ran last.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

PRECISIONS = ("fp32", "bf16")
MEMORY_FORMATS = ("contiguous", "channels_last")

Precision = Literal["fp32", "bf16"]
MemoryFormat = Literal["contiguous", "channels_last"]


@dataclass(frozen=True)
class Numerics:
    """How a pass computes: ``precision`` (``fp32``, or ``bf16`` autocast) and ``memory_format``.

    Raises:
        ValueError: an unknown precision or memory format, listing the valid ones.
    """

    precision: Precision = "fp32"
    memory_format: MemoryFormat = "contiguous"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ValueError(f"unknown memory_format {self.memory_format!r}; valid: {', '.join(MEMORY_FORMATS)}")

    @property
    def is_default(self) -> bool:
        """fp32 in the contiguous layout: what PyTorch does unasked."""
        return self.precision == "fp32" and self.memory_format == "contiguous"

    def autocast(self, device: torch.device | str) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on ``device`` under ``bf16``; a no-op context under ``fp32``."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)

    def model(self, model: nn.Module) -> nn.Module:
        """``model`` with its 4-d weights in this layout (in place; returned for chaining)."""
        if self.memory_format == "channels_last":
            model.to(memory_format=torch.channels_last)
        return model

    def batch(self, images: Tensor) -> Tensor:
        """An image batch (``N x C x H x W``) in this layout; other tensors pass unchanged.

        ``contiguous`` also undoes channels-last strides an augmentation left, so the network
        runs the layout that was chosen.
        """
        if images.dim() != 4:
            return images
        if self.memory_format == "channels_last":
            return images.contiguous(memory_format=torch.channels_last)
        if images.stride(1) == 1 and images.shape[1] == 1 and images.shape[2] * images.shape[3] > 1:
            # 1-channel batch with NHWC strides (see the module docstring): copy to NCHW strides.
            return images.clone(memory_format=torch.contiguous_format)
        return images.contiguous()


FP32 = Numerics()


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether ``device`` runs bf16 convolutions natively (AVX-512 BF16/AMX CPUs, Ampere+ GPUs).

    Elsewhere bf16 autocast still computes correctly, only without the speed.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False
