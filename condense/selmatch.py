"""SelMatch: selection-based initialization and partial updates for trajectory matching
(Lee & Chung, ICML 2024; Yongalls/SelMatch ``distill.py``).

Per class, the training images are sorted from hardest to easiest by a difficulty score and a
window of ``ipc`` of them is taken from position ``floor(beta * ipc)``: its harder
``ipc - floor(alpha * ipc)`` images are kept as real images, frozen (the selected part); its
easier ``floor(alpha * ipc)`` images start the distilled part, which MTT's loss updates. The
student trains on both parts (BatchNorm ConvNet in train mode, as the reference); only the
distilled pixels get gradient steps. Both parts carry hard labels. The learned student lr is
recorded but not stored in the set: the reference evaluates with its own recipe, not with it.

Difficulty: the reference ships C-scores for CIFAR (higher is easier) and forgetting counts for
Tiny-ImageNet (higher is harder). Neither is computed here from scratch: ``difficulty="forgetting"``
counts forgetting events of the suite's cached proxy (``baselines.scores``; recorded, and a
substitution for C-scores), and ``difficulty="file"`` reads one score per training image from
``difficulty_path`` (``.npy``, or ``.npz`` with a ``scores`` array; never a pickle) with
``hardest_first`` saying which end is hard (C-scores: ``low``; forgetting: ``high``).

Not reproduced: the reference keeps the distillation checkpoint with the best *test* accuracy;
here the last iterate is kept. Its evaluation (ResNet-18-BN, DSA on distilled and crop/flip on
selected images) is a protocol matter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from condense._run import DistillationRun
from condense.mtt import TrajectoryConfig, TrajectoryState, TrajectorySynthesizer, chunk_batches
from data import ImageDataset
from data.methods import build_method, register_method
from data.synthetic import SyntheticSet
from data.untrusted import BadFileError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelMatchConfig(TrajectoryConfig):
    """SelMatch with the official ``distill.py`` argparse defaults.

    Attributes:
        model: ConvNet-3 with BatchNorm (``ConvNetBN``), experts and student.
        iterations: 10000. lr_img 1000, lr_lr 1e-5 (SGD momentum 0.5).
        lr_teacher: initial student lr (``--lr_init`` 0.001).
        batch_syn: 125 images per student step; syn_steps 55; expert_epochs 2;
            max_start_epoch 80; experts: 100 trained 100 epochs (``buffer.py``).
        alpha: share of each class's images that is distilled (0.5).
        beta: window start as a share of ``ipc`` (0.5).
        difficulty: ``forgetting`` (the suite's proxy) or ``file``.
        difficulty_path: the score file for ``file``.
        hardest_first: ``high`` (forgetting counts) or ``low`` (C-scores) scores are hard.
        forgetting_epochs: epochs of the forgetting proxy (``None``: the ``forgetting`` selector's
            default, DeepCore's 40).
    """

    model: str = "convnet_bn"
    iterations: int = 10000
    lr_teacher: float = 0.001
    batch_syn: int | None = 125
    syn_steps: int = 55
    expert_epochs: int = 2
    max_start_epoch: int = 80
    expert_train_epochs: int = 100
    alpha: float = 0.5
    beta: float = 0.5
    difficulty: Literal["forgetting", "file"] = "forgetting"
    difficulty_path: str | None = None
    hardest_first: Literal["high", "low"] = "high"
    forgetting_epochs: int | None = None
    added_fields: ClassVar[frozenset[str]] = frozenset({"forgetting_epochs"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha is the distilled share of a class, in [0, 1]; got {self.alpha}")
        if self.difficulty == "file" and not self.difficulty_path:
            raise ValueError("difficulty='file' needs difficulty_path (one score per training image, .npy or .npz)")
        if self.difficulty_path and not Path(self.difficulty_path).is_file():
            raise ValueError(f"difficulty_path {self.difficulty_path!r} is not a file")


def read_scores(path: str | Path, count: int) -> Tensor:
    """One finite score per training image from ``.npy`` or ``.npz`` (``scores``), without pickles."""
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        scores = loaded["scores"] if isinstance(loaded, np.lib.npyio.NpzFile) else loaded
    except (ValueError, OSError, KeyError) as error:
        raise BadFileError(path, f"not a .npy array or an .npz with a 'scores' array ({error})") from error
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != count or not np.isfinite(scores).all():
        raise BadFileError(path, f"needs {count} finite scores (one per training image), has {len(scores)}")
    return torch.from_numpy(scores)


def window_indices(scores: Tensor, members: Tensor, ipc: int, alpha: float, beta: float, hardest_first: str):
    """The reference window of one class: ``(selected, distilled)`` training indices.

    Sorted hardest first (stable, as Python's ``sorted``), from ``floor(beta ipc)``: the first
    ``ipc - floor(alpha ipc)`` are selected, the next ``floor(alpha ipc)`` distilled.
    """
    distilled = int(ipc * alpha)
    selected = ipc - distilled
    start = int(ipc * beta)
    order = torch.sort(scores[members], descending=hardest_first == "high", stable=True).indices
    ranked = members[order]
    if start + ipc > len(ranked):
        raise ValueError(f"the window [{start}, {start + ipc}) does not fit a class of {len(ranked)} images")
    return ranked[start : start + selected], ranked[start + selected : start + ipc]


@register_method("selmatch")
class SelMatch(TrajectorySynthesizer):
    """Trajectory matching from a difficulty window: the hard part selected, the easy part distilled."""

    config_class = SelMatchConfig
    config: SelMatchConfig
    batchnorm_students: ClassVar[bool] = True

    def student_batches(self, n: int, generator: torch.Generator) -> list[Tensor]:
        return chunk_batches(n, self.config.batch_syn, self.config.syn_steps, generator)

    def difficulty_scores(self, train: ImageDataset, seed: int, device: torch.device | str) -> Tensor:
        """One score per training image (see the module docstring)."""
        if self.config.difficulty == "file":
            assert self.config.difficulty_path is not None
            return read_scores(self.config.difficulty_path, len(train))
        options = {} if self.config.forgetting_epochs is None else {"proxy_epochs": self.config.forgetting_epochs}
        return build_method("forgetting", **options).importance(train, seed=0, device=device).double()

    def distill(
        self,
        train: ImageDataset,
        ipc: int,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> SyntheticSet:
        scores = self.difficulty_scores(train, seed, device)
        windows = [
            window_indices(
                scores, train.class_indices(c), ipc, self.config.alpha, self.config.beta, self.config.hardest_first
            )
            for c in range(train.num_classes)
        ]
        self._windows = windows
        synthetic = super().distill(train, ipc, seed=seed, device=device, progress=progress)
        learned = synthetic.learned_lr
        synthetic.learned_lr = None  # the reference evaluates with its own lr
        synthetic.provenance["selmatch"] = {
            "difficulty": self.config.difficulty,
            "selected_per_class": len(windows[0][0]),
            "distilled_per_class": len(windows[0][1]),
            "window_start": int(ipc * self.config.beta),
            "selected_indices": [int(i) for selected, _ in windows for i in selected],
            "learned_lr": learned,
        }
        return synthetic

    def prepare(self, run: DistillationRun, state: TrajectoryState) -> None:
        """Fill each class with its window (selected rows first) and freeze the selected rows."""
        if getattr(self, "_windows", None) is None:
            raise RuntimeError("prepare is called through distill, which draws the difficulty windows")
        frozen = torch.zeros(len(run.images), dtype=torch.bool, device=run.device)
        with torch.no_grad():
            for label, (selected, distilled) in enumerate(self._windows):
                rows = run.class_slice(label)
                run.images[rows] = run.train.images[torch.cat([selected, distilled])].to(run.device)
                frozen[rows.start : rows.start + len(selected)] = True
        keep = (~frozen).to(run.images.dtype).view(-1, *([1] * (run.images.ndim - 1)))
        run.images.register_hook(lambda grad: grad * keep)
