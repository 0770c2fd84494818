"""Teacher models for soft labels and knowledge distillation, cached by configuration hash.

A teacher is a registry model trained on the whole training split with a stated recipe, or
loaded from a user's weights file. Trained teachers are cached under
``<cache_dir>/<dataset>_<model>_<hash>/`` where the hash covers the :class:`TeacherConfig`
(minus where files live), the dataset fingerprint and a format version; the folder holds
``teacher.safetensors`` (the weights) and ``teacher.json`` (the recipe, validation and test
accuracy, seconds it took). The folder is built once under a file lock and published atomically
(:func:`data.cache.build_once`); a corrupt or foreign entry is rejected and rebuilt. Weights
are read with safetensors, or ``torch.load(weights_only=True)`` for a user's ``.pt`` file, so
loading a teacher never runs code.

Methods that use a teacher charge its build cost (whether built or loaded) to their provenance
(:func:`charge_teachers`, the ``teacher`` product of ``data.provenance.add_precomputed``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file
from torch import Tensor, nn

from data import ImageDataset
from data.cache import build_once, cache_dir
from data.provenance import add_precomputed
from data.seeding import derive_seed, make_generator, seeded_torch
from data.untrusted import BadFileError, parse_json, read_limited
from evaluation.augment import crop_flip_augmenter, dsa_augmenter
from evaluation.models import create_model
from evaluation.train import TrainRecipe, accuracy, train_classifier

logger = logging.getLogger(__name__)

#: Bump when teacher training changes, so old cache entries are not reused.
TEACHER_FORMAT_VERSION = 1
WEIGHTS_NAME = "teacher.safetensors"
TEACHER_AUGMENTATIONS = ("dsa", "crop_flip", "none")
META_NAME = "teacher.json"


@dataclass(frozen=True)
class TeacherConfig:
    """How a teacher is made.

    Attributes:
        model: registry name of the teacher network.
        epochs: training epochs on the whole training split.
        lr: SGD learning rate.
        momentum: SGD momentum.
        decay_at, decay_factor: the one step decay of the learning rate (at half-way, x0.1).
        weight_decay: SGD weight decay.
        batch_size: training batch.
        augmentation: ``"dsa"`` (per-image DSA, no flip on digit datasets), ``"crop_flip"``
            (per-image ``RandomCrop`` with an eighth of the side as padding, then a flip where the
            dataset allows: the CIFAR training transform of G-VBSM/EDC's squeeze) or ``"none"``.
        seed: the teacher's seed, independent of the cell seed so every cell shares it.
        path: a user's weights file (``.safetensors`` or a weights-only ``.pt`` state dict);
            when set nothing is trained and the other recipe fields are not used.
        cache_dir: cache folder (``None``: ``cache_dir("teachers")``); not part of the key.
    """

    model: str = "convnet3"
    epochs: int = 50
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    augmentation: Literal["dsa", "crop_flip", "none"] = "dsa"
    decay_at: float = 0.5
    decay_factor: float = 0.1
    seed: int = 0
    path: str | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"teacher epochs and batch_size must be positive, got {self.epochs}, {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"teacher lr must be a positive number, got {self.lr}")
        if self.augmentation not in TEACHER_AUGMENTATIONS:
            raise ValueError(
                f"unknown teacher augmentation {self.augmentation!r}; valid: {', '.join(TEACHER_AUGMENTATIONS)}"
            )
        TrainRecipe(epochs=self.epochs, decay_at=self.decay_at, decay_factor=self.decay_factor)  # checks them

    def key_dict(self) -> dict[str, Any]:
        """The fields that determine the trained weights (not where files live)."""
        data = dataclasses.asdict(self)
        data.pop("cache_dir")
        data.pop("path")
        # Fields added after caches existed enter the key only when changed, so those stay valid.
        for name, default in (("decay_at", 0.5), ("decay_factor", 0.1)):
            if data[name] == default:
                data.pop(name)
        return data


@dataclass
class Teacher:
    """A trained (or loaded) teacher in eval mode.

    Attributes:
        model: the network (parameters frozen).
        config: how it was made.
        val_accuracy: accuracy on the validation split (``None`` when not given).
        test_accuracy: accuracy on the test split, recorded for reports (``None`` when not given).
        seconds: what building it cost (charged to every use, hit or not).
        cache_hit: whether it came from the cache (or a user file).
        path: the weights file.
    """

    model: nn.Module
    config: TeacherConfig
    val_accuracy: float | None
    test_accuracy: float | None
    seconds: float
    cache_hit: bool
    path: Path | None

    def describe(self) -> dict[str, Any]:
        """JSON-able summary stored in records."""
        return {
            "model": self.config.model,
            "config": dataclasses.asdict(self.config),
            "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy,
            "seconds": self.seconds,
            "cache_hit": self.cache_hit,
            "path": str(self.path) if self.path is not None else None,
        }


class TeacherEnsemble(nn.Module):
    """Several teachers as one: the logits are the mean of the members' logits."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("a teacher ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([member(x) for member in self.members]).mean(0)


def cache_key(config: TeacherConfig, train: ImageDataset) -> str:
    """``<dataset>_<model>_<16 hex>`` from the config, the dataset fingerprint and the format."""
    payload = {"config": config.key_dict(), "dataset": train.fingerprint(), "version": TEACHER_FORMAT_VERSION}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{train.name}_{config.model}_{digest}"


def untrained_model(config: TeacherConfig, train: ImageDataset, device: torch.device | str = "cpu") -> nn.Module:
    """The teacher's network before training: the same initial weights every time (its seed)."""
    with seeded_torch(derive_seed("teacher", config.seed, config.model), device):
        return create_model(
            config.model,
            in_channels=train.image_shape[0],
            num_classes=train.num_classes,
            image_size=train.image_shape[1:],
        ).to(device)


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Weights from a safetensors file or a weights-only ``.pt`` state dict (never runs code).

    Raises:
        FileNotFoundError: there is no file at ``path``.
        BadFileError: the file is not a plain state dict of tensors.
    """
    source = Path(path)
    raw = read_limited(source, what="teacher weights file")
    try:
        if source.suffix == ".safetensors":
            state = load_safetensors_bytes(raw)
        else:
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any refusal means "not a safe weights file"
        raise BadFileError(source, f"not a readable weights file ({str(error)[:200]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise BadFileError(source, "not a state dict of tensors")
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise BadFileError(source, "weights contain NaN or Inf")
    return state


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load the weights file ``path`` into ``model`` (every tensor, every shape must fit).

    Raises:
        FileNotFoundError: there is no file at ``path``.
        BadFileError: the file is not a state dict of tensors, or not one of this model.
    """
    state = read_state_dict(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[:2]
        raise BadFileError(path, f"weights do not fit a {type(model).__name__}: {' '.join(first_line)[:300]}") from None


def _load_entry(
    folder: Path, config: TeacherConfig, train: ImageDataset, device: torch.device
) -> tuple[nn.Module, dict]:
    meta = parse_json(read_limited(folder / META_NAME, max_bytes=2**20, what="teacher entry"), folder / META_NAME)
    if not isinstance(meta, dict) or (meta.get("format_version"), meta.get("key")) != (
        TEACHER_FORMAT_VERSION,
        folder.name,
    ):
        raise ValueError(f"{folder}: foreign or outdated teacher entry")
    model = untrained_model(config, train, device)
    load_weights(model, folder / WEIGHTS_NAME)
    return model, meta


def load_or_train_teacher(
    config: TeacherConfig,
    train: ImageDataset,
    *,
    val: ImageDataset | None = None,
    test: ImageDataset | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> Teacher:
    """The teacher of ``config`` on ``train``: from the cache, a user file, or trained now.

    ``val``/``test`` only measure the accuracy recorded beside the weights (no selection).
    """
    device = torch.device(device)
    if config.path is not None:
        model = untrained_model(config, train, device)
        load_weights(model, config.path)
        model.to(device)
        val_acc = accuracy(model, val.images, val.labels, device=device) if val is not None else None
        test_acc = accuracy(model, test.images, test.labels, device=device) if test is not None else None
        return Teacher(_freeze(model), config, val_acc, test_acc, 0.0, True, Path(config.path))

    folder = Path(config.cache_dir) if config.cache_dir else cache_dir("teachers")
    entry = folder / cache_key(config, train)

    def is_valid(path: Path) -> bool:
        _load_entry(path, config, train, torch.device("cpu"))
        return True

    def build(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        started = time.perf_counter()
        model = untrained_model(config, train, device)
        recipe = TrainRecipe(
            epochs=config.epochs,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            batch_size=config.batch_size,
            decay_at=config.decay_at,
            decay_factor=config.decay_factor,
        )
        augmenters = {"dsa": dsa_augmenter, "crop_flip": crop_flip_augmenter}
        augment = augmenters[config.augmentation](train.flip) if config.augmentation in augmenters else None

        train_classifier(
            model,
            train.images,
            train.labels,
            recipe,
            generator=make_generator(derive_seed("teacher-train", config.seed), "cpu"),
            augment=augment,
            device=device,
            progress=progress,
            description=f"teacher:{config.model}",
        )
        seconds = time.perf_counter() - started
        meta = {
            "format_version": TEACHER_FORMAT_VERSION,
            "key": entry.name,
            "recipe": config.key_dict(),
            "dataset": train.name,
            "dataset_fingerprint": train.fingerprint(),
            "seconds": seconds,
            "val_accuracy": accuracy(model, val.images, val.labels, device=device) if val is not None else None,
            "test_accuracy": accuracy(model, test.images, test.labels, device=device) if test is not None else None,
        }
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS_NAME))
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True))
        logger.info("teacher %s trained in %.1fs (test accuracy %s)", entry.name, seconds, meta["test_accuracy"])

    hit = build_once(entry, build, is_valid)
    model, meta = _load_entry(entry, config, train, device)
    return Teacher(
        model=_freeze(model.to(device)),
        config=config,
        val_accuracy=meta.get("val_accuracy"),
        test_accuracy=meta.get("test_accuracy"),
        seconds=float(meta["seconds"]),
        cache_hit=hit,
        path=entry / WEIGHTS_NAME,
    )


def load_or_train_teachers(
    configs: Sequence[TeacherConfig],
    train: ImageDataset,
    *,
    val: ImageDataset | None = None,
    test: ImageDataset | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[nn.Module, list[Teacher]]:
    """One teacher, or a :class:`TeacherEnsemble` (mean logits) of several; plus each member."""
    teachers = [load_or_train_teacher(c, train, val=val, test=test, device=device, progress=progress) for c in configs]
    if not teachers:
        raise ValueError("no teacher configs given")
    model = teachers[0].model if len(teachers) == 1 else _freeze(TeacherEnsemble([t.model for t in teachers]))
    return model, teachers


def charge_teachers(provenance: dict[str, Any], teachers: Sequence[Teacher]) -> None:
    """Charge the teachers' build cost to ``provenance`` (``data.provenance.add_precomputed``)."""
    add_precomputed(
        provenance,
        "teacher",
        seconds=float(sum(t.seconds for t in teachers)),
        cache_hit=all(t.cache_hit for t in teachers),
    )
