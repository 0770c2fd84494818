"""Expert trajectories for trajectory matching (MTT, FTD, DATM), cached by configuration hash.

An *expert* is a network of the matching architecture trained on the whole real training set
with the official recipe (``buffer.py`` of MTT: SGD without momentum or weight decay,
``lr_teacher``, batch 256, per-image DSA); its flat parameter vector is stored after the
initialization and after every epoch, so an expert is an ``(epochs + 1) x P`` tensor.
FTD/DATM's *flat* experts (``buffer_FTD.py``) replace SGD by GSAM, the sharpness-aware
optimizer with surrogate-gap guidance (``sharpness="gsam"``, ``rho``, ``alpha``).

Experts are written under ``cache_dir/<key>/expert_XXX.safetensors`` where ``key`` hashes the
:class:`ExpertConfig` (minus ``cache_dir``) and the dataset fingerprint. Every file is written
to a temporary name and moved into place with ``os.replace``, so a file under its final name is
always complete and an interrupted run is resumed expert by expert; temporary files are never
read. Each expert is trained under a file lock (:func:`data.cache.build_each_once`), so concurrent
jobs train it once: a job that finds an expert being trained goes on to the next missing one, and
waits for the others' experts at the end; an unreadable or wrongly shaped file is trained again.
:func:`load_or_train_experts` reports whether everything came from the cache (``cache_hit``)
and the seconds the experts cost to build (charged to every method using them).

With ZCA (``data.zca``, the official CIFAR setting) the caller whitens the training set first; the
whitened set has its own fingerprint, and ``zca`` is part of the key as well.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.func import functional_call
from tqdm.auto import tqdm

from condense._networks import sample_network
from data import ImageDataset
from data.cache import build_each_once, cache_dir
from data.seeding import derive_seed, make_generator
from evaluation.augment import dsa_augment

logger = logging.getLogger(__name__)

Sharpness = Literal["none", "gsam"]

#: Bump when the expert training changes, so old caches are not reused.
EXPERT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ExpertConfig:
    """How the experts are trained (official MTT ``buffer.py`` defaults).

    Attributes:
        model: registry name of the expert network (the matching network of the method).
        num_experts: experts trained (official 100).
        epochs: training epochs per expert (official 50; DATM 100); ``epochs + 1`` snapshots.
        lr_teacher: SGD learning rate (official 0.01), constant.
        momentum: SGD momentum (official 0).
        weight_decay: SGD weight decay (official 0).
        batch_size: training batch (official 256).
        dsa_strategy: resolved DSA strategy (``None``: no augmentation).
        sharpness: ``"none"`` (MTT) or ``"gsam"`` (FTD/DATM flat experts).
        rho: GSAM perturbation radius (``rho_max = rho_min = 0.01`` official).
        alpha: GSAM surrogate-gap weight (``--alpha``, code default 0.4; DATM README 0.3).
        adaptive: GSAM's adaptive (parameter-scaled) perturbation (official True).
        zca: the experts train on ZCA-whitened images (the caller whitens; part of the key).
        seed: the experts' seed, independent of the distillation seed so every cell shares them.
        cache_dir: cache folder (``None``: ``cache_dir("experts")``); not part of the key.
    """

    model: str = "convnet3"
    num_experts: int = 100
    epochs: int = 50
    lr_teacher: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 256
    dsa_strategy: str | None = "color_crop_cutout_flip_scale_rotate"
    sharpness: Sharpness = "none"
    rho: float = 0.01
    alpha: float = 0.4
    adaptive: bool = True
    zca: bool = False
    seed: int = 0
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.num_experts < 1 or self.epochs < 1:
            raise ValueError(f"num_experts and epochs must be positive, got {self.num_experts}, {self.epochs}")
        if not (self.lr_teacher > 0 and math.isfinite(self.lr_teacher)):
            raise ValueError(f"lr_teacher must be a positive number, got {self.lr_teacher}")
        if self.sharpness not in ("none", "gsam"):
            raise ValueError(f"sharpness must be 'none' or 'gsam', got {self.sharpness!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")

    def key_dict(self) -> dict[str, object]:
        """The fields that determine the experts (everything but ``cache_dir``)."""
        data = dataclasses.asdict(self)
        data.pop("cache_dir")
        if self.sharpness == "none":  # GSAM knobs do not matter for plain SGD experts
            for name in ("rho", "alpha", "adaptive"):
                data.pop(name)
        return data


def cache_key(config: ExpertConfig, train: ImageDataset) -> str:
    """Hash of the expert config, the dataset fingerprint and the format version."""
    payload = {"config": config.key_dict(), "dataset": train.fingerprint(), "version": EXPERT_FORMAT_VERSION}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
    kind = "flat" if config.sharpness == "gsam" else "sgd"
    return f"{train.name}_{config.model}_{kind}_{digest}"


# ---------------------------------------------------------------------------------------------
# Flat parameter vectors


@dataclass(frozen=True)
class ParameterLayout:
    """Names and shapes of a module's parameters in flat-vector order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, module: nn.Module) -> ParameterLayout:
        """The layout of ``module.named_parameters()``."""
        named = list(module.named_parameters())
        return cls(tuple(n for n, _ in named), tuple(tuple(p.shape) for _, p in named))

    @property
    def numel(self) -> int:
        """Total number of parameters."""
        return sum(math.prod(s) for s in self.shapes)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Views of ``flat`` shaped like the parameters (gradients flow into ``flat``)."""
        out, offset = {}, 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            size = math.prod(shape)
            out[name] = flat[offset : offset + size].view(shape)
            offset += size
        return out


def flatten_parameters(module: nn.Module) -> Tensor:
    """A detached CPU copy of the module's parameters as one vector (a clone, never an alias)."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).to("cpu", copy=True)


