"""The Hydra app end to end in subprocesses: one cell, skip on re-run, bad names, sweeps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "condense.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def records_in(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "records").glob("*/*/*.json"))]


def test_one_cell_then_skip(tmp_path):
    args = ["method=random", "dataset=digits", "ipc=1", "protocol=fast", "seed=0", f"results_dir={tmp_path / 'r'}"]
    first = bench(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    records = records_in(tmp_path / "r")
    assert len(records) == 1 and records[0]["method"] == "random" and records[0]["ipc"] == 1
    assert "done" in first.stdout
    second = bench(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "skipped" in second.stdout and len(records_in(tmp_path / "r")) == 1
    for name in ("leaderboard.csv", "leaderboard.md", "leaderboard.json", "report.html"):
        assert (tmp_path / "r" / name).is_file()


def test_unknown_method_lists_the_choices(tmp_path):
    result = bench("method=nosuch", f"results_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode != 0
    message = result.stderr + result.stdout
    assert "nosuch" in message and "random" in message and "full" in message


def test_fraction_budget_replaces_ipc(tmp_path):
    result = bench("fraction=0.05", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fraction: 0.05" in result.stdout


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_sweep(tmp_path, launcher):
    results = tmp_path / "r"
    args = ["-m", "method=random", "ipc=1", "seed=0,1", f"results_dir={results}", "report=false"]
    if launcher == "joblib":
        args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    result = bench(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(r["seed"] for r in records_in(results)) == [0, 1]


@pytest.mark.skipif(shutil.which("condense-bench") is None, reason="condense-bench is not installed")
def test_installed_app_finds_its_configs(tmp_path):
    result = subprocess.run(
        ["condense-bench", "--cfg", "job", "method=full"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "name: full" in result.stdout and "name: digits" in result.stdout


def test_main_job_sweeps_compose_into_valid_methods():
    """Every sweep of the main job composes, and every method option in it builds a method."""
    from hydra import compose, initialize_config_dir

    from condense import create_method
    from condense.cli import MAIN_JOB_SWEEPS, config_dir, method_options

    methods = []
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for sweep in MAIN_JOB_SWEEPS:
            cfg = compose(config_name="bench", overrides=[f"sweep={sweep}"], return_hydra_config=True)
            methods += str(cfg.hydra.sweeper.params.method).split(",")
    assert {"random", "full", "digits/dc", "digits/mtt"} <= set(methods)
    for option in methods:
        name, options = method_options(option)
        assert create_method(name, **options).name == name
    # The digits settings keep the official values they do not scale down.
    _, dm = method_options("digits/dm")
    assert dm["model"] == "convnetd2" and dm["iterations"] == 20 and dm["lr_img"] == 1.0
