"""Running beyond one process: shared caches built once, cells locked, launchers, kill and resume.

The subprocess tests use a test plugin (``+plugins=[...]``) that registers a ``tiny`` protocol
(one ConvNet-3, 20 epochs) and ``sleepy``, ``slow_herding`` and ``slow_kcenter`` (random, herding
and k-center selection after a pause of ``$SLEEPY_SECONDS``), so a cell costs about a second, a
sweep can be killed in the middle of a cell, and concurrent processes surely overlap.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import job_device
from data.cache import LockTimeout, build_each_once, build_once, file_lock, lock_path_for

ROOT = Path(__file__).resolve().parent.parent

PLUGIN = '''
"""Test-only registrations for tests/test_cluster.py."""
import os
import time

from baselines.herding import HerdingSelector
from baselines.kcenter import KCenterSelector
from baselines.reference import RandomSelection
from data.methods import register_method
from evaluation.protocols import ImageProtocol, register_protocol
from evaluation.train import TrainRecipe

register_protocol(
    ImageProtocol(name="tiny", version=1, models=("convnet3",), num_models=1,
             recipe=TrainRecipe(epochs=20), full_data_epochs=1, description="test only")
)


def _slow(selector):
    """The selector after a pause of $SLEEPY_SECONDS (a cell long enough to overlap or be killed)."""

    class Slow(selector):
        def select(self, train, budget, *, seed, device="cpu"):
            time.sleep(float(os.environ.get("SLEEPY_SECONDS", "0")))
            return super().select(train, budget, seed=seed, device=device)

    return Slow


register_method("sleepy")(_slow(RandomSelection))
register_method("slow_herding")(_slow(HerdingSelector))
register_method("slow_kcenter")(_slow(KCenterSelector))
'''

#: Overrides that make a cell tiny: the test plugin, its protocol, one thread, no report.
TINY = [
    "+plugins=[cluster_test_plugin]",
    "protocol=tiny",
    "dataset=digits",
    "ipc=1",
    "references=[]",
    "report=false",
    "threads=1",
    "save_sets=false",
]


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "cluster_test_plugin.py").write_text(PLUGIN)
    return folder


def bench_popen(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def record_files(results: Path) -> list[Path]:
    return sorted((results / "records").glob("*/*/*.json"))


def accuracies_by_cell(results: Path) -> dict[str, list[float]]:
    records = [json.loads(p.read_text()) for p in record_files(results)]
    return {r["cell_key"]: r["results"]["convnet3"]["accuracies"] for r in records}


# -- data.cache: build once, atomically, under a lock -------------------------------------------


def _write(text: str):
    return lambda temporary: temporary.write_text(text)


def _reads(text: str):
    return lambda path: path.read_text() == text


def test_build_once_builds_then_hits(tmp_path):
    entry = tmp_path / "cache" / "entry.txt"
    assert build_once(entry, _write("payload"), _reads("payload")) is False
    assert entry.read_text() == "payload"
    assert build_once(entry, _write("other"), _reads("payload")) is True
    assert entry.read_text() == "payload"
    assert sorted(p.name for p in entry.parent.iterdir()) == ["entry.txt", "entry.txt.lock"]


def test_invalid_entry_is_rebuilt_never_read(tmp_path):
    entry = tmp_path / "entry.txt"
    entry.write_text("pay")  # a truncated file, as a killed non-atomic writer leaves
    assert build_once(entry, _write("payload"), _reads("payload")) is False
    assert entry.read_text() == "payload"

    def raising(path: Path) -> bool:
        raise ValueError("unreadable")

    assert build_once(entry, _write("again"), raising) is False  # a check that raises = invalid
    assert entry.read_text() == "again"


def test_failed_build_publishes_nothing(tmp_path):
    entry = tmp_path / "entry.txt"

    def failing(temporary: Path) -> None:
        temporary.write_text("half")
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        build_once(entry, failing, _reads("payload"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.txt.lock"]
    assert build_once(entry, _write("payload"), _reads("payload")) is False


def test_folder_entry(tmp_path):
    entry = tmp_path / "experts"

    def build(temporary: Path) -> None:
        temporary.mkdir()
        (temporary / "a.bin").write_bytes(b"1")

    assert build_once(entry, build, lambda path: (path / "a.bin").is_file()) is False
    assert build_once(entry, build, lambda path: (path / "a.bin").is_file()) is True
    assert [p.name for p in entry.iterdir()] == ["a.bin"]


def _concurrent_builder(entry: str, counter: str, start: multiprocessing.synchronize.Event, out) -> None:
    def build(temporary: Path) -> None:
        with open(counter, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        temporary.write_text("payload")

    start.wait()
    out.put(build_once(Path(entry), build, _reads("payload")))


def test_concurrent_builders_build_once(tmp_path):
    context = multiprocessing.get_context("fork")
    start, out = context.Event(), context.Queue()
    entry, counter = tmp_path / "entry.txt", tmp_path / "builds.txt"
    workers = [
        context.Process(target=_concurrent_builder, args=(str(entry), str(counter), start, out)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    start.set()
    hits = sorted(out.get(timeout=30) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert hits == [False, True, True, True]
    assert len(counter.read_text().splitlines()) == 1 and entry.read_text() == "payload"


def _each_builder(folder: str, start, out) -> None:
    def entry(index: int):
        def build(temporary: Path) -> None:
            time.sleep(0.5)
            temporary.write_text(f"built by {os.getpid()}")

        return (Path(folder) / f"expert_{index}.txt", build, lambda path: path.read_text().startswith("built by"))

    start.wait()
    hits = build_each_once([entry(index) for index in range(6)])
    out.put((os.getpid(), hits))


def test_concurrent_jobs_build_different_entries_of_one_buffer(tmp_path):
    """Two jobs needing the same six entries: each builds some while the other builds others
    (neither waits on an entry being built while another is missing); every entry is built once."""
    context = multiprocessing.get_context("fork")
    start, out = context.Event(), context.Queue()
    workers = [context.Process(target=_each_builder, args=(str(tmp_path), start, out)) for _ in range(2)]
    for worker in workers:
        worker.start()
    started = time.monotonic()
    start.set()
    results = dict(out.get(timeout=60) for _ in workers)
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    builders = {index: (tmp_path / f"expert_{index}.txt").read_text() for index in range(6)}
    built_by = {pid: [index for index, hit in enumerate(hits) if not hit] for pid, hits in results.items()}
    assert sorted(i for indices in built_by.values() for i in indices) == list(range(6))  # each once
    assert all(indices for indices in built_by.values()), built_by  # both jobs built entries
    for pid, indices in built_by.items():
        assert all(builders[i] == f"built by {pid}" for i in indices)
    assert elapsed < 6 * 0.5, elapsed  # faster than one job building all six in turn


def _killed_builder(entry: str) -> None:
    def build(temporary: Path) -> None:
        temporary.write_text("partial")
        temporary.with_name(f".{temporary.name}.1234.tmp").write_text("a nested writer's temporary")
        time.sleep(60)

    build_once(Path(entry), build, _reads("payload"))


def test_killed_builder_leaves_nothing_that_is_read(tmp_path):
    entry = tmp_path / "entry.txt"
    process = multiprocessing.get_context("fork").Process(target=_killed_builder, args=(str(entry),))
    process.start()
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(".entry.txt.build-*.tmp")):
        assert time.monotonic() < deadline, "the builder never started"
        time.sleep(0.02)
    with pytest.raises(LockTimeout):  # the builder holds the lock while it builds
        build_once(entry, _write("payload"), _reads("payload"), timeout=0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.join(timeout=30)
    assert not entry.exists()  # the partial build was never published
    assert build_once(entry, _write("payload"), _reads("payload"), timeout=10) is False
    assert entry.read_text() == "payload"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.txt", "entry.txt.lock"]  # stale temp removed


def test_file_lock_excludes_and_times_out(tmp_path):
    lock = lock_path_for(tmp_path / "cell")
    assert lock.name == "cell.lock"
    with file_lock(lock):
        holder = subprocess.run(
            [sys.executable, "-c", "import fcntl,os,sys; fd=os.open(sys.argv[1],os.O_RDWR); "
             "fcntl.flock(fd, fcntl.LOCK_EX|fcntl.LOCK_NB)", str(lock)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert holder.returncode != 0 and "BlockingIOError" in holder.stderr
    with file_lock(lock, timeout=1):  # released on exit
        pass


def test_job_device_never_takes_every_gpu():
    assert job_device("cpu", job_num=3, cuda_devices=4) == "cpu"
    assert job_device("cuda:2", cuda_devices=4) == "cuda:2"
    assert job_device("auto", job_num=5, environ={}, cuda_devices=0) == "cpu"
    # SLURM shows a job only its own GPU: it takes it, whatever its number in the array.
    assert job_device("auto", job_num=7, environ={}, cuda_devices=1) == "cuda:0"
    # A multi-GPU workstation (joblib, submitit_local): jobs spread over the GPUs.
    assert [job_device("auto", job_num=n, environ={}, cuda_devices=4) for n in range(6)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1",
    ]  # fmt: skip
    assert job_device("auto", job_num=0, environ={"LOCAL_RANK": "3"}, cuda_devices=4) == "cuda:3"  # torchrun
    assert job_device("cuda", environ={"LOCAL_RANK": "2"}, cuda_devices=4) == "cuda:2"
    assert job_device("cuda", environ={}, cuda_devices=4) == "cuda"


# -- the Hydra app under several launchers and processes ---------------------------------------


#: The sweep the launcher tests share: two cells of the ``sleepy`` method.
SWEEP = ["-m", "method=sleepy", "seed=0,1", *TINY]


@pytest.fixture(scope="module")
def resumed_basic_sweep(plugin_dir, tmp_path_factory, bench_env, run_bench) -> tuple[Path, str]:
    """The sweep under the basic launcher, killed (SIGKILL) in the middle of its second cell and
    run again; returns the results folder and the re-run's output."""
    folder = tmp_path_factory.mktemp("basic")
    results = folder / "r"
    args = [*SWEEP, f"results_dir={results}"]
    sweep = bench_popen(*args, cwd=folder, env=bench_env(plugin_dir, SLEEPY_SECONDS="3"))
    deadline = time.monotonic() + 120
    while not record_files(results):
        assert sweep.poll() is None, sweep.communicate()[1]
        assert time.monotonic() < deadline, "no cell finished"
        time.sleep(0.05)
    sweep.send_signal(signal.SIGKILL)  # the second cell is in its 3 s selection
    sweep.communicate(timeout=60)
    assert len(record_files(results)) == 1
    rerun = run_bench(*args, cwd=folder, env=bench_env(plugin_dir))
    assert rerun.returncode == 0, rerun.stderr
    return results, rerun.stdout