# ---------------------------------------------------------------------------------------------
# Training one expert


def _gsam_step(
    net: nn.Module, loss_fn: Callable[[], Tensor], optimizer: torch.optim.Optimizer, config: ExpertConfig
) -> Tensor:
    """One GSAM step (Zhuang et al. 2022, the optimizer of FTD's ``buffer_FTD.py``).

    Gradient ``g`` at ``w``; ascend to ``w + e`` with ``e = rho * (w^2 if adaptive) * g / ||(|w| if
    adaptive) * g||``; gradient ``g_p`` there; the update direction is ``g_p - alpha * g_orth`` where
    ``g_orth`` is the part of ``g`` orthogonal to ``g_p``. Returns the loss at ``w``.
    """
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    with torch.no_grad():
        scaled = [(p.abs() * g if config.adaptive else g) for p, g in zip(params, grads, strict=True)]
        grad_norm = torch.norm(torch.stack([s.norm(2) for s in scaled]), 2)
        scale = config.rho / (grad_norm + 1e-12)
        perturbations = []
        for p, g in zip(params, grads, strict=True):
            e = (p.pow(2) if config.adaptive else 1.0) * g * scale
            p.add_(e)
            perturbations.append(e)
    optimizer.zero_grad(set_to_none=True)
    loss_fn().backward()
    with torch.no_grad():
        new = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        inner = sum((g * n).sum() for g, n in zip(grads, new, strict=True))
        new_norm_sq = sum((n * n).sum() for n in new) + 1e-12
        for p, g, n, e in zip(params, grads, new, perturbations, strict=True):
            orthogonal = g - (inner / new_norm_sq) * n
            p.grad = n - config.alpha * orthogonal
            p.sub_(e)
    optimizer.step()
    return loss.detach()


def train_expert(
    train: ImageDataset, config: ExpertConfig, index: int, *, device: torch.device, progress: bool = False
) -> Tensor:
    """Train expert ``index``; returns its ``(epochs + 1) x P`` trajectory (on the CPU)."""
    seed = derive_seed("expert", config.seed, index)
    net = sample_network(config.model, train, seed, device)
    net.train()
    optimizer = torch.optim.SGD(
        net.parameters(), lr=config.lr_teacher, momentum=config.momentum, weight_decay=config.weight_decay
    )
    generator = make_generator(derive_seed("expert-data", config.seed, index), "cpu")
    images, labels = train.images.to(device), train.labels.to(device)
    snapshots = [flatten_parameters(net)]
    bar = tqdm(range(config.epochs), desc=f"expert {index}", disable=not progress, leave=False)
    for _ in bar:
        order = torch.randperm(len(images), generator=generator).to(device)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            inputs, targets = images[batch], labels[batch]
            if config.dsa_strategy is not None:
                inputs = dsa_augment(inputs, config.dsa_strategy, generator, shared=False)

            def loss_fn(inputs: Tensor = inputs, targets: Tensor = targets) -> Tensor:
                return F.cross_entropy(net(inputs), targets)

            if config.sharpness == "gsam":
                loss = _gsam_step(net, loss_fn, optimizer, config)
            else:
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn()
                loss.backward()
                optimizer.step()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"expert {index}: training loss became {float(loss)}; lower lr_teacher")
        snapshots.append(flatten_parameters(net))
    return torch.stack(snapshots)


