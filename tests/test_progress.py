"""What a sweep says while it runs: how many jobs, which one runs, how much of the main job remains."""

from __future__ import annotations

import re
from pathlib import Path

from bench.progress import count_jobs, format_seconds, sweep_file_params
from data.configs import config_dir


def test_a_sweep_counts_its_cross_product_and_the_command_line_wins() -> None:
    params = {"method": "random,full", "ipc": "1,10,50", "seed": 0}
    assert count_jobs(params) == 6
    assert count_jobs(params, ["seed=0,1,2"]) == 18
    assert count_jobs(params, ["ipc=1", "results_dir=/tmp/x"]) == 2
    assert count_jobs({}, ["method=random", "ipc=range(1,4)"]) == 3
    assert count_jobs(sweep_file_params(config_dir(), "digits_decoupled")) == 24


def test_seconds_read_at_a_glance() -> None:
    assert [format_seconds(s) for s in (4.4, 65, 3725)] == ["4s", "1m05s", "1h02m"]


def test_every_job_of_a_sweep_says_which_of_how_many_it_is(tmp_path: Path, run_bench) -> None:
    run = run_bench(
        "-m",
        "method=random",
        "ipc=1,2",
        "protocol.recipe.epochs=1",
        "references=[]",
        "report=false",
        f"results_dir={tmp_path / 'results'}",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = re.findall(r"\[condense-bench\] job (\d)/(\d)[^:]*: method=random", run.stdout)
    assert lines == [("1", "2"), ("2", "2")]