def test_killed_sweep_resumes_each_cell_once(resumed_basic_sweep):
    from leaderboard import load_records

    results, stdout = resumed_basic_sweep
    assert stdout.count("skipped (record exists)") == 1 and stdout.count(" done: ") == 1
    loaded = load_records(results)
    assert not loaded.problems
    assert sorted(r.seed for r in loaded.records) == [0, 1] and {r.method for r in loaded.records} == {"sleepy"}
    assert len(record_files(results)) == 2 and not list((results / "records").rglob("*.tmp"))


@pytest.mark.parametrize(
    "launcher",
    [
        # slow: the default run already sweeps through joblib (tests/test_cli.py::test_sweep).
        pytest.param(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], marks=pytest.mark.slow),
        ["hydra/launcher=slurm_local"],  # hydra-submitit-launcher's submitit_local with our preset
    ],
    ids=["joblib", "submitit_local"],
)
def test_launchers_give_the_same_records(resumed_basic_sweep, plugin_dir, tmp_path, launcher, bench_env, run_bench):
    results = tmp_path / "r"
    result = run_bench(*SWEEP, f"results_dir={results}", *launcher, cwd=tmp_path, env=bench_env(plugin_dir))
    assert result.returncode == 0, result.stderr
    expected = accuracies_by_cell(resumed_basic_sweep[0])
    assert len(expected) == 2 and accuracies_by_cell(results) == expected
    if "slurm_local" in launcher[0]:
        assert list((results / "hydra" / "multirun").glob("*/.submitit/*/*.pkl")), "not run through submitit"


