"""The config every learned synthesizer shares: its fields, official ranges and checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from data.methods import MethodConfig
from data.numerics import Numerics
from evaluation.augment import parse_strategy

InitKind = Literal["noise", "real"]


#: Config fields that say where and how often to write checkpoints, not what is computed: kept
#: out of :meth:`Synthesizer.config_dict` (so out of provenance and the benchmark cell key).
CHECKPOINT_FIELDS = frozenset({"checkpoint_dir", "checkpoint_every"})


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


@dataclass(frozen=True)
class RealPassConfig(SynthesizerConfig):
    """A synthesizer whose passes over real images give targets and need no graph to the
    synthetic images: the mean features of DM, IDM and DataDAM (no gradients at all), the
    real-batch gradients of DC and DSA.

    Attributes:
        real_precision: ``fp32``, or ``bf16`` autocast of those passes (features are averaged,
            losses and gradients kept, in fp32); the synthetic images' passes stay fp32.
        real_memory_format: ``contiguous`` or ``channels_last`` for them (speed only).
    """

    real_precision: str = "fp32"
    real_memory_format: str = "contiguous"

    def __post_init__(self) -> None:
        super().__post_init__()
        _ = self.real_numerics  # Numerics refuses an unknown value, naming the valid ones

    @property
    def real_numerics(self) -> Numerics:
        """How the real-image passes compute."""
        return Numerics(precision=self.real_precision, memory_format=self.real_memory_format)  # type: ignore[arg-type]
