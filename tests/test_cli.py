"""The Hydra app end to end: one cell, skip on re-run, refusals before any work, protocol identity,
sweeps, and a method that an installed package declares."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def records_in(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "records").glob("*/*/*.json"))]


def test_one_cell_then_skip(tmp_path, run_bench):
    args = ["method=random", "dataset=digits", "ipc=1", "protocol=fast", "seed=0", f"results_dir={tmp_path / 'r'}"]
    first = run_bench(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    records = records_in(tmp_path / "r")
    assert len(records) == 1 and records[0]["method"] == "random" and records[0]["ipc"] == 1
    assert "done" in first.stdout
    second = run_bench(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "skipped" in second.stdout and len(records_in(tmp_path / "r")) == 1
    for name in ("leaderboard.csv", "leaderboard.md", "leaderboard.json", "report.html"):
        assert (tmp_path / "r" / name).is_file()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["+foo=1"], "foo"),
        (["ipc=1.5"], "ipc"),
        (["ipc=5", "fraction=0.1"], "fraction"),
        (["method=dm", "method.iterations=abc"], "method.iterations"),
    ],
)
def test_the_app_refuses_what_it_would_ignore_before_any_work(tmp_path, run_bench, overrides, named):
    results = tmp_path / "r"
    result = run_bench(*overrides, f"results_dir={results}", cwd=tmp_path)
    assert result.returncode != 0
    assert named in result.stderr + result.stdout
    assert not (results / "records").exists() and not (results / "sets").exists()


def test_unknown_method_lists_the_choices(tmp_path, run_bench):
    result = run_bench("method=nosuch", f"results_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode != 0
    message = result.stderr + result.stdout
    assert "nosuch" in message and "random" in message and "full" in message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+model=lenet"], "model"),
        (["+protocol.lr=1e10"], "lr"),
        (["+method.foo=1"], "foo"),
        (["+dataset.foo=1"], "dataset.foo"),
        (["method.name=dm"], "method.name"),
        (["protocol.name=soft"], "protocol.name"),
        (["method=mirage"], "works on graph datasets"),
        (["dataset=mutag", "method=random_graphs", "fraction=0.05"], "evaluates image sets"),
    ],
)
def test_refusals_name_the_option(compose_bench, overrides, message):
    from bench.cell import resolve_cell
    from bench.cli import ConfigError, spec_from_config

    with pytest.raises((ConfigError, ValueError), match=message.replace(".", r"\.")):
        resolve_cell(spec_from_config(compose_bench(overrides, hydra_config=True), overrides=overrides))


def test_typed_options_fail_at_composition(compose_bench):
    from hydra.errors import ConfigCompositionException

    for overrides in (["seed=1.5"], ["ipc=true"], ["method=dm", "method.lr_img=fast"]):
        with pytest.raises(ConfigCompositionException):
            compose_bench(overrides)


def test_a_fraction_replaces_the_default_ipc(compose_bench):
    from bench.cli import spec_from_config

    spec = spec_from_config(compose_bench(["fraction=0.05"]), overrides=["fraction=0.05"])
    assert spec.ipc is None and spec.fraction == 0.05


def test_a_changed_protocol_field_is_another_protocol(tmp_path, run_bench):
    results = tmp_path / "r"
    common = ["method=random", "ipc=1", "references=[]", "report=false", f"results_dir={results}"]
    named = run_bench("protocol=fast", *common, cwd=tmp_path)
    changed = run_bench("protocol=fast", "protocol.num_models=2", *common, cwd=tmp_path)
    assert named.returncode == changed.returncode == 0, changed.stderr
    by_protocol = {r["protocol"]: r for r in records_in(results)}
    assert sorted(by_protocol) == ["fast", "fast[num_models=2]"]
    derived = by_protocol["fast[num_models=2]"]
    assert derived["protocol_config"]["num_models"] == 2 and len(derived["results"]["convnet3"]["accuracies"]) == 2
    assert derived["protocol_config"]["derived_from"] == "fast"
    assert derived["protocol_config"]["changes"] == {"num_models": 2}
    assert derived["cell_key"] != by_protocol["fast"]["cell_key"]


def test_setting_a_protocol_field_to_its_own_value_keeps_the_protocol(compose_bench):
    from bench.cell import resolve_cell
    from bench.cli import spec_from_config

    def key(*overrides: str) -> tuple[str, str]:
        spec = spec_from_config(compose_bench(list(overrides), hydra_config=True), overrides=list(overrides))
        cell = resolve_cell(spec)
        return cell.protocol.name, cell.key

    assert key("protocol=fast", "protocol.num_models=3") == key("protocol=fast")  # fast's own value
    assert key("protocol=soft", "protocol.soft.temperature=1") == key("protocol=soft")
    assert key("protocol=soft", "protocol.soft.temperature=4")[0] == "soft[soft.temperature=4.0]"


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_sweep(tmp_path, run_bench, launcher):
    results = tmp_path / "r"
    args = ["-m", "method=random", "ipc=1", "seed=0,1", f"results_dir={results}", "report=false"]
    if launcher == "joblib":
        args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    result = run_bench(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(r["seed"] for r in records_in(results)) == [0, 1]


PLUGIN_METHOD = '''
"""A user's own selector: the first images of every class (a test package, not part of the suite)."""
from dataclasses import dataclass