def test_two_processes_on_one_cell_and_one_cache(plugin_dir, tmp_path, bench_env):
    """Two processes on the same cell and a third on another cell, at once; all three need the same
    proxy model. The 2 s pause before selecting makes them overlap whatever their start-up."""
    results = tmp_path / "r"
    common = [*TINY, "++method.proxy_epochs=2", f"results_dir={results}"]
    env = bench_env(plugin_dir, SLEEPY_SECONDS="2")
    processes = [
        bench_popen(f"method={method}", *common, cwd=tmp_path, env=env)
        for method in ("slow_herding", "slow_herding", "slow_kcenter")
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    text = "".join(out + err for out, err in outputs)
    assert text.count(" done: ") == 2 and text.count("skipped (record exists)") == 1
    assert len(re.findall(r"cell [0-9a-f]{16}: method=slow_herding", text)) == 1  # run once, not twice
    records = [json.loads(p.read_text()) for p in record_files(results)]
    assert sorted(r["method"] for r in records) == ["slow_herding", "slow_kcenter"]
    proxies = list((results / "cache" / "proxy_cache").glob("*.safetensors"))
    assert len(proxies) == 1, proxies
    assert sorted(r["costs"]["precompute_cache_hit"] for r in records) == [False, True]  # trained once
    assert records[0]["costs"]["precompute_seconds"] == records[1]["costs"]["precompute_seconds"]
    assert not list(results.rglob("*.tmp"))


def test_a_reference_running_in_another_job_is_not_waited_for(plugin_dir, tmp_path, bench_env, run_bench):
    """Job A runs the ``sleepy`` cell (10 s); job B's cell has ``sleepy`` as its reference row. B
    runs its own cell, finds the reference locked by A, and ends while A still runs; each cell
    ends up recorded once."""
    results = tmp_path / "r"
    env = bench_env(plugin_dir, SLEEPY_SECONDS="10")
    first = bench_popen("method=sleepy", *TINY, f"results_dir={results}", cwd=tmp_path, env=env)
    deadline = time.monotonic() + 60
    # B starts once A holds its cell's lock (the lock file names the holder's pid).
    while not any(f"pid {first.pid}" in p.read_text() for p in (results / "locks").glob("*.lock")):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.1)
    second = run_bench("method=random", *TINY, "references=[sleepy]", f"results_dir={results}", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert first.poll() is None, "B waited for A's cell"
    assert "sleepy cell" in second.stdout and "is running in another job; not waiting for it" in second.stdout
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert sorted(json.loads(p.read_text())["method"] for p in record_files(results)) == ["random", "sleepy"]


# -- sweep and launcher configs: composition, and the job array a cluster user would submit -------


def _sweep_jobs(compose_bench, sweep: str) -> list[list[str]]:
    """The override lists of every job of ``sweep=<sweep>`` (as the basic sweeper expands them)."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = compose_bench([f"sweep={sweep}"], hydra_config=True).hydra.sweeper.params
    parsed = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    axes = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line]
        for o in parsed
    ]
    return [list(job) for job in itertools.product(*axes)]


@pytest.mark.parametrize(
    ("sweep", "cells"), [("classic_table", 144), ("classic_table_digits", 16), ("soft_label", 486)]
)
def test_sweep_configs_compose_into_valid_cells(sweep, cells, compose_bench):
    from bench import cell_key
    from bench.cli import spec_from_config

    jobs = _sweep_jobs(compose_bench, sweep)
    assert len(jobs) == cells
    keys: dict[tuple[str, ...], str] = {}
    for job in jobs:  # one job per (method, dataset): the other axes do not change the options
        axes = tuple(o for o in job if o.split("=")[0] in ("method", "dataset"))
        if axes not in keys:
            keys[axes] = cell_key(spec_from_config(compose_bench([f"sweep={sweep}", *job])))  # validates options
    assert len(set(keys.values())) == len(keys) > 1


def test_slurm_config_composes(compose_bench):
    """What ``condense-bench --cfg job hydra/launcher=slurm sweep=classic_table`` resolves."""
    from omegaconf import OmegaConf

    first_job = _sweep_jobs(compose_bench, "classic_table")[0]
    cfg = compose_bench(["hydra/launcher=slurm", "sweep=classic_table", *first_job], hydra_config=True)
    job = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    assert job["method"]["name"] == "dc" and job["dataset"]["name"] == "mnist" and job["protocol"]["name"] == "classic"
    assert job["references"] == ["random", "full"]
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.gpus_per_task == 1 and launcher.max_num_timeout > 0


def test_slurm_array_is_rendered_from_the_preset(plugin_dir, tmp_path, bench_env, run_bench):
    """The real launcher path up to ``sbatch``: a fake ``srun``/``sbatch`` keep the script."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    captured = tmp_path / "captured.sh"
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {captured}\necho "sbatch: no cluster here" >&2\nexit 1\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = bench_env(plugin_dir, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    args = ["-m", "method=random", "seed=0,1,2", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"]
    args += ["hydra.launcher.array_parallelism=2"]
    result = run_bench(*args, f"results_dir={tmp_path / 'r'}", cwd=tmp_path, env=env)
    assert result.returncode != 0 and captured.is_file(), result.stderr
    script = captured.read_text()
    for flag in (
        "--array=0-2%2",
        "--partition=gpu",
        "--gpus-per-task=1",
        "--cpus-per-task=8",
        "--mem=32GB",
        "--time=720",
        "--job-name=condense-bench",
    ):
        assert f"#SBATCH {flag}" in script, (flag, script)
    assert re.search(r"#SBATCH --signal=USR\d@120", script), script  # submitit's requeue signal
    assert not record_files(tmp_path / "r")
