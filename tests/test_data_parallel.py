"""Data-parallel evaluation under torchrun: the same training and records as one process.

The torchrun tests start two CPU ranks (Gloo) with ``python -m torch.distributed.run``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bench import CellSpec, run_cell
from evaluation.parallel import SINGLE, DataParallel, GlobalBatchNorm, convert_batchnorm, from_environment

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def torchrun(*args: str, cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- splitting batches ---------------------------------------------------------------------------
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_parts_tile_every_batch_and_shares_sum_to_one(world_size: int) -> None:
    for batch in range(0, 13):
        ranks = [DataParallel(rank, world_size) for rank in range(world_size)]
        shares = sum(r.share(batch) for r in ranks) if batch else 1.0
        assert shares == pytest.approx(1.0)
        rows = torch.arange(batch)
        if ranks[0].replicated(batch):
            assert batch < world_size
            assert all(torch.equal(r.local(rows), rows) for r in ranks)
        else:
            assert torch.equal(torch.cat([r.local(rows) for r in ranks]), rows)
            sizes = [len(r.local(rows)) for r in ranks]
            assert max(sizes) - min(sizes) <= 1


def test_one_process_is_untouched() -> None:
    assert from_environment("cpu", environ={"WORLD_SIZE": "1"}) is None
    assert from_environment("cpu", environ={}) is None
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    assert SINGLE.prepare(model, "cpu") is model and isinstance(model[1], nn.BatchNorm2d)
    assert SINGLE.share(7) == 1.0 and SINGLE.sum(2.5) == 2.5
    with pytest.raises(ValueError, match="rank must be in"):
        DataParallel(2, 2)


def test_global_batchnorm_is_batchnorm_on_a_batch_a_rank_trains_whole() -> None:
    """A replicated batch (and evaluation) normalizes locally, exactly as nn.BatchNorm does."""
    torch.manual_seed(0)
    reference = nn.BatchNorm2d(3)
    nn.init.uniform_(reference.weight)
    nn.init.uniform_(reference.bias)
    twin = convert_batchnorm(nn.Sequential(nn.BatchNorm2d(3)), DataParallel(0, 2))[0]
    assert isinstance(twin, GlobalBatchNorm)
    twin.load_state_dict(reference.state_dict())
    group = twin.parallel
    for _ in range(3):
        x = torch.randn(1, 3, 4, 4)
        with group.batch(1):  # smaller than the 2 ranks: trained whole by each
            torch.testing.assert_close(twin(x), reference(x))
    torch.testing.assert_close(twin.running_var, reference.running_var)
    assert int(twin.num_batches_tracked) == 3
    twin.eval(), reference.eval()
    x = torch.randn(5, 3, 4, 4)
    torch.testing.assert_close(twin(x), reference(x))


class AloneAsOneOfTwo(DataParallel):
    """Rank 0 of two whose collectives see only itself: global statistics are its own batch's."""

    def __init__(self) -> None:
        super().__init__(0, 2)

    def sum_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.clone()

    def gather_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.unsqueeze(0)


