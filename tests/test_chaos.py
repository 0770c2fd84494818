"""Kill a sweep again and again, at chosen and at random points, then finish it: nothing is lost.

A four-cell sweep on digits (herding and k-center, which share one proxy model) is SIGKILLed
while a method builds its proxy, while a set file, an evaluation, a record and the report are
being written (the n-th such moment, n drawn at random), and twice after a random delay. A
final run finishes it. Then every cell has exactly one valid record, no temporary file is left
anywhere, and the leaderboard equals that of a run that was never interrupted (every column but
the measured times).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd

from leaderboard import build_table, load_records

SWEEP = (
    "-m",
    "method=herding,kcenter",
    "ipc=1,2",
    "++method.proxy_epochs=2",
    "protocol.num_models=1",
    "protocol.recipe.epochs=3",
    "references=[]",
)

#: phase -> (module, function, which calls count, kill before or after the call).
PHASES = {
    "distillation": ("baselines._proxy", "_write_proxy", "", "after"),
    "set save": ("data.files", "fsync_tree", ".safetensors.", "before"),
    "evaluation": ("evaluation.protocols.image", "train_classifier", "", "before"),
    "record write": ("data.files", "fsync_tree", ".json.", "before"),
    "report write": ("data.files", "fsync_tree", "report.html", "before"),
}

DRIVER = textwrap.dedent(
    """
    import importlib, os, signal, sys

    module_name, function_name, match, when, at = sys.argv[1:6]
    module = importlib.import_module(module_name)
    original = getattr(module, function_name)
    calls = [0]

    def killing(*args, **kwargs):
        hit = match in " ".join(map(str, args))
        if hit:
            calls[0] += 1
        if hit and calls[0] == int(at) and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if hit and calls[0] == int(at) and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, function_name, killing)
    from bench.cli import main

    sys.argv = ["condense-bench", *sys.argv[6:]]
    main()
    """
)

TIME_COLUMNS = ("time", "seconds", "memory")


def sweep_command(results: Path) -> list[str]:
    return [*SWEEP, f"results_dir={results}"]


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    kept = [c for c in table.columns if not any(word in str(c).lower() for word in TIME_COLUMNS)]
    return table[kept].sort_values(["method", "budget"]).reset_index(drop=True)


def test_a_sweep_killed_at_every_phase_finishes_whole(tmp_path: Path, bench_env, run_bench) -> None:
    rng = random.Random(18)
    env = bench_env()
    driver = tmp_path / "chaos_driver.py"
    driver.write_text(DRIVER)
    results = tmp_path / "results"
    kills_tried = kills_landed = 0
    for phase, (module, function, match, when) in PHASES.items():
        at = 1 if phase in ("distillation", "report write") else rng.randint(1, 2)
        command = [sys.executable, str(driver), module, function, match, when, str(at), *sweep_command(results)]
        run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        kills_tried += 1
        assert run.returncode in (-signal.SIGKILL, 0), f"{phase}: {run.stderr[-3000:]}"
        kills_landed += run.returncode == -signal.SIGKILL
    for _ in range(2):
        process = subprocess.Popen(
            [sys.executable, "-m", "bench", *sweep_command(results)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(3.0, 12.0))
        process.kill()
        kills_tried += 1
        kills_landed += process.wait() == -signal.SIGKILL
    final = run_bench(*sweep_command(results), cwd=tmp_path, env=env)
    assert final.returncode == 0, final.stderr[-3000:]

    uninterrupted = tmp_path / "uninterrupted"
    reference = run_bench(*sweep_command(uninterrupted), cwd=tmp_path, env=env)
    assert reference.returncode == 0, reference.stderr[-3000:]

    loaded = load_records(results)
    assert not loaded.problems
    assert sorted((r.method, r.ipc) for r in loaded.records) == [
        ("herding", 1),
        ("herding", 2),
        ("kcenter", 1),
        ("kcenter", 2),
    ]
    assert len(list((results / "records").rglob("*.json"))) == 4
    leftovers = [p for p in results.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".write-probe")]
    assert not leftovers, leftovers
    expected = {r.cell_key: r.results for r in load_records(uninterrupted).records}
    assert {r.cell_key: r.results for r in loaded.records} == expected
    pd.testing.assert_frame_equal(
        comparable(build_table(loaded.records)), comparable(build_table(load_records(uninterrupted).records))
    )
    assert (results / "report.html").is_file() and (results / "leaderboard.json").is_file()
    assert kills_landed >= 5, f"only {kills_landed} of {kills_tried} kills landed"
    print(f"chaos: {kills_landed} of {kills_tried} kills landed; the sweep finished whole")
