"""``condense-bench``: the Hydra app that runs benchmark cells and sweeps.

``condense-bench`` with no arguments runs the main job (the sweeps of :data:`MAIN_JOB_SWEEPS` on the
embedded datasets) and writes the leaderboard (CSV, Markdown, JSON, HTML) into the results folder.
``condense-bench main results_dir=PATH`` does the same with overrides. One cell::

    condense-bench method=random dataset=digits ipc=10 protocol=fast seed=0

A sweep: ``condense-bench -m method=random,full ipc=1,10 seed=0,1``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from condense.benchmark import CellOutcome, CellSpec, cell_key, run_cell
from condense.graph_benchmark import reference_for_dataset
from evaluation.parallel import DataParallel, close, from_environment, single_or

logger = logging.getLogger(__name__)

#: The main job (``condense-bench`` with no arguments): these sweeps in order, into one results folder.
MAIN_JOB_SWEEPS = ("default", "digits_distillation", "digits_decoupled", "graph")


def config_dir() -> str:
    """The packaged configs (``condense/configs`` in a wheel) or the checkout's ``configs/``."""
    packaged = Path(__file__).resolve().parent / "configs"
    if packaged.is_dir():
        return str(packaged)
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if checkout.is_dir():
        return str(checkout)
    raise FileNotFoundError(f"no configs found at {packaged} or {checkout}; reinstall condense-bench")