@pytest.mark.parametrize(
    ("make_layer", "shape"),
    [
        (lambda: nn.BatchNorm2d(3), (6, 3, 5, 4)),
        (lambda: nn.BatchNorm2d(3, affine=False), (6, 3, 5, 4)),
        (lambda: nn.BatchNorm1d(4, momentum=None), (7, 4)),
    ],
)
def test_global_batchnorm_forward_and_backward_are_batchnorms(make_layer, shape) -> None:
    """The synchronized path (statistics and gradient sums through the collectives) against
    nn.BatchNorm when the sums cover one batch: outputs, input and parameter gradients, running
    statistics."""
    torch.manual_seed(0)
    reference = make_layer()
    if reference.affine:
        nn.init.uniform_(reference.weight, 0.5, 1.5)
        nn.init.uniform_(reference.bias)
    layer = convert_batchnorm(nn.Sequential(make_layer()), AloneAsOneOfTwo())[0]
    layer.load_state_dict(reference.state_dict())
    for _ in range(2):
        x = (torch.randn(shape) * 3 + 1).requires_grad_()
        x_twin = x.detach().clone().requires_grad_()
        upstream = torch.randn(shape)
        expected = reference(x)
        (expected * upstream).sum().backward()
        out = layer(x_twin)
        (out * upstream).sum().backward()
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(x_twin.grad, x.grad, rtol=1e-4, atol=1e-5)
    reference.eval(), layer.eval()
    probe = torch.randn(shape)
    torch.testing.assert_close(layer(probe), reference(probe), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.running_mean, reference.running_mean)
    torch.testing.assert_close(layer.running_var, reference.running_var)
    if reference.affine:
        torch.testing.assert_close(layer.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(layer.bias.grad, reference.bias.grad, rtol=1e-4, atol=1e-5)


# -- two ranks against one process -------------------------------------------------------------
def test_torchrun_training_matches_one_process(tmp_path: Path, bench_env) -> None:
    """Hard and soft (online, replay, stored) training of a BatchNorm ConvNet with DSA, CutMix and
    Mixup, batches of 32 over 97 images (a last batch of one): two ranks end with the weights one
    process ends with, up to float32 summation order."""
    sys.path.insert(0, str(TESTS))
    try:
        import data_parallel_cases
    finally:
        sys.path.remove(str(TESTS))
    done = torchrun(str(TESTS / "data_parallel_cases.py"), cwd=tmp_path, env=bench_env(OUT=str(tmp_path)))
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    single = data_parallel_cases.run_cases(None)
    for case in ("hard", "online", "replay", "stored"):
        for name, value in single[case].items():
            torch.testing.assert_close(ranks[0][case][name], ranks[1][case][name], rtol=0, atol=0)
            torch.testing.assert_close(ranks[0][case][name].float(), value.float(), rtol=1e-4, atol=1e-5)
        assert ranks[0][f"{case}_loss"] == pytest.approx(single[f"{case}_loss"], rel=1e-3)
        # The weights moved: the comparison is not between two untrained networks.
        initial = data_parallel_cases._student("convnet_bn", 1 if case == "hard" else 4, (1, 8, 8), None)
        trained = single[case]["features.0.conv.weight"]
        assert not torch.allclose(initial.state_dict()["features.0.conv.weight"], trained)
    assert ranks[0]["hard_accuracy"] == ranks[1]["hard_accuracy"] == single["hard_accuracy"]
    torch.testing.assert_close(ranks[0]["replay_logits"], single["replay_logits"], rtol=0, atol=2e-3)


PLUGIN = '''
"""Test-only soft protocol for tests/test_data_parallel.py: SGD, a BatchNorm ConvNet, a quick teacher."""
import dataclasses

from evaluation.protocols import ImageProtocol, get_protocol, register_protocol
from evaluation.teachers import TeacherConfig
from evaluation.train import TrainRecipe

register_protocol(
    ImageProtocol(
        name="tiny_soft", version=1, models=("convnet_bn",), num_models=1,
        recipe=TrainRecipe(epochs=30, lr=0.05, batch_size=32), full_data_epochs=1, use_learned_lr=False,
        soft=dataclasses.replace(
            get_protocol("soft").soft, optimizer="sgd", schedule="step",
            teachers=(TeacherConfig(model="convnet3", epochs=15, lr=0.05, batch_size=64),),
        ),
        description="test only",
    )
)
'''

CELL = [
    "+plugins=[dp_test_plugin]",
    "protocol=tiny_soft",
    "dataset=digits",
    "method=herding",
    "ipc=10",
    "references=[]",
    "report=false",
    "threads=1",
]


def records_of(results: Path) -> dict[str, dict]:
    records = [json.loads(p.read_text()) for p in sorted((results / "records").glob("*/*/*.json"))]
    return {r["method"]: r for r in records}


def test_torchrun_cell_writes_one_record_like_one_process(tmp_path: Path, bench_env, run_bench) -> None:
    """``torchrun -m bench``: a herding cell and its random row under a soft protocol,
    one record each, the accuracies of one process; a second run skips both."""
    (tmp_path / "dp_test_plugin.py").write_text(PLUGIN)
    # One teacher cache for both runs: the teacher is trained once, as on a cluster.
    env = bench_env(tmp_path, CONDENSE_CACHE=str(tmp_path / "cache"))
    single = run_bench(*CELL, f"results_dir={tmp_path / 'single'}", cwd=tmp_path, env=env, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    first = torchrun("-m", "bench", *CELL, f"results_dir={tmp_path / 'dp'}", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    # Rank 0 alone reports and writes.
    assert first.stdout.count("[condense-bench] herding cell") == 1
    one, two = records_of(tmp_path / "single"), records_of(tmp_path / "dp")
    assert sorted(two) == sorted(one) == ["herding", "random"]
    assert len(list((tmp_path / "dp" / "records").glob("*/*/*.json"))) == 2
    assert len(list((tmp_path / "dp" / "sets").glob("*/*/*.safetensors"))) == 2
    for method in ("herding", "random"):
        assert two[method]["cell_key"] == one[method]["cell_key"]
        assert two[method]["device"].startswith("2 x cpu") and two[method]["device"].endswith("(torchrun)")
        # The same recipe and teacher (trained by the first run, a cache hit for the second).
        for teacher in two[method]["protocol_config"]["soft_run"]["teachers"]:
            assert teacher.pop("cache_hit") is True
        for teacher in one[method]["protocol_config"]["soft_run"]["teachers"]:
            teacher.pop("cache_hit")
        assert two[method]["protocol_config"] == one[method]["protocol_config"]
        single_accuracy = one[method]["results"]["convnet_bn"]["mean"]
        parallel_accuracy = two[method]["results"]["convnet_bn"]["mean"]
        # Float32 summation order differs over 120 SGD steps: a few of the 359 test images may flip.
        assert single_accuracy > 0.8
        assert abs(parallel_accuracy - single_accuracy) <= 0.02, (method, single_accuracy, parallel_accuracy)

    again = torchrun("-m", "bench", *CELL, f"results_dir={tmp_path / 'dp'}", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped (record exists)") == 2
    assert sorted(records_of(tmp_path / "dp")) == ["herding", "random"]
    assert len(list((tmp_path / "dp" / "records").glob("*/*/*.json"))) == 2


class OneOfTwoRanks(DataParallel):
    """Rank 0 of two, without a process group: broadcasts return rank 0's own value."""

    def __init__(self) -> None:
        super().__init__(0, 2)

    def broadcast_object(self, value):
        return value


def test_data_parallel_refuses_a_graph_cell(tmp_path: Path) -> None:
    spec = CellSpec(method="random_graphs", dataset="mutag", protocol="graph_fast", seed=0, fraction=0.05)
    with pytest.raises(ValueError, match="graph dataset: run condense-bench as one process"):
        run_cell(spec, results_dir=tmp_path, parallel=OneOfTwoRanks())
    assert not list(tmp_path.glob("records/*/*/*.json"))
