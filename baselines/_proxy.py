"""The proxy model that score-based and feature-based selectors share.

A proxy is a network trained on the whole training set by a stated recipe
(:class:`ProxyRecipe`): ConvNet-3 by default, SGD (lr 0.01, momentum 0.9, weight decay 5e-4,
constant lr), batch 128, no augmentation, 40 epochs (DeepCore's ``selection_epochs``).
While it trains, the logits of every mini-batch (computed before that batch's update, as CCS,
TDDS and DeepCore log them) give per-epoch, per-sample training dynamics:

* ``correct``: 1 where the prediction was right (forgetting events, CCS forgetting),
* ``margin``: ``p_y - max_{k != y} p_k`` on softmax probabilities (AUM as CCS sums it),
* ``el2n``: ``||softmax - onehot(y)||_2`` (EL2N as CCS sums it over the first epochs),
* ``loss``: the per-sample cross-entropy,
* ``change``: ``sum_k |p_k^e (log p_k^e - log p_k^{e-1})|``, the change of the sample's
  prediction since the previous epoch (TDDS's per-step contribution; 0 at epoch 0).

Each is an ``epochs x N`` tensor, rows in training-set order. The final model gives features
(herding, k-center, Moderate-DS) and last-layer gradients (GraNd, DQ).

A trained proxy is cached under a folder (``cache_dir``; by default ``proxy_cache`` under
the cache root, :func:`data.cache.cache_root`) by a hash of the recipe and the
training set's fingerprint, as one safetensors file written atomically (temp + rename), so every
selector and every cell with the same training set, recipe and seed reuses it; it is trained under
a file lock (:func:`data.cache.build_once`), so concurrent jobs train it once. The training
wall time is stored with it and charged in each selection's provenance (the ``proxy`` product of
``data.provenance.add_precomputed``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from baselines.selection import Selector
from data import ImageDataset
from data.cache import build_once
from data.cache import cache_dir as product_cache_dir
from data.methods import MethodConfig
from data.provenance import add_precomputed
from data.seeding import derive_seed, make_generator, seeded_torch
from data.untrusted import parse_json
from evaluation.models import FeatureNet, create_model

logger = logging.getLogger(__name__)

PROXY_FORMAT = "condense-bench/proxy"
PROXY_FORMAT_VERSION = 1
DYNAMICS = ("correct", "margin", "el2n", "loss", "change")
_LOG_EPS = 1e-8  # as TDDS: log(p + 1e-8)


@dataclass(frozen=True)
class ProxyConfig(MethodConfig):
    """Options shared by every selector that scores with a proxy model.

    Attributes:
        balanced: select within every class (the budget's per-class counts); ``False`` selects
            over the whole training set (fraction budgets only; IPC is always per class).
        proxy_model: evaluation-model registry name of the proxy.
        proxy_epochs: training epochs of the proxy (DeepCore ``selection_epochs`` = 40).
        proxy_lr: constant SGD learning rate.
        proxy_momentum: SGD momentum.
        proxy_weight_decay: SGD weight decay.
        proxy_batch_size: mini-batch size.
        proxy_seed: the proxy's training seed. The default 0 trains one proxy that every seed of a
            cell shares (its cache serves them all, as experts and teachers do; the cell seed still
            drives the selection's own randomness and the evaluation); ``None`` trains one per
            cell seed (DeepCore's repeated runs vary the proxy too).
        cache_dir: folder of cached proxies; ``None`` = ``proxy_cache`` under the cache root
            (:func:`data.cache.cache_root`).
    """

    balanced: bool = True
    proxy_model: str = "convnet3"
    proxy_epochs: int = 40
    proxy_lr: float = 0.01
    proxy_momentum: float = 0.9
    proxy_weight_decay: float = 5e-4
    proxy_batch_size: int = 128
    proxy_seed: int | None = 0
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.proxy_epochs < 1 or self.proxy_batch_size < 1:
            raise ValueError("proxy_epochs and proxy_batch_size must be positive")
        if not self.proxy_lr > 0:
            raise ValueError(f"proxy_lr must be positive, got {self.proxy_lr}")


@dataclass(frozen=True)
class ProxyRecipe:
    """How a proxy is trained; with the training set's fingerprint it names the cache entry."""

    model: str = "convnet3"
    epochs: int = 40
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    seed: int = 0

    @classmethod
    def from_config(cls, config: ProxyConfig, seed: int) -> ProxyRecipe:
        """The recipe a selector config asks for, trained with ``seed``."""
        return cls(
            model=config.proxy_model,
            epochs=config.proxy_epochs,
            lr=config.proxy_lr,
            momentum=config.proxy_momentum,
            weight_decay=config.proxy_weight_decay,
            batch_size=config.proxy_batch_size,
            seed=seed,
        )

    def cache_key(self, train: ImageDataset) -> str:
        """16 hex characters naming this recipe trained on ``train``."""
        identity = {
            "format": PROXY_FORMAT,
            "version": PROXY_FORMAT_VERSION,
            "recipe": dataclasses.asdict(self),
            "dataset": train.name,
            "fingerprint": train.fingerprint(),
            "num_classes": train.num_classes,
        }
        canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class ProxyRun:
    """A trained proxy: the final model, the training dynamics and what it cost.

    Attributes:
        recipe: how it was trained.
        key: its cache key.
        model: the final network (eval mode, on CPU unless moved).
        dynamics: ``epochs x N`` tensors named in :data:`DYNAMICS`, training-set order.
        seconds: wall time of the training run (the original run's, also on a cache hit).
        cache_hit: ``True`` when loaded from the cache instead of trained now.
        path: the cache file, if one was read or written.
    """

    recipe: ProxyRecipe
    key: str
    model: FeatureNet
    dynamics: dict[str, Tensor]
    seconds: float
    cache_hit: bool
    path: Path | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for provenance."""
        return {
            "recipe": dataclasses.asdict(self.recipe),
            "key": self.key,
            "seconds": self.seconds,
            "cache_hit": self.cache_hit,
            "path": str(self.path) if self.path is not None else None,
        }


# -- per-sample statistics -------------------------------------------------------------------


def el2n_from_logits(logits: Tensor, labels: Tensor) -> Tensor:
    """EL2N: ``||softmax(logits) - onehot(labels)||_2`` per sample."""
    probabilities = F.softmax(logits.float(), dim=1)
    onehot = F.one_hot(labels.long(), num_classes=logits.shape[1]).float()
    return (probabilities - onehot).norm(dim=1)


def margin_from_logits(logits: Tensor, labels: Tensor) -> Tensor:
    """The probability margin ``p_y - max_{k != y} p_k`` per sample (one epoch of AUM)."""
    probabilities = F.softmax(logits.float(), dim=1)
    rows = torch.arange(len(labels), device=logits.device)
    target = probabilities[rows, labels]
    others = probabilities.clone()
    others[rows, labels] = -1.0
    return target - others.max(dim=1).values


def prediction_change(probabilities: Tensor, previous: Tensor) -> Tensor:
    """TDDS's per-step contribution ``sum_k |p_k (log p_k - log q_k)|`` (eps 1e-8 as TDDS)."""
    log_ratio = torch.log(probabilities + _LOG_EPS) - torch.log(previous + _LOG_EPS)
    return (probabilities * log_ratio).abs().sum(dim=1)


# -- training and caching --------------------------------------------------------------------


def build_proxy_model(recipe: ProxyRecipe, train: ImageDataset, device: torch.device | str = "cpu") -> FeatureNet:
    """The freshly initialized proxy network (seeded by the recipe, the caller's RNG untouched)."""
    with seeded_torch(derive_seed("proxy-init", recipe.seed), device):
        model = create_model(
            recipe.model,
            in_channels=train.image_shape[0],
            num_classes=train.num_classes,
            image_size=train.image_shape[1:],
        )
    return model  # type: ignore[return-value]


def train_proxy(
    train: ImageDataset, recipe: ProxyRecipe, *, device: torch.device | str = "cpu", progress: bool = False
) -> tuple[FeatureNet, dict[str, Tensor], float]:
    """Train a proxy on ``train`` and record its per-epoch, per-sample training dynamics.

    Returns:
        The final model (eval mode, on CPU), the dynamics (``epochs x N`` each) and the seconds.
    """
    device = torch.device(device)
    start = time.perf_counter()
    model = build_proxy_model(recipe, train, device).to(device).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    generator = make_generator(derive_seed("proxy-order", recipe.seed))
    images, labels = train.images.to(device), train.labels.to(device)
    n, epochs = len(train), recipe.epochs
    dynamics = {name: torch.zeros(epochs, n) for name in DYNAMICS}
    dynamics["correct"] = torch.zeros(epochs, n, dtype=torch.uint8)
    previous = torch.full((n, train.num_classes), 1.0 / train.num_classes)
    for epoch in tqdm(range(epochs), desc=f"proxy {recipe.model}", disable=not progress, leave=False):
        order = torch.randperm(n, generator=generator)
        for first in range(0, n, recipe.batch_size):
            batch = order[first : first + recipe.batch_size]
            batch_device = batch.to(device)
            logits = model(images[batch_device])
            targets = labels[batch_device]
            losses = F.cross_entropy(logits, targets, reduction="none")
            optimizer.zero_grad(set_to_none=True)
            losses.mean().backward()
            optimizer.step()
            with torch.no_grad():
                detached = logits.detach().float()
                probabilities = F.softmax(detached, dim=1).cpu()
                dynamics["correct"][epoch, batch] = (detached.argmax(dim=1) == targets).to(torch.uint8).cpu()
                dynamics["margin"][epoch, batch] = margin_from_logits(detached, targets).cpu()
                dynamics["el2n"][epoch, batch] = el2n_from_logits(detached, targets).cpu()
                dynamics["loss"][epoch, batch] = losses.detach().float().cpu()
                if epoch > 0:
                    dynamics["change"][epoch, batch] = prediction_change(probabilities, previous[batch])
                previous[batch] = probabilities
        if not torch.isfinite(losses.detach()).all():
            raise FloatingPointError(f"proxy training diverged at epoch {epoch}; lower proxy_lr")
    model.eval().cpu()
    return model, dynamics, time.perf_counter() - start


def load_or_train_proxy(
    train: ImageDataset,
    recipe: ProxyRecipe,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> ProxyRun:
    """The cached proxy for (``recipe``, ``train``), trained and cached first if missing."""
    folder = Path(cache_dir) if cache_dir is not None else product_cache_dir("proxy_cache")
    key = recipe.cache_key(train)
    path = folder / f"{train.name}-{recipe.model}-{key}.safetensors"
    # One job trains the proxy while concurrent jobs wait and then read it (data.cache.build_once);
    # an unreadable file (a killed job, a foreign format) is removed and trained again.
    runs: list[ProxyRun] = []

    def read_valid(cached: Path) -> bool:
        try:
            runs.append(_read_proxy(cached, train, recipe, key))
            return True
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
            logger.warning("proxy cache file %s is unreadable (%s); training again", cached, error)
            return False

    def build(temporary: Path) -> None:
        logger.info("training proxy %s (%s) on %s (%d images)", key, recipe, train.name, len(train))
        model, dynamics, seconds = train_proxy(train, recipe, device=device, progress=progress)
        _write_proxy(temporary, model, dynamics, recipe, train, key, seconds)
        runs.append(ProxyRun(recipe, key, model, dynamics, seconds, cache_hit=False, path=path))

    if build_once(path, build, read_valid):
        logger.info("proxy %s loaded from cache %s (trained in %.1fs)", key, path, runs[-1].seconds)
    return runs[-1]


def _write_proxy(
    path: Path,
    model: nn.Module,
    dynamics: dict[str, Tensor],
    recipe: ProxyRecipe,
    train: ImageDataset,
    key: str,
    seconds: float,
) -> None:
    tensors = {f"dynamics.{name}": value.contiguous() for name, value in dynamics.items()}
    tensors.update({f"model.{name}": value.detach().cpu().contiguous() for name, value in model.state_dict().items()})
    metadata = {
        "format": PROXY_FORMAT,
        "format_version": PROXY_FORMAT_VERSION,
        "key": key,
        "recipe": dataclasses.asdict(recipe),
        "dataset": train.name,
        "fingerprint": train.fingerprint(),
        "num_images": len(train),
        "seconds": seconds,
    }
    # ``path`` is build_once's temporary, which it publishes whole (flushed, then renamed).
    save_file(tensors, str(path), metadata={"condense_bench": json.dumps(metadata, sort_keys=True)})


def _read_proxy(path: Path, train: ImageDataset, recipe: ProxyRecipe, key: str) -> ProxyRun:
    with safe_open(str(path), framework="pt") as handle:
        raw_metadata = (handle.metadata() or {}).get("condense_bench")
        if raw_metadata is None:
            raise ValueError("no proxy metadata")
        metadata = parse_json(raw_metadata, path)
        if not isinstance(metadata, dict) or metadata.get("format") != PROXY_FORMAT or metadata.get("key") != key:
            raise ValueError(f"foreign or mismatched proxy file (key {metadata.get('key')!r}, expected {key!r})")
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 - not a dict
    dynamics = {name: tensors[f"dynamics.{name}"] for name in DYNAMICS}
    if any(tuple(value.shape) != (recipe.epochs, len(train)) for value in dynamics.values()):
        raise ValueError("dynamics have the wrong shape")
    model = build_proxy_model(recipe, train)
    state = {name.removeprefix("model."): value for name, value in tensors.items() if name.startswith("model.")}
    model.load_state_dict(state)
    model.eval()
    return ProxyRun(recipe, key, model, dynamics, float(metadata["seconds"]), cache_hit=True, path=path)


# -- what selectors read from a trained proxy -------------------------------------------------


@torch.no_grad()
def embeddings(
    model: FeatureNet, images: Tensor, *, device: torch.device | str = "cpu", batch_size: int = 512
) -> Tensor:
    """Penultimate features ``N x feature_dim`` of ``images`` (on CPU)."""
    device = torch.device(device)
    model.to(device).eval()
    chunks = [
        model.embed(images[first : first + batch_size].to(device)).float().cpu()
        for first in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.zeros(0, model.feature_dim)


def last_layer_gradients(
    model: FeatureNet,
    images: Tensor,
    labels: Tensor,
    *,
    softmax_outputs: bool = False,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
) -> tuple[Tensor, Tensor]:
    """Per-sample gradient factors of the last linear layer.

    The gradient of a sample's loss with respect to the final layer's (bias, weight) is
    ``[g, g e^T]`` with ``g = dL/dlogits`` and ``e`` the penultimate features, so only ``g``
    (``N x K``) and ``e`` (``N x D``) are returned; the norm of the full gradient is
    ``||g|| * sqrt(1 + ||e||^2)`` and inner products factor as ``<g, g'> (1 + <e, e'>)``.

    Args:
        softmax_outputs: apply cross-entropy to the softmax probabilities instead of the logits
            (what DeepCore's GraNd and DQ's code do); the default is the plain cross-entropy.
    """
    device = torch.device(device)
    model.to(device).eval()
    gradients, features = [], []
    for first in range(0, len(images), batch_size):
        inputs = images[first : first + batch_size].to(device)
        targets = labels[first : first + batch_size].to(device)
        with torch.no_grad():
            embedded = model.embed(inputs)
        logits = model.classifier(embedded).detach().requires_grad_(True)
        outputs = F.softmax(logits, dim=1) if softmax_outputs else logits
        loss = F.cross_entropy(outputs, targets, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, logits)
        gradients.append(gradient.float().cpu())
        features.append(embedded.float().cpu())
    return torch.cat(gradients), torch.cat(features)


# -- the selector base ------------------------------------------------------------------------


class ProxySelector(Selector):
    """A selector that reads scores or features from a cached proxy model.

    :meth:`proxy` trains or loads the proxy; :meth:`charge_precomputed` adds what the proxies
    used by one selection cost to the set's provenance: ``proxy`` (one summary per proxy) and the ``proxy``
    product of ``precomputed`` (their training seconds, charged whether or not they came from the
    cache, and whether all of them did).
    """

    config_class: ClassVar[type[MethodConfig]] = ProxyConfig
    config: ProxyConfig

    def __init__(self, config: MethodConfig | None = None) -> None:
        super().__init__(config)
        self._proxy_runs: list[ProxyRun] = []

    def config_dict(self) -> dict[str, Any]:
        """The resolved config without ``cache_dir``: where proxies are cached is a location, not
        part of what is computed, so it stays out of cell keys and records (as dataset roots do)."""
        options = super().config_dict()
        options.pop("cache_dir", None)
        return options

    def proxy(self, train: ImageDataset, *, seed: int, device: torch.device | str = "cpu", repeat: int = 0) -> ProxyRun:
        """The proxy for ``train``, trained with ``proxy_seed`` (or the cell's ``seed`` where that is
        ``None``); ``repeat`` > 0: an extra, independently seeded run, as GraNd's repeats."""
        base = seed if self.config.proxy_seed is None else self.config.proxy_seed
        proxy_seed = base if repeat == 0 else derive_seed("proxy-repeat", base, repeat)
        run = load_or_train_proxy(
            train, ProxyRecipe.from_config(self.config, proxy_seed), cache_dir=self.config.cache_dir, device=device
        )
        self._proxy_runs.append(run)
        return run

    def charge_precomputed(self, provenance: dict[str, Any]) -> None:
        """Record the proxies this selection used and charge their training cost (then forget them)."""
        runs = [run.describe() for run in self._proxy_runs]
        self._proxy_runs = []
        provenance["proxy"] = runs
        add_precomputed(
            provenance,
            "proxy",
            seconds=float(sum(run["seconds"] for run in runs)),
            cache_hit=bool(runs) and all(run["cache_hit"] for run in runs),
        )
