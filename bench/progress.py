"""What a sweep runs and what remains: job counts of sweeps, and the one-line progress messages.

A sweep's jobs are the cross product of its ``hydra.sweeper.params`` and the command line's own
sweeps (``seed=0,1,2`` replaces a sweep's ``seed``). The count is known before the first job,
so every job can say ``job 3/8`` and the main job can say how many remain in all.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

#: Set by the sweep's start for its jobs (the same process, or joblib's workers): the job count
#: and the sweep's start time.
JOBS_VARIABLE = "CONDENSE_SWEEP_JOBS"
STARTED_VARIABLE = "CONDENSE_SWEEP_STARTED"


def _values_per_key(overrides: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    for override in parsed:
        if override.is_hydra_override():
            continue
        counts[override.get_key_element()] = (
            len(list(override.sweep_string_iterator())) if override.is_sweep_override() else 1
        )
    return counts


def count_jobs(sweeper_params: Mapping[str, Any] | None, command_line: Iterable[str] = ()) -> int:
    """The jobs of a sweep: the product of every swept key's value count (the command line wins)."""
    counts = _values_per_key(f"{key}={value}" for key, value in (sweeper_params or {}).items())
    counts.update(_values_per_key(command_line))
    return math.prod(counts.values()) if counts else 1


def sweep_file_params(config_root: Path, sweep: str) -> dict[str, Any]:
    """``hydra.sweeper.params`` of ``configs/sweep/<sweep>.yaml``."""
    node = OmegaConf.load(config_root / "sweep" / f"{sweep}.yaml")
    params = OmegaConf.select(node, "hydra.sweeper.params", default=None)
    return {} if params is None else dict(OmegaConf.to_container(params))  # type: ignore[arg-type]


def mark_sweep_start(jobs: int) -> None:
    """Tell this sweep's jobs how many there are and when the sweep began."""
    os.environ[JOBS_VARIABLE] = str(jobs)
    os.environ[STARTED_VARIABLE] = repr(time.time())


def job_line(job_index: int, what: str) -> str:
    """``[condense-bench] job 3/8, 1m05s into the sweep: <what>``: the line a job prints as it starts."""
    total = os.environ.get(JOBS_VARIABLE)
    started = os.environ.get(STARTED_VARIABLE)
    position = f"job {job_index + 1}/{total}" if total else f"job {job_index + 1}"
    elapsed = f", {format_seconds(time.time() - float(started))} into the sweep" if started else ""
    return f"[condense-bench] {position}{elapsed}: {what}"


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m07s`` or ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
