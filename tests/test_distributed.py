"""Data-parallel training under torchrun: 2 CPU processes with gloo, on a tiny synthetic set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from data_fixtures import make_cifar10_python_dir

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_cifar10_python_dir(
        tmp_path_factory.mktemp("data"),
        n_train_per_class=8,
        n_test_per_class=4,
        seed=0,
        learnable=True,
    )


def launch(nproc: int, *args, env: dict | None = None, timeout: float = 300):
    """Run the worker under torchrun with ``nproc`` processes (1: a plain process, no torchrun)."""
    base = [sys.executable, str(WORKER)]
    if nproc > 1:
        base = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            str(WORKER),
        ]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}

    def run():
        return subprocess.run(
            base + [str(a) for a in args], capture_output=True, text=True, env=full_env,
            timeout=timeout,
        )

    result = run()
    if nproc > 1 and native_abort(result) and "--out" in args:
        # About one torchrun launch in 100 here loses a rank to a native abort inside torch
        # (gloo/c10d threads, "terminate called without an active exception", SIGABRT, no Python
        # traceback), in runs that otherwise pass. A fresh run is retried once from scratch, so
        # that this upstream abort does not fail the suite; any other failure, or a second
        # abort, still does. Resumed runs are not retried (their directory is the test's state).
        shutil.rmtree(Path(args[list(args).index("--out") + 1]), ignore_errors=True)
        print(f"retried after a native abort in torch:\n{result.stderr}", file=sys.stderr)
        result = run()
    return result


def native_abort(result: subprocess.CompletedProcess) -> bool:
    return result.returncode != 0 and "terminate called without an active exception" in (
        result.stderr
    )


def common(data, out, batch, epochs=2):
    return [
        "train",
        "--model",
        "tiny_cnn",
        "--data",
        data,
        "--out",
        out,
        "--batch-size",
        batch,
        "--epochs",
        epochs,
        "--augment",
        "none",
        "--milestones",
        "1",
        "--lr",
        "0.05",
        "--threads",
        "1",
        "--deterministic",
        "--seed",
        "5",
    ]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pth", weights_only=True)


@pytest.fixture(scope="module")
def two_rank_run(tiny_data, tmp_path_factory) -> Path:
    """A 3-epoch run on 2 ranks with per-rank batch 8, shared by the tests below."""
    out = tmp_path_factory.mktemp("ddp") / "two"
    result = launch(2, *common(tiny_data, out, 8, epochs=3))
    assert result.returncode == 0, result.stderr
    return out


def test_two_ranks_match_one_rank_with_the_doubled_batch(tiny_data, two_rank_run, tmp_path):
    one = launch(1, *common(tiny_data, tmp_path / "one", 16, epochs=3))
    assert one.returncode == 0, one.stderr
    a, b = weights(tmp_path / "one"), weights(two_rank_run)
    assert a.keys() == b.keys()  # no "module." prefix in the saved weights
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    # evaluation is sharded and all-reduced: the same accuracy and loss as one process
    rows_one = [json.loads(x) for x in open(tmp_path / "one" / "metrics.jsonl")]
    rows_two = [json.loads(x) for x in open(two_rank_run / "metrics.jsonl")]
    assert [r["epoch"] for r in rows_two] == [1, 2, 3]  # logged once, by rank 0
    for r1, r2 in zip(rows_one, rows_two, strict=True):
        assert r1["val_acc"] == r2["val_acc"]
        assert r1["val_loss"] == pytest.approx(r2["val_loss"], rel=1e-4)
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-4)
    log = (two_rank_run / "train.log").read_text()
    assert "8 per rank x 2 ranks = 16 global" in log
    assert log.count("3/3") == 1
    # only rank 0 wrote a run directory: nothing else appeared beside it
    assert [p.name for p in two_rank_run.parent.iterdir()] == ["two"]


def test_resume_under_two_ranks_continues_exactly(tiny_data, two_rank_run, tmp_path):
    # with a mid-epoch save due on rank 1 only: both ranks save at every step, and go on
    first = launch(2, *common(tiny_data, tmp_path / "cut", 8, epochs=1), env={"SAVE_DUE_RANK": "1"},
                   timeout=150)
    assert first.returncode == 0, first.stderr
    for rank in (0, 1):  # 5 steps per epoch: saves after steps 1-4, the 5th ends the epoch
        saves = [f"rank {rank} saved mid-epoch at step {step}" for step in range(1, 5)]
        assert [line for line in first.stderr.splitlines() if f"rank {rank} saved" in line] \
            == saves
    state = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert len(state["rng"]["ranks"]) == 2  # every rank's RNG state is kept
    # --epochs may grow on resume; with a step schedule the run is then the 3-epoch one
    resumed = launch(2, "train", "--resume", tmp_path / "cut", "--epochs", "3")
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(two_rank_run), weights(tmp_path / "cut")
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def recurrent_run_after_an_abort(tiny_data, tmp_path_factory):
    """(marker, run directory, launch result) of a recurrent model's run on 2 ranks whose first
    launch lost rank 1 to a native abort at exit (ABORT_ONCE): one launch retried serves both
    tests below."""
    root = tmp_path_factory.mktemp("gru")
    marker, out = root / "aborted", root / "gru"
    result = launch(2, "train", "--model", "resnet20_convgru", "--data", tiny_data, "--out", out,
                    "--batch-size", "8", "--epochs", "1", "--threads", "1",
                    env={"ABORT_ONCE": marker})
    return marker, out, result


def test_a_native_abort_at_exit_is_retried_once_from_scratch(recurrent_run_after_an_abort):
    marker, out, result = recurrent_run_after_an_abort
    assert marker.exists()  # the first launch aborted ...
    assert result.returncode == 0, result.stderr  # ... and the retry ran from scratch
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_failing_rank_stops_the_job(tiny_data, tmp_path):
    start = time.time()
    result = launch(
        2,
        *common(tiny_data, tmp_path / "fail", 8),
        env={"FAIL_RANK": "1", "RESNET_CIFAR_DIST_TIMEOUT": "30"},
        timeout=150,
    )
    assert result.returncode != 0
    assert "rank 1 failed: RuntimeError: injected failure" in result.stderr
    assert time.time() - start < 120  # startup under load included; no hang


def test_recurrent_model_trains_under_ddp(recurrent_run_after_an_abort):
    _, out, result = recurrent_run_after_an_abort
    assert result.returncode == 0, result.stderr
    state = weights(out)
    assert "layer1.0.rnn.conv_y.weight" in state
