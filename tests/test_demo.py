"""`make demo` and `make train` on a fresh machine: which data they train on, as `make -n` prints
their commands (nothing runs). DATA when given; else the shared JPEG copy where it exists; else
no path at all, so that the CLI takes the official CIFAR-10 from its cache or downloads it there
with its md5 checked. The evaluation and the grid read the data the run recorded."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def planned(target: str, tmp_path: Path, **variables: str) -> list[list[str]]:
    """The resnet-cifar commands `make -n TARGET` would run, each as its argv after the program."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATA", "SHARED_DATA", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    assigned = [f"{name}={value}" for name, value in
                {"VENV": str(tmp_path / "venv"), **variables}.items()]
    done = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(REPO), target,
                           *assigned], env=env, capture_output=True, text=True, check=True)
    commands = done.stdout.replace("\\\n", " ").splitlines()
    return [shlex.split(line)[1:] for line in commands if "bin/resnet-cifar " in line]


def data_of(argv: list[str]) -> list[str]:
    """The data flags of one command: --data PATH or --dataset NAME."""
    return [f"{flag} {argv[argv.index(flag) + 1]}" for flag in ("--data", "--dataset")
            if flag in argv]


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    path = tmp_path / "shared" / "cifar10-jpeg.tar.gz"
    path.parent.mkdir()
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("target", ["demo", "train"])
def test_without_shared_data_the_cli_downloads_the_official_cifar10(target, tmp_path):
    commands = planned(target, tmp_path, SHARED_DATA=str(tmp_path / "absent.tar.gz"))
    assert commands[0][0] == "train"
    assert data_of(commands[0]) == ["--dataset cifar10"]


@pytest.mark.parametrize("target", ["demo", "train"])
def test_the_shared_jpeg_copy_is_used_where_it_exists(target, tmp_path, shared):
    commands = planned(target, tmp_path, SHARED_DATA=str(shared))
    assert data_of(commands[0]) == [f"--data {shared}"]


def test_data_given_wins_and_an_empty_data_forces_the_download(tmp_path, shared):
    elsewhere = "elsewhere/cifar-10-python.tar.gz"
    given = planned("demo", tmp_path, SHARED_DATA=str(shared), DATA=elsewhere)
    assert data_of(given[0]) == [f"--data {elsewhere}"]
    emptied = planned("demo", tmp_path, SHARED_DATA=str(shared), DATA="")
    assert data_of(emptied[0]) == ["--dataset cifar10"]


def test_the_demo_evaluates_and_draws_on_the_data_its_run_recorded(tmp_path, shared):
    commands = planned("demo", tmp_path, SHARED_DATA=str(shared), RUN="runs/d")
    assert [argv[0] for argv in commands] == ["train", "eval", "show"]
    assert commands[1][1] == commands[2][1] == "runs/d/last.pt"
    assert data_of(commands[1]) == data_of(commands[2]) == []