import torch

from baselines.selection import Selection, Selector
from data.methods import MethodConfig


@dataclass(frozen=True)
class FirstImagesConfig(MethodConfig):
    reverse: bool = False


class FirstImages(Selector):
    config_class = FirstImagesConfig

    def select(self, train, budget, *, seed, device="cpu"):
        counts = budget.per_class_counts(train.class_counts())
        chosen = []
        for label in range(train.num_classes):
            members = train.class_indices(label)
            members = members.flip(0) if self.config.reverse else members
            chosen.append(members[: int(counts[label])])
        return Selection(indices=torch.sort(torch.cat(chosen)).values)
'''


def install_plugin_package(folder: Path) -> Path:
    """What ``pip install`` of a package declaring ``first_images`` leaves in site-packages."""
    (folder / "first_images_plugin").mkdir(parents=True)
    (folder / "first_images_plugin" / "__init__.py").write_text(PLUGIN_METHOD)
    info = folder / "first_images_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: first-images-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[condense_bench.methods]\nfirst_images = first_images_plugin:FirstImages\n")
    return folder


def test_an_installed_package_declares_a_method(tmp_path, run_bench, bench_env):
    site = install_plugin_package(tmp_path / "site")
    env = bench_env(site)
    listed = subprocess.run(
        [sys.executable, "-c", "from condense import list_methods; print(list_methods())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "first_images" in listed.stdout, listed.stderr
    results = tmp_path / "r"
    args = ["method=first_images", "method.reverse=true", "ipc=2", f"results_dir={results}"]
    result = run_bench(*args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    records = {r["method"]: r for r in records_in(results)}
    assert sorted(records) == ["first_images", "random"]
    assert records["first_images"]["method_config"] == {"reverse": True}
    assert "first_images" in (results / "leaderboard.md").read_text()
    wrong = run_bench("method=first_images", "method.reverse=maybe", f"results_dir={results}", cwd=tmp_path, env=env)
    assert wrong.returncode != 0 and "method.reverse" in wrong.stderr


@pytest.mark.skipif(shutil.which("condense-bench") is None, reason="condense-bench is not installed")
def test_installed_app_finds_its_configs(tmp_path):
    result = subprocess.run(
        ["condense-bench", "--cfg", "job", "method=full"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "name: full" in result.stdout and "name: digits" in result.stdout


def test_main_job_sweeps_compose_into_valid_methods(compose_bench):
    """Every sweep of the named jobs composes, and every method option in it builds a method."""
    from bench.cli import MAIN_JOB_SWEEPS, NAMED_JOBS
    from condense import create_method, method_options

    assert NAMED_JOBS["main"] == MAIN_JOB_SWEEPS
    methods = []
    for sweep in sorted({s for sweeps in NAMED_JOBS.values() for s in sweeps}):
        cfg = compose_bench([f"sweep={sweep}"], hydra_config=True)
        methods += str(cfg.hydra.sweeper.params.method).split(",")
    assert {"random", "full", "digits/dc", "digits/mtt"} <= set(methods)
    for option in methods:
        name, options = method_options(option)
        assert create_method(name, **options).name == name
        # The library's reading of a preset is what the app composes.
        composed = dict(compose_bench([f"method={option}"]).method)
        assert composed.pop("name") == name and composed == options
    # The digits settings keep the official values they do not scale down.
    _, dm = method_options("digits/dm")
    assert dm["model"] == "convnetd2" and dm["iterations"] == 20 and dm["lr_img"] == 1.0


def test_experiments_compose_into_complete_cells(compose_bench):
    from bench.cell import resolve_cell
    from bench.cli import spec_from_config
    from data.configs import option_names

    assert {"smoke", "fashion_mnist_dm", "mutag_mirage"} <= set(option_names("experiment"))
    smoke = compose_bench(["experiment=smoke"])
    assert smoke.ipc == 1 and list(smoke.references) == []  # an experiment's values win over bench.yaml's
    for name in option_names("experiment"):
        cfg = compose_bench([f"experiment={name}", "seed=0"])
        cell = resolve_cell(spec_from_config(cfg, overrides=[f"experiment={name}"]))
        assert cell.modality.name == cell.method.modality == cell.protocol.modality


def test_a_published_setting_runs_its_official_preset(compose_bench):
    """``method=mtt dataset=cifar100 ipc=1`` runs the authors' CIFAR-100 IPC 1 values; what the
    command line sets stays set; an explicit option and ``presets=none`` are left alone."""
    from bench.cli import spec_from_config

    def method_options(*overrides: str) -> dict:
        cfg = compose_bench(list(overrides), hydra_config=True)
        return spec_from_config(cfg, overrides=list(overrides)).method_options

    setting = ("dataset=cifar100", "ipc=1")
    official = method_options("method=mtt", *setting)
    assert (official["syn_steps"], official["expert_epochs"], official["max_start_epoch"]) == (20, 3, 20)
    assert official["zca"] is True and official["lr_img"] == 1000 and official["lr_lr"] == 1e-5
    # A value set on the command line wins, even one equal to the method's own default.
    changed = method_options("method=mtt", *setting, "method.zca=false", "method.iterations=7")
    assert changed["zca"] is False and changed["iterations"] == 7 and changed["syn_steps"] == 20
    assert method_options("method=mtt", *setting, "presets=none")["max_start_epoch"] == 25
    chosen = method_options("method=mtt/cifar10_ipc10", *setting)
    assert chosen["syn_steps"] == 30 and chosen["lr_lr"] == 1e-5  # the CIFAR-10 IPC 10 values, as asked
    # Settings nobody published (MTT on digits) keep the method's defaults.
    assert method_options("method=mtt", "ipc=1") == method_options("method=mtt", "ipc=1", "presets=none")


def test_presets_required_skips_what_nobody_published(compose_bench):
    from bench.cli import unpublished_setting

    def reason(*overrides: str) -> str | None:
        cfg = compose_bench(["presets=required", *overrides])
        return unpublished_setting(cfg, method_choice=overrides[0].split("=", 1)[1])

    assert reason("method=mtt", "dataset=cifar10", "ipc=10") is None
    assert reason("method=mtt/cifar10_ipc10", "dataset=cifar10", "ipc=10") is None
    assert "no official setting of method=mtt on mnist ipc=1" in reason("method=mtt", "dataset=mnist", "ipc=1")
    assert reason("method=dc", "dataset=mnist", "ipc=1") is None
    assert unpublished_setting(compose_bench(["method=mtt", "dataset=mnist"]), method_choice="mtt") is None
