"""``Budget`` and ``SyntheticSet``: the compressed training set every method produces.

A set is saved as one safetensors file (tensors) with its metadata as JSON in the safetensors
header (:mod:`data.setfile`), so loading a set never runs code. ``.pt`` files are read with
``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from data.files import write_bytes_atomic, writing
from data.image import pixel_bounds
from data.setfile import FORMAT_NAME, FORMAT_VERSION, METADATA_KEY, check_metadata, decode_set_file, encode_set_file
from data.untrusted import (
    BadFileError,
    InputError,
    int_field,
    is_integer,
    mapping_field,
    number_field,
    number_list_field,
    read_limited,
    refusing,
    string_list_field,
)

#: Training-time samplers the evaluation protocol knows (see ``evaluation.protocols``).
TRAINING_SAMPLERS = ("rs2",)
#: The schedules of the ``rs2`` sampler.
RS2_SCHEDULES = ("equal_epochs", "equal_iterations")
#: Most classes a set file may claim (ImageNet-21k has 21,841).
MAX_CLASSES = 100_000
#: Extras a decoder consumes (the decoded set no longer carries them).
DECODER_EXTRAS = frozenset({"compensators", "decoded_logits"})


#: What to do with an ``ipc`` above a class's size: refuse it, or keep the whole class.
BUDGET_POLICIES = ("error", "cap")


class BudgetError(InputError):
    """A budget the dataset cannot give (an ``ipc`` above a class's size)."""


@dataclass(frozen=True)
class Budget:
    """How much of the training set a method may keep.

    Exactly one of ``ipc`` (images per class) and ``fraction`` (kept share of the training set)
    is set, except for the whole dataset (both ``None``).
    """

    ipc: int | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        if self.ipc is not None and self.fraction is not None:
            raise ValueError("a budget is either ipc or fraction, not both")
        if self.ipc is not None and (isinstance(self.ipc, bool) or int(self.ipc) != self.ipc or self.ipc < 1):
            raise ValueError(f"ipc must be a positive integer, got {self.ipc!r}")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction!r}")

    @property
    def is_full(self) -> bool:
        """True for the whole training set."""
        return self.ipc is None and self.fraction is None

    def per_class_counts(self, class_counts: Tensor) -> Tensor:
        """Images to keep per class given the available ``class_counts`` (class-balanced).

        IPC keeps ``min(ipc, available)``; a fraction keeps ``round(fraction * available)`` of each
        class (at least one where the class is not empty).
        """
        counts = class_counts.long()
        if self.is_full:
            return counts.clone()
        if self.ipc is not None:
            return counts.clamp(max=self.ipc)
        kept = torch.round(counts.double() * float(self.fraction)).long()
        return torch.where(counts > 0, kept.clamp(min=1), kept).clamp(max=counts)

    def capped_counts(
        self, class_counts: Tensor, *, policy: str = "error", class_names: tuple[str, ...] = (), unit: str = "images"
    ) -> list[int] | None:
        """Check an IPC budget against the classes it is taken from, before any work.

        Args:
            class_counts: the images (graphs) of every class of the training split.
            policy: ``error`` refuses an ``ipc`` above the smallest class; ``cap`` keeps
                ``min(ipc, class size)`` of each class instead.
            class_names: names of the classes, for the message.
            unit: what the classes hold, for the message.

        Returns:
            ``None`` when every class holds ``ipc``; under ``cap`` otherwise the per-class counts
            that will be kept (the record keeps them).

        Raises:
            BudgetError: under ``error``, ``ipc`` is more than some class holds.
            ValueError: an unknown policy.
        """
        if policy not in BUDGET_POLICIES:
            raise ValueError(f"unknown budget_policy {policy!r}; valid: {', '.join(BUDGET_POLICIES)}")
        if self.ipc is None:
            return None
        counts = class_counts.long()
        if len(counts) == 0 or int(counts.min()) >= self.ipc:
            return None
        if policy == "cap":
            return self.per_class_counts(counts).tolist()
        smallest = int(counts.argmin())
        name = class_names[smallest] if smallest < len(class_names) else str(smallest)
        short = [
            f"{class_names[i] if i < len(class_names) else i} ({int(counts[i])})"
            for i in torch.nonzero(counts < self.ipc).flatten().tolist()[:5]
        ]
        raise BudgetError(
            f"ipc={self.ipc} is more than the training split holds of class {smallest} ({name!r}): "
            f"{int(counts[smallest])} {unit}; classes below the budget: {', '.join(short)}. "
            f"Use ipc<={int(counts.min())}, or budget_policy=cap to keep min(ipc, class size) of each class "
            "(the record keeps the capped counts)"
        )

    def describe(self) -> str:
        """``ipc=10``, ``fraction=0.3`` or ``full``."""
        if self.ipc is not None:
            return f"ipc={self.ipc}"
        if self.fraction is not None:
            return f"fraction={self.fraction:g}"
        return "full"


