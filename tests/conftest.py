"""Fixtures shared by the test modules: the digits splits, the benchmark app in a subprocess, composition."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Environment variables a subprocess must not inherit (a cache or a torchrun group of the caller's).
_ISOLATED = ("CONDENSE_CACHE", "WORLD_SIZE", "RANK", "LOCAL_RANK")


@pytest.fixture(scope="session")
def digits():
    """The embedded digits dataset: ``(train, val, test)`` at seed 0."""
    from data import load_dataset

    return load_dataset("digits", seed=0)


def subprocess_env(*python_paths: Path, **extra: str) -> dict[str, str]:
    """The environment of a benchmark subprocess: this checkout (and ``python_paths``) importable,
    one thread, no progress bars, full Hydra errors, no inherited cache or torchrun group."""
    env = {k: v for k, v in os.environ.items() if k not in _ISOLATED}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), *map(str, python_paths)]),
        OMP_NUM_THREADS="1",
        TQDM_DISABLE="1",
        HYDRA_FULL_ERROR="1",
        **extra,
    )
    return env


@pytest.fixture(scope="session")
def bench_env() -> Callable[..., dict[str, str]]:
    """``bench_env(*python_paths, **variables)``: the environment of a benchmark subprocess."""
    return subprocess_env


@pytest.fixture(scope="session")
def run_bench() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_bench(*overrides, cwd=..., env=None, timeout=600)``: ``python -m bench`` in a subprocess."""

    def run(
        *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bench", *args],
            cwd=cwd,
            env=env if env is not None else subprocess_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def compose_bench() -> Callable[..., Any]:
    """``compose_bench(overrides, hydra_config=False)``: the app's config as ``condense-bench`` composes it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from bench.schemas import register_schemas
    from data.configs import config_dir

    register_schemas()

    def composed(overrides: list[str], *, hydra_config: bool = False) -> Any:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose("bench", overrides=overrides, return_hydra_config=hydra_config)

    return composed
