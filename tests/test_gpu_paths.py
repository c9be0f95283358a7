"""The CUDA paths that a CPU can check: what reaches torch.cuda is stubbed, and the test asserts
what our code asks of it. tests/test_cuda.py runs the same paths on a real GPU."""

from __future__ import annotations

import torch

from resnet_cifar.engine import runtime
from resnet_cifar.engine.checkpoint import atomic_save, on_cpu


def test_every_tensor_a_checkpoint_holds_is_saved_on_the_cpu(tmp_path, monkeypatch):
    moved = []
    real_cpu = torch.Tensor.cpu

    def cpu(self, *args, **kwargs):
        moved.append(tuple(self.shape))
        return real_cpu(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", cpu)
    payload = {"model": {"w": torch.ones(2, 3)}, "optimizer": {"state": {0: {"m": torch.ones(4)}}},
               "rng": {"torch": torch.ones(5, dtype=torch.uint8), "python": (3, (1, 2), None)},
               "history": [{"epoch": 1}], "ranks": [torch.ones(6)]}
    atomic_save(payload, tmp_path / "x.pt")
    assert sorted(moved) == [(2, 3), (4,), (5,), (6,)]  # every tensor, however deep
    loaded = torch.load(tmp_path / "x.pt", weights_only=True)
    assert loaded["rng"]["python"] == (3, (1, 2), None) and loaded["history"] == [{"epoch": 1}]
    assert on_cpu(payload)["model"]["w"].device.type == "cpu"


def test_an_explicit_gpu_index_becomes_the_current_device(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert runtime.resolve_device("cuda:1") == torch.device("cuda:1")
    assert chosen == [1]
    runtime.resolve_device("cuda")  # no index: the current device stays
    assert chosen == [1]


def test_only_the_rng_of_the_gpu_in_use_is_saved(monkeypatch):
    state = torch.arange(8, dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: state)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [state] * 8)
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.append)
    saved = runtime.capture_rng_state()
    assert torch.equal(saved["cuda"], state)  # one state, not one per visible GPU
    runtime.restore_rng_state(saved)
    assert len(restored) == 1 and torch.equal(restored[0], state)


def test_torchrun_ranks_on_one_machine_share_its_cores(monkeypatch):
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert runtime.physical_cores() == 16
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "8")  # torchrun sets both
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert runtime.physical_cores() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert runtime.physical_cores() == 1


def test_curves_are_redrawn_at_most_every_interval_and_at_the_end(tmp_path, monkeypatch):
    from data_fixtures import make_cifar10_python_dir

    from resnet_cifar.config import build_config
    from resnet_cifar.engine import report, rundir, train

    data = make_cifar10_python_dir(tmp_path / "data", n_train_per_class=2, n_test_per_class=1)
    drawn = []
    monkeypatch.setattr(report, "draw_curves",
                        lambda run_dir, log: drawn.append(len(rundir.read_metrics(run_dir))))
    for every, expected in ((1e9, [1, 3]), (0.0, [1, 2, 3, 3])):
        monkeypatch.setattr(report, "CURVES_EVERY_S", every)
        drawn.clear()
        config = build_config(overrides={"epochs": 3, "batch_size": 10, "threads": 1,
                                         "data": {"path": str(data)},
                                         "out": str(tmp_path / f"run{every}")})
        train.train(config, progress=False)
        assert drawn == expected  # the first epoch, then by the clock; always at the end
