"""Provenance of a run: software versions, git revision, wall time and peak memory."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from data.devices import describe_device

SUITE_DISTRIBUTION = "condense-bench"


def suite_version() -> str:
    """The installed suite version (``0+unknown`` when run from a bare checkout)."""
    try:
        return metadata.version(SUITE_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def versions() -> dict[str, str]:
    """Versions that can change a result."""
    import numpy

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "suite": suite_version(),
    }


def git_revision(start: Path | None = None) -> str | None:
    """The git commit of the source tree (with ``-dirty`` for local changes), or ``None``."""
    folder = start or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit or None


def _current_rss_bytes() -> int | None:
    """Resident set size of this process (Linux ``/proc``), else ``None``."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _process_peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class _RssSampler(threading.Thread):
    """Samples the resident set size every ``interval`` seconds and keeps the maximum."""

    def __init__(self, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = _current_rss_bytes() or 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.peak = max(self.peak, _current_rss_bytes() or 0)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, _current_rss_bytes() or 0)


class SavedTensorMeter:
    """The most bytes autograd holds saved for backward passes at any one time, inside ``with``.

    Device independent: what a method's graph costs in memory (MTT's grows with its unrolled steps,
    TESLA's does not). A saved tensor counts from when autograd saves it until its graph is freed.
    """

    def __init__(self) -> None:
        self.live = 0
        self.peak_bytes = 0
        self._hooks: Any = None

    def _pack(self, tensor: torch.Tensor) -> Any:
        return _CountedTensor(self, tensor)

    def __enter__(self) -> SavedTensorMeter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda saved: saved.tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


class _CountedTensor:
    """A tensor saved for backward, counted by its meter while autograd holds it."""

    def __init__(self, meter: SavedTensorMeter, tensor: torch.Tensor) -> None:
        self.meter, self.tensor, self.size = meter, tensor, tensor.numel() * tensor.element_size()
        meter.live += self.size
        meter.peak_bytes = max(meter.peak_bytes, meter.live)

    def __del__(self) -> None:
        self.meter.live -= self.size


@dataclass
class ResourceMeter:
    """Wall time and peak memory of a block: ``with ResourceMeter(device) as meter: ...``.

    On CUDA the peak is ``torch.cuda.max_memory_allocated`` within the block. On CPU it is how far
    the process's resident memory rose above its level at the start of the block, sampled every
    10 ms (``cpu_rss_increase``); where ``/proc`` is missing, the process-lifetime peak RSS.
    """

    device: torch.device
    seconds: float = 0.0
    peak_memory_bytes: int = 0
    memory_kind: str = ""
    _start: float = 0.0
    _baseline: int | None = None
    _sampler: _RssSampler | None = None

    def __enter__(self) -> ResourceMeter:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._baseline = _current_rss_bytes()
            if self._baseline is not None:
                self._sampler = _RssSampler()
                self._sampler.start()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_memory_bytes = int(torch.cuda.max_memory_allocated(self.device))
            self.memory_kind = "cuda_max_allocated"
        elif self._sampler is not None and self._baseline is not None:
            self.peak_memory_bytes = max(0, self._sampler.stop() - self._baseline)
            self.memory_kind = "cpu_rss_increase"
        else:
            self.peak_memory_bytes = _process_peak_rss_bytes()
            self.memory_kind = "process_peak_rss"
        self.seconds = time.perf_counter() - self._start


def method_provenance(
    *, method: str, config: dict[str, Any], dataset: str, fingerprint: str, seed: int, meter: ResourceMeter
) -> dict[str, Any]:
    """The provenance block stored in every :class:`~data.synthetic.SyntheticSet`."""
    return {
        "method": method,
        "method_config": config,
        "dataset": dataset,
        "dataset_fingerprint": fingerprint,
        "seed": seed,
        "versions": versions(),
        "distill_seconds": meter.seconds,
        "peak_memory_bytes": meter.peak_memory_bytes,
        "peak_memory_kind": meter.memory_kind,
        "device": describe_device(meter.device),
    }


#: Where a provenance block lists the cached products it used (teachers, experts, proxy models).
PRECOMPUTED_KEY = "precomputed"


def add_precomputed(provenance: dict[str, Any], product: str, *, seconds: float, cache_hit: bool) -> None:
    """Charge a cached product (``teacher``, ``experts``, ``proxy``) to ``provenance``.

    Its build cost is charged whether this run built it or found it cached; a product used twice
    adds up its seconds, and is a cache hit only if every use was.
    """
    products = provenance.setdefault(PRECOMPUTED_KEY, {})
    earlier = products.get(product)
    if earlier is not None:
        seconds += float(earlier["seconds"])
        cache_hit = cache_hit and bool(earlier["cache_hit"])
    products[product] = {"seconds": float(seconds), "cache_hit": bool(cache_hit)}


def merge_provenance(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """``first`` updated by ``second``, their cached products charged together."""
    merged = {**first, **second, PRECOMPUTED_KEY: {}}
    for block in (first, second):
        for product, cost in block.get(PRECOMPUTED_KEY, {}).items():
            add_precomputed(merged, product, seconds=cost["seconds"], cache_hit=cost["cache_hit"])
    if not merged[PRECOMPUTED_KEY]:
        merged.pop(PRECOMPUTED_KEY)
    return merged


def precomputed_costs(provenance: dict[str, Any]) -> dict[str, Any]:
    """The record costs of the cached products a run used: total seconds, and whether all were hits."""
    products = provenance.get(PRECOMPUTED_KEY, {})
    if not products:
        return {}
    return {
        "precompute_seconds": float(sum(cost["seconds"] for cost in products.values())),
        "precompute_cache_hit": all(bool(cost["cache_hit"]) for cost in products.values()),
    }
