"""``condense-bench``: the Hydra app that runs benchmark cells and sweeps.

``condense-bench`` with no arguments runs the default sweep (``sweep=default``) on digits and
writes the leaderboard (CSV, Markdown, JSON, HTML) into the results folder. One cell::

    condense-bench method=random dataset=digits ipc=10 protocol=fast seed=0

A sweep: ``condense-bench -m method=random,full ipc=1,10 seed=0,1``.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from condense.benchmark import CellOutcome, CellSpec, run_cell

logger = logging.getLogger(__name__)

DEFAULT_ARGUMENTS = ["sweep=default"]


def config_dir() -> str:
    """The packaged configs (``condense/configs`` in a wheel) or the checkout's ``configs/``."""
    packaged = Path(__file__).resolve().parent / "configs"
    if packaged.is_dir():
        return str(packaged)
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if checkout.is_dir():
        return str(checkout)
    raise FileNotFoundError(f"no configs found at {packaged} or {checkout}; reinstall condense-bench")


def spec_from_config(cfg: DictConfig) -> CellSpec:
    """Turn the composed Hydra config into a plain :class:`CellSpec` (no Hydra past here)."""
    method_options: dict[str, Any] = OmegaConf.to_container(cfg.method, resolve=True)  # type: ignore[assignment]
    dataset_options: dict[str, Any] = OmegaConf.to_container(cfg.dataset, resolve=True)  # type: ignore[assignment]
    method_name = method_options.pop("name")
    dataset_name = dataset_options.pop("name")
    if dataset_options.get("root") is not None:
        dataset_options["root"] = to_absolute_path(str(dataset_options["root"]))
    fraction = cfg.get("fraction")
    return CellSpec(
        method=method_name,
        dataset=dataset_name,
        protocol=str(cfg.protocol.name),
        seed=int(cfg.seed),
        # A fraction budget replaces the default ipc budget.
        ipc=None if fraction is not None or cfg.get("ipc") is None else int(cfg.ipc),
        fraction=None if fraction is None else float(fraction),
        method_options=method_options,
        dataset_options={k: v for k, v in dataset_options.items() if v is not None or k != "root"},
    )


def results_dir_of(cfg: DictConfig) -> Path:
    """The results folder as an absolute path (Hydra does not change the working directory)."""
    return Path(to_absolute_path(str(cfg.results_dir)))


def set_threads(cfg: DictConfig) -> None:
    """Share the CPU cores between parallel jobs so that they do not oversubscribe them.

    ``threads`` set explicitly wins; under the joblib launcher each of its ``n_jobs`` workers
    gets ``cores // n_jobs`` threads.
    """
    import torch

    threads = cfg.get("threads")
    if threads is None and HydraConfig.initialized():
        launcher = HydraConfig.get().launcher
        if "joblib" in str(launcher.get("_target_", "")):
            n_jobs = int(launcher.get("n_jobs") or -1)
            n_jobs = (os.cpu_count() or 1) if n_jobs < 1 else n_jobs
            threads = max(1, (os.cpu_count() or 1) // n_jobs)
    if threads is not None:
        torch.set_num_threads(int(threads))


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="bench")
def _app(cfg: DictConfig) -> str:
    set_threads(cfg)
    spec = spec_from_config(cfg)
    # Shared caches (proxy models, expert trajectories, teachers) live beside the records.
    os.environ.setdefault("CONDENSE_CACHE", str(results_dir_of(cfg) / "cache"))
    run = partial(
        run_cell,
        results_dir=results_dir_of(cfg),
        device=str(cfg.device),
        progress=bool(cfg.progress),
        save_set=bool(cfg.save_sets),
    )
    outcome = run(spec)
    _report_cell(outcome)
    # The reference rows every table needs, under the same budget, protocol and seed.
    for reference in cfg.get("references") or []:
        if reference != spec.method:
            _report_cell(run(replace(spec, method=str(reference), method_options={})))
    return str(outcome.record_path)


def _report_cell(outcome: CellOutcome) -> None:
    verb = "skipped (record exists)" if outcome.skipped else "done"
    summary = ", ".join(f"{m} {r['mean']:.4f}" for m, r in outcome.record.to_dict()["results"].items())
    print(f"[condense-bench] {outcome.record.method} cell {outcome.key} {verb}: {summary}", flush=True)


class ReportCallback(Callback):
    """Writes the leaderboard (tables and HTML report) when a run or a sweep ends."""

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write(config)

    @staticmethod
    def _write(config: DictConfig) -> None:
        if not config.get("report", True):
            return
        from leaderboard.cli import write_outputs

        results_dir = results_dir_of(config)
        try:
            paths = write_outputs(results_dir)
        except (FileNotFoundError, ValueError) as error:
            logger.warning("no leaderboard written: %s", error)
            return
        print(f"[condense-bench] leaderboard: {paths.get('html')}", flush=True)


def main() -> None:
    """Console entry point; no arguments means the default sweep."""
    if len(sys.argv) == 1:
        sys.argv.extend(DEFAULT_ARGUMENTS)
    _app()


if __name__ == "__main__":
    main()
