"""Official per-setting presets (``configs/method/<method>/<dataset>_ipc<N>.yaml``): every one builds its
method, states only what it changes, carries the published values, and Hydra composes the same."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from condense import create_method
from condense.gvbsm import EDC_OBSERVERS, GVBSM_OBSERVERS
from condense.infer import base_sets_for
from condense.presets import method_options, official_preset, official_presets
from data.configs import config_dir

PRESETS = official_presets()
#: Per-dataset presets without an IPC (Mirage's budget is its support threshold).
DATASET_PRESETS = ["mirage/dd", "mirage/nci1", "mirage/imdb-binary"]
OPTIONS = [f"{m}/{d}_ipc{i}" for m, d, i in PRESETS] + DATASET_PRESETS
CLASSES = {"cifar10": 10, "cifar100": 100, "tiny_imagenet": 200, "imagenet1k": 1000}

CIFAR = ("cifar10", "cifar100")
CIFAR_TINY = (*CIFAR, "tiny_imagenet")
DIGITS_CIFAR = ("mnist", "fashion_mnist", "svhn", "cifar10")


def settings(method: str, datasets: tuple[str, ...], ipcs: tuple[int, ...]) -> set[tuple[str, str, int]]:
    return {(method, d, i) for d in datasets for i in ipcs}


#: The published settings (paper tables, README commands, official configs and scripts).
PUBLISHED = (
    settings("mtt", CIFAR_TINY, (1, 10, 50))
    | settings("ftd", CIFAR, (1, 10, 50))
    | settings("ftd", ("tiny_imagenet",), (1, 10))
    | settings("datm", ("cifar10",), (1, 10, 50, 500, 1000))
    | settings("datm", ("cifar100",), (1, 10, 50, 100))
    | settings("datm", ("tiny_imagenet",), (1, 10, 50))
    | settings("idm", CIFAR_TINY, (1, 10, 50))
    | settings("ncfm", CIFAR_TINY, (1, 10, 50))
    | {("tesla", "cifar10", 1), ("tesla", "cifar100", 50)}
    | settings("gvbsm", ("cifar10",), (10, 50))
    | settings("gvbsm", ("cifar100",), (1, 10, 50))
    | settings("gvbsm", ("tiny_imagenet",), (50, 100))
    | settings("edc", CIFAR_TINY, (1, 10, 50))
    | settings("selmatch", ("cifar10",), (250, 500, 1000, 1500))
    | settings("selmatch", ("cifar100",), (25, 50, 100, 150))
    | settings("selmatch", ("tiny_imagenet",), (50, 100))
    | settings("dc", DIGITS_CIFAR, (1, 10, 50))
    | settings("dc", ("cifar100",), (1, 10))
    | settings("dsa", (*DIGITS_CIFAR, "cifar100"), (1, 10, 50))
    | settings("dm", ("cifar10",), (1, 10, 50, 100, 200, 500, 1000, 1250))
    | settings("dm", ("cifar100",), (1, 10, 50, 100, 125))
    | settings("dm", ("tiny_imagenet",), (1, 10, 50))
    | settings("datadam", CIFAR, (1, 10, 50))
    | {("sre2l", "cifar100", 50)}
    | settings("sre2l", ("tiny_imagenet",), (50, 100))
    | settings("sre2l", ("imagenet1k",), (10, 50, 100, 200))
    | settings("cda", ("tiny_imagenet",), (50, 100))
    | settings("cda", ("imagenet1k",), (50, 100, 200))
    | settings("rded", (*CIFAR_TINY, "imagenet1k"), (1, 10, 50))
    | settings("infer", ("cifar10",), (10, 50))
    | settings("infer", ("cifar100",), (10, 50, 100))
    | settings("infer", ("imagenet1k",), (10, 50))
)


def test_presets_cover_the_published_settings_and_no_others():
    assert PUBLISHED <= set(PRESETS)
    # No official values: MNIST-family for the trajectory methods, FTD Tiny IPC 50, DC CIFAR-100 IPC 50, INFER IPC 1.
    for missing in [("mtt", "mnist", 1), ("ftd", "tiny_imagenet", 50), ("dc", "cifar100", 50), ("infer", "cifar10", 1)]:
        assert missing not in PRESETS


@pytest.mark.parametrize("option", OPTIONS)
def test_every_preset_builds_its_method_and_states_only_what_it_changes(option):
    method = option.partition("/")[0]
    name, options = method_options(option)
    assert name == method
    assert create_method(name, **options).name == method
    path = config_dir() / "method" / f"{option}.yaml"
    assert path.read_text().startswith("# "), f"{path} has no header naming its source"
    own = OmegaConf.to_container(OmegaConf.load(path))
    assert own.pop("defaults") == [f"/method/{method}@_here_", "_self_"]
    _, base = method_options(method)
    for key, value in own.items():
        assert key in base, f"{option}: {key} is not an option of {method}"
        assert value != base[key], f"{option}: {key} repeats configs/method/{method}.yaml"


def test_mtt_cifar100_ipc1_is_the_readme_command():
    name, options = method_options("mtt/cifar100_ipc1")
    assert name == "mtt"
    expected = {"syn_steps": 20, "expert_epochs": 3, "max_start_epoch": 20, "zca": True, "lr_img": 1000.0}
    assert {k: options[k] for k in expected} == expected
    assert options["lr_lr"] == 1e-05 and options["lr_teacher"] == 0.01 and options["batch_syn"] is None


SPOT_VALUES = {
    "mtt/cifar10_ipc1": {"syn_steps": 50, "max_start_epoch": 2, "lr_img": 100.0, "lr_lr": 1e-07, "zca": True},
    "mtt/cifar10_ipc10": {"syn_steps": 30, "lr_teacher": 0.001, "zca": True},
    "mtt/cifar10_ipc50": {"max_start_epoch": 40, "lr_img": 1000.0, "lr_teacher": 0.001, "zca": False},
    "mtt/cifar100_ipc10": {"expert_epochs": 2, "zca": False},
    "mtt/cifar100_ipc50": {"syn_steps": 80, "batch_syn": 125, "zca": True},
    "mtt/tiny_imagenet_ipc1": {"model": "convnetd4", "syn_steps": 10, "lr_img": 10000.0, "lr_lr": 1e-04},
    "mtt/tiny_imagenet_ipc10": {"model": "convnetd4", "batch_syn": 200, "max_start_epoch": 40},
    "mtt/tiny_imagenet_ipc50": {"model": "convnetd4", "batch_syn": 300, "zca": False},
    "ftd/cifar10_ipc1": {"syn_steps": 50, "lr_lr": 1e-07, "alpha": 0.3, "ema_decay": 0.9999, "zca": True},
    "ftd/cifar10_ipc50": {"lr_teacher": 0.01, "alpha": 1.0, "ema_decay": 0.999},
    "ftd/cifar100_ipc1": {"syn_steps": 40, "expert_epochs": 3, "alpha": 1.0, "ema_decay": 0.9995},
    "ftd/cifar100_ipc10": {"max_start_epoch": 40, "ema_decay": 0.9995},
    "ftd/cifar100_ipc50": {"syn_steps": 80, "batch_syn": 1000, "ema_decay": 0.999},
    "ftd/tiny_imagenet_ipc1": {"syn_steps": 30, "model": "convnetd4", "zca": False},
    "ftd/tiny_imagenet_ipc10": {"batch_syn": 500, "lr_img": 10000.0, "ema_decay": 0.999},
    "datm/cifar10_ipc1": {
        "sequential_generation": False,
        "max_start_epoch": 4,
        "threshold": 1.1,
        "lr_y": 5.0,
        "batch_syn": 10,
        "lr_lr": 1e-07,
        "zca": True,
    },
    "datm/cifar10_ipc50": {
        "lr_img": 1000.0,
        "batch_syn": 500,
        "current_max_start_epoch": 20,
        "max_start_epoch": 40,
        "expansion_end_epoch": 2000,
    },
    "datm/cifar10_ipc1000": {"syn_steps": 100, "lr_img": 50.0, "min_start_epoch": 40, "max_start_epoch": 60},
    "datm/cifar100_ipc1": {"syn_steps": 40, "expert_epochs": 3, "lr_y": 10.0},
    "datm/cifar100_ipc50": {
        "pix_init": "real",
        "min_start_epoch": 20,
        "max_start_epoch": 70,
        "sequential_generation": False,
    },
    "datm/tiny_imagenet_ipc1": {"model": "convnetd4", "current_max_start_epoch": 15, "lr_img": 10000.0, "zca": True},
    "idm/cifar10_ipc1": {"batch_real": 5000, "net_generate_interval": 5, "ce_weight": 0.5},
    "idm/cifar10_ipc10": {"batch_real": 256, "ce_weight": 0.5},
    "idm/cifar10_ipc50": {"ce_weight": 0.1, "accuracy_window": 500},
    "idm/cifar100_ipc1": {"batch_real": 5000, "net_generate_interval": 5, "ce_weight": 0.5},
    "idm/cifar100_ipc10": {"ce_weight": 0.1, "model_train_steps": 50},
    "idm/cifar100_ipc50": {"ce_weight": 0.1, "model_train_steps": 10},
    "idm/tiny_imagenet_ipc1": {"batch_real": 256, "net_generate_interval": 30},
    "idm/tiny_imagenet_ipc50": {"ce_weight": 0.8, "model_train_steps": 50, "accuracy_window": 1000},
    "ncfm/cifar10_ipc10": {"optimizer": "adamw", "lr_img": 0.001, "num_freqs": 4096, "model": "convnet3"},
    "ncfm/cifar100_ipc10": {"optimizer": "sgd", "lr_img": 0.01, "momentum_img": 0.5},
    "ncfm/tiny_imagenet_ipc50": {"model": "convnetd4", "optimizer": "adamw"},
    "tesla/cifar10_ipc1": {"syn_steps": 50, "max_start_epoch": 5, "lr_lr": 1e-07, "zca": False, "batch_syn": None},
    "tesla/cifar100_ipc50": {"syn_steps": 80, "max_start_epoch": 40, "batch_syn": 125, "zca": True, "lr_img": 1000.0},
    "gvbsm/cifar10_ipc10": {"squeeze_epochs": 5, "iterations": 4000, "lr": 0.05, "r_loss": 0.01, "dd_weight": 1.0},
    "gvbsm/cifar100_ipc10": {"squeeze_epochs": 50, "momentum": 0.8, "drop_rate": 0.4, "jitter": 32, "pad_crop": None},
    "gvbsm/tiny_imagenet_ipc50": {"iterations": 4000, "batch_size": 100, "observers": list(GVBSM_OBSERVERS)},
    "edc/cifar10_ipc1": {"squeeze_epochs": 5, "iterations": 75, "batch_size": 10, "min_scale": 0.08},
    "edc/cifar10_ipc50": {"iterations": 75, "batch_size": 500, "observers": list(EDC_OBSERVERS)},
    "edc/cifar100_ipc10": {
        "iterations": 2000,
        "batch_size": 100,
        "class_weight": 0.5,
        "drop_rate": 0.0,
        "min_scale": 0.5,
    },
    "edc/tiny_imagenet_ipc10": {"iterations": 2000, "observers": list(GVBSM_OBSERVERS), "init": "real", "jitter": 0},
    "selmatch/cifar10_ipc1000": {"alpha": 0.1, "beta": 0.2, "lr_img": 10000.0, "model": "convnet_bn"},
    "selmatch/cifar100_ipc25": {"alpha": 0.8, "beta": 0.8, "syn_steps": 55, "batch_syn": 125},
    "selmatch/tiny_imagenet_ipc100": {"alpha": 0.5, "beta": 0.7, "model": "convnetd4_bn", "syn_steps": 20},
    "dc/mnist_ipc1": {"outer_loop": 1, "inner_loop": 1, "init": "noise", "dsa_strategy": "none"},
    "dc/cifar10_ipc10": {"outer_loop": 10, "inner_loop": 50},
    "dc/svhn_ipc50": {"outer_loop": 50, "inner_loop": 10},
    "dsa/fashion_mnist_ipc10": {"outer_loop": 10, "inner_loop": 50, "init": "real", "dsa_strategy": "auto"},
    "dsa/cifar100_ipc50": {"outer_loop": 50, "inner_loop": 10},
    "dm/cifar10_ipc50": {"lr_img": 1.0, "iterations": 20000},
    "dm/cifar10_ipc100": {"lr_img": 10.0},
    "dm/cifar100_ipc125": {"lr_img": 1.0},
    "datadam/cifar10_ipc1": {"lr_img": 1.0, "batch_real": 64, "task_balance": 0.01},
    "sre2l/cifar100_ipc50": {"iterations": 1000, "lr": 0.25, "r_bn": 0.01, "jitter": 4, "crop": False},
    "sre2l/tiny_imagenet_ipc50": {"iterations": 4000, "lr": 0.1, "r_bn": 1.0, "crop": True},
    "sre2l/imagenet1k_ipc50": {"iterations": 4000, "lr": 0.25, "r_bn": 0.01, "jitter": 32, "crop": True},
    "cda/tiny_imagenet_ipc100": {"lr": 0.4, "r_bn": 0.05, "jitter": 4, "curriculum": "cosine", "milestone": 1.0},
    "cda/imagenet1k_ipc200": {"lr": 0.25, "r_bn": 0.01, "jitter": 32, "iterations": 4000},
    "rded/cifar10_ipc10": {"observer_model": "convnet_bn", "factor": 1, "num_crop": 5, "mipc": 300},
    "rded/tiny_imagenet_ipc50": {"observer_model": "resnet18_bn", "factor": 1},
    "rded/imagenet1k_ipc10": {"factor": 2},
    "infer/cifar100_ipc50": {"iterations": 1000, "r_bn": 1.0, "jitter": 4},
    "infer/imagenet1k_ipc10": {"iterations": 2000, "r_bn": 0.01, "jitter": 32},
    "mirage/dd": {"hops": 1, "support_mode": "absolute", "class_support": [15, 9], "drop_shared": False},
    "mirage/nci1": {"hops": 2, "class_support": [460, 590], "drop_shared": True},
    "mirage/imdb-binary": {"hops": 2, "class_support": [14, 15], "drop_shared": True},
}


@pytest.mark.parametrize("option", sorted(SPOT_VALUES))
def test_presets_carry_the_published_values(option):
    _, options = method_options(option)
    assert {k: options[k] for k in SPOT_VALUES[option]} == SPOT_VALUES[option]


def test_infer_presets_leave_base_images_and_keep_the_teacher_count():
    for method, dataset, ipc in PRESETS:
        if method == "infer":
            _, options = method_options(f"infer/{dataset}_ipc{ipc}")
            teachers = len(options["teacher_models"])
            assert teachers == (3 if dataset == "imagenet1k" else 4)
            assert base_sets_for(ipc, CLASSES[dataset], teachers) >= 1


def test_official_preset_finds_a_setting_or_none():
    assert official_preset("mtt", "cifar10", 10) == "mtt/cifar10_ipc10"
    assert official_preset("datm", "cifar10", 1000) == "datm/cifar10_ipc1000"
    assert official_preset("mtt", "mnist", 1) is None
    assert official_preset("random", "cifar10", 10) is None  # a selector: no published setting
    with pytest.raises(ValueError, match="valid methods"):
        official_preset("no_such_method", "cifar10", 10)


def test_official_presets_lists_method_folders_only(tmp_path):
    method = tmp_path / "method"
    for relative in ("mtt/cifar10_ipc3", "mtt/cifar10_notes", "digits/mtt", "mirage/dd", "no_such_method/x_ipc1"):
        (method / f"{relative}.yaml").parent.mkdir(parents=True, exist_ok=True)
        (method / f"{relative}.yaml").write_text("defaults:\n  - /method/mtt@_here_\n  - _self_\n")
    assert official_presets(root=tmp_path) == [("mtt", "cifar10", 3)]
    assert official_preset("mtt", "cifar10", 3, root=tmp_path) == "mtt/cifar10_ipc3"
    assert ("mtt", "cifar100", 1) in PRESETS and not any(m in ("digits", "mirage") for m, _, _ in PRESETS)


def test_hydra_composes_what_the_library_reads(compose_bench):
    """One preset per method (and the per-dataset ones): the app's method block is the library's reading."""
    first = {}
    for option in OPTIONS:
        first.setdefault(option.partition("/")[0], option)
    for option in [*first.values(), *DATASET_PRESETS]:
        name, options = method_options(option)
        composed = OmegaConf.to_container(compose_bench([f"method={option}"]).method)
        assert composed.pop("name") == name and composed == options, option


def test_condense_bench_composes_the_mtt_cifar100_ipc1_preset(tmp_path, bench_env):
    script = shutil.which("condense-bench") or str(Path(sys.executable).with_name("condense-bench"))
    command = [script] if Path(script).is_file() else [sys.executable, "-m", "bench"]
    result = subprocess.run(
        [*command, "method=mtt/cifar100_ipc1", "--cfg", "job"],
        cwd=tmp_path,
        env=bench_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    method = OmegaConf.create(result.stdout).method
    assert method.name == "mtt"
    assert (method.syn_steps, method.expert_epochs, method.max_start_epoch, method.zca) == (20, 3, 20, True)
    assert (method.lr_img, method.lr_lr, method.lr_teacher) == (1000.0, 1e-05, 0.01)