def method_options(option: str) -> tuple[str, dict[str, Any]]:
    """The registry name and options of a ``configs/method`` option, e.g. ``"digits/dm"``.

    The same composition as ``condense-bench method=<option>``, for library use::

        name, options = method_options("digits/dm")
        synthetic = create_method(name, **options).distill(train, ipc=1, seed=0)
    """
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="bench", overrides=[f"method={option}"])
    options: dict[str, Any] = OmegaConf.to_container(cfg.method, resolve=True)  # type: ignore[assignment]
    return str(options.pop("name")), options


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
    gets ``cores // n_jobs`` threads; under the submitit launchers a job gets the launcher's
    ``cpus_per_task``.
    """
    import torch

    threads = cfg.get("threads")
    if threads is None and HydraConfig.initialized():
        launcher = HydraConfig.get().launcher
        if "joblib" in str(launcher.get("_target_", "")):
            n_jobs = int(launcher.get("n_jobs") or -1)
            n_jobs = (os.cpu_count() or 1) if n_jobs < 1 else n_jobs
            threads = max(1, (os.cpu_count() or 1) // n_jobs)
        elif "submitit" in str(launcher.get("_target_", "")) and launcher.get("cpus_per_task"):
            threads = int(launcher.cpus_per_task)
    if threads is not None:
        torch.set_num_threads(int(threads))


def job_device(
    requested: str, *, job_num: int = 0, environ: Mapping[str, str] | None = None, cuda_devices: int | None = None
) -> str:
    """The one device a job uses; ``auto`` never hands a job every GPU of the machine.

    An explicit device (``cpu``, ``cuda:1``) is used as given, but plain ``cuda`` under torchrun
    is the rank's GPU ``cuda:LOCAL_RANK``. ``auto`` is the CPU without CUDA;
    with CUDA it is one GPU among those visible to the job: ``LOCAL_RANK`` under torchrun, else
    GPU ``job_num % count``. SLURM (``submitit_slurm`` with ``gpus_per_task: 1``) shows each job
    only its own GPU, so the job takes it; on a multi-GPU workstation (``joblib``,
    ``submitit_local``) the jobs of a multirun spread over the GPUs by job number.

    Args:
        requested: the ``device`` option.
        job_num: the job's number in the multirun (``hydra.job.num``).
        environ: the environment (default ``os.environ``).
        cuda_devices: visible CUDA devices (default ``torch.cuda.device_count()``).
    """
    environ = os.environ if environ is None else environ
    if requested == "cuda" and "LOCAL_RANK" in environ:
        return f"cuda:{int(environ['LOCAL_RANK'])}"  # torchrun: each rank its own GPU, not all on cuda:0
    if requested != "auto":
        return requested
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda_devices == 0:
        return "cpu"
    slot = int(environ["LOCAL_RANK"]) if "LOCAL_RANK" in environ else job_num
    return f"cuda:{slot % cuda_devices}"


def import_plugins(cfg: DictConfig) -> None:
    """Import the modules of ``+plugins=[pkg.module,...]`` before the cell runs.

    They register their own methods, datasets or protocols; every job of a sweep imports them
    itself (under joblib, submitit or Ray too), so they must be importable on every node.
    """
    for module in cfg.get("plugins") or []:
        importlib.import_module(str(module))


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="bench")
def _app(cfg: DictConfig) -> str:
    import_plugins(cfg)
    set_threads(cfg)
    job_num = int(HydraConfig.get().job.get("num") or 0) if HydraConfig.initialized() else 0
    device = job_device(str(cfg.device), job_num=job_num)
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(torch.device(device))
    # Under torchrun (WORLD_SIZE > 1) the ranks run each cell together, its evaluation data-parallel.
    parallel = from_environment(device)
    try:
        record_path = _run_cells(cfg, device, parallel)
    except BaseException:
        close(parallel, wait_for_others=False)  # torchrun stops the other ranks when this one fails
        raise
    close(parallel)
    return record_path


def _run_cells(cfg: DictConfig, device: str, parallel: DataParallel | None) -> str:
    """The cell of ``cfg`` and its reference rows."""
    spec = spec_from_config(cfg)
    # Shared caches (proxy models, expert trajectories, teachers) live beside the records.
    os.environ.setdefault("CONDENSE_CACHE", str(results_dir_of(cfg) / "cache"))
    options: dict[str, Any] = {
        "results_dir": results_dir_of(cfg),
        "device": device,
        "progress": bool(cfg.progress),
        "save_set": bool(cfg.save_sets),
        "parallel": parallel,
    }
    main = single_or(parallel).is_main
    outcome = run_cell(spec, **options)
    assert outcome is not None
    if main:
        _report_cell(outcome)
    # The reference rows every table needs, under the same budget, protocol and seed. Many cells
    # share one: a job that finds it running in another job goes on instead of waiting.
    for reference in references_for(spec, cfg.get("references") or []):
        reference = reference_for_dataset(str(reference), spec.dataset)  # random -> random_graphs on graphs
        if reference == spec.method:
            continue
        reference_spec = replace(spec, method=reference, method_options={})
        reference_outcome = run_cell(reference_spec, **options, wait=False)
        if not main:
            continue
        if reference_outcome is None:
            print(
                f"[condense-bench] {reference} cell {cell_key(reference_spec)} is running in another job; "
                "not waiting for it",
                flush=True,
            )
        else:
            _report_cell(reference_outcome)
    return str(outcome.record_path)


def references_for(spec: CellSpec, references: Any) -> list[str]:
    """The reference rows of a cell: ``references``, plus ``random`` beside a soft-label cell.

    DD-Ranking's improvement over random needs the random real subset under the identical
    soft-label protocol, so a soft-protocol cell always runs it, whatever ``references`` says.
    """
    names = [str(name) for name in references]
    from evaluation.protocols import PROTOCOLS

    protocol = PROTOCOLS.get(spec.protocol) if spec.protocol in PROTOCOLS else None
    if getattr(protocol, "soft", None) is not None and "random" not in names:
        names.append("random")
    return names


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
        # Under torchrun only rank 0 writes the leaderboard.
        if not config.get("report", True) or int(os.environ.get("RANK", "0")) != 0:
            return
        from leaderboard.cli import write_outputs

        results_dir = results_dir_of(config)
        try:
            paths = write_outputs(results_dir)
        except (FileNotFoundError, ValueError) as error:
            logger.warning("no leaderboard written: %s", error)
            return
        print(f"[condense-bench] leaderboard: {paths.get('html')}", flush=True)


def run_main_job(overrides: list[str] | None = None) -> None:
    """Run every sweep of :data:`MAIN_JOB_SWEEPS`; the leaderboard is written once, at the end.

    ``overrides`` (e.g. ``["results_dir=/tmp/x"]``) apply to every sweep.
    """
    program = sys.argv[0]
    for position, sweep in enumerate(MAIN_JOB_SWEEPS):
        last = position == len(MAIN_JOB_SWEEPS) - 1
        sys.argv = [program, f"sweep={sweep}", *(overrides or []), *([] if last else ["report=false"])]
        print(f"[condense-bench] main job {position + 1}/{len(MAIN_JOB_SWEEPS)}: sweep={sweep}", flush=True)
        _app()


def main() -> None:
    """Console entry point: no arguments (or ``main [overrides]``) runs the main job."""
    if len(sys.argv) == 1 or sys.argv[1] == "main":
        run_main_job(sys.argv[2:])
        return
    _app()


if __name__ == "__main__":
    main()