# ---------------------------------------------------------------------------------------------
# The cache


@dataclass
class ExpertTrajectories:
    """The experts of one configuration: trajectories, layout, and where they came from.

    Attributes:
        config: the expert configuration.
        key: the cache key (folder name).
        path: the cache folder.
        trajectories: one ``(epochs + 1) x P`` tensor per expert (CPU, float32).
        layout: parameter names and shapes of the expert network.
        cache_hit: every expert was read from the cache (nothing trained by this call).
        trained: experts trained by this call.
        build_seconds: seconds the experts cost to train (summed over experts, from the cache
            metadata when read), charged to every method that uses them.
    """

    config: ExpertConfig
    key: str
    path: Path
    trajectories: list[Tensor]
    layout: ParameterLayout
    cache_hit: bool
    trained: int
    build_seconds: float

    def __len__(self) -> int:
        return len(self.trajectories)

    @property
    def epochs(self) -> int:
        """Training epochs per expert (snapshots - 1)."""
        return self.trajectories[0].shape[0] - 1

    def summary(self) -> dict[str, object]:
        """JSON-able description for provenance."""
        return {
            "key": self.key,
            "cache_hit": self.cache_hit,
            "trained_now": self.trained,
            "num_experts": len(self),
            "epochs": self.epochs,
            "build_seconds": self.build_seconds,
            "config": self.config.key_dict(),
        }


def _read_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def load_or_train_experts(
    train: ImageDataset,
    config: ExpertConfig,
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> ExpertTrajectories:
    """The experts of ``config`` on ``train``: read from the cache, training only the missing ones."""
    device = torch.device(device)
    key = cache_key(config, train)
    folder = Path(config.cache_dir) if config.cache_dir is not None else cache_dir("experts")
    folder = folder / key
    layout = ParameterLayout.of(sample_network(config.model, train, 0, "cpu"))
    # One job trains each expert; concurrent jobs needing the same buffer train the others
    # meanwhile, then read them (data.cache.build_each_once). An unreadable or wrongly shaped file
    # (a killed job, an old format) is trained again.
    entries = []
    products: list[dict[str, object]] = []
    for index in range(config.num_experts):
        path = folder / f"expert_{index:03d}.safetensors"
        loaded: dict[str, object] = {}
        products.append(loaded)

        def read_valid(cached: Path, loaded: dict[str, object] = loaded) -> bool:
            trajectory = load_file(str(cached))["trajectory"]
            loaded.update(trajectory=trajectory, seconds=float(_read_metadata(cached).get("seconds", "0")))
            return tuple(trajectory.shape) == (config.epochs + 1, layout.numel)

        def build(temporary: Path, index: int = index, path: Path = path, loaded: dict[str, object] = loaded) -> None:
            logger.info("training expert %d/%d (%s) -> %s", index + 1, config.num_experts, key, path)
            started = time.perf_counter()
            trajectory = train_expert(train, config, index, device=device, progress=progress)
            elapsed = time.perf_counter() - started
            metadata = {"seconds": repr(elapsed), "config": json.dumps(config.key_dict(), default=str)}
            # build_once publishes the temporary whole (flushed, then renamed).
            save_file({"trajectory": trajectory.contiguous()}, str(temporary), metadata=metadata)
            loaded.update(trajectory=trajectory, seconds=elapsed)

        entries.append((path, build, read_valid))
    hits = build_each_once(entries)
    trajectories: list[Tensor] = [loaded["trajectory"] for loaded in products]  # type: ignore[misc]
    seconds = sum(float(loaded["seconds"]) for loaded in products)  # type: ignore[arg-type]
    trained = hits.count(False)
    return ExpertTrajectories(
        config=config,
        key=key,
        path=folder,
        trajectories=trajectories,
        layout=layout,
        cache_hit=trained == 0,
        trained=trained,
        build_seconds=seconds,
    )


@torch.no_grad()
def expert_logits(experts: ExpertTrajectories, train: ImageDataset, images: Tensor, epoch: int = -1) -> Tensor:
    """Logits of every expert at snapshot ``epoch`` on ``images``: ``num_experts x N x K``."""
    net = sample_network(experts.config.model, train, 0, images.device)
    net.eval()
    out = []
    for trajectory in experts.trajectories:
        params = experts.layout.unflatten(trajectory[epoch].to(images.device))
        out.append(functional_call(net, params, (images,)))
    return torch.stack(out)
