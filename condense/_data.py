"""Real data for the synthesizers: per-class real batches, the class-major labels, initial images, seeds."""

from __future__ import annotations

import torch
from torch import Tensor

from condense._config import InitKind
from data import ImageDataset


class SeedStream:
    """Successive 31-bit seeds drawn from a local generator (for per-class DSA draws)."""

    def __init__(self, seed: int) -> None:
        self._generator = torch.Generator().manual_seed(seed)

    def next(self) -> int:
        """The next seed."""
        return int(torch.randint(0, 2**31 - 1, (1,), generator=self._generator))


class ClassBatchSampler:
    """Random batches of real images of one class, drawn without replacement within a batch.

    The images live on ``device`` once; the draws come from a CPU generator so a seed gives the
    same batches on every device. A class with fewer images than asked for yields all of them
    (the reference ``np.random.permutation(indices)[:n]``).
    """

    def __init__(self, train: ImageDataset, device: torch.device, generator: torch.Generator) -> None:
        self.images = train.images.to(device)
        self.labels = train.labels.to(device)
        self.num_classes = train.num_classes
        self._members = [train.class_indices(c) for c in range(train.num_classes)]
        self._all = torch.arange(len(train))
        self._generator = generator
        self._device = device

    def count(self, label: int, n: int) -> int:
        """How many images :meth:`sample` returns for ``label``."""
        return min(n, len(self._members[label]))

    def sample(self, label: int, n: int) -> Tensor:
        """``min(n, available)`` random images of class ``label``."""
        members = self._members[label]
        if len(members) == 0:
            raise ValueError(f"class {label} has no training images")
        order = torch.randperm(len(members), generator=self._generator)[:n]
        return self.images[members[order].to(self._device)]

    def sample_any(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` random images of any class and their labels."""
        order = torch.randperm(len(self._all), generator=self._generator)[:n].to(self._device)
        return self.images[order], self.labels[order]


def class_labels(num_classes: int, ipc: int, device: torch.device | str = "cpu") -> Tensor:
    """``[0]*ipc + [1]*ipc + ...``: the class-major label layout of every synthetic set here."""
    return torch.arange(num_classes, device=device).repeat_interleave(ipc)


def initial_images(train: ImageDataset, ipc: int, init: InitKind, generator: torch.Generator) -> Tensor:
    """Starting synthetic images, class-major (``ipc`` per class), on the CPU.

    Args:
        train: the training set.
        ipc: images per class.
        init: ``"noise"``: standard normal pixels (in normalized space, as the reference);
            ``"real"``: ``ipc`` distinct random training images of each class.
        generator: the source of randomness.

    Raises:
        ValueError: ``init="real"`` and some class has fewer than ``ipc`` images.
    """
    if init == "noise":
        return torch.randn((train.num_classes * ipc, *train.image_shape), generator=generator)
    if init != "real":
        raise ValueError(f"unknown init {init!r}; valid: noise, real")
    chunks = []
    for label in range(train.num_classes):
        members = train.class_indices(label)
        if len(members) < ipc:
            raise ValueError(
                f"init='real' needs {ipc} images of class {label} but the training set has {len(members)}; "
                "use init='noise' or a smaller ipc"
            )
        chunks.append(train.images[members[torch.randperm(len(members), generator=generator)[:ipc]]])
    return torch.cat(chunks).clone()
