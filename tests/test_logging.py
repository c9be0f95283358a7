"""The library reports through the `resnet_cifar` logger: printed by default, quieted by its level,
and a run's train.log keeps every line whatever the level."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from data_fixtures import make_cifar10_python_dir

from resnet_cifar import log
from resnet_cifar.config import build_config
from resnet_cifar.engine.train import train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_cifar10_python_dir(tmp_path_factory.mktemp("data"), n_train_per_class=3,
                                   n_test_per_class=2, seed=0, learnable=True)


@pytest.fixture
def library_logger():
    """The `resnet_cifar` logger with its default handler, its level restored afterwards."""
    logger = log.logger()  # first: a level saved before the default is set would be NOTSET
    level = logger.level
    yield logger
    logger.setLevel(level)


def one_epoch(data, out):
    config = build_config(recipe="fast", overrides={
        "epochs": 1, "batch_size": 16, "threads": 1, "out": str(out),
        "data": {"path": str(data)}})
    return train(config, progress=False)


def test_a_run_prints_what_it_writes_to_train_log_by_default(tiny_data, tmp_path, capsys,
                                                               library_logger):
    one_epoch(tiny_data, tmp_path / "run")
    printed = capsys.readouterr()
    written = (tmp_path / "run" / "train.log").read_text()
    assert "\n1/1  lr " in written and "final test" in written
    assert printed.out == written  # every line, bare, in order, on the stdout of the moment
    assert printed.err == ""


def test_a_logger_at_warning_quiets_the_run_but_not_its_train_log(tiny_data, tmp_path, capsys,
                                                                  library_logger):
    library_logger.setLevel(logging.WARNING)
    one_epoch(tiny_data, tmp_path / "run")
    assert capsys.readouterr() == ("", "")
    written = (tmp_path / "run" / "train.log").read_text()
    assert "\n1/1  lr " in written and "final test" in written


def test_a_handler_the_user_gave_is_kept_and_no_default_is_added(monkeypatch):
    logger = logging.getLogger("resnet_cifar")
    mine = logging.NullHandler()
    monkeypatch.setattr(log, "_defaulted", False)  # as in a fresh process
    monkeypatch.setattr(logger, "handlers", [mine])
    monkeypatch.setattr(logger, "propagate", True)
    assert log.logger().handlers == [mine] and logger.propagate


def test_progress_defaults_to_a_terminal_or_a_notebook(monkeypatch):
    class Shell:
        kernel = object()  # what an IPython kernel's shell has, and a terminal IPython's lacks

    class IPython:
        shell = None

        @staticmethod
        def get_ipython():
            return IPython.shell

    monkeypatch.setattr(sys, "stdout", io.StringIO())  # not a terminal
    monkeypatch.setitem(sys.modules, "IPython", IPython)
    assert not log.default_progress()  # IPython imported, no shell: a plain script
    IPython.shell = Shell()
    assert log.default_progress()