@dataclass
class SyntheticSet:
    """A compressed training set: synthetic images or selected real ones.

    Attributes:
        images: normalized images ``N x C x H x W`` (the dataset's normalization).
        labels: ``int64`` hard labels ``N`` or a float soft-label matrix ``N x num_classes``.
        num_classes: number of classes.
        mean: per-channel normalization mean (to denormalize for display).
        std: per-channel normalization std.
        budget: the budget the set was made for.
        learned_lr: a learning rate learned with the set (trajectory matching), else ``None``.
        extras: further tensors (selected indices and scores, compensators, ...).
        provenance: method name and resolved config, dataset and fingerprint, seed, versions,
            distillation seconds and peak memory; JSON-serializable.
        sampler: a training-time sampler the protocol must use instead of plain epochs over
            all images, e.g. ``{"name": "rs2", "per_round": 130, "schedule": "equal_epochs"}``
            (RS2 keeps the whole pool and trains on a fresh subset every round).
        decoder: how stored images expand into training images (``data.decoders``), e.g.
            ``{"name": "partition", "factor": 2}`` (IDM); the budget counts stored images.
    """

    images: Tensor
    labels: Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    budget: Budget = field(default_factory=Budget)
    learned_lr: float | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    sampler: dict[str, Any] | None = None
    decoder: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def has_soft_labels(self) -> bool:
        """True when ``labels`` is a float matrix of soft labels."""
        return self.labels.is_floating_point()

    def hard_labels(self) -> Tensor:
        """Integer labels (argmax of soft labels)."""
        return self.labels.argmax(dim=1) if self.has_soft_labels else self.labels

    def class_counts(self) -> Tensor:
        """Images per class (by hard label)."""
        return torch.bincount(self.hard_labels().long(), minlength=self.num_classes)

    def validate(self, *, image_shape: tuple[int, ...] | None = None, check_budget: bool = True) -> None:
        """Raise ``ValueError`` for a set that cannot be trained on as it claims.

        Checks shapes, finiteness, label range and type, the learned lr, and (with
        ``check_budget``) that an IPC budget holds exactly ``ipc`` images of every class.
        """
        if self.images.ndim != 4:
            raise ValueError(f"images must be N x C x H x W, got shape {tuple(self.images.shape)}")
        if not self.images.is_floating_point():
            raise ValueError(f"images must be floating point, got {self.images.dtype}")
        if image_shape is not None and tuple(self.images.shape[1:]) != tuple(image_shape):
            raise ValueError(f"images have shape {tuple(self.images.shape[1:])}, expected {tuple(image_shape)}")
        if len(self.images) == 0:
            raise ValueError("the set holds no images")
        if not torch.isfinite(self.images).all():
            raise ValueError("images contain NaN or Inf")
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise ValueError("mean and std need one value per channel")
        if not all(math.isfinite(m) for m in self.mean):
            raise ValueError(f"mean must be finite, got {self.mean}")
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ValueError(f"std must be finite and > 0 (it divides every pixel), got {self.std}")
        classes = self.num_classes
        if not is_integer(classes) or classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        n = len(self.images)
        if self.has_soft_labels:
            if tuple(self.labels.shape) != (n, self.num_classes):
                raise ValueError(f"soft labels must be {n} x {self.num_classes}, got {tuple(self.labels.shape)}")
            if not torch.isfinite(self.labels).all():
                raise ValueError("soft labels contain NaN or Inf")
        else:
            if self.labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
                raise ValueError(f"hard labels must be integers, got {self.labels.dtype}")
            if tuple(self.labels.shape) != (n,):
                raise ValueError(f"hard labels must have shape ({n},), got {tuple(self.labels.shape)}")
            if self.labels.min() < 0 or self.labels.max() >= self.num_classes:
                raise ValueError(f"labels outside [0, {self.num_classes})")
        if self.learned_lr is not None and not (math.isfinite(self.learned_lr) and self.learned_lr > 0):
            raise ValueError(f"learned_lr must be a positive finite number, got {self.learned_lr}")
        for key, value in self.extras.items():
            if not isinstance(value, Tensor):
                raise ValueError(f"extra {key!r} is not a tensor")
        if self.sampler is not None:
            _check_sampler(self.sampler, len(self))
        if self.decoder is not None:
            from data.decoders import DECODERS

            if self.decoder.get("name") not in DECODERS:
                raise ValueError(f"unknown decoder {self.decoder!r}; valid: {', '.join(DECODERS)}")
        if check_budget and self.decoder is not None and self.decoder.get("name") == "compensators":
            from data.decoders import compensator_image_count

            # Base images plus compensators must fit in ipc images per class.
            stored = compensator_image_count(self.images, self.extras)
            limit = int(self.budget.ipc or 0) * self.num_classes
            if self.budget.ipc is not None and stored > limit:
                raise ValueError(f"budget ipc={self.budget.ipc} allows {limit} stored images, the set holds {stored}")
        elif check_budget and self.sampler is None and self.budget.ipc is not None:
            counts = self.class_counts()
            if not bool((counts == self.budget.ipc).all()):
                raise ValueError(f"budget ipc={self.budget.ipc} but the set has per-class counts {counts.tolist()}")

    def decoded(self) -> SyntheticSet:
        """The training images the stored ones stand for (the set itself when it has no decoder)."""
        if self.decoder is None:
            return self
        from data.decoders import decode

        bounds = pixel_bounds(self.mean, self.std, dtype=self.images.dtype)
        images, labels = decode(self.images, self.labels, self.decoder, extras=self.extras, bounds=bounds)
        extras = {k: v for k, v in self.extras.items() if k not in DECODER_EXTRAS}
        return dataclasses.replace(self, images=images, labels=labels, decoder=None, extras=extras)

    # -- serialization -------------------------------------------------------------------------

    def _metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "num_classes": self.num_classes,
            "mean": list(self.mean),
            "std": list(self.std),
            "budget": asdict(self.budget),
            "learned_lr": self.learned_lr,
            "extras": sorted(self.extras),
            "provenance": self.provenance,
            "sampler": self.sampler,
            "decoder": self.decoder,
        }

    def _tensors(self) -> dict[str, Tensor]:
        tensors = {"images": self.images, "labels": self.labels}
        tensors.update({f"extras.{k}": v for k, v in self.extras.items()})
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def to_bytes(self) -> bytes:
        """The set-file serialization (:mod:`data.setfile`; what :meth:`save` writes)."""
        return encode_set_file(self._tensors(), self._metadata())

    def num_bytes(self) -> int:
        """Bytes of the set in its file format, soft labels and extras included.

        Left out: the provenance (bookkeeping of how the set was made, whose measured times would
        make the size of one set vary from run to run) and a fitted ZCA transform (``data.zca``):
        it preprocesses the whole dataset, is the same for every set of that dataset, and
        published budgets do not count it.
        """
        from data.zca import MATRIX_KEY, MEAN_KEY

        kept = {k: v for k, v in self.extras.items() if k not in (MEAN_KEY, MATRIX_KEY)}
        return len(dataclasses.replace(self, extras=kept, provenance={}).to_bytes())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the set to ``path`` (``.safetensors``) whole (``data.files``); returns the path."""
        return write_bytes_atomic(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SyntheticSet:
        """Read a set written by :meth:`save` (or a ``.pt`` dict) without executing any code.

        Every metadata field is checked (finite normalization statistics with ``std > 0``, a
        budget, sampler and decoder this suite knows) and so is every tensor (:meth:`validate`).

        Raises:
            FileNotFoundError: there is no file at ``path``.
            BadFileError: the file is not a synthetic set of this format (a pickle, a foreign or
                corrupt file); nothing from it is loaded.
        """
        source = Path(path)
        raw = read_limited(source, what="synthetic set")
        if source.suffix == ".pt":
            return cls._load_torch(raw, source)
        tensors, metadata = decode_set_file(raw, source)
        return cls._from_parts(tensors, metadata, source)

    @classmethod
    def _load_torch(cls, raw: bytes, source: Path) -> SyntheticSet:
        try:
            payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any refusal means "not a safe set file"
            raise BadFileError(source, f"refused: not a weights-only synthetic set ({str(error)[:200]})") from None
        if not isinstance(payload, dict) or "tensors" not in payload or "metadata" not in payload:
            raise BadFileError(source, "not a synthetic set (expected keys 'tensors' and 'metadata')")
        tensors = payload["tensors"]
        if not isinstance(tensors, dict) or not all(isinstance(v, Tensor) for v in tensors.values()):
            raise BadFileError(source, "not a synthetic set ('tensors' must map names to tensors)")
        if not all(isinstance(k, str) for k in tensors):
            raise BadFileError(source, "not a synthetic set (tensor names must be strings)")
        return cls._from_parts(tensors, check_metadata({METADATA_KEY: payload["metadata"]}, source), source)

    def save_torch(self, path: str | os.PathLike[str]) -> Path:
        """Write a ``.pt`` file loadable with ``torch.load(weights_only=True)``."""
        payload = {"tensors": self._tensors(), "metadata": json.dumps(self._metadata(), sort_keys=True)}
        with writing(path) as temporary:
            torch.save(payload, temporary)
        return Path(path)

    @classmethod
    def _from_parts(cls, tensors: dict[str, Tensor], meta: dict[str, Any], source: Path) -> SyntheticSet:
        """The set of a file's tensors and metadata, every field checked (:class:`BadFileError`)."""
        if "images" not in tensors or "labels" not in tensors:
            raise BadFileError(source, "missing images or labels")
        extras = {k.removeprefix("extras."): v for k, v in tensors.items() if k.startswith("extras.")}
        unknown = sorted(set(tensors) - {"images", "labels"} - {f"extras.{k}" for k in extras})
        if unknown:
            raise BadFileError(source, f"unknown tensor(s) {', '.join(unknown[:5])}")
        listed = string_list_field(meta, "extras", source)
        if sorted(listed) != sorted(extras):
            raise BadFileError(source, f"'extras' lists {sorted(listed)[:5]} but the file holds {sorted(extras)[:5]}")
        budget = mapping_field(meta, "budget", source)
        if set(budget) - {"ipc", "fraction"}:
            raise BadFileError(source, f"'budget' may hold only ipc and fraction, got {sorted(budget)[:5]}")
        sampler = mapping_field(meta, "sampler", source, optional=True) or None
        decoder = mapping_field(meta, "decoder", source, optional=True) or None
        with refusing(source, "synthetic set"):
            result = cls(
                images=tensors["images"],
                labels=tensors["labels"],
                num_classes=int_field(meta, "num_classes", source, minimum=1, maximum=MAX_CLASSES),
                mean=number_list_field(meta, "mean", source),
                std=number_list_field(meta, "std", source, positive=True),
                budget=Budget(
                    ipc=int_field(budget, "ipc", source, minimum=1, optional=True),
                    fraction=number_field(budget, "fraction", source, positive=True, optional=True),
                ),
                learned_lr=number_field(meta, "learned_lr", source, positive=True, optional=True),
                extras=extras,
                provenance=mapping_field(meta, "provenance", source, optional=True),
                sampler=sampler,
                decoder=decoder,
            )
            result.validate(check_budget=False)
            if result.decoder is not None:
                # A decoder's options and extras are checked by decoding once.
                result.decoded().validate(check_budget=False)
        return result


def _check_sampler(sampler: dict[str, Any], pool: int) -> None:
    """Raise ``ValueError`` unless ``sampler`` is a training sampler this suite runs, with valid options."""
    if not isinstance(sampler, dict) or sampler.get("name") not in TRAINING_SAMPLERS:
        raise ValueError(f"unknown training sampler {sampler!r}; valid: {', '.join(TRAINING_SAMPLERS)}")
    unknown = sorted(set(sampler) - {"name", "per_round", "schedule"})
    if unknown:
        raise ValueError(f"the rs2 sampler has no option(s) {', '.join(map(str, unknown))}")
    per_round = sampler.get("per_round")
    if isinstance(per_round, bool) or not isinstance(per_round, int) or not 0 < per_round <= pool:
        raise ValueError(f"rs2 per_round must be an integer in [1, {pool}], got {per_round!r}")
    if sampler.get("schedule", "equal_epochs") not in RS2_SCHEDULES:
        raise ValueError(f"unknown rs2 schedule {sampler.get('schedule')!r}; valid: {', '.join(RS2_SCHEDULES)}")
