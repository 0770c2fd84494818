"""Bad input fails early with one line and a non-zero exit; a failure leaves nothing half-written.

One test per way a new user can go wrong: a budget the dataset cannot give, a device the machine
lacks, a set file with impossible statistics, a crafted record in the results folder, a full disk,
a results folder that cannot be written, a job that fails in a sweep; and files that colleagues
on a shared results folder can read.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path

import pytest
import torch

from bench.cell import CellSpec, resolve_cell
from bench.runner import run_cell
from data.files import check_writable, host_tag, temporary_sibling
from data.synthetic import Budget, BudgetError, SyntheticSet
from data.untrusted import BadFileError, InputError
from evaluation.protocols import derive_protocol, get_protocol
from leaderboard import ModelResult, RecordCosts, ResultRecord, read_record, write_outputs, write_record
from leaderboard.cli import main as report_main

#: A cell that costs about a second: one ConvNet-3 trained for one epoch.
QUICK = ["protocol.num_models=1", "protocol.recipe.epochs=1", "references=[]"]
DEEP_JSON = "[" * 100_000 + "]" * 100_000

PLUGIN = '''
"""Test-only: a method that fails while it runs (not bad input: a bug, a crash)."""
from baselines.reference import RandomSelection
from data.methods import register_method


@register_method("exploding")
class Exploding(RandomSelection):
    def select(self, train, budget, *, seed, device="cpu"):
        raise RuntimeError("the method broke")
'''


def one_line_error(stderr: str, program: str = "condense-bench") -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(f"{program}: error:")]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


def quick_protocol():
    return derive_protocol(get_protocol("fast"), {"num_models": 1, "recipe.epochs": 1})


def test_an_ipc_above_a_class_is_refused_before_any_work(tmp_path: Path, run_bench) -> None:
    run = run_bench("method=random", "ipc=100000", *QUICK, f"results_dir={tmp_path}", cwd=tmp_path)
    assert run.returncode == 2
    line = one_line_error(run.stderr)
    assert "ipc=100000" in line and "125 images" in line and "budget_policy=cap" in line
    assert "Traceback" not in run.stderr
    assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.safetensors"))


def test_budget_policy_cap_records_the_capped_counts(tmp_path: Path, digits) -> None:
    train = digits[0]
    spec = CellSpec("random", "digits", quick_protocol(), seed=0, ipc=1000, budget_policy="cap")
    outcome = run_cell(spec, results_dir=tmp_path)
    record = read_record(outcome.record_path)
    assert record.capped_class_counts == train.class_counts().tolist()
    assert record.budget == "ipc=1000 (capped)" and record.costs.num_images == len(train)
    # The capped cell is not the cell of the same ipc under the default policy.
    assert resolve_cell(dataclasses.replace(spec, budget_policy="error")).key != outcome.key
    with pytest.raises(BudgetError, match="only selection methods"):
        resolve_cell(dataclasses.replace(spec, method="dm"))
    with pytest.raises(BudgetError, match="valid: error, cap"):
        resolve_cell(dataclasses.replace(spec, budget_policy="clip"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_device_is_named(tmp_path: Path, run_bench) -> None:
    run = run_bench("method=random", "ipc=1", "device=cuda", *QUICK, f"results_dir={tmp_path}", cwd=tmp_path)
    assert run.returncode == 2 and "CUDA is not available" in one_line_error(run.stderr)


def test_impossible_normalization_statistics_are_refused(tmp_path: Path) -> None:
    images = torch.zeros(2, 1, 4, 4)
    for mean, std in (((0.0,), (0.0,)), ((float("nan"),), (1.0,)), ((0.0,), (float("inf"),)), ((0.0,), (-1.0,))):
        synthetic = SyntheticSet(images, torch.tensor([0, 1]), 2, mean, std, Budget(ipc=1))
        with pytest.raises(ValueError, match="mean|std"):
            synthetic.validate()
        # Written anyway (as a crafted file would be), it is refused when read.
        path = tmp_path / "crafted.safetensors"
        path.write_bytes(synthetic.to_bytes())
        with pytest.raises(BadFileError, match="crafted.safetensors"):
            SyntheticSet.load(path)


def test_a_crafted_record_is_refused_the_report_written_and_the_exit_non_zero(tmp_path: Path, run_bench) -> None:
    run = run_bench("method=random", "ipc=1", *QUICK, f"results_dir={tmp_path}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    crafted = tmp_path / "records" / "digits" / "random" / "ffffffffffffffff.json"
    crafted.write_text(DEEP_JSON)
    (tmp_path / "report.html").unlink()
    assert report_main([str(tmp_path)]) == 1
    assert (tmp_path / "report.html").is_file()
    again = run_bench("method=random", "ipc=1", *QUICK, f"results_dir={tmp_path}", cwd=tmp_path)
    assert again.returncode == 1
    assert "nested 100000 levels deep" in again.stderr and str(crafted) in again.stderr
    assert "1 record file(s) refused" in one_line_error(again.stderr)
    assert "skipped (record exists)" in again.stdout and "leaderboard:" in again.stdout


def test_a_full_disk_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import data.files

    synthetic = SyntheticSet(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), 2, (0.0,), (1.0,), Budget(ipc=1))

    def disk_full(path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    results = tmp_path / "results"
    write_record(a_record(), results)
    with monkeypatch.context() as patched:
        patched.setattr(data.files, "fsync_tree", disk_full)
        with pytest.raises(OSError, match="No space left"):
            synthetic.save(tmp_path / "sets" / "a.safetensors")
        assert not list((tmp_path / "sets").iterdir())
        assert report_main([str(results)]) == 1
    assert "the report could not be written" in one_line_error(capsys.readouterr().err, "condense-report")
    assert not [p for p in results.rglob("*") if p.name.endswith(".tmp")]


def a_record() -> ResultRecord:
    return ResultRecord(
        cell_key="00000000000000ab",
        method="random",
        family="selection",
        label_type="hard",
        method_config={},
        dataset="digits",
        dataset_fingerprint="0856650b1ee8e27c",
        ipc=1,
        fraction=None,
        protocol="fast",
        protocol_config={},
        seed=0,
        results={"convnet3": ModelResult.from_accuracies([0.5, 0.6])},
        costs=RecordCosts(1.5, 2048, 3.0, 4096, 10),
        versions={},
        git_revision=None,
        device="cpu",
        created="2026-12-01T00:00:00+00:00",
        set_path=None,
    )


def write_record_for(folder: Path) -> Path:
    """A valid record file, written under ``folder/source``."""
    return write_record(a_record(), folder / "source")


def test_files_honour_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        synthetic = SyntheticSet(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), 2, (0.0,), (1.0,), Budget(ipc=1))
        paths = [synthetic.save(tmp_path / "set.safetensors"), write_record_for(tmp_path)]
        paths += list(write_outputs(tmp_path / "source").values())
    finally:
        os.umask(previous)
    assert {oct(p.stat().st_mode & 0o777) for p in paths} == {"0o644"}


def test_an_unwritable_results_folder_is_found_before_any_work(tmp_path: Path, run_bench) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run = run_bench("method=random", "ipc=1", *QUICK, f"results_dir={blocker / 'results'}", cwd=tmp_path)
    assert run.returncode == 2
    assert "is not writable" in one_line_error(run.stderr) and "Traceback" not in run.stderr
    spec = CellSpec("random", "digits", quick_protocol(), seed=0, ipc=1)
    with pytest.raises(InputError, match="not writable"):
        run_cell(spec, results_dir=blocker / "results")


def test_a_failing_job_is_named_and_the_sweep_exits_non_zero(tmp_path: Path, bench_env, run_bench) -> None:
    (tmp_path / "exploding_plugin.py").write_text(PLUGIN)
    env = bench_env(tmp_path)
    run = run_bench(
        "-m",
        "+plugins=[exploding_plugin]",
        "method=exploding",
        "ipc=1",
        *QUICK,
        f"results_dir={tmp_path / 'r'}",
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode != 0
    line = one_line_error(run.stderr)
    assert "method=exploding" in line and "RuntimeError: the method broke" in line


def test_stale_temporaries_of_dead_writers_are_swept(tmp_path: Path) -> None:
    write_record_for(tmp_path)
    write_outputs(tmp_path / "source")
    dead = Path(
        str(temporary_sibling(tmp_path / "source" / "leaderboard.csv")).replace(f"-{os.getpid()}-", "-999999999-")
    )
    alive = temporary_sibling(tmp_path / "source" / "leaderboard.csv")
    dead.write_text("partial")
    alive.write_text("being written")
    write_outputs(tmp_path / "source")
    assert not dead.exists() and alive.exists()


def test_probes_left_by_a_writer_killed_mid_probe_are_swept(tmp_path: Path) -> None:
    folder = tmp_path / "locks"
    folder.mkdir()
    own_probe = f".write-probe-{host_tag()}-{os.getpid()}"
    dead_probe = folder / own_probe.replace(f"-{os.getpid()}", "-999999999")
    dead_temporary = temporary_sibling(dead_probe)
    dead_temporary = dead_temporary.with_name(dead_temporary.name.replace(f"-{os.getpid()}-", "-999999999-"))
    live_temporary = temporary_sibling(folder / f".write-probe-{host_tag()}-{os.getppid()}")
    for leftover in (dead_probe, dead_temporary, live_temporary):
        leftover.write_bytes(b"")
    check_writable([folder])
    assert sorted(p.name for p in folder.iterdir()) == [live_temporary.name]
