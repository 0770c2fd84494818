"""``condense-bench``: the Hydra app that runs benchmark cells and sweeps.

``condense-bench`` with no arguments runs the main job (the sweeps of :data:`MAIN_JOB_SWEEPS` on the
embedded datasets, minutes on 2 CPU cores) and writes the leaderboard (CSV, Markdown, JSON, HTML)
into the results folder. ``condense-bench main results_dir=PATH`` does the same with overrides;
``condense-bench digits_table`` runs the whole digits table (:data:`NAMED_JOBS`). One cell::

    condense-bench method=random dataset=digits ipc=10 protocol=fast seed=0

A sweep: ``condense-bench -m method=random,full ipc=1,10 seed=0,1``. The app refuses, before any
work, every option it would otherwise ignore, a value of the wrong type, and two budgets at once;
a changed protocol field (``protocol.num_models=2``) makes a protocol of its own.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from bench.cell import Cell, CellSpec, resolve_cell
from bench.progress import count_jobs, format_seconds, job_line, mark_sweep_start, sweep_file_params
from bench.runner import CellOutcome, run_cell
from bench.schemas import BENCH_KEYS, register_schemas
from condense.presets import method_options as read_method_option
from condense.presets import official_preset
from data.configs import config_dir
from data.devices import auto_device, resolve_device
from data.files import check_writable
from data.untrusted import InputError
from evaluation.parallel import DataParallel, close, from_environment, single_or
from evaluation.protocols import Execution, changed_fields, derive_protocol, get_protocol, protocol_from_config

logger = logging.getLogger(__name__)

#: The main job (``condense-bench`` with no arguments): these sweeps in order, into one results folder.
MAIN_JOB_SWEEPS = ("quick", "quick_distillation", "quick_decoupled", "graph")
#: Jobs of several sweeps, run by name (``condense-bench <name> [overrides]``): the main job, and
#: the whole digits table under ``fast`` (IPC 1-50, every synthesizer, the decoupled methods at two
#: budgets and two label regimes).
NAMED_JOBS = {
    "main": MAIN_JOB_SWEEPS,
    "digits_table": ("default", "digits_distillation", "digits_decoupled", "graph"),
}
#: ``presets``: ``official`` runs a published setting with its authors' values; ``required`` also
#: skips (writing nothing) a cell that has none, so one cross product runs just the published grid
#: (``sweep=reproduce``); ``none`` never uses them.
PRESET_POLICIES = ("official", "required", "none")
#: Top-level config groups (their choices compose the config; they leave no key of their own).
GROUPS = ("method", "dataset", "protocol", "sweep", "experiment")


class ConfigError(InputError):
    """The command line asks for something the benchmark would not do as asked."""


# -- from the composed config to a cell ----------------------------------------------------------


def spec_from_config(
    cfg: DictConfig, *, overrides: Sequence[str] = (), protocol_base: Any = None, method_choice: str | None = None
) -> CellSpec:
    """The :class:`CellSpec` of a composed config, refusing what the cell would not read.

    Args:
        cfg: the composed config (without its ``hydra`` node, or with it).
        overrides: the command line's overrides (Hydra's task overrides), to tell an option the
            user set from a default.
        protocol_base: the named protocol's own config (``protocol=<name>`` composed without
            changes); ``None`` takes the registered protocol of the ``protocol`` choice (from
            ``cfg.hydra`` when composed with it, else of the composed protocol's name). A composed
            protocol that differs from it is a protocol of its own.
        method_choice: the ``method`` option chosen (``mtt``, ``mtt/cifar10_ipc10``); ``None``
            reads it from ``cfg.hydra`` when composed with it. A plain method name may take the
            official preset of the cell's setting (:func:`with_official_preset`).

    Raises:
        ConfigError: an option nothing reads, two budgets, or a method or protocol name changed
            in place.
    """
    given = _given_options(overrides)
    unknown = sorted(str(k) for k in cfg if k not in BENCH_KEYS and k != "hydra")
    if unknown:
        valid = ", ".join(sorted(BENCH_KEYS))
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)}: nothing reads them; valid options: {valid}"
            f" (config groups: {', '.join(GROUPS)})"
        )
    if "method.name" in given:
        raise ConfigError("method.name cannot be changed in place: choose the method with method=<name>")
    fraction = cfg.get("fraction")
    if fraction is not None and cfg.get("ipc") is not None and "ipc" in given:
        raise ConfigError(
            f"ipc={cfg.ipc} and fraction={fraction} are two budgets: give one (a fraction replaces the default ipc)"
        )
    if int(cfg.get("seed", 0)) < 0:
        raise ConfigError(f"seed must be >= 0, got {cfg.seed}")
    if cfg.get("threads") is not None and int(cfg.threads) < 1:
        raise ConfigError(f"threads must be >= 1 (or null for every core), got {cfg.threads}")
    method_options: dict[str, Any] = OmegaConf.to_container(cfg.method, resolve=True)  # type: ignore[assignment]
    dataset_options: dict[str, Any] = OmegaConf.to_container(cfg.dataset, resolve=True)  # type: ignore[assignment]
    method_name = method_options.pop("name")
    dataset_name = dataset_options.pop("name")
    if dataset_options.get("root") is not None:
        dataset_options["root"] = to_absolute_path(str(dataset_options["root"]))
    ipc = None if fraction is not None or cfg.get("ipc") is None else int(cfg.ipc)
    if method_choice is None and "hydra" in cfg:
        method_choice = OmegaConf.select(cfg, "hydra.runtime.choices.method")
    method_options = with_official_preset(
        cfg, method_name, method_options, dataset_name, ipc, given, choice=method_choice
    )
    return CellSpec(
        method=method_name,
        dataset=dataset_name,
        protocol=protocol_of(cfg.protocol, protocol_base if protocol_base is not None else _chosen_protocol(cfg)),
        seed=int(cfg.seed),
        ipc=ipc,
        fraction=None if fraction is None else float(fraction),
        method_options=method_options,
        dataset_options={k: v for k, v in dataset_options.items() if v is not None or k != "root"},
        budget_policy=str(cfg.get("budget_policy", "error")),
    )


def with_official_preset(
    cfg: DictConfig,
    method: str,
    composed: dict[str, Any],
    dataset: str,
    ipc: int | None,
    given: set[str],
    *,
    choice: str | None = None,
) -> dict[str, Any]:
    """``composed`` method options on the official preset of (method, dataset, ipc), if one exists.

    Under ``presets=official`` (the default) a plain ``method=<name>`` on a published setting runs
    the authors' values for it (``configs/method/<name>/<dataset>_ipc<N>.yaml``), so one sweep
    over methods, datasets and IPCs uses the right values in every cell. What the user changed
    stays changed: every option whose composed value differs from the method's own defaults (set by
    the command line, a sweep or an experiment) and every ``method.*`` override of the command line
    is kept over the preset. An explicitly chosen option (``method=mtt/cifar10_ipc10``,
    ``method=digits/dm``) and ``presets=none`` are left as composed.
    """
    policy = str(cfg.get("presets", "official"))
    if policy not in PRESET_POLICIES:
        raise ConfigError(f"unknown presets={policy!r}; valid: {', '.join(PRESET_POLICIES)}")
    if policy == "none" or ipc is None or (choice is not None and str(choice) != method):
        return composed
    preset = official_preset(method, dataset, ipc)
    if preset is None:
        return composed
    _, defaults = read_method_option(method)
    _, official = read_method_option(preset)
    user_set = {key.split(".")[1] for key in given if key.startswith("method.")}
    kept = {key: value for key, value in composed.items() if key in user_set or defaults.get(key) != value}
    logger.info("method=%s on %s ipc=%d: official preset method=%s", method, dataset, ipc, preset)
    return {**official, **kept}


def unpublished_setting(cfg: DictConfig, method_choice: str | None) -> str | None:
    """Under ``presets=required``: why the composed cell has no official setting (else ``None``).

    A cell has one when its method was chosen as a preset option (``method=mtt/cifar10_ipc10``)
    or when a preset exists for its plain method on its dataset and IPC.
    """
    if str(cfg.get("presets", "official")) != "required":
        return None
    method, dataset, ipc = str(cfg.method.name), str(cfg.dataset.name), cfg.get("ipc")
    if method_choice is not None and str(method_choice) != method:
        return None
    if cfg.get("fraction") is None and ipc is not None and official_preset(method, dataset, int(ipc)) is not None:
        return None
    return f"no official setting of method={method} on {dataset} ipc={ipc} (presets=required)"


def protocol_of(composed: DictConfig | Mapping[str, Any], base: DictConfig | Mapping[str, Any] | None = None) -> Any:
    """The protocol of a composed ``protocol`` node: the named one, or one derived from it by the
    fields that differ (``fast[num_models=2]``).

    Args:
        composed: the ``protocol`` node as composed, command-line changes included.
        base: the same protocol as its file defines it; ``None`` takes the registered protocol of
            that name.
    """
    protocol = protocol_from_config(_plain(composed))
    named = get_protocol(protocol.name) if base is None else protocol_from_config(_plain(base))
    changes = changed_fields(named.config_dict(), protocol.config_dict())
    return derive_protocol(named, changes) if changes else named


def _chosen_protocol(cfg: DictConfig) -> dict[str, Any] | None:
    """The registered protocol a composed config chose (``hydra.runtime.choices``), as plain data."""
    choice = OmegaConf.select(cfg, "hydra.runtime.choices.protocol") if "hydra" in cfg else None
    return None if choice is None else get_protocol(str(choice)).config_dict()


def _plain(node: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)  # type: ignore[return-value]


def _given_options(overrides: Sequence[str]) -> set[str]:
    """The keys the command line set (``ipc``, ``method.name``), whatever their prefix (+, ++, ~)."""
    if not overrides:
        return set()
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return {o.get_key_element().lstrip("+~") for o in parsed if not o.is_delete()}


def references_for(spec: CellSpec, references: Sequence[Any]) -> list[str]:
    """The reference rows of a cell: ``references``, plus ``random`` beside a soft-label cell.

    DD-Ranking's improvement over random needs the random real subset under the identical
    soft-label protocol, so a soft-protocol cell always runs it, whatever ``references`` says.
    """
    names = [str(name) for name in references]
    protocol = get_protocol(spec.protocol) if isinstance(spec.protocol, str) else spec.protocol
    if getattr(protocol, "soft", None) is not None and "random" not in names:
        names.append("random")
    return names


def reference_cells(cell: Cell, references: Sequence[Any]) -> list[Cell]:
    """The resolved reference cells of ``cell`` (same budget, protocol and seed; never itself)."""
    cells = []
    for reference in references_for(cell.spec, references):
        name = cell.modality.reference_method(reference)  # random -> random_graphs on graphs
        if name != cell.spec.method:
            cells.append(resolve_cell(replace(cell.spec, protocol=cell.protocol, method=name, method_options={})))
    return cells


# -- the job --------------------------------------------------------------------------------------


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
    slot = int(environ["LOCAL_RANK"]) if "LOCAL_RANK" in environ else job_num
    if requested == "cuda" and "LOCAL_RANK" in environ:
        return f"cuda:{slot}"  # torchrun: each rank its own GPU, not all on cuda:0
    if requested != "auto":
        return requested
    return auto_device(slot, cuda_devices=cuda_devices)


def import_plugins(modules: Sequence[str]) -> None:
    """Import the modules of ``+plugins=[pkg.module,...]``: they register methods, datasets or protocols.

    The app imports them before it composes the config (so ``method=<theirs>`` composes), and
    every job of a sweep imports them again (under joblib, submitit or Ray the job may be another
    process), so they must be importable on every node.
    """
    for module in modules:
        importlib.import_module(str(module))


def _plugins_on_command_line(argv: Sequence[str]) -> list[str]:
    """The modules a ``plugins=[...]`` override names (before Hydra parses the command line)."""
    candidates = [a for a in argv if a.lstrip("+").startswith("plugins=")]
    if not candidates:
        return []
    (override,) = OverridesParser.create().parse_overrides(candidates[-1:])
    value = override.value()
    return [str(v) for v in (value if isinstance(value, list) else [value])]


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="bench")
def _app(cfg: DictConfig) -> str:
    import_plugins(cfg.get("plugins") or [])
    hydra_config = HydraConfig.get() if HydraConfig.initialized() else None
    job_num = int(hydra_config.job.get("num") or 0) if hydra_config is not None else 0
    method_choice = hydra_config.runtime.choices.get("method") if hydra_config is not None else None
    skipped = unpublished_setting(cfg, method_choice)
    if skipped is not None:
        print(f"condense-bench: {skipped}: skipped", flush=True)
        return ""
    try:
        device = job_device(str(cfg.device), job_num=job_num)
        resolve_device(device)  # refuse a device the machine lacks before any work
        cell, references = _cells_of(cfg, hydra_config)
        set_threads(cfg)
    except (ValueError, OSError) as error:
        # A bad command line: say what is wrong, no traceback, non-zero exit, nothing run.
        print(f"condense-bench: error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(torch.device(device))
    if hydra_config is not None and hydra_config.mode == RunMode.MULTIRUN and int(os.environ.get("RANK", "0")) == 0:
        print(job_line(job_num, cell.spec.describe()), flush=True)
    # Under torchrun (WORLD_SIZE > 1) the ranks run each cell together, its evaluation data-parallel.
    parallel = from_environment(device)
    try:
        record_path = _run_cells(cfg, cell, references, device, parallel)
    except InputError as error:
        # Bad input found at run time (a budget above a class's size, a corrupt file): one line, no traceback.
        close(parallel, wait_for_others=False)
        print(f"condense-bench: error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    except BaseException:
        close(parallel, wait_for_others=False)  # torchrun stops the other ranks when this one fails
        raise
    close(parallel)
    return record_path


def _cells_of(cfg: DictConfig, hydra_config: Any) -> tuple[Cell, list[Cell]]:
    """The cell of ``cfg`` and its reference cells, all resolved (so checked) before any work."""
    overrides: list[str] = []
    base = None
    method_choice = None
    if hydra_config is not None:
        overrides = list(hydra_config.overrides.task)
        method_choice = hydra_config.runtime.choices.get("method")
        choice = hydra_config.runtime.choices.get("protocol")
        if choice is not None:
            from hydra import compose

            # The named protocol as its file defines it, to tell a changed one from it.
            base = compose(config_name="bench", overrides=[f"protocol={choice}"]).protocol
    cell = resolve_cell(spec_from_config(cfg, overrides=overrides, protocol_base=base, method_choice=method_choice))
    return cell, reference_cells(cell, cfg.get("references") or [])


def _run_cells(cfg: DictConfig, cell: Cell, references: list[Cell], device: str, parallel: DataParallel | None) -> str:
    """Run the cell, then its reference rows."""
    # Shared caches (proxy models, expert trajectories, teachers) live beside the records.
    os.environ.setdefault("CONDENSE_CACHE", str(results_dir_of(cfg) / "cache"))
    options: dict[str, Any] = {
        "results_dir": results_dir_of(cfg),
        "device": device,
        "progress": bool(cfg.progress),
        "save_set": bool(cfg.save_sets),
        "parallel": parallel,
        "execution": Execution(vectorize=bool(cfg.vectorize_eval), compile=bool(cfg.compile_eval)),
    }
    main = single_or(parallel).is_main
    outcome = run_cell(cell, **options)
    assert outcome is not None
    if main:
        _report_cell(outcome)
    # The reference rows every table needs, under the same budget, protocol and seed. Many cells
    # share one: a job that finds it running in another job goes on instead of waiting.
    for reference in references:
        reference_outcome = run_cell(reference, **options, wait=False)
        if not main:
            continue
        if reference_outcome is None:
            print(
                f"[condense-bench] {reference.spec.method} cell {reference.key} is running in another job; "
                "not waiting for it",
                flush=True,
            )
        else:
            _report_cell(reference_outcome)
    return str(outcome.record_path)


def _report_cell(outcome: CellOutcome) -> None:
    verb = "skipped (record exists)" if outcome.skipped else "done"
    summary = ", ".join(f"{m} {r.mean:.4f}" for m, r in outcome.record.results.items())
    print(f"[condense-bench] {outcome.record.method} cell {outcome.key} {verb}: {summary}", flush=True)


class ReportCallback(Callback):
    """Writes the leaderboard (tables and HTML report) when a run or a sweep ends; says which job failed.

    A report that cannot be written, or that had to leave record files out, ends the program
    with exit code 1 and one line saying why (:func:`leaderboard.cli.publish_report`).
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
        task = list(OmegaConf.select(config, "hydra.overrides.task", default=None) or [])
        mark_sweep_start(count_jobs(OmegaConf.to_container(params) if params is not None else {}, task))

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        if job_return is not None and job_return.status == JobStatus.FAILED:
            error = job_return._return_value  # the public return_value re-raises the job's error
            overrides = " ".join(job_return.overrides or [])
            print(f"condense-bench: error: job [{overrides}] failed: {type(error).__name__}: {error}", file=sys.stderr)

    def on_run_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        # A failed run's own error is what the user needs to see; the records stay for the next report.
        if job_return is None or job_return.status != JobStatus.FAILED:
            self._write(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write(config)

    @staticmethod
    def _write(config: DictConfig) -> None:
        # Under torchrun only rank 0 writes the leaderboard.
        if not config.get("report", True) or int(os.environ.get("RANK", "0")) != 0:
            return
        from leaderboard.cli import publish_report

        code, paths = publish_report(results_dir_of(config), program="condense-bench")
        if paths:
            print(f"[condense-bench] leaderboard: {paths.get('html')}", flush=True)
        if code:
            sys.exit(code)


def run_main_job(overrides: list[str] | None = None, *, name: str = "main") -> None:
    """Run every sweep of the named job (:data:`NAMED_JOBS`); the leaderboard is written once, at the end.

    ``overrides`` (e.g. ``["results_dir=/tmp/x"]``) apply to every sweep.
    """
    program = sys.argv[0]
    sweeps = NAMED_JOBS[name]
    jobs = [count_jobs(sweep_file_params(config_dir(), sweep), overrides or []) for sweep in sweeps]
    plan = ", ".join(f"{sweep} ({count})" for sweep, count in zip(sweeps, jobs, strict=True))
    print(f"[condense-bench] {name} job: {sum(jobs)} jobs in {len(jobs)} sweeps: {plan}", flush=True)
    started = time.perf_counter()
    for position, sweep in enumerate(sweeps):
        last = position == len(sweeps) - 1
        sys.argv = [program, f"sweep={sweep}", *(overrides or []), *([] if last else ["report=false"])]
        remaining = sum(jobs[position:])
        print(
            f"[condense-bench] {name} job sweep {position + 1}/{len(sweeps)}: {sweep}, {jobs[position]} jobs "
            f"({remaining} of {sum(jobs)} remain, {format_seconds(time.perf_counter() - started)} elapsed)",
            flush=True,
        )
        _app()
    print(f"[condense-bench] {name} job done in {format_seconds(time.perf_counter() - started)}", flush=True)


#: Hydra flags that only print something: they write nothing, so nothing is checked for them.
_INFO_FLAGS = frozenset({"-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "--shell-completion", "-sc"})


def _check_results_dir_on_command_line(argv: Sequence[str]) -> None:
    """Refuse a results folder that cannot be written before Hydra makes its run folder in it."""
    if _INFO_FLAGS.intersection(argv):
        return
    candidates = [a for a in argv if a.lstrip("+").startswith("results_dir=")]
    folder = "results"
    if candidates:
        (override,) = OverridesParser.create().parse_overrides(candidates[-1:])
        value = override.value()
        folder = str(value) if isinstance(value, str) else ""
    if folder:
        check_writable([to_absolute_path(folder)])


def main() -> None:
    """Console entry point: no arguments runs the main job; a job name (``main``, ``digits_table``) runs that job."""
    try:
        _check_results_dir_on_command_line(
            sys.argv[2:] if sys.argv[1:2] and sys.argv[1] in NAMED_JOBS else sys.argv[1:]
        )
    except InputError as error:
        print(f"condense-bench: error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    import_plugins(_plugins_on_command_line(sys.argv[1:]))
    register_schemas()
    if len(sys.argv) == 1 or sys.argv[1] in NAMED_JOBS:
        run_main_job(sys.argv[2:], name=sys.argv[1] if len(sys.argv) > 1 else "main")
        return
    _app()


if __name__ == "__main__":
    main()
